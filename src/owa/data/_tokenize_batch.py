"""The per-batch work of :meth:`EpisodeTokenizer.tokenize_event_dataset
<owa.data.episode_tokenizer.EpisodeTokenizer.tokenize_event_dataset>` and how its counts leave ``datasets.map``.

``datasets.map`` may run the batch function in worker processes, whose counters never reach the parent. So each
output batch carries temporary columns: the encoder's clamp counts, the ``on_error="skip"`` counts by error type,
the last skipped error, and a carrier flag (a row kept only to carry counts when every row of its batch was
dropped). The caller sums them (:func:`sum_skips`, :func:`sum_encoder_counts`) and removes them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from owa.data._token_lookup import TokenLookup
from owa.data.counters import Counters
from owa.data.episode_paths import resolve_episode_path
from owa.data.errors import DatasetError, EncodingError, MessageValidationError, OnError
from owa.data.image_layout import ImageLayout
from owa.data.messages import ScreenCaptured, serialize_screen

if TYPE_CHECKING:
    import datasets

    from owa.data.encoders import EncoderStats

__all__ = ["TokenizeStats"]

STAT_PREFIX = "__owa_encoder_"  # temporary columns carrying encoder.stats counts out of map() workers
SKIP_PREFIX = "__owa_skipped_"  # temporary columns carrying on_error="skip" counts out of map() workers
LAST_ERROR = "__owa_last_error"
CARRIER = "__owa_carrier"  # a row that only carries counts (its batch dropped every row); removed

SKIPPABLE = (EncodingError, MessageValidationError)  # what on_error="skip" drops: rows the encoder cannot encode
SKIPPABLE_NAMES = tuple(e.__name__ for e in SKIPPABLE)


class TokenizeStats(Counters):
    """What one :meth:`EpisodeTokenizer.tokenize_event_dataset` call dropped with ``on_error="skip"``, summed over
    its worker processes (:attr:`EpisodeTokenizer.last_tokenize_stats`). Local counters (see
    :mod:`owa.data.counters`).

    Attributes:
        rows: rows of the input dataset.
        events_skipped: rows dropped because the encoder could not encode them.
        errors: skip counts by error type name (``EncodingError``, ``MessageValidationError``).
        last_error: the message of one skipped row's error (the last batch's), or None.
    """

    rows: int
    events_skipped: int


Encode = Callable[..., tuple[str, list[ScreenCaptured]]]
"""``encode_serialized(mcap_message_json, *, episode_path=...) -> (text, images)`` of an encoder or its adapter."""


class TokenizeBatch:
    """The datasets.map batch function (picklable for worker processes).

    Args:
        encode: the encoder's (or frame-space adapter's) ``encode_serialized``.
        encoder_stats: the encoder's stats, which ``encode`` counts into (read before and after each batch).
        lookup: the exact id lookup.
        layout: one frame's tokens.
        episode_tokens: ``(start, end)`` tokens.
        is_first, is_last: per row of the mapped dataset, whether it starts or ends an episode.
        episode_root: the folder relative episode paths resolve against.
        on_error: ``"raise"`` or ``"skip"``.
        shift_ns: per row of the mapped dataset, what to add to the message's timestamp before encoding it, or
            None for nothing (an action offset moves actions later: :mod:`owa.data.action_offset`).
        source_rows: per row of the mapped dataset, the input row it came from (to name it in errors), or None
            when they are the same.
    """

    def __init__(
        self,
        *,
        encode: Encode,
        encoder_stats: EncoderStats,
        lookup: TokenLookup,
        layout: ImageLayout,
        episode_tokens: tuple[str, str],
        is_first: np.ndarray,
        is_last: np.ndarray,
        episode_root: str,
        on_error: OnError = "raise",
        shift_ns: np.ndarray | None = None,
        source_rows: np.ndarray | None = None,
    ) -> None:
        self.encode = encode
        self.encoder_stats = encoder_stats
        self.lookup = lookup
        self.layout = layout
        self.episode_tokens = episode_tokens
        self.is_first = is_first
        self.is_last = is_last
        self.episode_root = episode_root
        self.on_error = on_error
        self.shift_ns = shift_ns
        self.source_rows = source_rows

    def __call__(self, batch: pa.Table, indices: list[int]) -> pa.Table:
        encode = self.encode
        start_token, end_token = self.episode_tokens
        paths = batch.column("episode_path").to_pylist()
        # The span index (stage 1 with an interval selector) travels along, so packing knows the segments.
        intervals = batch.column("interval").to_pylist() if "interval" in batch.column_names else None
        kept_intervals: list[int] = []
        messages = batch.column("mcap_message").to_pylist()
        rows = np.asarray(indices, dtype=np.int64)
        if self.shift_ns is not None:
            messages = _shift_timestamps(messages, self.shift_ns[rows])
        if self.source_rows is not None:
            indices = self.source_rows[rows].tolist()

        sources = {path: resolve_episode_path(path, self.episode_root) for path in set(paths)}
        image_token = self.layout.token
        expanded = self.layout.text()
        stats_before = self.encoder_stats.counts()
        is_first = self.is_first[rows].tolist()
        is_last = self.is_last[rows].tolist()
        kept_paths: list[str] = []
        texts: list[str] = []
        image_refs: list[str] = []
        image_counts: list[int] = []
        skipped = dict.fromkeys(SKIPPABLE_NAMES, 0)
        last_error: str | None = None
        for position, (path, message) in enumerate(zip(paths, messages, strict=True)):
            try:
                text, images = encode(message, episode_path=sources[path])
            except SKIPPABLE as e:
                located = e.with_context(path=path, row=indices[position])
                if self.on_error == "raise":
                    raise located from e
                skipped[_skippable_name(e)] += 1
                last_error = str(located)
                # A dropped row keeps its episode tokens, alone: episodes still start and end with them.
                text = (start_token if is_first[position] else "") + (end_token if is_last[position] else "")
                if not text:
                    continue
                images = []
            else:
                if is_first[position]:
                    text = start_token + text
                if is_last[position]:
                    text += end_token
            if images:
                text = text.replace(image_token, expanded)
                image_refs.extend(map(serialize_screen, images))
            kept_paths.append(path)
            if intervals is not None:
                kept_intervals.append(intervals[position])
            texts.append(text)
            image_counts.append(len(images))
        carrier = not texts  # every row dropped: one row still has to carry the counts out of the worker
        if carrier:
            kept_paths, texts, image_counts = [paths[0]], [""], [0]
            kept_intervals = [] if intervals is None else [intervals[0]]

        values, lengths = self.lookup.ids_flat(texts)
        offsets = np.zeros(len(texts) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        image_offsets = np.zeros(len(texts) + 1, dtype=np.int32)
        np.cumsum(image_counts, out=image_offsets[1:])
        counts = {STAT_PREFIX + name: count for name, count in self.encoder_stats.since(stats_before).items()}
        counts.update({SKIP_PREFIX + name: count for name, count in skipped.items()})
        stat_columns = {}
        for column, count in counts.items():
            delta = np.zeros(len(texts), dtype=np.int64)
            delta[0] = count  # the batch's count, on its first row
            stat_columns[column] = pa.array(delta)
        stat_columns[LAST_ERROR] = pa.array([last_error] + [None] * (len(texts) - 1), type=pa.string())
        stat_columns[CARRIER] = pa.array([carrier] * len(texts), type=pa.bool_())
        return pa.table(
            {
                "episode_path": pa.array(kept_paths, type=pa.string()),
                **({} if intervals is None else {"interval": pa.array(kept_intervals, type=pa.int32())}),
                "text": pa.array(texts, type=pa.string()),
                "token_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.int32())),
                "images": pa.ListArray.from_arrays(pa.array(image_offsets), pa.array(image_refs, type=pa.string())),
                "total_token_count": pa.array(lengths),
                **stat_columns,
            }
        )


def _shift_timestamps(messages: list[Any], shift_ns: np.ndarray) -> list[Any]:
    """The serialized messages with ``shift_ns`` added to their ``timestamp`` (where it is not 0).

    A message that is not a JSON object with an integer timestamp is left as it is: the encoder reports it, with
    its row.
    """
    import orjson

    for i in np.flatnonzero(shift_ns).tolist():
        try:
            envelope = orjson.loads(messages[i])
        except orjson.JSONDecodeError:
            continue
        if isinstance(envelope, dict) and type(envelope.get("timestamp")) is int:
            envelope["timestamp"] += int(shift_ns[i])
            messages[i] = orjson.dumps(envelope)
    return messages


def stat_features(encoder_counters: Sequence[str]) -> dict[str, Any]:
    """The ``datasets`` features of the temporary count columns."""
    import datasets

    columns: dict[str, Any] = {STAT_PREFIX + name: datasets.Value("int64") for name in encoder_counters}
    columns.update({SKIP_PREFIX + name: datasets.Value("int64") for name in SKIPPABLE_NAMES})
    columns[LAST_ERROR] = datasets.Value("string")
    columns[CARRIER] = datasets.Value("bool")
    return columns


def sum_encoder_counts(table: pa.Table, encoder_counters: Sequence[str]) -> dict[str, int]:
    """The encoder's counts summed over the batches of ``table`` (the count columns of the map's output)."""
    import pyarrow.compute as pc

    return {name: pc.sum(table.column(STAT_PREFIX + name)).as_py() or 0 for name in encoder_counters}


def sum_skips(table: pa.Table, stats: TokenizeStats) -> None:
    """Add the skip counts and the last skipped error of ``table``'s batches to ``stats``."""
    import pyarrow.compute as pc

    counts = {name: pc.sum(table.column(SKIP_PREFIX + name)).as_py() or 0 for name in SKIPPABLE_NAMES}
    messages = table.column(LAST_ERROR).drop_null()
    stats.add(
        error_counts=counts,
        events_skipped=sum(counts.values()),
        last_error=messages[len(messages) - 1].as_py() if len(messages) else None,
    )


