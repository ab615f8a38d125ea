"""Stage 2: Event Dataset → Binned Dataset (fixed-rate time bins of state and actions).

The rules, in one place (``docs/binning.md`` has worked examples):

* **Segments.** Bins are made per episode, or, when the Event Dataset has an ``interval`` column (stage 1 with an
  interval selector, :mod:`owa.data.intervals`), per segment: the rows of one ``(episode_path, interval)``. The
  output then carries ``interval`` too, ``bin_idx`` restarts at 0 in each segment, and no bin spans the gap
  between two spans. Below, "episode" means segment.
* **Bins.** An episode's bins start at its first event (of any topic) and run to the bin holding its last
  event. Bin ``k`` is the half-open interval ``[first + floor(k * 1e9 / fps), first + floor((k + 1) * 1e9 /
  fps))`` in integer nanoseconds, each edge computed from ``k`` with exact rational arithmetic, so there is
  no drift even when ``1e9 / fps`` is not an integer (``fps=3`` → 333,333,333 ns then 333,333,334 ns ...).
* **Actions.** Events of ``action_topics`` (default ``keyboard`` and ``mouse``) go, in time order, to the
  bin containing their timestamp: every action lands in exactly one bin. ``mouse/raw`` is not an action by
  default: it is a second encoding of the same physical mouse input as ``mouse``.
* **State.** The latest ``state_topic`` (``screen``) event at or before the bin's start, so the observation
  never comes from after the actions it is paired with. Empty until the episode's first screen.
* **Filter.** ``filter_empty_actions`` drops the bins without actions, and nothing else.
* **Other topics** (``window``, ``keyboard/state``, ``mouse/state``, ...) are ignored, and counted in the log.
* **Order.** Episodes come out sorted by path, bins by index. The input is grouped and sorted once
  (stable, by episode then timestamp), so it need not be ordered.
* **Schema.** :func:`~owa.data.schema.binned_features`; ``numeric_actions`` adds the columns computed in
  :mod:`owa.data.binning_numeric`, an input ``interval`` column adds ``interval``.

The work per split is one vectorized pass (numpy/pyarrow) over the event columns, then a streamed write of
output chunks of whole episodes: time and memory grow linearly with the events. With ``engine="ray"`` each
chunk is one Ray task (:mod:`owa.data.executors`; the split's events go to Ray's object store once) and the
chunks are written in the same order, so the output is the same, byte for byte.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from owa.data.binning_numeric import numeric_action_columns
from owa.data.errors import DatasetError, ExecutionError, InvalidInputError
from owa.data.executors import Engine, Executor, LocalExecutor, RayExecutor, TaskFailure, check_engine
from owa.data.schema import (
    EVENT_FEATURES_DICT,
    INTERVAL_FEATURES_DICT,
    MOUSE_BUTTONS,
    binned_features,
    check_arrow_schema,
)

if TYPE_CHECKING:
    import datasets

    from owa.data.metadata import DatasetMetadata

__all__ = [
    "MOUSE_BUTTONS",
    "BinningConfig",
    "binned_features",
    "build_binned_dataset",
]

logger = logging.getLogger(__name__)

_NS_PER_S = 10**9
# fps is turned into an exact fraction; float noise such as 1/3 → 0.333... is snapped to this denominator.
_MAX_FPS_DENOMINATOR = 10**6
_INT64_LIMIT = 2**63
_INT32_MAX = 2**31 - 1
# Output is written in chunks of whole episodes holding about this many input events.
_CHUNK_EVENTS = 131_072


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BinningConfig:
    """Everything stage 2 needs; the script, the ``owa-data bin`` command and the Python API share it.

    Attributes:
        fps: bins per second; a bin is ``1e9 / fps`` nanoseconds wide (edges floored to integer ns).
            Taken as an exact fraction of its decimal form (``29.97`` is ``2997/100``).
        filter_empty_actions: drop bins that hold no action. Off by default, so every episode is a dense,
            uniform time grid from its first to its last event.
        action_topics: topics whose events are actions. ``mouse/raw`` is left out by default (it repeats
            the physical mouse input that ``mouse`` already carries); add it to opt in.
        state_topic: the topic whose latest event before each bin is the bin's state.
        numeric_actions: also add per-bin numeric columns (keys held, mouse position and motion, clicks,
            scroll) computed from ``desktop/KeyboardEvent`` and ``desktop/MouseEvent`` actions.

    Raises:
        ValueError: an invalid field, with what was given and what is allowed.
    """

    fps: float = 10.0
    filter_empty_actions: bool = False
    action_topics: tuple[str, ...] = ("keyboard", "mouse")
    state_topic: str = "screen"
    numeric_actions: bool = False

    def __post_init__(self) -> None:
        _fps_fraction(self.fps)  # validates
        object.__setattr__(self, "fps", float(self.fps))  # JSON-friendly; the exact fraction is re-derived
        for name in ("filter_empty_actions", "numeric_actions"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"Invalid {name} ({getattr(self, name)!r}). Use True or False.")
        topics = self.action_topics
        if isinstance(topics, str) or not all(isinstance(t, str) and t for t in topics) or not topics:
            raise ValueError(
                f"Invalid action_topics ({topics!r}). Give a non-empty sequence of topic names, e.g. keyboard, mouse."
            )
        object.__setattr__(self, "action_topics", tuple(dict.fromkeys(topics)))
        if not isinstance(self.state_topic, str) or not self.state_topic:
            raise ValueError(f"Invalid state_topic ({self.state_topic!r}). Give a topic name, e.g. screen.")
        if self.state_topic in self.action_topics:
            raise ValueError(
                f"Invalid state_topic ({self.state_topic!r}): it is also an action topic. A topic is either state "
                "or action."
            )

    @property
    def bin_width_ns(self) -> Fraction:
        """The exact bin width in nanoseconds, ``1e9 / fps`` as a fraction."""
        return _NS_PER_S / _fps_fraction(self.fps)

    def bin_start_offset_ns(self, bin_idx: int) -> int:
        """Start of bin ``bin_idx`` in ns after the episode's first event: ``floor(bin_idx * 1e9 / fps)``."""
        return math.floor(bin_idx * self.bin_width_ns)

    def to_json(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (what binned datasets save in their metadata)."""
        return dataclasses.asdict(self) | {"action_topics": list(self.action_topics)}

    @classmethod
    def from_json(cls, fields: dict[str, Any]) -> BinningConfig:
        """The config :meth:`to_json` wrote, e.g. ``json.loads(info.description)["owa_data"]["binning"]``."""
        return cls(**fields)


def _fps_fraction(fps: float) -> Fraction:
    """``fps`` as an exact fraction small enough that bin edges stay exact in int64 arithmetic."""
    if isinstance(fps, bool) or not isinstance(fps, int | float | Fraction) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"Invalid fps ({fps!r}). Supported values are positive finite numbers, e.g. 10 or 29.97.")
    fraction = Fraction(fps) if isinstance(fps, Fraction) else Fraction(repr(float(fps)))
    if fraction.denominator > _MAX_FPS_DENOMINATOR:
        fraction = fraction.limit_denominator(_MAX_FPS_DENOMINATOR)
    if fraction <= 0 or fraction > _NS_PER_S or _NS_PER_S * fraction.denominator * fraction.numerator >= _INT64_LIMIT:
        raise ValueError(
            f"Invalid fps ({fps!r}). Supported values are between 1e-6 and 1e9 (a bin at least 1 ns wide) with an "
            "exact bin width 1e9/fps in int64 nanoseconds, e.g. 10, 29.97 or 1/3."
        )
    return fraction


def _rate_terms(config: BinningConfig) -> tuple[int, int]:
    """``(a, b)`` with ``1e9 / fps == a / b`` exactly and ``a * b < 2**63``."""
    fraction = _fps_fraction(config.fps)
    return _NS_PER_S * fraction.denominator, fraction.numerator


# --------------------------------------------------------------------------------------------------
# Bin arithmetic (exact, vectorized)
# --------------------------------------------------------------------------------------------------


def _bin_index(offset_ns: np.ndarray, a: int, b: int) -> np.ndarray:
    """Bin of each offset (ns after the episode start): the largest ``k`` with ``floor(k * a / b) <= offset``.

    ``floor(k*a/b) <= d`` ⟺ ``k*a < (d+1)*b`` ⟺ ``k = ((d+1)*b - 1) // a``; split over ``divmod(d+1, a)`` so
    no product exceeds ``a * b``, which the config keeps below 2**63.
    """
    q, r = np.divmod(offset_ns + 1, a)
    return q * b + (r * b - 1) // a


def _bin_start(bin_idx: np.ndarray, a: int, b: int) -> np.ndarray:
    """``floor(k * a / b)`` for each ``k`` without overflow (see :func:`_bin_index`)."""
    q, r = np.divmod(bin_idx, b)
    return q * a + (r * a) // b


# --------------------------------------------------------------------------------------------------
# Input checks and the per-split index
# --------------------------------------------------------------------------------------------------

_BINARY_TYPES = (pa.binary(), pa.large_binary())


def _check_no_nulls(table: pa.Table, split: str | None) -> None:
    for name in ("episode_path", "topic", "timestamp_ns", "mcap_message", *INTERVAL_FEATURES_DICT):
        if name not in table.column_names:
            continue
        column = table.column(name)
        if column.null_count:
            row = pc.index(pc.is_null(column), True).as_py()
            raise DatasetError(f"Event Dataset column {name!r} holds a null", row=row, split=split)


@dataclasses.dataclass(frozen=True)
class _SplitIndex:
    """One split's events grouped by episode (segment) and sorted by time, as plain arrays (position = sorted order)."""

    paths: pa.Array  # the episode path of each segment, sorted; ``episode`` indexes into it
    rows: np.ndarray | None  # input row of each sorted position; None when the input was already in order
    episode: np.ndarray  # int64 episode number per position, nondecreasing
    timestamp_ns: np.ndarray  # int64, nondecreasing within an episode
    is_action: np.ndarray  # bool
    is_state: np.ndarray  # bool
    episode_start: np.ndarray  # first position of each episode; length = episodes + 1 (ends with n)
    ignored_topics: dict[str, int]
    intervals: np.ndarray | None = None  # the interval of each segment; None without an ``interval`` column

    def input_rows(self, positions: np.ndarray) -> np.ndarray:
        return positions if self.rows is None else self.rows[positions]


def _index_split(table: pa.Table, config: BinningConfig) -> _SplitIndex:
    """Group by episode and sort by time once: the only whole-split pass besides the final takes."""
    path_column = table.column("episode_path")
    unique_paths = pc.unique(path_column)
    if isinstance(unique_paths, pa.ChunkedArray):
        unique_paths = unique_paths.combine_chunks()
    codes = pc.index_in(path_column, value_set=unique_paths).to_numpy().astype(np.int64, copy=False)
    sort_paths = pc.array_sort_indices(unique_paths).to_numpy()
    rank = np.empty(len(sort_paths), dtype=np.int64)
    rank[sort_paths] = np.arange(len(sort_paths))
    episode = rank[codes]
    sorted_paths = unique_paths.take(pa.array(sort_paths))
    intervals = None
    if "interval" in table.column_names:  # segments: (episode, interval) pairs, numbered in sorted order
        interval = table.column("interval").to_numpy().astype(np.int64, copy=False)
        pairs, episode = np.unique(np.stack([episode, interval], axis=1), axis=0, return_inverse=True)
        episode = episode.reshape(-1).astype(np.int64, copy=False)
        sorted_paths, intervals = sorted_paths.take(pa.array(pairs[:, 0])), pairs[:, 1]
    timestamp_ns = table.column("timestamp_ns").to_numpy().astype(np.int64, copy=False)

    topic = table.column("topic")
    is_action = pc.is_in(topic, value_set=pa.array(config.action_topics, type=topic.type)).to_numpy(
        zero_copy_only=False
    )
    is_state = pc.equal(topic, pa.scalar(config.state_topic, type=topic.type)).to_numpy(zero_copy_only=False)
    ignored = {
        item["values"]: item["counts"]
        for item in pc.value_counts(topic).to_pylist()
        if item["values"] not in config.action_topics and item["values"] != config.state_topic
    }

    rows = None
    if len(episode) > 1:
        step_episode = np.diff(episode)
        in_order = bool(np.all((step_episode > 0) | ((step_episode == 0) & (np.diff(timestamp_ns) >= 0))))
        if not in_order:
            logger.debug("Input is not in (episode, timestamp) order; sorting it once")
            rows = np.lexsort((timestamp_ns, episode))  # stable: ties keep input order
            episode, timestamp_ns = episode[rows], timestamp_ns[rows]
            is_action, is_state = is_action[rows], is_state[rows]
    boundaries = np.flatnonzero(np.diff(episode)) + 1 if len(episode) else np.empty(0, dtype=np.int64)
    episode_start = np.concatenate(([0] if len(episode) else [], boundaries, [len(episode)])).astype(np.int64)
    return _SplitIndex(
        paths=sorted_paths,
        rows=rows,
        episode=episode,
        timestamp_ns=timestamp_ns,
        is_action=is_action,
        is_state=is_state,
        episode_start=episode_start,
        ignored_topics=ignored,
        intervals=intervals,
    )


# --------------------------------------------------------------------------------------------------
# The hot path: bins of a chunk of whole episodes
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _ChunkBins:
    """Bins of a chunk of episodes. Positions are relative to the chunk's first event."""

    episode: np.ndarray  # global episode number of each output bin
    bin_idx: np.ndarray  # int64 index within its episode
    timestamp_ns: np.ndarray  # int64 bin start
    action_offsets: np.ndarray  # len(bins) + 1 offsets into action_positions
    action_positions: np.ndarray  # positions of action events, in bin then time order
    state_positions: np.ndarray  # position of each bin's state event; -1 for none
    all_bins: int  # bins before filtering


def _bin_chunk(
    episode: np.ndarray,
    timestamp_ns: np.ndarray,
    is_action: np.ndarray,
    is_state: np.ndarray,
    a: int,
    b: int,
    filter_empty_actions: bool,
    paths: pa.Array | None = None,
) -> _ChunkBins:
    """Assign a chunk's events (sorted by episode, then time) to bins; pick each bin's actions and state.

    Pure numpy and linear in the chunk's events and bins (plus a log factor for the searches).
    """
    n = len(episode)
    starts = np.flatnonzero(np.concatenate(([True], episode[1:] != episode[:-1])))
    counts = np.diff(np.append(starts, n))
    local = np.repeat(np.arange(len(starts)), counts)
    first_ns = timestamp_ns[starts]
    offset_ns = timestamp_ns - first_ns[local]
    bin_of_event = _bin_index(offset_ns, a, b)
    bins_per_episode = bin_of_event[starts + counts - 1] + 1
    too_long = np.flatnonzero(bins_per_episode > _INT32_MAX + 1)
    if len(too_long):
        where = int(too_long[0])
        raise DatasetError(
            f"Episode spans {int(bins_per_episode[where]):,} bins at this fps, more than bin_idx (int32) holds; "
            "check its timestamps or lower the fps",
            path=None if paths is None else paths[int(episode[starts[where]])].as_py(),
        )
    bin_base = np.concatenate(([0], np.cumsum(bins_per_episode)[:-1]))
    global_bin = bin_base[local] + bin_of_event  # nondecreasing over the chunk

    action_positions = np.flatnonzero(is_action)
    action_bins = global_bin[action_positions]
    all_bins = int(bins_per_episode.sum())
    if filter_empty_actions:
        out_bins = action_bins[np.concatenate(([True], action_bins[1:] != action_bins[:-1]))[: len(action_bins)]]
    else:
        out_bins = np.arange(all_bins, dtype=np.int64)
    out_local = np.searchsorted(bin_base, out_bins, side="right") - 1
    out_idx = out_bins - bin_base[out_local]
    out_start = first_ns[out_local] + _bin_start(out_idx, a, b)

    # Every action bin is in out_bins, so these offsets cover all actions exactly once.
    action_offsets = np.append(np.searchsorted(action_bins, out_bins, side="left"), len(action_positions))

    # State: the latest state event among those at or before the bin start. Inside its bin an event is
    # "at the start" only when its offset equals the bin edge, and those come first in time order, so
    # sort_key = 2*bin + (after the edge) is nondecreasing and one search finds the cut for every bin.
    after_edge = offset_ns != _bin_start(bin_of_event, a, b)
    sort_key = 2 * global_bin + after_edge
    cut = np.searchsorted(sort_key, 2 * out_bins + 1, side="left")  # events [0, cut) are at or before the start
    latest_state = np.maximum.accumulate(np.where(is_state, np.arange(n), -1)) if n else np.empty(0, np.int64)
    state_positions = np.where(cut > 0, latest_state[np.maximum(cut - 1, 0)], -1)
    state_positions = np.where(state_positions >= starts[out_local], state_positions, -1)

    return _ChunkBins(
        episode=episode[starts[out_local]] if len(out_local) else np.empty(0, np.int64),
        bin_idx=out_idx,
        timestamp_ns=out_start,
        action_offsets=action_offsets,
        action_positions=action_positions,
        state_positions=state_positions,
        all_bins=all_bins,
    )


def _take_rows(column: pa.ChunkedArray, rows: np.ndarray) -> pa.Array:
    """``column.take(rows)`` as one array, copying only the input chunks that hold ``rows``.

    ``ChunkedArray.take`` would first concatenate the whole column (quadratic over many output chunks).
    Rows of a chunk of sorted input sit in one narrow window: slice it, then take. Scattered rows
    (unsorted input) are taken chunk by chunk.
    """
    value_type = pa.binary() if column.type in _BINARY_TYPES else column.type
    if len(rows) == 0:
        return pa.array([], type=value_type)
    lo, hi = int(rows.min()), int(rows.max()) + 1
    if hi - lo <= 4 * len(rows) + 4096:
        window = column.slice(lo, hi - lo)
        dense = window.chunk(0) if window.num_chunks == 1 else window.combine_chunks()
        gathered = dense.take(pa.array(rows - lo))
    else:
        gathered = _take_scattered(column, rows)
    return gathered.cast(value_type) if gathered.type != value_type else gathered


def _take_scattered(column: pa.ChunkedArray, rows: np.ndarray) -> pa.Array:
    lengths = np.fromiter((len(chunk) for chunk in column.chunks), dtype=np.int64, count=column.num_chunks)
    chunk_start = np.concatenate(([0], np.cumsum(lengths)))
    order = np.argsort(rows, kind="stable")
    grouped_rows = rows[order]
    grouped_chunks = np.searchsorted(chunk_start, grouped_rows, side="right") - 1
    cuts = np.flatnonzero(np.diff(grouped_chunks)) + 1
    pieces = []
    for lo, hi in zip(np.concatenate(([0], cuts)).tolist(), np.concatenate((cuts, [len(rows)])).tolist(), strict=True):
        c = int(grouped_chunks[lo])
        pieces.append(column.chunk(c).take(pa.array(grouped_rows[lo:hi] - chunk_start[c])))
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return pa.concat_arrays(pieces).take(pa.array(inverse))


def _chunk_table(
    table: pa.Table, index: _SplitIndex, lo: int, hi: int, config: BinningConfig, schema: pa.Schema
) -> tuple[pa.Table, int]:
    """The output rows for the events at sorted positions ``[lo, hi)`` (whole episodes); and bins before filtering."""
    a, b = _rate_terms(config)
    bins = _bin_chunk(
        index.episode[lo:hi],
        index.timestamp_ns[lo:hi],
        index.is_action[lo:hi],
        index.is_state[lo:hi],
        a,
        b,
        config.filter_empty_actions,
        index.paths,
    )
    has_state = bins.state_positions >= 0
    state_rows = index.input_rows(bins.state_positions[has_state] + lo)
    action_rows = index.input_rows(bins.action_positions + lo)
    state_offsets = np.concatenate(([0], np.cumsum(has_state))).astype(np.int32)
    taken = _take_rows(table.column("mcap_message"), np.concatenate((state_rows, action_rows)))
    columns: dict[str, pa.Array] = {
        "episode_path": index.paths.take(pa.array(bins.episode)).cast(pa.string()),
        "interval": None if index.intervals is None else pa.array(index.intervals[bins.episode].astype(np.int32)),
        "bin_idx": pa.array(bins.bin_idx.astype(np.int32)),
        "timestamp_ns": pa.array(bins.timestamp_ns, type=pa.int64()),
        "state": pa.ListArray.from_arrays(pa.array(state_offsets), taken.slice(0, len(state_rows))),
        "actions": pa.ListArray.from_arrays(
            pa.array(bins.action_offsets.astype(np.int32)), taken.slice(len(state_rows))
        ),
    }
    if config.numeric_actions:

        def locate(action: int) -> dict[str, Any]:  # the error context of an action, on the failure path only
            row = int(action_rows[action])
            return {
                "path": table.column("episode_path")[row].as_py(),
                "topic": table.column("topic")[row].as_py(),
                "timestamp_ns": table.column("timestamp_ns")[row].as_py(),
                "row": row,
            }

        columns |= numeric_action_columns(
            _take_rows(table.column("message_type"), action_rows).to_pylist(),
            taken.slice(len(state_rows)),
            bins.action_offsets,
            bins.episode,
            locate,
        )
    return pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema), bins.all_bins


