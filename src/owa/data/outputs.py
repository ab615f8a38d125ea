"""Writing dataset folders atomically: build in a temporary sibling, then rename into place.

A crash, an exception or Ctrl-C inside :func:`atomic_output_dir` removes the temporary folder, so the
output path only ever holds a complete dataset (or whatever was there before).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from owa.data.errors import OutputExistsError

__all__ = ["atomic_output_dir", "quiet_datasets_progress", "save_dataset", "write_split_metadata"]


@contextlib.contextmanager
def atomic_output_dir(output_dir: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``output_dir``; on success it replaces ``output_dir``.

    Raises:
        OutputExistsError: ``output_dir`` exists and ``overwrite`` is False (checked before any work).
    """
    output = Path(os.path.abspath(output_dir))
    if output.exists() and not overwrite:
        raise OutputExistsError(
            "Output folder already exists; pass overwrite=True (--overwrite) to replace it", path=output
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.parent / f".{output.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if output.exists():
            old = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:12]}"
            output.rename(old)
        tmp.rename(output)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def quiet_datasets_progress() -> Iterator[None]:
    """Silence ``datasets``' own progress bars (e.g. in ``save_to_disk``) for the block, then restore them.

    The library never prints; progress belongs to the CLI.
    """
    from datasets.utils.tqdm import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def save_dataset(dataset: Any, path: str | os.PathLike[str]) -> None:
    """``save_to_disk`` a ``Dataset`` or ``DatasetDict`` quietly, keeping empty splits loadable.

    ``datasets`` picks zero shards for an empty split, which ``load_from_disk`` then cannot read; an
    empty split is written as one empty shard instead.
    """
    import datasets

    with quiet_datasets_progress():
        if isinstance(dataset, datasets.DatasetDict):
            shards = {name: (1 if len(split) == 0 else None) for name, split in dataset.items()}
            dataset.save_to_disk(str(path), num_shards=shards)
        else:
            dataset.save_to_disk(str(path), num_shards=1 if len(dataset) == 0 else None)


def write_split_metadata(
    split_dir: str | os.PathLike[str], shard_names: list[str], features: dict[str, Any], *, fingerprint: str
) -> None:
    """Write ``state.json`` and ``dataset_info.json`` for Arrow shards already in ``split_dir``.

    ``features`` is ``datasets.Features.to_dict()`` output. This is the layout ``Dataset.save_to_disk``
    produces (shards are Arrow IPC *stream* files whose schema metadata carries the features), so
    ``datasets.load_from_disk`` reads it. Writers that stream shards in place use it to avoid a second
    copy of the data, and without importing ``datasets``.
    """
    split = Path(split_dir)
    info = {"citation": "", "description": "", "features": features, "homepage": "", "license": ""}
    (split / "dataset_info.json").write_text(json.dumps(info, indent=2))
    state = {
        "_data_files": [{"filename": name} for name in shard_names],
        "_fingerprint": fingerprint,
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    (split / "state.json").write_text(json.dumps(state, indent=2))