def _skippable_name(error: BaseException) -> str:
    """The :data:`SKIPPABLE` type name an error counts under (its nearest skippable base)."""
    return next(cls.__name__ for cls in type(error).__mro__ if cls in SKIPPABLE)


def episode_flags(dataset: datasets.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """``(is_first, is_last)`` per row: where the episode segment changes. Segments must be contiguous.

    A segment is a run of rows with the same ``episode_path`` and, when the dataset has an ``interval`` column (stage
    1 with an interval selector), the same ``interval``: each span of a recording starts and ends with the episode
    tokens of its own.

    Raises:
        DatasetError: the same ``episode_path`` (or the same interval of one) in separate runs of rows (names the
            episode and rows).
    """
    import pyarrow.compute as pc

    columns = ["episode_path", *(["interval"] if "interval" in dataset.column_names else [])]
    table = dataset.select_columns(columns).with_format("arrow")[:]
    paths = table.column("episode_path")
    n = len(paths)
    change = np.ones(n + 1, dtype=bool)  # change[i]: row i starts a segment (and row i-1 ends one)
    path_change = np.ones(n, dtype=bool)
    if n > 1:
        path_change[1:] = pc.not_equal(paths[1:], paths[:-1]).fill_null(True).to_numpy(zero_copy_only=False)
    change[:n] = path_change
    if "interval" in columns and n > 1:
        intervals = table.column("interval")
        change[1:n] |= pc.not_equal(intervals[1:], intervals[:-1]).fill_null(True).to_numpy(zero_copy_only=False)
    _check_contiguous(paths, np.flatnonzero(path_change), None)
    if "interval" in columns:
        _check_contiguous(paths, np.flatnonzero(change[:n]), table.column("interval"))
    return change[:n].copy(), change[1:].copy()


def _check_contiguous(paths: pa.ChunkedArray, starts: np.ndarray, intervals: pa.ChunkedArray | None) -> None:
    """Raise unless every run starting at ``starts`` has its own episode path (and interval, when given)."""
    if not len(starts):
        return
    run_paths = paths.take(pa.array(starts)).to_pylist()
    keys: list[Any] = run_paths
    if intervals is not None:
        keys = list(zip(run_paths, intervals.take(pa.array(starts)).to_pylist(), strict=True))
    if len(set(keys)) == len(keys):
        return
    seen: set[Any] = set()
    for key in keys:
        if key in seen:
            repeated = key
            break
        seen.add(key)
    first_rows = [int(r) for r, key in zip(starts, keys, strict=True) if key == repeated][:3]
    what = "episode_path" if intervals is None else f"interval ({repeated[1]}) of one episode_path"
    raise DatasetError(
        f"Episode rows are not contiguous: the same {what} appears in separate runs (rows starting at "
        f"{first_rows}). Keep each episode's events together and in time order, as stage 1 writes them; "
        "do not shuffle an Event Dataset before tokenizing it",
        path=repeated if intervals is None else repeated[0],
    )


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