# --------------------------------------------------------------------------------------------------
# Splits, datasets and the public entry point
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _SplitInput:
    """What every chunk task of a split reads (sent to the workers once)."""

    table: pa.Table
    index: _SplitIndex
    config: BinningConfig
    schema: pa.Schema


def _bin_rows(split: _SplitInput, bounds: tuple[int, int]) -> tuple[pa.Table, int]:
    """One chunk task: the output rows of the events at sorted positions ``[lo, hi)`` (whole episodes)."""
    return _chunk_table(split.table, split.index, *bounds, split.config, split.schema)


def _iter_split_tables(
    table: pa.Table,
    config: BinningConfig,
    schema: pa.Schema,
    split: str | None,
    chunk_events: int,
    executor: Executor | None = None,
) -> Iterator[pa.Table]:
    """Yield one split's output in tables of whole episodes (about ``chunk_events`` input events each).

    The chunks are computed by ``executor`` (default: in this process) and yielded in order.
    """
    started = time.perf_counter()
    _check_no_nulls(table, split)
    index = _index_split(table, config)
    starts = index.episode_start
    # Cut the episode list where the running event count crosses a multiple of chunk_events.
    chunk_first_episode = np.unique(starts[:-1] // chunk_events, return_index=True)[1]
    bounds = np.append(starts[chunk_first_episode], starts[-1])
    chunks = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
    emitted = all_bins = 0
    results = (executor or LocalExecutor()).map(_bin_rows, chunks, shared=_SplitInput(table, index, config, schema))
    for (lo, _), result in zip(chunks, results, strict=True):
        if isinstance(result, TaskFailure):
            raise ExecutionError(
                f"Binning task failed: {result.reason}", path=index.paths[int(index.episode[lo])].as_py(), split=split
            )
        chunk, chunk_bins = result
        emitted += chunk.num_rows
        all_bins += chunk_bins
        yield chunk
    ignored = ", ".join(f"{topic}={count:,}" for topic, count in sorted(index.ignored_topics.items())) or "none"
    logger.info(
        "Binned split %s: %s events in %s episodes (%s actions, %s %s) -> %s bins at %s fps "
        "(%s empty bins dropped); ignored topics: %s; %.2f s",
        split or "(single dataset)",
        f"{table.num_rows:,}",
        f"{len(starts) - 1:,}",
        f"{int(index.is_action.sum()):,}",
        f"{int(index.is_state.sum()):,}",
        config.state_topic,
        f"{emitted:,}",
        config.fps,
        f"{all_bins - emitted:,}",
        ignored,
        time.perf_counter() - started,
    )


def _check_split(dataset: Any, split: str | None) -> None:
    import datasets

    if not isinstance(dataset, datasets.Dataset):
        raise InvalidInputError(
            f"Invalid event dataset type {type(dataset).__name__}. Supported: datasets.Dataset, "
            "datasets.DatasetDict or the folder of one saved with save_to_disk",
            split=split,
        )
    check_arrow_schema(dataset.data.schema, EVENT_FEATURES_DICT, dataset="an Event Dataset", split=split)


def _split_table(dataset: datasets.Dataset) -> pa.Table:
    """The dataset's Arrow table with any indices mapping applied (zero-copy when there is none)."""
    return dataset.with_format("arrow")[:]


def _load(path: str | os.PathLike[str]) -> datasets.Dataset | datasets.DatasetDict:
    import datasets

    if not Path(path).is_dir():
        raise InvalidInputError("Input folder does not exist", path=path)
    try:
        return datasets.load_from_disk(os.fspath(path))
    except FileNotFoundError as e:
        raise InvalidInputError(
            "Input folder is not a dataset saved with save_to_disk (no dataset_dict.json or state.json)", path=path
        ) from e


def _metadata(config: BinningConfig, source: DatasetMetadata | None) -> DatasetMetadata:
    """The Binned Dataset's ``owa_data.json``: the Event Dataset's configs and recordings root, plus binning."""
    from owa.data.metadata import DatasetMetadata

    if source is None:
        source = DatasetMetadata(stage="events", config={}, recordings_root=None, created_by="")
    return source.derive("binned", name="binning", config=config.to_json(), created_by="build_binned_dataset")


def _input_files(dataset: datasets.Dataset | datasets.DatasetDict) -> list[Path]:
    parts = dataset.values() if hasattr(dataset, "values") else [dataset]
    return [Path(item["filename"]).resolve() for part in parts for item in part.cache_files]


def build_binned_dataset(
    event_dataset: datasets.Dataset | datasets.DatasetDict | str | os.PathLike[str],
    config: BinningConfig | None = None,
    *,
    output_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    chunk_events: int = _CHUNK_EVENTS,
    engine: Engine = "local",
    ray_address: str | None = None,
) -> datasets.Dataset | datasets.DatasetDict:
    """Bin an Event Dataset into fixed-rate bins of ``state`` and ``actions`` (the module docstring has the rules).

    >>> build_binned_dataset(events, BinningConfig(fps=10, filter_empty_actions=True))  # doctest: +SKIP
    >>> build_binned_dataset("/data/events", BinningConfig(fps=10), output_dir="/data/bins")  # doctest: +SKIP

    Args:
        event_dataset: a ``Dataset``, a ``DatasetDict`` (every split is binned, names kept) or the folder of
            one saved with ``save_to_disk``.
        config: every binning setting (fps, filter_empty_actions, action_topics, state_topic,
            numeric_actions); default ``BinningConfig()``. The ``owa-data bin`` command builds the same object
            from its flags.
        output_dir: when set, stream the result to this folder atomically (a temporary sibling renamed into
            place; nothing half-written on failure) and return it loaded (memory-mapped) from there. The folder
            records its stage and configs (the Event Dataset folder's too) in ``owa_data.json``
            (:mod:`owa.data.metadata`).
            Otherwise the result is built in memory.
        overwrite: replace an existing ``output_dir``.
        chunk_events: input events per output chunk (whole episodes); bounds the memory of a streamed write.
        engine: ``"local"`` bins in this process; ``"ray"`` runs one Ray task per chunk (:mod:`owa.data.executors`)
            on the cluster at ``ray_address`` (``"auto"``: the one on this machine; None: start a local Ray).
            The output is the same either way.

    Returns:
        The same kind of object as the input (``DatasetDict`` for a dict or a folder holding one), with
        the schema of :func:`binned_features`. ``config.to_json()`` is saved in ``info.description`` under
        ``owa_data.binning``; :meth:`BinningConfig.from_json` reads it back.

    Raises:
        TypeError: ``config`` is not a :class:`BinningConfig`.
        ValueError: invalid ``chunk_events``, ``engine`` or ``ray_address``.
        ExecutionError: with ``engine="ray"``, the cluster cannot be reached or a chunk lost its worker on every try.
        InvalidInputError (a DatasetError): the input is missing or not an Event Dataset, or ``output_dir``
            would hold the input's own files.
        DatasetError: the input holds nulls, or an episode spans more bins than int32 holds.
        OutputExistsError: ``output_dir`` exists and ``overwrite`` is False (checked before any work).
        MessageValidationError: with ``numeric_actions``, an unreadable keyboard or mouse action.
    """
    import datasets

    if config is None:
        config = BinningConfig()
    elif not isinstance(config, BinningConfig):
        raise TypeError(
            f"Invalid config ({type(config).__name__}). Pass a BinningConfig, e.g. BinningConfig(fps=10), "
            "or None for the defaults."
        )
    if not isinstance(chunk_events, int) or chunk_events < 1:
        raise ValueError(f"Invalid chunk_events ({chunk_events!r}). Use a positive event count.")
    check_engine(engine, ray_address)

    source = None
    if isinstance(event_dataset, str | os.PathLike):
        from owa.data.metadata import read_metadata

        source = read_metadata(event_dataset, missing_ok=True)  # Event Datasets of older versions have none
        event_dataset = _load(event_dataset)
    is_dict = isinstance(event_dataset, datasets.DatasetDict)
    splits: dict[str | None, Any] = dict(event_dataset) if is_dict else {None: event_dataset}
    for split, dataset in splits.items():  # check every split before any work
        _check_split(dataset, split)

    with_interval = {"interval" in dataset.column_names for dataset in splits.values()}
    if len(with_interval) > 1:
        raise InvalidInputError(
            "Some splits have an interval column and some do not; bin splits of one stage-1 run together"
        )
    features = binned_features(numeric_actions=config.numeric_actions, interval=with_interval == {True})
    schema = features.arrow_schema
    description = json.dumps({"owa_data": {"stage": "binned", "binning": config.to_json()}})

    executor = RayExecutor(ray_address) if engine == "ray" else None  # local: this process, as ever

    def info() -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description=description, features=features)

    def named(split: str | None) -> datasets.NamedSplit | None:
        return None if split is None else datasets.NamedSplit(split)

    def wrap(parts: dict[str | None, datasets.Dataset]) -> datasets.Dataset | datasets.DatasetDict:
        return datasets.DatasetDict(parts) if is_dict else parts[None]

    if output_dir is None:
        built = {
            split: datasets.Dataset(
                pa.concat_tables(
                    [
                        schema.empty_table(),
                        *_iter_split_tables(_split_table(dataset), config, schema, split, chunk_events, executor),
                    ]
                ),
                info=info(),
                split=named(split),
            )
            for split, dataset in splits.items()
        }
        return wrap(built)

    from owa.data.atomic import atomic_output_dir
    from owa.data.dataset_io import save_dataset
    from owa.data.metadata import write_metadata

    output = Path(os.path.abspath(output_dir))
    resolved = output.resolve()
    if any(file == resolved or resolved in file.parents for file in _input_files(event_dataset)):
        raise InvalidInputError(
            "Output folder holds the input dataset; write the binned dataset elsewhere", path=output
        )
    with atomic_output_dir(output, overwrite=overwrite) as tmp:
        # Stream each split to one Arrow file (memory stays flat), then let `datasets` lay out the folder.
        scratch = tmp / ".scratch"
        scratch.mkdir()
        staged: dict[str | None, datasets.Dataset] = {}
        for number, (split, dataset) in enumerate(splits.items()):
            path = scratch / f"split-{number}.arrow"
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
                for chunk in _iter_split_tables(_split_table(dataset), config, schema, split, chunk_events, executor):
                    writer.write_table(chunk)
            staged[split] = datasets.Dataset.from_file(str(path), info=info(), split=named(split))
        save_dataset(wrap(staged), tmp)
        write_metadata(tmp, _metadata(config, source))  # inside the staging folder: published with it
        del staged
        for item in scratch.iterdir():
            item.unlink()
        scratch.rmdir()
    return datasets.load_from_disk(str(output))
