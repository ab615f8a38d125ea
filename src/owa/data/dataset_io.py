"""Datasets on disk in the ``save_to_disk`` layout: saving quietly (to a folder or a URL), publishing a stage's
output with its ``owa_data.json`` atomically, and writing the layout for streamed shards.

``datasets`` is imported only inside the functions that use it: stage 1 writes its folder with
:func:`write_split_metadata` and never imports it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from owa.data import storage
from owa.data.errors import OutputExistsError

if TYPE_CHECKING:
    from owa.data.metadata import DatasetMetadata

__all__ = ["publish_dataset", "quiet_datasets_progress", "save_dataset", "write_split_metadata"]


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


def save_dataset(
    dataset: Any,
    path: str | os.PathLike[str],
    *,
    storage_options: storage.StorageOptions | None = None,
    overwrite: bool = False,
) -> None:
    """``save_to_disk`` a ``Dataset`` or ``DatasetDict`` quietly, keeping empty splits loadable.

    ``datasets`` picks zero shards for an empty split, which ``load_from_disk`` then cannot read; an
    empty split is written as one empty shard instead.

    ``path`` may be a URL (``s3://bucket/prefix``): the dataset is then built in a local temporary folder
    and published with :func:`owa.data.storage.upload_dataset_dir` (its marker file last, so it is not
    loadable until complete), to be read with ``datasets.load_from_disk(url, storage_options=...)``.
    ``overwrite`` replaces what is stored there (a URL only; local outputs are made atomic by
    :mod:`owa.data.atomic`).

    Raises:
        OutputExistsError: a URL output exists and ``overwrite`` is False.
        StorageAccessError: the object store denied a request or cannot be reached.
    """
    if storage.is_url(path):
        if not overwrite and storage.exists(path, storage_options):  # before the build, not after it
            raise OutputExistsError("Output already exists; pass overwrite=True to replace it", path=os.fspath(path))
        with tempfile.TemporaryDirectory(prefix="owa-data-upload-") as tmp:
            local = Path(tmp) / "dataset"
            save_dataset(dataset, local)
            storage.upload_dataset_dir(local, str(path), storage_options, overwrite=overwrite)
        return
    import datasets

    with quiet_datasets_progress():
        if isinstance(dataset, datasets.DatasetDict):
            shards = {name: (1 if len(split) == 0 else None) for name, split in dataset.items()}
            dataset.save_to_disk(str(path), num_shards=shards)
        else:
            dataset.save_to_disk(str(path), num_shards=1 if len(dataset) == 0 else None)


def publish_dataset(
    dataset: Any,
    output: str | os.PathLike[str],
    *,
    metadata: DatasetMetadata,
    add_files: Callable[[Path], None] | None = None,
    batch_rows: int | None = None,
    storage_options: storage.StorageOptions | None = None,
    overwrite: bool = False,
) -> None:
    """Save a stage's output (a ``Dataset`` or ``DatasetDict``) with its ``owa_data.json``, all or nothing.

    The folder is built locally first: ``save_to_disk``, then ``owa_data.json``
    (:func:`owa.data.metadata.write_metadata`), then ``add_files(folder)`` for any other files the stage keeps beside
    the dataset. A local ``output`` is then renamed into place (:mod:`owa.data.atomic`); a URL is uploaded with its
    marker files last (:func:`owa.data.storage.upload_dataset_dir`). Either way a reader never finds a loadable
    dataset without its metadata. With ``batch_rows``, the shards are written by :func:`save_in_large_batches`
    instead of ``save_to_disk``.

    Raises:
        OutputExistsError: ``output`` exists and ``overwrite`` is False (checked before any work).
        StorageAccessError: the object store denied a request or cannot be reached.
    """
    from owa.data.metadata import write_metadata

    def build(folder: Path) -> None:
        if batch_rows is None:
            save_dataset(dataset, folder)
        else:
            save_in_large_batches(dataset, folder, batch_rows=batch_rows)
        write_metadata(folder, metadata)
        if add_files is not None:
            add_files(folder)

    if storage.is_url(output):
        if not overwrite and storage.exists(output, storage_options):  # before the build, not after it
            raise OutputExistsError("Output already exists; pass overwrite=True to replace it", path=os.fspath(output))
        with tempfile.TemporaryDirectory(prefix="owa-data-upload-") as tmp:
            local = Path(tmp) / "dataset"
            local.mkdir()
            build(local)
            storage.upload_dataset_dir(local, str(output), storage_options, overwrite=overwrite)
        return
    from owa.data.atomic import atomic_output_dir

    with atomic_output_dir(output, overwrite=overwrite) as tmp:
        build(tmp)


_MAX_SHARD_BYTES = 500 * 1024 * 1024  # as save_to_disk's default


def save_in_large_batches(dataset: Any, folder: str | os.PathLike[str], *, batch_rows: int) -> None:
    """Save a ``Dataset`` or ``DatasetDict`` in the ``save_to_disk`` layout, with Arrow record batches of
    ``batch_rows`` rows (``save_to_disk`` writes 1,000-row batches), in the dataset's logical row order.

    Opening a memory-mapped dataset costs a step per record batch, so large batches make opening independent of
    the row count in practice (a packed dataset of millions of events opens in milliseconds); reading a row is
    unaffected. Shards hold at most about 500 MB, as with ``save_to_disk``. Memory stays bounded by one batch.

    Raises:
        ValueError: ``batch_rows`` is not positive.
    """
    import datasets
    import pyarrow as pa

    if batch_rows <= 0:
        raise ValueError(f"Invalid batch_rows ({batch_rows}). It must be a positive number of rows.")
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    is_dict = isinstance(dataset, datasets.DatasetDict)
    splits = dict(dataset) if is_dict else {None: dataset}
    for name, split in splits.items():
        split_dir = root / name if name is not None else root
        split_dir.mkdir(exist_ok=True)
        table = split.with_format("arrow")[:]  # the logical order: a select/shuffle mapping is applied here
        schema = split.features.arrow_schema  # carries the features in its metadata, as datasets writes them
        shards = max(1, -(-table.nbytes // _MAX_SHARD_BYTES))
        bounds = [table.num_rows * i // shards for i in range(shards + 1)]
        names = [f"data-{i:05d}-of-{shards:05d}.arrow" for i in range(shards)]
        for shard_name, lo, hi in zip(names, bounds[:-1], bounds[1:], strict=True):
            with pa.OSFile(str(split_dir / shard_name), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
                for start in range(lo, hi, batch_rows):
                    batch = table.slice(start, min(batch_rows, hi - start)).combine_chunks()
                    writer.write_table(batch.cast(schema), max_chunksize=batch_rows)
        write_split_metadata(split_dir, names, split.features.to_dict(), fingerprint=split._fingerprint)
        if name is not None:
            state = json.loads((split_dir / "state.json").read_text())
            (split_dir / "state.json").write_text(json.dumps({**state, "_split": name}, indent=2))
    if is_dict:
        (root / "dataset_dict.json").write_text(json.dumps({"splits": list(splits)}))


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
