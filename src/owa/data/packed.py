"""Packed datasets on disk: a tokenized dataset saved with its packing plan, opened again memory-mapped.

:meth:`FSLDataset.prepare <owa.data.fsl_dataset.FSLDataset.prepare>` computes, per split, the packing plan and two
per-event arrays (:class:`PackedSplit`; :func:`pack_table` here). :func:`save_packed_dataset` writes them next to
the tokenized dataset, and :meth:`FSLDataset.load <owa.data.fsl_dataset.FSLDataset.load>` maps them back, so a
training run starts without reading a column or re-planning. The folder::

    DIR/
      owa_data.json            stage "packed", every config that made it, the tokenizer (owa.data.metadata)
      packing.json             max_sequence_length, pad_token_id, episode_aware, and per split its files and counts
      plan/<split>/*.npy       token_offsets, event_offsets, token_counts, image_offsets (int64), episode_start (bool)
      dataset_dict.json        the tokenized dataset in the save_to_disk layout (a single Dataset: state.json ...)
      <split>/...

Opening maps the ``.npy`` files (``np.load(mmap_mode="r")``) and the Arrow shards (``datasets.load_from_disk``):
the time does not grow with the dataset's size beyond one step per Arrow record batch. A URL is downloaded whole into
a local cache folder first, then mapped the same way (:func:`local_copy`).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from owa.data import storage
from owa.data.action_offset import segment_starts
from owa.data.errors import DatasetError, InvalidInputError, TokenizerMismatchError
from owa.data.metadata import METADATA_FILENAME, DatasetMetadata, TokenizerInfo
from owa.data.packing import PackingPlan, plan_packing
from owa.data.vocabulary import vocabulary_fingerprint

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from owa.data.episode_tokenizer import EpisodeTokenizer
    from owa.data.fsl_dataset import FSLDataset

__all__ = [
    "PACKING_FILENAME",
    "PackedSplit",
    "PackingInfo",
    "check_tokenizer",
    "local_copy",
    "map_split",
    "pack_table",
    "read_packing_info",
    "save_packed_dataset",
]

logger = logging.getLogger(__name__)

PACKING_FILENAME = "packing.json"
PLAN_DIR = "plan"
REQUIRED_COLUMNS = ("episode_path", "token_ids", "images", "total_token_count")
_ARRAYS = {
    "token_offsets": np.int64,
    "event_offsets": np.int64,
    "token_counts": np.int64,
    "image_offsets": np.int64,
    "episode_start": np.bool_,
}
_FORMAT = "owa-data packed dataset"
_VERSION = 1
# Rows per Arrow record batch of the saved tokenized dataset: opening maps one batch at a time, so few large
# batches keep opening O(1) in practice (save_to_disk writes 1,000 rows per batch: 4,000 batches per 100M tokens).
_BATCH_ROWS = 65_536
# Where URLs are downloaded to, unless FSLDataset.load(cache_dir=...) names a folder.
_CACHE_ENV = "OWA_DATA_CACHE"


@dataclasses.dataclass(frozen=True, eq=False)
class PackedSplit:
    """One split's packing, as :meth:`FSLDataset.prepare` computes it and a packed dataset stores it.

    Attributes:
        plan: the :class:`~owa.data.packing.PackingPlan` (token and event offsets, tokens per sample).
        image_offsets: ``int64[n_events + 1]``; event ``i`` owns images ``[image_offsets[i], image_offsets[i + 1])``
            of the concatenated ``images`` column.
        episode_start: ``bool[n_events]``; True where an event starts an episode (its ``episode_path`` differs from
            the previous row's).
    """

    plan: PackingPlan
    image_offsets: np.ndarray
    episode_start: np.ndarray

    @property
    def num_events(self) -> int:
        return self.plan.num_events


def pack_table(table: pa.Table, *, max_sequence_length: int, episode_aware: bool = False) -> PackedSplit:
    """The :class:`PackedSplit` of a tokenized table (columns :data:`REQUIRED_COLUMNS`, in dataset order).

    Raises:
        DatasetError: a column has nulls, or a row's ``total_token_count`` differs from its number of ``token_ids``
            (names the row and episode).
        PackingError: an event is longer than ``max_sequence_length`` (names the row and episode).
    """
    for name in REQUIRED_COLUMNS:
        if table.column(name).null_count:
            row = int(np.flatnonzero(table.column(name).is_null().to_numpy(zero_copy_only=False))[0])
            raise DatasetError(f"Column {name!r} has missing values", row=row)
    lengths = pc.list_value_length(table.column("token_ids")).to_numpy(zero_copy_only=False).astype(np.int64)
    counts = table.column("total_token_count").to_numpy(zero_copy_only=False).astype(np.int64)
    episodes = table.column("episode_path")

    mismatch = np.flatnonzero(lengths != counts)
    if len(mismatch):
        row = int(mismatch[0])
        raise DatasetError(
            f"total_token_count ({counts[row]}) differs from the number of token_ids ({lengths[row]})",
            path=episodes[row].as_py(),
            row=row,
            rows_affected=len(mismatch),
        )

    # Segments: runs of one episode, and of one interval of it when the column is there (stage 1's spans), so a
    # sample never presents two spans as continuous time.
    starts = segment_starts(table)

    plan = plan_packing(
        counts,
        max_sequence_length=max_sequence_length,
        episode_start=starts if episode_aware else None,
        event_name=lambda row: episodes[row].as_py(),
    )
    image_counts = pc.list_value_length(table.column("images")).to_numpy(zero_copy_only=False).astype(np.int64)
    image_offsets = np.zeros(len(image_counts) + 1, dtype=np.int64)
    np.cumsum(image_counts, out=image_offsets[1:])
    return PackedSplit(plan=plan, image_offsets=image_offsets, episode_start=starts)


# ----------------------------------------------------------------------------------------------------------------
# packing.json
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class PackingInfo:
    """The contents of ``packing.json``.

    Attributes:
        max_sequence_length, pad_token_id, episode_aware: the :class:`~owa.data.fsl_dataset.FSLDatasetConfig`
            fields the plan depends on (fixed for the saved plan).
        splits: split name -> ``{"dataset": folder, "plan": folder, "events", "samples", "tokens", "images"}``,
            folders relative to the dataset's root.
        is_dict: whether the dataset is a ``DatasetDict`` (loads as a dict of FSLDatasets) or one ``Dataset``.
    """

    max_sequence_length: int
    pad_token_id: int
    episode_aware: bool
    splits: Mapping[str, Mapping[str, Any]]
    is_dict: bool

    def to_json(self) -> dict[str, Any]:
        return {"format": _FORMAT, "version": _VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, fields: Any, *, path: str) -> PackingInfo:
        """Raises: InvalidInputError: not a ``packing.json`` this version writes (names ``path``)."""
        if not isinstance(fields, Mapping) or fields.get("format") != _FORMAT:
            raise InvalidInputError(f"Invalid {PACKING_FILENAME}: not written by owa-data pack", path=path)
        if not isinstance(fields.get("version"), int) or fields["version"] > _VERSION:
            raise InvalidInputError(
                f"Invalid {PACKING_FILENAME} version ({fields.get('version')!r}). Supported values are 1 to "
                f"{_VERSION}; a newer owa-data wrote it: upgrade owa-data",
                path=path,
            )
        values = {k: v for k, v in fields.items() if k not in ("format", "version")}
        try:
            return cls(**values)
        except TypeError as e:
            raise InvalidInputError(f"Invalid {PACKING_FILENAME}: {e}", path=path) from e


def read_packing_info(folder: str | os.PathLike[str]) -> PackingInfo:
    """The ``packing.json`` of a local packed dataset folder.

    Raises:
        InvalidInputError: no ``packing.json`` (not a packed dataset), or an invalid one.
    """
    path = Path(folder) / PACKING_FILENAME
    try:
        fields = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise InvalidInputError(
            f"No {PACKING_FILENAME}: not a packed dataset (write one with owa-data pack or save_packed_dataset)",
            path=path,
        ) from e
    except ValueError as e:
        raise InvalidInputError(f"Invalid {PACKING_FILENAME}: not JSON ({e})", path=path) from e
    return PackingInfo.from_json(fields, path=str(path))


# ----------------------------------------------------------------------------------------------------------------
# Plan arrays
# ----------------------------------------------------------------------------------------------------------------


def _write_split(folder: Path, packed: PackedSplit) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    plan = packed.plan
    arrays = {
        "token_offsets": plan.token_offsets,
        "event_offsets": plan.event_offsets,
        "token_counts": plan.token_counts,
        "image_offsets": packed.image_offsets,
        "episode_start": packed.episode_start,
    }
    for name, dtype in _ARRAYS.items():
        np.save(folder / f"{name}.npy", np.ascontiguousarray(arrays[name], dtype=dtype), allow_pickle=False)


def map_split(folder: str | os.PathLike[str], *, max_sequence_length: int, num_events: int) -> PackedSplit:
    """Memory-map one split's plan arrays (written by :func:`save_packed_dataset`) and check their shapes.

    Raises:
        DatasetError: a missing or unreadable array, or shapes that do not fit ``num_events`` (names the file).
    """
    arrays: dict[str, np.ndarray] = {}
    for name, dtype in _ARRAYS.items():
        path = Path(folder) / f"{name}.npy"
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DatasetError(f"Unreadable packing plan array: {e}", path=path) from e
        if array.dtype != dtype or array.ndim != 1:
            raise DatasetError(
                f"Packing plan array is {array.dtype}{list(array.shape)}, not 1-D {np.dtype(dtype)}", path=path
            )
        arrays[name] = array
    expected = {"token_offsets": num_events + 1, "image_offsets": num_events + 1, "episode_start": num_events}
    for name, length in expected.items():
        if len(arrays[name]) != length:
            raise DatasetError(
                f"Packing plan array has {len(arrays[name])} entries for {num_events} events (expected {length}); "
                "the plan does not belong to this dataset",
                path=Path(folder) / f"{name}.npy",
            )
    event_offsets = arrays["event_offsets"]
    if len(event_offsets) != len(arrays["token_counts"]) + 1 or event_offsets[-1] != num_events:
        raise DatasetError(
            "Packing plan event_offsets do not cover the dataset's events", path=Path(folder) / "event_offsets.npy"
        )
    plan = PackingPlan(
        max_sequence_length=max_sequence_length,
        token_offsets=arrays["token_offsets"],
        event_offsets=event_offsets,
        token_counts=arrays["token_counts"],
    )
    return PackedSplit(plan=plan, image_offsets=arrays["image_offsets"], episode_start=arrays["episode_start"])


# ----------------------------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------------------------


def save_packed_dataset(
    packed: FSLDataset | Mapping[str, FSLDataset],
    output: str | os.PathLike[str],
    *,
    episode_tokenizer: EpisodeTokenizer,
    source: DatasetMetadata | None = None,
    created_by: str = "save_packed_dataset",
    storage_options: storage.StorageOptions | None = None,
    overwrite: bool = False,
) -> DatasetMetadata:
    """Save prepared FSLDatasets (one, or a dict of splits) with their plans, to a folder or a URL, all or nothing.

    ``FSLDataset.load(output)`` then gives exactly these samples. The tokenized datasets are saved as they are (in
    their logical row order: a ``select`` or ``shuffle`` mapping is applied), the plans as ``.npy`` files; see the
    module docs for the layout.

    Args:
        packed: ``FSLDataset(tokenized, ...).prepare()``, or a dict ``{split: FSLDataset}`` (all with the same
            ``max_sequence_length``, ``pad_token_id`` and ``episode_aware``).
        output: the folder or URL to create.
        episode_tokenizer: the prepared EpisodeTokenizer that tokenized them: its config and tokenizer are recorded.
        source: the metadata of the Event Dataset they were tokenized from (its configs and recordings root are
            carried over), if known.
        created_by: recorded in ``owa_data.json``.
        storage_options: for a URL output.
        overwrite: replace an existing output.

    Returns:
        The :class:`~owa.data.metadata.DatasetMetadata` written.

    Raises:
        ValueError: no splits, or splits packed with different settings.
        PackingError: an FSLDataset was not prepared.
        TokenizerNotPreparedError: ``episode_tokenizer`` is not prepared.
        OutputExistsError: ``output`` exists and ``overwrite`` is False.
        StorageAccessError: the object store refused a request.
    """
    import datasets

    from owa.data.dataset_io import publish_dataset

    is_dict = isinstance(packed, Mapping)
    parts: dict[str, FSLDataset] = dict(packed) if is_dict else {_split_name(packed.dataset): packed}
    if not parts:
        raise ValueError("Invalid packed (an empty dict). Give an FSLDataset or a dict of split -> FSLDataset.")
    settings = {(p.max_sequence_length, p.pad_token_id, p.episode_aware) for p in parts.values()}
    if len(settings) > 1:
        raise ValueError(
            f"Invalid packed: splits packed with different (max_sequence_length, pad_token_id, episode_aware) "
            f"{sorted(settings)}. Pack every split alike."
        )
    ((max_sequence_length, pad_token_id, episode_aware),) = settings
    splits = {name: part.packed_split for name, part in parts.items()}  # raises PackingError when not prepared
    info = PackingInfo(
        max_sequence_length=max_sequence_length,
        pad_token_id=pad_token_id,
        episode_aware=episode_aware,
        splits={
            name: {
                "dataset": name if is_dict else ".",
                "plan": f"{PLAN_DIR}/{name}",
                "events": split.num_events,
                "samples": len(split.plan),
                "tokens": int(split.plan.token_offsets[-1]),
                "images": int(split.image_offsets[-1]),
            }
            for name, split in splits.items()
        },
        is_dict=is_dict,
    )
    tokenizer_config = episode_tokenizer.config.to_json()
    packing_config = {
        "max_sequence_length": max_sequence_length,
        "pad_token_id": pad_token_id,
        "episode_aware": episode_aware,
    }
    tokenizer = TokenizerInfo.of(episode_tokenizer.tokenizer)
    if source is None:
        source = DatasetMetadata(stage="tokenized", config={}, recordings_root=None, created_by=created_by)
    metadata = source.derive(
        "tokenized", name="tokenizer", config=tokenizer_config, created_by=created_by, tokenizer=tokenizer
    ).derive("packed", name="packing", config=packing_config, created_by=created_by, tokenizer=tokenizer)

    def add_files(folder: Path) -> None:
        for name, split in splits.items():
            _write_split(folder / PLAN_DIR / name, split)
        (folder / PACKING_FILENAME).write_text(json.dumps(info.to_json(), indent=2) + "\n")

    tokenized = {name: part.dataset for name, part in parts.items()}
    dataset = datasets.DatasetDict(tokenized) if is_dict else next(iter(tokenized.values()))
    publish_dataset(
        dataset,
        output,
        metadata=metadata,
        add_files=add_files,
        batch_rows=_BATCH_ROWS,
        storage_options=storage_options,
        overwrite=overwrite,
    )
    logger.info(
        "Saved packed dataset to %s: %s",
        output,
        ", ".join(f"{name}: {s['samples']:,} samples of {max_sequence_length}" for name, s in info.splits.items()),
    )
    return metadata


def _split_name(dataset: Any) -> str:
    split = getattr(dataset, "split", None)
    return str(split) if split else "data"


# ----------------------------------------------------------------------------------------------------------------
# Opening: URLs and the tokenizer check
# ----------------------------------------------------------------------------------------------------------------


def local_copy(
    path: str | os.PathLike[str],
    storage_options: storage.StorageOptions | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """A local folder holding the dataset at ``path``: ``path`` itself when local; for a URL, a downloaded copy.

    A URL is downloaded whole (every file under its prefix) into ``cache_dir/<hash of the URL>`` (default
    ``$OWA_DATA_CACHE``, else ``~/.cache/owa-data``) and reused while the stored dataset's ``owa_data.json`` and
    marker file are unchanged; a changed one is downloaded again. Downloads go to a temporary sibling renamed into
    place, so an interrupted download is never used.

    Raises:
        InvalidInputError: nothing is stored there (or no ``owa_data.json``).
        StorageAccessError: the object store refused a request.
    """
    if not storage.is_url(path):
        folder = Path(path)
        if not folder.is_dir():
            raise InvalidInputError("Dataset folder does not exist", path=folder)
        return folder
    url = str(path).rstrip("/")
    version = _remote_version(url, storage_options)
    base = Path(cache_dir or os.environ.get(_CACHE_ENV) or Path.home() / ".cache" / "owa-data")
    target = base / hashlib.sha256(url.encode()).hexdigest()[:24]
    stamp = target / ".owa-data-source.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == {"url": url, "version": version}:
        logger.debug("Using the cached copy of %s at %s", url, target)
        return target
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        storage.download_dir(url, tmp, storage_options)
        (tmp / stamp.name).write_text(json.dumps({"url": url, "version": version}))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("Downloaded %s to %s", url, target)
    return target


def _remote_version(url: str, storage_options: storage.StorageOptions | None) -> list[Any]:
    """What identifies the stored dataset's version: size, mtime and ETag of its metadata and marker files."""
    version: list[Any] = []
    for name in (METADATA_FILENAME, "dataset_dict.json", "state.json"):
        try:
            info = storage.stat(storage.join(url, name), storage_options)
        except FileNotFoundError:
            version.append(None)
            continue
        version.append([info.size, info.mtime_ns, info.etag])
    if version[0] is None:
        raise InvalidInputError(
            f"No {METADATA_FILENAME}: not a dataset written by owa-data, or an incomplete one", path=url
        )
    return version


def check_tokenizer(
    metadata: DatasetMetadata, tokenizer: PreTrainedTokenizerBase, *, path: str | os.PathLike[str]
) -> None:
    """Check that ``tokenizer`` is the one whose ids the dataset at ``path`` holds.

    ``tokenizer`` may be as loaded (the recorded EpisodeTokenizer config is applied to a copy of it, as
    ``prepare_model`` would) or already prepared; it is never modified.

    Raises:
        TokenizerMismatchError: its vocabulary fingerprint differs from the recorded one (both are named), or the
            dataset records no tokenizer.
    """
    recorded = metadata.tokenizer
    given = vocabulary_fingerprint(tokenizer)
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    if recorded is None:
        raise TokenizerMismatchError(
            f"The {metadata.stage} dataset records no tokenizer, so its ids cannot be checked", path=os.fspath(path)
        )
    if given == recorded.fingerprint:
        return
    config = metadata.config.get("tokenizer")
    prepared = None
    if isinstance(config, Mapping):
        from owa.data.episode_tokenizer import EpisodeTokenizer, EpisodeTokenizerConfig
        from owa.data.errors import OWADataError

        candidate = copy.deepcopy(tokenizer)
        try:
            EpisodeTokenizer(EpisodeTokenizerConfig.from_json(config)).prepare_model(tokenizer=candidate)
        except (OWADataError, TypeError, ValueError) as e:  # it cannot even take the recorded vocabulary
            logger.debug("The given tokenizer cannot be prepared with the recorded config: %s", e)
        else:
            prepared = vocabulary_fingerprint(candidate)
    if prepared == recorded.fingerprint:
        return
    raise TokenizerMismatchError(
        "The tokenizer's vocabulary differs from the one that made this dataset's token ids; load the recorded "
        "tokenizer, or tokenize again with this one",
        path=os.fspath(path),
        recorded=f"{recorded.name_or_path} ({recorded.vocab_size} ids, {recorded.fingerprint})",
        given=f"{name} ({len(tokenizer)} ids, {given})",
    )
