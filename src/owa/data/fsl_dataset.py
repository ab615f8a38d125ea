"""FSLDataset: tokenized events packed into fixed-length samples, with their frames.

The input is the output of :meth:`owa.data.episode_tokenizer.EpisodeTokenizer.tokenize_event_dataset` (columns
``episode_path``, ``token_ids``, ``images``, ``total_token_count``). :meth:`FSLDataset.prepare` reads those columns
once as flat arrow/numpy buffers and computes the packing plan (:mod:`owa.data.packing`); a sample is then a pure
slice of the concatenated token stream plus padding.

Example::

    fsl = FSLDataset(tokenized, pad_token_id=tokenizer.pad_token_id, max_sequence_length=1024)
    fsl.prepare()
    sample = fsl[0]  # token_ids, attention_mask, total_token_count, images

Each sample is a dict:

* ``token_ids``: ``int64[max_sequence_length]``, the events' tokens followed by ``pad_token_id``;
* ``attention_mask``: ``int64[max_sequence_length]``, 1 on the first ``total_token_count`` positions, 0 after
  (from lengths, never by comparing ids with the pad id);
* ``total_token_count``: real tokens before padding;
* ``images``: one entry per image of the sample's events, in order (``PIL.Image`` when ``load_images``; with
  ``image_size`` an ``(H, W, 3)`` uint8 array decoded straight to that size; else the lazy
  :class:`~owa.data.messages.ScreenCaptured` reference);
* ``position_ids`` (with ``return_position_ids``): ``int64[max_sequence_length]``, restarting at 0 where an episode
  (or, with an ``interval`` column from stage 1's interval selectors, a span) starts inside the sample, 0 on padding;
* ``segment_offsets`` (with ``return_segment_offsets``): ``int64[n_segments + 1]``, the half-open token ranges of
  the episode segments of the sample (``cu_seqlens`` for padding-free attention), ending at ``total_token_count``.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from owa.data.action_offset import event_order, segment_starts
from owa.data.counters import Counters
from owa.data.dataset_io import quiet_datasets_progress
from owa.data.distributed import rank_and_world_size
from owa.data.errors import DatasetError, InvalidInputError, OnError, OWADataError, PackingError, check_on_error
from owa.data.messages import DEFAULT_MEDIA_POLICY, MediaPolicy, ScreenCaptured, deserialize_screen
from owa.data.packed import REQUIRED_COLUMNS as _REQUIRED_COLUMNS
from owa.data.packed import PackedSplit, pack_table
from owa.data.packing import PackingPlan

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase

    from owa.data.episode_tokenizer import DecodedEvents, EpisodeTokenizer
    from owa.data.storage import StorageOptions

__all__ = ["FSLDataset", "FSLDatasetConfig", "FSLSample", "ImageStats"]

logger = logging.getLogger(__name__)

FSLSample = dict[str, Any]
"""One packed sample; see the module docstring for its keys."""


class _ChunkedBuffer:
    """The flattened values of a chunked list column, kept as per-chunk (zero-copy where possible) arrays.

    ``gather(start, end)`` returns values ``[start, end)`` of the concatenated stream.
    """

    def __init__(self, chunks: list[Any], to_numpy: bool) -> None:
        self.chunks = [c.to_numpy(zero_copy_only=False) for c in chunks] if to_numpy else chunks
        sizes = np.fromiter((len(c) for c in self.chunks), dtype=np.int64, count=len(self.chunks))
        self.starts = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes, out=self.starts[1:])
        self.size = int(self.starts[-1])

    def copy_into(self, start: int, end: int, out: np.ndarray) -> None:
        """Copy numpy values ``[start, end)`` into ``out[: end - start]``."""
        chunk = int(np.searchsorted(self.starts, start, side="right")) - 1
        written = 0
        while start < end:
            chunk_start, chunk_end = self.starts[chunk], self.starts[chunk + 1]
            stop = min(end, chunk_end)
            piece = self.chunks[chunk][start - chunk_start : stop - chunk_start]
            out[written : written + len(piece)] = piece
            written += len(piece)
            start = stop
            chunk += 1

    def slice_list(self, start: int, end: int) -> list[Any]:
        """Python values ``[start, end)`` of an arrow-chunked buffer."""
        if start >= end:
            return []
        chunk = int(np.searchsorted(self.starts, start, side="right")) - 1
        values: list[Any] = []
        while start < end:
            chunk_start, chunk_end = int(self.starts[chunk]), int(self.starts[chunk + 1])
            stop = min(end, chunk_end)
            values.extend(self.chunks[chunk].slice(start - chunk_start, stop - start).to_pylist())
            start = stop
            chunk += 1
        return values


class _Throughput:
    """Counts samples, tokens, images and decoded RGB bytes; logs totals and an EMA every ``every`` samples."""

    def __init__(self, every: int, ema_alpha: float = 0.1) -> None:
        self.every = every
        self.alpha = ema_alpha
        self.start: float | None = None
        self.totals = np.zeros(4)  # samples, tokens, images, bytes
        self.last_time = 0.0
        self.last_totals = np.zeros(4)
        self.ema: np.ndarray | None = None

    def update(self, samples: int, tokens: int, images: int, rgb_bytes: int) -> None:
        now = time.perf_counter()
        if self.start is None:
            self.start = self.last_time = now
        before = int(self.totals[0])
        self.totals += (samples, tokens, images, rgb_bytes)
        if int(self.totals[0]) // self.every == before // self.every:
            return
        interval = max(now - self.last_time, 1e-9)
        rates = (self.totals - self.last_totals) / interval
        self.ema = rates if self.ema is None else self.alpha * rates + (1 - self.alpha) * self.ema
        total_rates = self.totals / max(now - self.start, 1e-9)
        self.last_time, self.last_totals = now, self.totals.copy()
        logger.info(
            "FSL[%d] | Total: %s | EMA: %s", int(self.totals[0]), _format_rates(total_rates), _format_rates(self.ema)
        )


def _flat_values(chunk: pa.ListArray) -> pa.Array:
    """``chunk.flatten()`` without reading the values: a zero-copy slice, touching two offsets (a memory-mapped
    dataset stays unread until samples are)."""
    if chunk.null_count:  # flatten skips the values of null lists
        return chunk.flatten()
    offsets = chunk.offsets  # this chunk's, slice offset applied
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    return chunk.values.slice(start, end - start)


def _format_rates(rates: np.ndarray) -> str:
    samples, tokens, images, rgb_bytes = rates
    return f"{samples:.1f}s/s, {tokens:,.0f}t/s, {images:.1f}i/s, {rgb_bytes / 1e6:.1f}MB/s"


@dataclasses.dataclass(frozen=True, kw_only=True)
class FSLDatasetConfig:
    """The settings of an :class:`FSLDataset` (the single source of truth for their defaults).

    Attributes:
        pad_token_id: the id written after the real tokens (``tokenizer.pad_token_id``).
        max_sequence_length: tokens per sample, padding included.
        load_images: decode frames to ``PIL.Image`` (RGB) in one batch per sample; otherwise return the lazy
            :class:`~owa.data.messages.ScreenCaptured` references.
        episode_aware: never let a sample span two episodes (a sample ends at an episode's last event). With an
            ``interval`` column (stage 1's spans), every span counts as an episode here and below.
        return_position_ids: add ``position_ids`` restarting at 0 at each episode start within a sample.
        return_segment_offsets: add ``segment_offsets``, the episode segments' token offsets within a sample.
        log_every: log throughput every this many samples (INFO on this module's logger, rank 0 only);
            ``None`` or 0 switches it off (stored as ``None``).
        media_policy: which media URIs frames may be read from.
        on_image_error: ``"raise"`` (default) raises the frame engine's typed error; ``"skip"`` leaves ``None`` in
            the image's place (keeping one entry per image) and counts it in :attr:`FSLDataset.image_stats`
            (an :class:`ImageStats`).
        image_size: ``(height, width)``: decode every frame straight to this size (the resize happens inside the
            decoder's colour conversion) and return ``(H, W, 3)`` uint8 arrays instead of PIL images: the fast pixel
            path for a model's fixed input size (``ImageLayout.image_size``; see ``owa.data.pixels``).
        image_resample: the resize filter for ``image_size``: ``"bicubic"`` (default; InternVL, Qwen2-VL),
            ``"lanczos"`` (SmolVLM), ``"bilinear"`` or ``"area"``.

    Raises:
        ValueError: invalid ``pad_token_id``, ``max_sequence_length``, ``log_every`` or ``on_image_error``.
    """

    pad_token_id: int
    max_sequence_length: int
    load_images: bool = True
    episode_aware: bool = False
    return_position_ids: bool = False
    return_segment_offsets: bool = False
    log_every: int | None = 30
    media_policy: MediaPolicy = DEFAULT_MEDIA_POLICY
    on_image_error: OnError = "raise"
    image_size: tuple[int, int] | None = None
    image_resample: Literal["bilinear", "bicubic", "lanczos", "area"] = "bicubic"

    def __post_init__(self) -> None:
        if not _is_integer(self.pad_token_id) or self.pad_token_id < 0:
            raise ValueError(
                f"Invalid pad_token_id ({self.pad_token_id!r}). It must be a non-negative integer; if "
                "tokenizer.pad_token_id is None, set one first, e.g. tokenizer.pad_token = tokenizer.eos_token."
            )
        if not _is_integer(self.max_sequence_length) or self.max_sequence_length <= 0:
            raise ValueError(
                f"Invalid max_sequence_length ({self.max_sequence_length!r}). It must be a positive integer "
                "(tokens per sample), such as 1024."
            )
        if self.log_every is not None and (not _is_integer(self.log_every) or self.log_every < 0):
            raise ValueError(
                f"Invalid log_every ({self.log_every!r}). Use a positive integer, or None/0 to switch off."
            )
        check_on_error(self.on_image_error, name="on_image_error")
        if not isinstance(self.media_policy, MediaPolicy):
            raise ValueError(f"Invalid media_policy ({self.media_policy!r}). It must be a MediaPolicy.")
        from owa.data.frames.backend import check_size

        object.__setattr__(self, "image_size", check_size(self.image_size, self.image_resample))
        # numpy integers (e.g. from a saved config) become plain ints; 0 and None both mean "no logging".
        object.__setattr__(self, "pad_token_id", int(self.pad_token_id))
        object.__setattr__(self, "max_sequence_length", int(self.max_sequence_length))
        object.__setattr__(self, "log_every", int(self.log_every) if self.log_every else None)


def _is_integer(value: Any) -> bool:
    """An int or numpy integer, but not a bool (``True`` is not a length or an id)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


_OPTION_NAMES = tuple(f.name for f in dataclasses.fields(FSLDatasetConfig))


class ImageStats(Counters):
    """The frames an :class:`FSLDataset` decoded and skipped, with skipped errors by type and the last one.

    Shared memory: DataLoader workers (forked or spawned) add to what the parent reads (see
    :mod:`owa.data.counters`).
    """

    SHARED = True

    images_decoded: int
    images_skipped: int


class FSLDataset:
    """Fixed-sequence-length samples packed from a tokenized Event Dataset.

    Args:
        dataset: the output of :meth:`~owa.data.episode_tokenizer.EpisodeTokenizer.tokenize_event_dataset`.
        config: the settings, an :class:`FSLDatasetConfig`. Optional: the same settings can be given as keywords.
        **options: fields of :class:`FSLDatasetConfig` (``pad_token_id``, ``max_sequence_length``, ``load_images``,
            ``episode_aware``, ``return_position_ids``, ``return_segment_offsets``, ``log_every``, ``media_policy``,
            ``on_image_error``, ``image_size``, ``image_resample``; see there). With a ``config``, keywords override
            its fields; without one,
            ``pad_token_id`` and ``max_sequence_length`` are required. ``FSLDataset(ds, pad_token_id=...,
            max_sequence_length=1024)`` is the spec's call.

    The resulting settings are :attr:`config`; each is also readable as an attribute (``fsl.max_sequence_length``).
    With ``on_image_error="skip"``, skipped images are counted in :attr:`image_stats` (a
    :class:`ImageStats`: ``images_decoded``, ``images_skipped``, ``errors``, ``last_error``,
    summed over DataLoader workers). Raised frame errors name the sample, event row and episode.

    Raises:
        TypeError: an unknown keyword, ``config`` is not an :class:`FSLDatasetConfig`, or neither a ``config`` nor
            ``pad_token_id`` and ``max_sequence_length`` are given.
        ValueError: an invalid setting (see :class:`FSLDatasetConfig`).
    """

    def __init__(self, dataset: datasets.Dataset, config: FSLDatasetConfig | None = None, **options: Any) -> None:
        unknown = sorted(set(options) - set(_OPTION_NAMES))
        if unknown:
            raise TypeError(f"Unknown FSLDataset option(s): {', '.join(unknown)}. Allowed: {', '.join(_OPTION_NAMES)}.")
        if config is None:
            missing = [name for name in ("pad_token_id", "max_sequence_length") if name not in options]
            if missing:
                raise TypeError(
                    f"FSLDataset needs {' and '.join(missing)} (or config=FSLDatasetConfig(...)), e.g. "
                    "FSLDataset(ds, pad_token_id=tokenizer.pad_token_id, max_sequence_length=1024)."
                )
            config = FSLDatasetConfig(**options)
        elif not isinstance(config, FSLDatasetConfig):
            raise TypeError(f"Invalid config ({type(config).__name__}). It must be an FSLDatasetConfig.")
        elif options:
            config = dataclasses.replace(config, **options)
        self.dataset = dataset
        self.config = config
        # Shared memory, created here so that DataLoader workers (fork or spawn) add to what this process reads.
        self.image_stats = ImageStats()
        self._plan: PackingPlan | None = None
        self._throughput: _Throughput | None = None

    # The settings, read-only (from :attr:`config`); build another FSLDataset to change them.

    @property
    def pad_token_id(self) -> int:
        return self.config.pad_token_id

    @property
    def max_sequence_length(self) -> int:
        return self.config.max_sequence_length

    @property
    def load_images(self) -> bool:
        return self.config.load_images

    @property
    def episode_aware(self) -> bool:
        return self.config.episode_aware

    @property
    def return_position_ids(self) -> bool:
        return self.config.return_position_ids

    @property
    def return_segment_offsets(self) -> bool:
        return self.config.return_segment_offsets

    @property
    def log_every(self) -> int | None:
        return self.config.log_every

    @property
    def media_policy(self) -> MediaPolicy:
        return self.config.media_policy

    @property
    def on_image_error(self) -> OnError:
        return self.config.on_image_error

    # ------------------------------------------------------------------------------------------------------------
    # Preparation: read columns once, compute the plan
    # ------------------------------------------------------------------------------------------------------------

    def prepare(self) -> FSLDataset:
        """Read the token, image and episode columns once and compute the packing plan. Idempotent.

        Returns:
            ``self``, so ``FSLDataset(...).prepare()`` chains.

        Raises:
            DatasetError: a required column is missing, or a row's ``total_token_count`` differs from its number of
                ``token_ids`` (names the row and episode).
            PackingError: an event is longer than ``max_sequence_length`` (names the row and episode).
        """
        if self._plan is not None:
            return self
        missing = [c for c in _REQUIRED_COLUMNS if c not in self.dataset.column_names]
        if missing:
            raise DatasetError(
                f"FSLDataset needs the columns {list(_REQUIRED_COLUMNS)}; missing {missing}. "
                "Run EpisodeTokenizer.tokenize_event_dataset on the Event Dataset first."
            )
        # An arrow view of the columns, in the dataset's logical order (a select/shuffle mapping is applied here).
        # The interval column, when there, cuts segments too (stage 1's spans are episode segments).
        columns = [*_REQUIRED_COLUMNS, *(["interval"] if "interval" in self.dataset.column_names else [])]
        table: pa.Table = self.dataset.select_columns(columns).with_format("arrow")[:]
        packed = pack_table(table, max_sequence_length=self.max_sequence_length, episode_aware=self.episode_aware)
        self._attach(table, packed)
        logger.debug(
            "FSLDataset: %d events packed into %d samples of %d tokens",
            packed.num_events,
            len(packed.plan),
            packed.plan.max_sequence_length,
        )
        return self

    def _attach(self, table: pa.Table, packed: PackedSplit) -> None:
        """Keep the columns' flat buffers (zero-copy views) and the packing: what reading a sample needs."""
        self._tokens = _ChunkedBuffer([_flat_values(c) for c in table.column("token_ids").chunks], to_numpy=True)
        self._images = _ChunkedBuffer([_flat_values(c) for c in table.column("images").chunks], to_numpy=False)
        self._image_offsets = packed.image_offsets
        self._episode_paths = table.column("episode_path")  # read only to name the episode in errors
        self._episode_start = packed.episode_start
        self._packed = packed
        self._plan = packed.plan
        if self.log_every and rank_and_world_size()[0] == 0:
            self._throughput = _Throughput(self.log_every)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        load_images: bool = True,
        split: str | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        storage_options: StorageOptions | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> FSLDataset | dict[str, FSLDataset]:
        """Open a packed dataset (``owa-data pack``, :func:`~owa.data.packed.save_packed_dataset`), ready to read.

        The samples are exactly those of ``FSLDataset(tokenized, pad_token_id=..., max_sequence_length=...,
        episode_aware=...).prepare()`` on the tokenized dataset it holds. Nothing is planned or read column by column:
        the plan arrays and Arrow shards are memory-mapped, so opening takes about the same time whatever the size.

        Args:
            path: the packed dataset's folder, or a URL (downloaded whole into a local cache first; see
                :func:`owa.data.packed.local_copy`).
            load_images: decode frames (as :class:`FSLDatasetConfig`); False returns the lazy references.
            split: open only this split of a dataset of several, and return it alone.
            tokenizer: when given, check that it is the tokenizer that made the ids (as loaded, or prepared by
                ``EpisodeTokenizer.prepare_model``).
            storage_options: for a URL.
            cache_dir: where URLs are downloaded (default ``$OWA_DATA_CACHE``, else ``~/.cache/owa-data``).
            **options: other :class:`FSLDatasetConfig` fields that only change how samples are read
                (``return_position_ids``, ``image_size``, ``on_image_error``...). ``max_sequence_length``,
                ``pad_token_id`` and ``episode_aware`` are fixed by the saved plan; giving other values is an error.

        Returns:
            An FSLDataset for a folder holding one ``Dataset``; a dict ``{split: FSLDataset}`` for a ``DatasetDict``
            (every split, or ``split``'s alone when given).

        Raises:
            InvalidInputError: not a packed dataset (no ``packing.json`` or ``owa_data.json``), or an unknown ``split``.
            TokenizerMismatchError: ``tokenizer`` is not the one recorded.
            DatasetError: the plan does not fit the dataset (a damaged folder).
            ValueError: a plan setting in ``options`` that differs from the saved one.
        """
        import datasets

        from owa.data.metadata import read_metadata
        from owa.data.packed import check_tokenizer, local_copy, map_split, read_packing_info

        folder = local_copy(path, storage_options, cache_dir=cache_dir)
        metadata = read_metadata(folder)
        assert metadata is not None  # missing_ok is False
        if metadata.stage != "packed":
            raise InvalidInputError(
                f"Not a packed dataset: its owa_data.json says stage {metadata.stage!r}; open it with owa.data.load",
                path=os.fspath(path),
            )
        info = read_packing_info(folder)
        if tokenizer is not None:
            check_tokenizer(metadata, tokenizer, path=path)
        fixed = {
            "max_sequence_length": info.max_sequence_length,
            "pad_token_id": info.pad_token_id,
            "episode_aware": info.episode_aware,
        }
        for name, saved in fixed.items():
            if name in options and options.pop(name) != saved:
                raise ValueError(
                    f"Invalid {name} for this packed dataset. Its plan was made with {name}={saved!r}; pack it "
                    "again (owa-data pack) to change it."
                )
        names = list(info.splits)
        if split is not None:
            if split not in info.splits:
                raise InvalidInputError(f"No split {split!r}; the packed dataset has {names}", path=os.fspath(path))
            names = [split]
        loaded: dict[str, FSLDataset] = {}
        for name in names:
            entry = info.splits[name]
            with quiet_datasets_progress():
                dataset = datasets.load_from_disk(str(folder / entry["dataset"]))
            fsl = cls(dataset, **fixed, load_images=load_images, **options)
            table: pa.Table = dataset.select_columns(list(_REQUIRED_COLUMNS)).with_format("arrow")[:]
            packed = map_split(
                folder / entry["plan"], max_sequence_length=info.max_sequence_length, num_events=table.num_rows
            )
            fsl._attach(table, packed)
            if fsl._tokens.size != packed.plan.token_offsets[-1] or fsl._images.size != packed.image_offsets[-1]:
                raise DatasetError(
                    "The packing plan does not fit the saved tokens or images; the folder is damaged",
                    path=os.fspath(folder / entry["plan"]),
                    split=name,
                )
            loaded[name] = fsl
        if info.is_dict and split is None:
            return loaded
        return loaded[names[0]]

    @property
    def plan(self) -> PackingPlan:
        """The packing plan (:class:`~owa.data.packing.PackingPlan`): which dataset rows and token ranges each
        sample holds. ``plan.event_range(k)`` is sample ``k``'s half-open range of rows of :attr:`dataset`,
        ``plan.token_range(k)`` its range of the concatenated token stream; :meth:`segments` splits a sample by
        episode.

        Raises:
            PackingError: :meth:`prepare` has not been called.
        """
        if self._plan is None:
            raise PackingError("FSLDataset.prepare() has not been called; call it once before reading samples")
        return self._plan

    @property
    def packed_split(self) -> PackedSplit:
        """The plan with the per-event image offsets and episode starts (:class:`~owa.data.packed.PackedSplit`):
        what :func:`~owa.data.packed.save_packed_dataset` writes.

        Raises:
            PackingError: :meth:`prepare` has not been called.
        """
        self.plan  # noqa: B018 - raises when not prepared
        return self._packed

    def segments(self, index: int) -> list[tuple[str, range]]:
        """The episode segments of sample ``index``: ``(episode_path, rows)`` in order, ``rows`` the range of
        :attr:`dataset` rows (events) of that episode in the sample. One segment unless the sample spans episodes
        (or, with an ``interval`` column, spans of one).

        Raises:
            IndexError: ``index`` is out of range.
            PackingError: :meth:`prepare` has not been called.
        """
        plan = self.plan
        if not -len(plan) <= index < len(plan):
            raise IndexError(f"FSLDataset index {index} out of range for {len(plan)} samples")
        first, end = plan.event_range(int(index) % len(plan))
        cuts = [first, *(np.flatnonzero(self._episode_start[first + 1 : end]) + first + 1).tolist(), end]
        return [(self._episode_paths[a].as_py(), range(a, b)) for a, b in itertools.pairwise(cuts)]

    def decode(
        self,
        index: int,
        episode_tokenizer: EpisodeTokenizer,
        events: datasets.Dataset,
        *,
        on_error: OnError = "raise",
    ) -> list[tuple[str, DecodedEvents]]:
        """Decode sample ``index``'s tokens back into events, per episode, with absolute timestamps.

        The tokens do not hold absolute time (the hierarchical encoder writes times modulo 4 s), so each episode
        segment (:meth:`segments`) is decoded on its own from its first event's ``timestamp_ns`` in ``events``, the
        Event Dataset split that was tokenized into :attr:`dataset` (row for row). Where ``events`` has an
        ``interval`` column, a segment is also cut where it changes, so a gap between intervals never has to be
        unwrapped. With the tokenizer's action offset, the start is the first row's time in the sequence
        (:func:`owa.data.action_offset.event_order`) and actions come back with their recorded times (see
        ``EpisodeTokenizer.decode``). Screen events get their ``ScreenCaptured`` references (frames are not loaded).

        Args:
            index: the sample.
            episode_tokenizer: the prepared :class:`~owa.data.episode_tokenizer.EpisodeTokenizer` that tokenized it.
            events: the Event Dataset split (columns ``episode_path`` and ``timestamp_ns``), in the same row order
                as :attr:`dataset`.
            on_error: ``"raise"`` or ``"skip"`` malformed events (see ``EpisodeTokenizer.decode``).

        Returns:
            ``[(episode_path, events), ...]``, one per segment, in order; ``events`` is a
            :class:`~owa.data.episode_tokenizer.DecodedEvents` (a list of ``McapMessage``).

        Raises:
            IndexError: ``index`` is out of range.
            DatasetError: ``events`` lacks a column, has another number of rows, or another episode at a row.
            EncodingError: a malformed event, with ``on_error="raise"``.
        """
        segments = self.segments(index)
        missing = [c for c in ("episode_path", "timestamp_ns") if c not in events.column_names]
        if missing or len(events) != len(self.dataset):
            raise DatasetError(
                f"FSLDataset.decode needs the Event Dataset split that was tokenized (columns episode_path and "
                f"timestamp_ns, {len(self.dataset)} rows); got {len(events)} rows with columns {events.column_names}"
            )
        rows = [segment_rows.start for _, segment_rows in segments]
        firsts = events.select_columns(["episode_path", "timestamp_ns"]).select(rows).to_dict()
        # Where each row's tokens sit in time: its own time, or the sequence's time under an action offset (rows
        # are then in sequence order; see owa.data.action_offset).
        config = episode_tokenizer.config
        sequence = event_order(events, config.action_offset_s, config.action_topics) if config.action_offset_s else None
        decoded: list[tuple[str, DecodedEvents]] = []
        token_offsets = self.plan.token_offsets
        for (path, segment_rows), event_path, first_ns in zip(
            segments, firsts["episode_path"], firsts["timestamp_ns"], strict=True
        ):
            if event_path != path:
                raise DatasetError(
                    f"events row {segment_rows.start} is of episode {event_path!r}, the tokenized row of {path!r}; "
                    "pass the Event Dataset split that was tokenized, in the same order",
                    path=path,
                    row=segment_rows.start,
                )
            parts: list[DecodedEvents] = []
            for part in _interval_runs(events, segment_rows):  # each from its own known start: gaps never unwrap
                if sequence is not None:
                    start_ns = int(sequence.encoded_ns[part.start])
                elif part.start == segment_rows.start:
                    start_ns = int(first_ns)
                else:
                    start_ns = int(events.select_columns(["timestamp_ns"])[part.start]["timestamp_ns"])
                start, stop = int(token_offsets[part.start]), int(token_offsets[part.stop])
                token_ids = np.empty(stop - start, dtype=np.int64)
                self._tokens.copy_into(start, stop, token_ids)
                refs = self._images.slice_list(
                    int(self._image_offsets[part.start]), int(self._image_offsets[part.stop])
                )
                parts.append(
                    episode_tokenizer.decode(
                        token_ids,
                        start_timestamp_ns=start_ns,
                        images=[deserialize_screen(ref) for ref in refs],
                        on_error=on_error,
                    )
                )
            messages = parts[0] if len(parts) == 1 else _joined(parts)
            decoded.append((path, messages))
        return decoded

    # ------------------------------------------------------------------------------------------------------------
    # Reading samples
    # ------------------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of samples, the final partial one included."""
        return len(self.plan)

    def __getitem__(self, index: int) -> FSLSample:
        """Sample ``index`` (negative counts from the end).

        Raises:
            IndexError: ``index`` is out of range.
            PackingError: :meth:`prepare` has not been called.
            MediaError: a frame cannot be decoded (with ``on_image_error="raise"``).
        """
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[FSLSample]:
        """Several samples at once; their frames are decoded in one batch (used by PyTorch's DataLoader)."""
        plan = self.plan
        n = len(plan)
        samples: list[FSLSample] = []
        refs: list[str] = []
        owners: list[tuple[int, int]] = []  # (sample, image within it) of each ref, to name it in errors
        for index in indices:
            if not -n <= index < n:
                raise IndexError(f"FSLDataset index {index} out of range for {n} samples")
            before = len(refs)
            samples.append(self._build(int(index) % n, refs))
            owners.extend((int(index) % n, j) for j in range(len(refs) - before))
        images = self._resolve_images(refs, owners)
        position = 0
        rgb_bytes = 0
        for sample in samples:
            count = sample["images"]
            sample["images"] = images[position : position + count]
            position += count
        if self.load_images:
            rgb_bytes = sum(_image_bytes(image) for image in images if image is not None)
        if self._throughput is not None:
            tokens = sum(sample["total_token_count"] for sample in samples)
            self._throughput.update(len(samples), tokens, len(images), rgb_bytes)
        return samples

    def _build(self, index: int, refs: list[str]) -> FSLSample:
        plan = self._plan
        first_event, end_event = plan.event_range(index)
        token_start, token_end = plan.token_range(index)
        total = token_end - token_start
        length = plan.max_sequence_length

        token_ids = np.full(length, self.pad_token_id, dtype=np.int64)
        self._tokens.copy_into(token_start, token_end, token_ids)
        attention_mask = np.zeros(length, dtype=np.int64)
        attention_mask[:total] = 1
        image_refs = self._images.slice_list(int(self._image_offsets[first_event]), int(self._image_offsets[end_event]))
        refs.extend(image_refs)
        sample: FSLSample = {
            "token_ids": token_ids,
            "attention_mask": attention_mask,
            "total_token_count": total,
            "images": len(image_refs),  # replaced by the images in __getitems__
        }
        if self.return_position_ids or self.return_segment_offsets:
            inner = np.flatnonzero(self._episode_start[first_event + 1 : end_event]) + first_event + 1
            offsets = np.concatenate(([0], plan.token_offsets[inner] - token_start, [total])).astype(np.int64)
            if self.return_segment_offsets:
                sample["segment_offsets"] = offsets
            if self.return_position_ids:
                position_ids = np.zeros(length, dtype=np.int64)
                segment_lengths = np.diff(offsets)
                position_ids[:total] = np.arange(total) - np.repeat(offsets[:-1], segment_lengths)
                sample["position_ids"] = position_ids
        return sample

    def _resolve_images(self, refs: list[str], owners: list[tuple[int, int]]) -> list[Any]:
        screens = [deserialize_screen(ref) for ref in refs]
        if not self.load_images or not screens:
            return screens
        from PIL import Image

        from owa.data.frames import DecodeStats, decode_screens
        from owa.data.frames.images import enable_pillow_block_cache

        enable_pillow_block_cache()
        stats = DecodeStats()
        try:
            frames = decode_screens(
                screens,
                policy=self.media_policy,
                on_error=self.on_image_error,
                stats=stats,
                size=self.config.image_size,
                resample=self.config.image_resample,
            )
        except OWADataError as e:
            raise self._locate(e, screens, owners) from e
        finally:
            self.image_stats.add(
                images_decoded=stats.decoded,
                images_skipped=stats.skipped,
                error_counts=stats.errors,
                last_error=stats.last_error,
            )
        if self.config.image_size is not None:
            return frames  # already the model's size: no PIL round trip
        return [None if frame is None else Image.fromarray(frame) for frame in frames]

    def _locate(
        self, error: OWADataError, screens: list[ScreenCaptured], owners: list[tuple[int, int]]
    ) -> OWADataError:
        """The error, naming the sample, the event row and the episode of the frame that failed."""
        failing = 0
        for i, screen in enumerate(screens):
            media = screen.media_ref
            if (
                media is not None
                and error.path is not None
                and error.context.get("pts_ns") == media.pts_ns
                and os.path.basename(error.path) == os.path.basename(media.uri)
            ):
                failing = i
                break
        sample, within = owners[failing]
        first_event, _ = self.plan.event_range(sample)
        image = int(self._image_offsets[first_event]) + within
        row = int(np.searchsorted(self._image_offsets, image, side="right")) - 1
        return error.with_context(sample=sample, row=row, episode=self._episode_paths[row].as_py())

    def take(self, n: int) -> _SampleView:
        """The first ``min(n, len(self))`` samples as a lazy, sized view (iterate it, ``len()`` it, index it)."""
        if n < 0:
            raise ValueError(f"Invalid n ({n}). It must be non-negative.")
        return _SampleView(self, range(min(n, len(self))))

    def __iter__(self) -> Iterator[FSLSample]:
        for index in range(len(self)):
            yield self[index]

    def __repr__(self) -> str:
        size = f"{len(self._plan)} samples" if self._plan is not None else "not prepared"
        return (
            f"FSLDataset({size}, max_sequence_length={self.max_sequence_length}, pad_token_id={self.pad_token_id}, "
            f"load_images={self.load_images}, episode_aware={self.episode_aware})"
        )


def _interval_runs(events: datasets.Dataset, rows: range) -> list[range]:
    """``rows`` cut where the Event Dataset's ``interval`` column changes (all of ``rows`` without that column)."""
    if "interval" not in events.column_names or len(rows) < 2:
        return [rows]
    table = events.select_columns(["interval"]).with_format("arrow")[rows.start : rows.stop]
    cuts = [*(np.flatnonzero(segment_starts(table)) + rows.start).tolist(), rows.stop]
    return [range(a, b) for a, b in itertools.pairwise(cuts)]


def _joined(parts: list[DecodedEvents]) -> DecodedEvents:
    """One segment's events decoded in several parts, as one result (the last part's tail)."""
    from owa.data.token_decoding import DecodedEvents

    events = [event for part in parts for event in part]
    return DecodedEvents(events, tail=parts[-1].tail, skipped=sum(part.skipped for part in parts))


def _image_bytes(image: Any) -> int:
    return image.nbytes if isinstance(image, np.ndarray) else image.width * image.height * 3


class _SampleView(Sequence[FSLSample]):
    """A lazy range of an :class:`FSLDataset`'s samples."""

    def __init__(self, dataset: FSLDataset, indices: range) -> None:
        self._dataset = dataset
        self._indices = indices

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index: int) -> FSLSample:  # type: ignore[override]
        return self._dataset[self._indices[index]]

    def __iter__(self) -> Iterator[FSLSample]:
        for index in self._indices:
            yield self._dataset[index]
