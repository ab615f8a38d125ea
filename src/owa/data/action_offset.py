"""The inverse-dynamics action offset: actions moved τ seconds later in the token sequence.

An inverse-dynamics model names an action after seeing its consequence. With an offset τ
(``EpisodeTokenizerConfig(action_offset_s=τ)``), every action event (a topic of ``action_topics``) recorded at ``t``
is placed in the sequence as if it happened at ``t + τ``, and its tokens encode ``t + τ``, so the order and the
encoded times agree (the sequence's clock never goes back).

The rule, per episode segment (a run of rows with the same ``episode_path``, and the same ``interval`` when the
Event Dataset has that column):

- an action's sequence time is ``t + τ``; every other event (screen frames, window events) keeps ``t``;
- rows are ordered by sequence time; at equal times the other events come first (an action at ``t + τ`` comes after
  the frames at ``t + τ``); actions keep their relative order, and so do the other events;
- segments never mix: an action moves within its own segment only.

At the two ends of a segment this means:

- start: the frames of the segment's first τ seconds stay where they are (actions move later; frames never move
  earlier), so the actions of those τ seconds come after them, each after the frames up to its ``t + τ``. No action
  is left without the frames it followed;
- end: actions of the last τ seconds, whose ``t + τ`` is past the segment's last frame, come last, after that frame,
  in their order, still encoding ``t + τ``. They are kept (not dropped).

Rows are assumed in time order within a segment, as stage 1 writes them; where they are not, the running maximum of
each kind's times is used for the ordering, so neither kind is ever reordered among itself.

Hot path: :func:`offset_order` is pure numpy over columns.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pyarrow as pa

from owa.data.errors import DatasetError

if TYPE_CHECKING:
    import datasets

__all__ = [
    "DEFAULT_ACTION_TOPICS",
    "OffsetOrder",
    "check_offset",
    "event_order",
    "offset_ns",
    "offset_order",
    "segment_starts",
]

DEFAULT_ACTION_TOPICS: tuple[str, ...] = ("keyboard", "mouse", "mouse/raw")
"""The topics moved by an action offset by default: the user's inputs."""


class OffsetOrder(NamedTuple):
    """The rows of an Event Dataset in sequence order, each array indexed by sequence position.

    Attributes:
        order: the input row at each position (a permutation that keeps every segment's rows in place as a block).
        encoded_ns: the time the row's tokens encode: its recorded time, plus the offset for an action.
        is_action: whether the row is an action (moved by the offset).
    """

    order: np.ndarray
    encoded_ns: np.ndarray
    is_action: np.ndarray


def offset_ns(offset_s: float) -> int:
    """``offset_s`` seconds in integer nanoseconds (rounded)."""
    return round(offset_s * 1e9)


def check_offset(offset_s: float) -> None:
    """Raise ValueError unless ``offset_s`` is a finite number of seconds >= 0."""
    if isinstance(offset_s, bool) or not isinstance(offset_s, int | float) or not math.isfinite(offset_s):
        raise ValueError(f"Invalid action_offset_s ({offset_s!r}). It must be a finite number of seconds >= 0.")
    if offset_s < 0:
        raise ValueError(
            f"Invalid action_offset_s ({offset_s!r}). Supported values are >= 0 (actions move later, after the "
            "frames that show their consequence); 0 turns the offset off."
        )


def offset_order(timestamps_ns: np.ndarray, is_action: np.ndarray, starts: np.ndarray, offset: int) -> OffsetOrder:
    """The sequence order of rows under an action offset (the module docs give the rule).

    Args:
        timestamps_ns: each row's recorded time (int64 ns).
        is_action: whether each row is an action (bool).
        starts: whether each row starts a segment (bool; the first row always does).
        offset: the offset in ns (>= 0).

    Returns:
        An :class:`OffsetOrder`: ``order[i]`` is the input row at sequence position ``i``, ``encoded_ns[i]`` the time
        its tokens encode, ``is_action[i]`` whether it is an action.

    Example::

        >>> order, encoded, _ = offset_order(np.array([0, 30, 50, 100]), np.array([False, True, False, False]),
        ...                               np.array([True, False, False, False]), 100)
        >>> order.tolist(), encoded.tolist()
        ([0, 2, 3, 1], [0, 50, 100, 130])
    """
    timestamps_ns = np.asarray(timestamps_ns, dtype=np.int64)
    is_action = np.asarray(is_action, dtype=bool)
    n = len(timestamps_ns)
    shifted = timestamps_ns + np.where(is_action, np.int64(offset), np.int64(0))
    key = np.empty(n, dtype=np.int64)
    bounds = [*np.flatnonzero(np.asarray(starts, dtype=bool)).tolist(), n]
    if n and bounds[0] != 0:
        bounds.insert(0, 0)
    segment = np.zeros(n, dtype=np.int64)
    for number, (a, b) in enumerate(itertools.pairwise(bounds)):
        segment[a:b] = number
        for kind in (is_action[a:b], ~is_action[a:b]):  # a running maximum per kind: never reorder within a kind
            rows = np.flatnonzero(kind) + a
            key[rows] = np.maximum.accumulate(shifted[rows]) if len(rows) else shifted[rows]
    # lexsort: the last key is the primary one. Segment, then time, then other events before actions, then row.
    order = np.lexsort((np.arange(n), is_action, key, segment))
    return OffsetOrder(order, shifted[order], is_action[order])


def segment_starts(table: pa.Table) -> np.ndarray:
    """Whether each row starts an episode segment: ``episode_path`` (and ``interval``, when a column) changes."""
    n = table.num_rows
    starts = np.zeros(n, dtype=bool)
    if n == 0:
        return starts
    starts[0] = True
    for name in ("episode_path", "interval"):
        if name in table.column_names:
            starts[1:] |= _changes(table.column(name))
    return starts


def _changes(column: pa.ChunkedArray) -> np.ndarray:
    """Whether each value (from the second) differs from the one before it; nulls equal only nulls."""
    import pyarrow.compute as pc

    if len(column) < 2:
        return np.zeros(0, dtype=bool)
    try:
        before, after = column[:-1], column[1:]
        differ = pc.not_equal(after, before)
        null_change = pc.not_equal(pc.is_null(after), pc.is_null(before))
        return pc.or_(differ.fill_null(False), null_change).to_numpy(zero_copy_only=False)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # a nested type (struct, list): compare in Python
        values = column.to_pylist()
        return np.array([a != b for a, b in itertools.pairwise(values)], dtype=bool)


def event_order(dataset: datasets.Dataset, offset_s: float, action_topics: Collection[str]) -> OffsetOrder:
    """:func:`offset_order` for an Event Dataset split (columns ``episode_path``, ``timestamp_ns``, ``topic``, and
    ``interval`` when present).

    Raises:
        DatasetError: a needed column is missing.
    """
    import pyarrow.compute as pc

    needed = ["episode_path", "timestamp_ns", "topic"]
    missing = [c for c in needed if c not in dataset.column_names]
    if missing:
        raise DatasetError(
            f"An action offset (action_offset_s={offset_s}) needs the Event Dataset columns {needed}; missing "
            f"{missing} (columns: {dataset.column_names}). Tokenize an Event Dataset as stage 1 writes it"
        )
    columns = needed + (["interval"] if "interval" in dataset.column_names else [])
    table = dataset.select_columns(columns).with_format("arrow")[:]
    is_action = pc.is_in(table.column("topic"), value_set=pa.array(sorted(action_topics), type=pa.string()))
    return offset_order(
        table.column("timestamp_ns").to_numpy(),
        is_action.fill_null(False).to_numpy(zero_copy_only=False),
        segment_starts(table),
        offset_ns(offset_s),
    )
