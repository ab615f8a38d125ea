"""Stage 1: recordings (``**/*.mcap``) → Event Dataset (one row per event, ``train``/``test`` splits).

The rules, in one place:

* **Topics.** Only ``keep_topics`` are read (the filter goes down into the reader).
* **Rates thin continuous samples only** (:mod:`owa.data.rate`): ``rates_hz={"mouse": 60}`` keeps a mouse
  *move* only when at least ``1/60`` s passed since the last kept move; clicks, scrolls and keys are never
  dropped, and thinned raw mouse motion is carried into the next kept sample. ``inf`` means no limit.
* **Discovery** (:mod:`owa.data.discovery`). ``*.mcap`` files are found recursively, following symlinked
  folders but not symlink loops (listed in the report); a recording reached twice is converted once, and
  its other paths are listed as duplicates.
* **Order.** Episodes are sorted by path; events are in log-time order within an episode. The result is
  the same for any ``num_workers``.
* **Splits.** ``test_dir`` gives the test split; otherwise a seeded fraction ``test_percent`` of the
  episodes (whole episodes, never events) goes to test. A recording is never in both.
* **Validation** (:mod:`owa.data.validation`). Every kept row passes the typed message model of its type, so
  a dataset never holds a row that fails later at tokenization. Rows that fail are counted per recording
  with examples (topic, timestamp, reason); rows of an unknown message type are counted by (type, topic).
  ``strict=True`` makes the first one fatal (:class:`MessageValidationError`).
* **Media** (:mod:`owa.data.media_check`). With ``check_media`` (default), each video the kept screen
  messages point to is opened once and its packet index read (no decoding), under training's rules (media
  policy, played-at tolerance). Missing videos, videos that cannot be opened and screen messages outside
  their video are listed per recording with counts; ``strict=True`` makes the first one fatal.
* **Intervals** (:mod:`owa.data.intervals`). ``interval`` chooses the spans of each recording to keep (default
  ``all``: the whole recording). Spans are chosen from every valid event read, before thinning; the events inside
  them (ends included) are kept, each span thinned on its own, and a span's index is stored in an ``interval``
  column (int32, 0.. per recording, in time order), added only with a selector other than ``all``. Per recording the
  report gives seconds and events kept and dropped. With a selector a recording's valid rows (payload bytes) are
  held until its spans are chosen, so a worker's memory grows with its largest recording.
* **Paths.** ``episode_path`` is absolute by default. With ``relative_to`` it is stored relative to that
  folder (move recordings and dataset together, then pass the new folder as ``episode_root`` to the
  transforms). The choice is saved in the report.
* **Object storage** (:mod:`owa.data.storage`). ``train_dir``, ``test_dir`` and ``output_dir`` may be fsspec
  URLs (``s3://bucket/prefix``), read and written with ``storage_options``. Recordings at URLs are stored as
  their URLs (or relative to a URL ``relative_to``). A URL output is built in a local temporary folder, then
  uploaded with its marker files last (:func:`owa.data.storage.upload_dataset_dir`).
* **Incremental** (:mod:`owa.data.incremental`). With ``incremental``, a re-run converts only new or changed
  recordings, reuses the shards of the others, and gives the same rows as a full rebuild with ``incremental``
  (one shard per recording; splits by :func:`~owa.data.discovery.hash_split` of the stored path). An
  interrupted run resumes from what it completed.
* **Bad input.** By default an unreadable file is skipped and a damaged one salvaged up to the damage;
  both are listed (reason, events kept) in the returned report (:mod:`owa.data.conversion_report`) and in
  ``conversion_report.json`` saved in the dataset folder. ``strict=True`` makes any problem fatal. The
  dataset folder is written atomically.
* **Engine** (:mod:`owa.data.executors`). ``engine="local"`` converts shards in a process pool, each worker
  writing its shard file. ``engine="ray"`` runs one Ray task per recording (Ray Data; recordings under 2 MB
  go several to a task) and this process writes the same shards from their results, so the output is
  identical, byte for byte; a recording whose Ray worker died on every try is reported like a bad file
  (fatal with ``strict``). See ``docs/scale.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from owa.data import storage
from owa.data.atomic import atomic_output_dir, output_write_errors
from owa.data.conversion_report import REPORT_FILENAME, EventDatasetReport, FileResult, describe_damage
from owa.data.dataset_io import write_split_metadata
from owa.data.discovery import Recording, RecordingSplits, discover_recordings, split_recordings
from owa.data.errors import (
    ExecutionError,
    InvalidInputError,
    MessageValidationError,
    OutputExistsError,
    OWADataError,
    RecordingError,
    StorageAccessError,
)
from owa.data.executors import Engine, LocalExecutor, RayExecutor, TaskFailure, check_engine
from owa.data.incremental import Manifest, PreviousDataset, Staging, plan_update
from owa.data.intervals import All, IntervalSelector, Spans, Timeline, parse_interval
from owa.data.media_check import check_media
from owa.data.messages import (
    MESSAGE_TYPES,
    KeyboardEvent,
    MouseEvent,
    RawMouseEvent,
    ScreenCaptured,
    dump_mcap_message_json,
)
from owa.data.metadata import DatasetMetadata, write_metadata
from owa.data.rate import DEFAULT_RATES_HZ, RAW_MOUSE_TYPE, RateLimiter, is_continuous_sample, parse_rates
from owa.data.recordings.reader import OWAMcapReader
from owa.data.schema import EVENT_FEATURES_DICT, arrow_schema, event_features, event_features_dict
from owa.data.validation import FAST_CHECKS, parse_valid_payload

__all__ = [
    "DEFAULT_KEEP_TOPICS",
    "DEFAULT_RATES_HZ",
    "EVENT_FEATURES_DICT",
    "REPORT_FILENAME",
    "EventDatasetConfig",
    "EventDatasetReport",
    "FileResult",
    "RateLimiter",
    "build_event_dataset",
    "discover_recordings",
    "event_features",
    "is_continuous_sample",
    "parse_rates",
    "write_event_dataset",
]

logger = logging.getLogger(__name__)

DEFAULT_KEEP_TOPICS: tuple[str, ...] = ("screen", "keyboard", "mouse")


_SCREEN_TYPE = ScreenCaptured.message_type
_KEYBOARD_TYPE = KeyboardEvent.message_type
_INPUT_TYPES = frozenset({KeyboardEvent.message_type, MouseEvent.message_type, RawMouseEvent.message_type})

# The schema lives in owa.data.schema (kept as data: stage 1 and its workers never import ``datasets``).
_ARROW_SCHEMA = arrow_schema(EVENT_FEATURES_DICT)
_ARROW_SCHEMA_INTERVAL = arrow_schema(event_features_dict(interval=True))


@dataclasses.dataclass(frozen=True)
class EventDatasetConfig:
    """Everything stage 1 needs; the script, the CLI and the Python API all build this one object.

    ``rates_hz`` maps topic → maximum rate of continuous samples (Hz). ``test_percent`` is a fraction in
    ``[0, 1)`` used only without ``test_dir``. ``num_workers`` 0 means one per CPU core. ``check_media``
    opens each video the kept screen messages point to and checks their times (:mod:`owa.data.media_check`).
    ``interval`` chooses the spans of each recording to keep (:mod:`owa.data.intervals`): a selector, or a
    ``--interval`` string (``all``, ``inactivity``, ``hotkey``, ``file:PATH``) with the default thresholds.

    ``train_dir``, ``test_dir``, ``output_dir`` and ``relative_to`` may be URLs (``s3://bucket/prefix``, kept as
    strings; local paths become :class:`Path`); ``storage_options`` are their fsspec filesystem's options
    (:mod:`owa.data.storage`; never saved: the report lists their keys only). ``incremental`` reuses what an
    earlier run converted (:mod:`owa.data.incremental`); it implies hash-based splits and one shard per recording.
    ``engine`` picks where the work runs (:mod:`owa.data.executors`): ``"ray"`` joins the Ray cluster at
    ``ray_address`` (``"auto"``: the one started on this machine; None: start a local Ray), where
    ``num_workers`` 0 means all the cluster's CPUs. The engine is saved with the config; the address is not.
    """

    train_dir: Path | str
    output_dir: Path | str | None = None
    test_dir: Path | str | None = None
    rates_hz: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_RATES_HZ))
    keep_topics: tuple[str, ...] = DEFAULT_KEEP_TOPICS
    test_percent: float = 0.2
    seed: int = 0
    num_workers: int = 0
    strict: bool = False
    overwrite: bool = False
    relative_to: Path | str | None = None
    check_media: bool = True
    interval: IntervalSelector = dataclasses.field(default_factory=All)
    storage_options: Mapping[str, Any] | None = None
    incremental: bool = False
    engine: Engine = "local"
    ray_address: str | None = None

    def __post_init__(self) -> None:
        for name in ("train_dir", "output_dir", "test_dir", "relative_to"):
            value = getattr(self, name)
            if value is not None and not storage.is_url(value):
                object.__setattr__(self, name, Path(value))  # frozen: normalized once, here
        if isinstance(self.interval, str):
            object.__setattr__(self, "interval", parse_interval(self.interval))
        elif not isinstance(self.interval, IntervalSelector):
            raise ValueError(
                f"Invalid interval ({self.interval!r}). Use an IntervalSelector (owa.data.intervals) or one of "
                "all, inactivity, hotkey, file:PATH."
            )
        for topic, rate in self.rates_hz.items():
            if not (isinstance(rate, int | float) and rate > 0 and not math.isnan(rate)):
                raise ValueError(f"Invalid rate for {topic!r} ({rate!r}). Rates are positive numbers of Hz (or inf).")
        if not self.keep_topics or not all(isinstance(t, str) and t.strip() for t in self.keep_topics):
            raise ValueError(
                f"Invalid keep_topics ({list(self.keep_topics)!r}). Keep at least one non-empty topic, "
                "e.g. screen, keyboard, mouse."
            )
        if not 0 <= self.test_percent < 1:
            raise ValueError(f"Invalid test_percent ({self.test_percent}). Use a fraction in [0, 1), e.g. 0.2.")
        if self.num_workers < 0:
            raise ValueError(f"Invalid num_workers ({self.num_workers}). Use 0 (one per core) or a positive count.")
        check_engine(self.engine, self.ray_address)

    def resolved_workers(self) -> int:
        return self.num_workers or os.cpu_count() or 1

    @property
    def selects_intervals(self) -> bool:
        """Whether a selector other than ``all`` is set (the dataset then has an ``interval`` column)."""
        return not isinstance(self.interval, All)

    def features_dict(self) -> dict[str, Any]:
        """The Event Dataset schema this config writes (as data)."""
        return event_features_dict(interval=self.selects_intervals)

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON for the report; of ``storage_options`` only the keys (values may be credentials)."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            if field.name == "ray_address":  # where this machine found the cluster says nothing about the dataset
                continue
            v = getattr(self, field.name)
            if isinstance(v, IntervalSelector):
                v = v.to_json()
            elif isinstance(v, Path):
                v = str(v)
            elif isinstance(v, Mapping):
                v = dict(v)
            out[field.name] = v
        out["storage_options"] = sorted(self.storage_options) if self.storage_options is not None else None
        return out


# --------------------------------------------------------------------------------------------------
# One file
# --------------------------------------------------------------------------------------------------


class _KeptRows:
    """The kept rows of one recording, in order: the rate rule applied per segment (one span, or the recording)."""

    def __init__(self, config: EventDatasetConfig, result: FileResult, media_refs: dict[str, list[int | None]] | None):
        self.rates_hz = config.rates_hz
        self.limiter = RateLimiter(config.rates_hz)
        self.result = result
        self.media_refs = media_refs
        self.topics: list[str] = []
        self.times: list[int] = []
        self.types: list[str] = []
        self.payloads: list[bytes] = []
        self.intervals: list[int] = []

    def add(
        self, topic: str, timestamp_ns: int, message_type: str, payload: dict[str, Any], data: bytes, interval: int
    ) -> None:
        data = self.limiter.admit(topic, timestamp_ns, message_type, payload, data, len(self.times))
        if data is None:
            return
        self.result.events_kept[topic] += 1
        if message_type == _SCREEN_TYPE and self.media_refs is not None and (ref := payload.get("media_ref")):
            self.media_refs.setdefault(ref["uri"], []).append(ref.get("pts_ns"))
        self.topics.append(topic)
        self.times.append(timestamp_ns)
        self.types.append(message_type)
        self.payloads.append(dump_mcap_message_json(topic, timestamp_ns, message_type, data))
        self.intervals.append(interval)

    def end_segment(self, interval: int) -> None:
        """Close a segment: its thinned raw motion comes back (:meth:`RateLimiter.leftover_motion`), clocks restart."""
        for row, topic, timestamp_ns, data in self.limiter.leftover_motion():
            self.result.events_kept[topic] += 1
            self.topics.insert(row, topic)
            self.times.insert(row, timestamp_ns)
            self.types.insert(row, RAW_MOUSE_TYPE)
            self.payloads.insert(row, dump_mcap_message_json(topic, timestamp_ns, RAW_MOUSE_TYPE, data))
            self.intervals.insert(row, interval)
        self.limiter = RateLimiter(self.rates_hz)

    def table(self, stored_path: str, with_interval: bool) -> pa.Table:
        n = len(self.times)
        columns = [
            pa.array([stored_path] * n, pa.string()),
            pa.array(self.topics, pa.string()),
            pa.array(self.times, pa.int64()),
            pa.array(self.types, pa.string()),
            pa.array(self.payloads, pa.binary()),
        ]
        if with_interval:
            return pa.Table.from_arrays([*columns, pa.array(self.intervals, pa.int32())], schema=_ARROW_SCHEMA_INTERVAL)
        return pa.Table.from_arrays(columns, schema=_ARROW_SCHEMA)


@dataclasses.dataclass
class _Pending:
    """A recording's valid rows held back until its spans are chosen (only with an interval selector)."""

    topics: list[str] = dataclasses.field(default_factory=list)
    times: list[int] = dataclasses.field(default_factory=list)
    types: list[str] = dataclasses.field(default_factory=list)
    data: list[bytes] = dataclasses.field(default_factory=list)
    key_vk: list[int] = dataclasses.field(default_factory=list)  # -1 for a row that is not a keyboard event
    key_press: list[bool] = dataclasses.field(default_factory=list)

    def add(self, topic: str, timestamp_ns: int, message_type: str, payload: dict[str, Any], data: bytes) -> None:
        self.topics.append(topic)
        self.times.append(timestamp_ns)
        self.types.append(message_type)
        self.data.append(data)
        is_key = message_type == _KEYBOARD_TYPE
        self.key_vk.append(payload["vk"] if is_key else -1)
        self.key_press.append(is_key and payload["event_type"] == "press")

    def keep_selected(self, path: str, selector: IntervalSelector, rows: _KeptRows, result: FileResult) -> None:
        """Choose the spans from every row, then keep the rows inside them (ends included), one segment per span."""
        if not self.times:
            result.spans = []
            return
        times = np.asarray(self.times, dtype=np.int64)
        vk = np.asarray(self.key_vk, dtype=np.int64)
        press = np.asarray(self.key_press, dtype=bool)
        is_screen = np.fromiter((t == _SCREEN_TYPE for t in self.types), dtype=bool, count=len(times))
        is_input = np.fromiter((t in _INPUT_TYPES for t in self.types), dtype=bool, count=len(times))
        hidden = np.isin(vk, sorted(selector.hidden_keys()))  # control keys are not data
        is_key = vk >= 0
        timeline = Timeline(
            path=path,
            start_ns=int(times.min()),
            end_ns=int(times.max()),
            screen_ns=np.sort(times[is_screen]),
            input_ns=np.sort(times[is_input & ~hidden]),
            key_ns=times[is_key],
            key_vk=vk[is_key],
            key_press=press[is_key],
        )
        spans: Spans = selector.select(timeline) & timeline.whole
        span_of = spans.index_of(times)
        span_of[hidden] = -1
        used = np.unique(span_of[span_of >= 0])  # spans holding events, in time order: numbered 0, 1, ...
        number = np.full(len(spans), -1, dtype=np.int64)
        number[used] = np.arange(len(used))
        result.spans = [spans.pairs[i] for i in used.tolist()]
        result.extent_ns = (timeline.start_ns, timeline.end_ns)
        for i in np.flatnonzero(span_of < 0).tolist():
            result.events_outside[self.topics[i]] += 1
        current = -1
        for i, k in zip(np.flatnonzero(span_of >= 0).tolist(), number[span_of[span_of >= 0]].tolist(), strict=True):
            if k != current and current >= 0:
                rows.end_segment(current)
            current = k
            data = self.data[i]
            rows.add(self.topics[i], self.times[i], self.types[i], orjson.loads(data), data, k)
        if current >= 0:
            rows.end_segment(current)


def _convert_file(task: tuple[str, str, str, EventDatasetConfig]) -> FileResult:
    """Read one recording into an Arrow table of kept events (runs in worker processes)."""
    path, stored_path, split, config = task
    result = FileResult(path=path, split=split)
    media_refs: dict[str, list[int | None]] | None = {} if config.check_media else None
    rows = _KeptRows(config, result, media_refs)
    # With an interval selector the spans come from every valid row, so rows wait until the file is read.
    pending = _Pending() if config.selects_intervals else None
    try:
        with OWAMcapReader(
            path, on_damage="raise" if config.strict else "salvage", storage_options=config.storage_options
        ) as reader:
            for topic, timestamp_ns, message_type, data in reader.iter_messages(config.keep_topics):
                result.events_read[topic] += 1
                # Validate at the edge, before the rate rule (a bad row must not move its clock): a known
                # message type whose payload is a UTF-8 JSON object (orjson checks both) that its typed
                # model accepts. The fast check passes the common well-formed payloads; pydantic decides
                # the rest, so the verdict is always the model's.
                fast_check = FAST_CHECKS.get(message_type)
                if fast_check is None:
                    if config.strict:
                        raise MessageValidationError(
                            f"Unknown message type {message_type!r}. Supported: {', '.join(sorted(MESSAGE_TYPES))}",
                            path=path,
                            topic=topic,
                            timestamp_ns=timestamp_ns,
                        )
                    result.reject_unknown(topic, message_type)
                    continue
                try:
                    payload = parse_valid_payload(message_type, data, fast_check)
                except ValueError as e:
                    error = MessageValidationError(
                        f"Invalid {message_type} payload: {e}", path=path, topic=topic, timestamp_ns=timestamp_ns
                    )
                    if config.strict:
                        raise error from e
                    result.reject_bad(error, message_type)
                    continue
                if pending is not None:
                    pending.add(topic, timestamp_ns, message_type, payload, data)
                else:
                    rows.add(topic, timestamp_ns, message_type, payload, data, 0)
            if pending is not None:
                pending.keep_selected(path, config.interval, rows, result)
            else:
                rows.end_segment(0)  # thinned raw motion at the end
            result.bad_messages += reader.report.bad_messages  # payloads the reader could not normalize
            result.problem = describe_damage(reader.report, result) or None
    except StorageAccessError:  # not this recording's fault: every other one would fail the same way
        raise
    except OWADataError as e:
        if config.strict:
            raise
        result.problem, result.skipped = str(e), True
        result.events_kept.clear()
        return result
    except Exception as e:  # last resort: one broken file must not stop a thousand-file run
        if config.strict:
            raise RecordingError(f"Unexpected failure reading recording: {type(e).__name__}: {e}", path=path) from e
        logger.warning("Skipping %s after an unexpected %s", path, type(e).__name__, exc_info=True)
        result.problem, result.skipped = f"unexpected {type(e).__name__}: {e}", True
        result.events_kept.clear()
        return result
    if not rows.times:
        if pending is not None and pending.times:
            reason = f"no events inside the selected intervals ({json.dumps(config.interval.to_json())})"
        else:
            reason = f"no events on topics {', '.join(config.keep_topics)}"
        result.problem = result.problem or reason
        result.skipped = True
        return result
    result.table = rows.table(stored_path, config.selects_intervals)
    if media_refs:
        result.media_problems = check_media(path, media_refs, storage_options=config.storage_options)
        if result.media_problems and config.strict:
            raise result.media_problems[0].error
    return result


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def _stored_path(path: Recording, relative_to: Path | str | None) -> str:
    """``episode_path`` as stored: the path or URL, or relative to ``relative_to`` (a folder or URL prefix).

    Raises:
        InvalidInputError: a URL recording outside the URL ``relative_to``, or a URL and a local path mixed.
    """
    if relative_to is None:
        return str(path)
    if storage.is_url(path) or storage.is_url(relative_to):
        prefix = str(relative_to).rstrip("/") + "/"
        if not (storage.is_url(path) and storage.is_url(relative_to) and str(path).startswith(prefix)):
            raise InvalidInputError(
                f"Cannot store episode_path relative to {relative_to}: the recording is not under it "
                "(with URLs, relative_to must be a URL prefix holding every recording)",
                path=path,
            )
        return str(path)[len(prefix) :]
    return os.path.relpath(path, Path(relative_to).absolute())


# A shard closes at this much input or this many recordings, whichever comes first.
_SHARD_INPUT_BYTES = 64 * 1024 * 1024
_SHARD_MAX_FILES = 32


@dataclasses.dataclass(frozen=True)
class _ShardTask:
    """Contiguous recordings of one split, written by one worker into one Arrow file of the output."""

    shard_path: str
    split: str
    files: tuple[tuple[str, str], ...]  # (path to read, episode_path to store)
    config: EventDatasetConfig


def _plan_shards(
    splits: Mapping[str, Sequence[Recording]],
    config: EventDatasetConfig,
    folder: Path,
    objects: Mapping[str, storage.ObjectInfo] | None = None,
) -> list[_ShardTask]:
    """Group each split's sorted recordings into contiguous shards by input size.

    The plan depends only on the files, never on the worker count, so the output is identical for any
    ``num_workers``. Small shards keep workers balanced and progress smooth. ``objects`` gives the sizes of
    URL recordings (from their listing).
    """
    objects = objects or {}
    tasks: list[_ShardTask] = []
    for split in ("train", "test"):
        groups: list[list[Path]] = [[]]
        size = 0
        for path in splits[split]:
            if groups[-1] and (size >= _SHARD_INPUT_BYTES or len(groups[-1]) >= _SHARD_MAX_FILES):
                groups.append([])
                size = 0
            groups[-1].append(path)
            size += objects[path].size if isinstance(path, str) else path.stat().st_size
        for i, group in enumerate(groups):
            name = f"data-{i:05d}-of-{len(groups):05d}.arrow"
            files = tuple((str(p), _stored_path(p, config.relative_to)) for p in group)
            tasks.append(_ShardTask(str(folder / split / name), split, files, config))
    return tasks


def _write_shard(task: _ShardTask) -> list[FileResult]:
    """Convert a shard's recordings and stream their rows into its Arrow file (runs in workers)."""
    results = []
    schema = _hf_schema(task.config.selects_intervals)
    with pa.ipc.new_stream(task.shard_path, schema) as writer:
        for path, stored in task.files:
            result = _convert_file((path, stored, task.split, task.config))
            if result.table is not None:
                writer.write_table(result.table.replace_schema_metadata(schema.metadata))
                result.table = None
            results.append(result)
    return results


@functools.cache
def _hf_schema(interval: bool = False) -> pa.Schema:
    """The Arrow schema with the ``datasets`` features in its metadata, as ``save_to_disk`` writes it."""
    features = event_features_dict(interval=interval)
    return arrow_schema(features).with_metadata({"huggingface": json.dumps({"info": {"features": features}})})


def _run_shards(tasks: Sequence[_ShardTask], workers: int) -> Iterator[list[FileResult]]:
    """Shard results in plan order, run by the config's engine (the plan is the same for both engines)."""
    if tasks and tasks[0].config.engine == "ray":
        yield from _run_shards_on_ray(tasks)
        return
    yield from LocalExecutor(workers).map(_write_shard, tasks)


# A Ray task costs tens of milliseconds of scheduling whatever it does, so recordings smaller than this go
# several to a task (consecutive ones, about this much input each); larger ones, the usual, get one each.
_RAY_TASK_INPUT_BYTES = 2 * 1024 * 1024

_FileTask = tuple[str, str, str, EventDatasetConfig]


def _run_shards_on_ray(tasks: Sequence[_ShardTask]) -> Iterator[list[FileResult]]:
    """Recordings as Ray tasks; this process writes each shard from their tables, in plan order.

    Rows travel back through Ray's object store instead of being written by the workers, so only the
    recordings need to be on storage every node reads; the output folder is this machine's.
    """
    config = tasks[0].config
    executor = RayExecutor(config.ray_address, workers=config.num_workers)
    files = [(path, stored, task.split, config) for task in tasks for path, stored in task.files]
    results = _results_on_ray(executor, _ray_task_groups(files))
    schema = _hf_schema(config.selects_intervals)
    for task in tasks:
        shard = []
        with pa.ipc.new_stream(task.shard_path, schema) as writer:
            for _ in task.files:
                result = next(results)
                if result.table is not None:
                    writer.write_table(result.table.replace_schema_metadata(schema.metadata))
                    result.table = None
                shard.append(result)
        yield shard


def _ray_task_groups(files: Sequence[_FileTask]) -> list[list[_FileTask]]:
    """Consecutive recordings, one group per Ray task: each recording alone unless small (see above)."""
    groups: list[list[_FileTask]] = []
    size = _RAY_TASK_INPUT_BYTES
    for file in files:
        if size >= _RAY_TASK_INPUT_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(file)
        try:
            size += os.path.getsize(file[0])
        except OSError:  # not a local file (a URL): a task of its own
            size = _RAY_TASK_INPUT_BYTES
    return groups


def _convert_files(files: Sequence[_FileTask]) -> list[FileResult]:
    return [_convert_file(file) for file in files]


def _results_on_ray(
    executor: RayExecutor,
    groups: Sequence[Sequence[_FileTask]],
    convert: Callable[[Sequence[_FileTask]], list[FileResult]] = _convert_files,
) -> Iterator[FileResult]:
    """Each recording's result in order. A group whose every try lost its worker is run again one recording per
    task, so only the recording that kills its worker is reported (skipped, or ExecutionError when strict)."""
    for group, result in zip(groups, executor.map(convert, groups), strict=True):
        if not isinstance(result, TaskFailure):
            yield from result
        elif len(group) > 1:
            yield from _results_on_ray(executor, [[file] for file in group], convert)
        else:
            path, _, split, config = group[0]
            if config.strict:
                raise ExecutionError(f"Conversion task failed: {result.reason}", path=path)
            yield FileResult(path, split, problem=f"task failed: {result.reason}", skipped=True)


def build_event_dataset(
    config: EventDatasetConfig, *, on_file: Callable[[FileResult], None] | None = None
):  # -> datasets.DatasetDict
    """Convert recordings to an Event Dataset and return it (saved first when ``config.output_dir`` is set).

    Args:
        config: what to read and how (see :class:`EventDatasetConfig`).
        on_file: called in the main process after each file (progress bars use it).

    Returns:
        A ``datasets.DatasetDict`` with ``train`` and ``test``; its ``report`` attribute is the
        :class:`EventDatasetReport`. Loaded from the output folder, or held in memory without one.

    Raises:
        As :func:`write_event_dataset`.
    """
    import datasets

    if config.output_dir is None:  # in memory, as the caller asked for no folder
        if config.incremental:
            raise ValueError("Invalid output_dir (None) with incremental=True: an incremental run updates a folder")
        with tempfile.TemporaryDirectory(prefix="owa-events-") as scratch, output_write_errors(scratch, within=scratch):
            report = _write(config, Path(scratch), on_file)
            result = datasets.load_from_disk(scratch, keep_in_memory=True)
    else:
        report = write_event_dataset(config, on_file=on_file)
        result = datasets.load_from_disk(str(config.output_dir), storage_options=config.storage_options)
    result.report = report
    return result


def write_event_dataset(
    config: EventDatasetConfig, *, on_file: Callable[[FileResult], None] | None = None
) -> EventDatasetReport:
    """Convert recordings to an Event Dataset folder at ``config.output_dir``, atomically; return the report.

    Workers write the dataset's Arrow shards in place (inside the temporary output folder), so rows never
    travel between processes and are written once; the folder is laid out exactly as
    ``DatasetDict.save_to_disk`` lays it out, and loads with ``datasets.load_from_disk``. Nothing is read
    back, so the caller's memory stays flat however large the corpus (the CLI uses this).

    A URL ``output_dir`` (``s3://bucket/events``) is built in a local temporary folder (``TMPDIR`` needs room
    for the whole dataset), then uploaded, its marker files last, and loads with
    ``datasets.load_from_disk(url, storage_options=...)``. With ``incremental``, an existing output holding a
    ``manifest.json`` is updated (see :mod:`owa.data.incremental`); the previous dataset stays loadable until
    the new one replaces it.

    Raises:
        ValueError: ``config.output_dir`` is None.
        InvalidInputError (a DatasetError): missing folders, overlapping splits, no recordings found.
        OutputExistsError: output exists and ``config.overwrite`` is False (with ``incremental``: and it is not
            an incremental dataset).
        StorageAccessError: an object store denied a request or cannot be reached.
        OWADataError: any bad recording when ``config.strict``.
    """
    if config.output_dir is None:
        raise ValueError("Invalid output_dir (None). write_event_dataset needs a folder; use build_event_dataset.")
    if storage.is_url(config.output_dir):
        return _write_to_url(config, str(config.output_dir), on_file)
    output = Path(os.path.abspath(config.output_dir))
    previous = staging = None
    if config.incremental:
        previous = PreviousDataset(Manifest.load(output) if output.is_dir() else None, local=output)
        if output.exists() and previous.manifest is None and not config.overwrite:
            raise OutputExistsError(
                "Output folder already exists and is not an incremental dataset (no manifest.json); pass "
                "overwrite=True (--overwrite) to rebuild it",
                path=output,
            )
        staging = Staging(output.parent / f".{output.name[:64]}.incremental")
    replace = config.overwrite or (previous is not None and previous.manifest is not None)
    with atomic_output_dir(output, overwrite=replace) as tmp:
        report = _write(config, tmp, on_file, previous=previous, staging=staging)
        _write_report(tmp, config, report)
    if staging is not None:
        staging.remove()
    return report


def _write_to_url(
    config: EventDatasetConfig, url: str, on_file: Callable[[FileResult], None] | None
) -> EventDatasetReport:
    """:func:`write_event_dataset` to a URL: build in a local temporary folder, then upload or update."""
    options = config.storage_options
    previous = staging = None
    if config.incremental:
        stored = {info.url[len(url.rstrip("/")) + 1 :] for info in storage.list_objects(url, options)}
        previous = PreviousDataset(Manifest.load(url, options) if stored else None, remote=stored)
        if stored and previous.manifest is None and not config.overwrite:
            raise OutputExistsError(
                "Output already exists and is not an incremental dataset (no manifest.json); pass overwrite=True "
                "(--overwrite) to rebuild it",
                path=url,
            )
        # Resuming needs the staging folder to outlive the process: a fixed name per output URL.
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        staging = Staging(Path(tempfile.gettempdir()) / f"owa-events-staging-{digest}")
    elif not config.overwrite and storage.exists(url, options):  # before the build, not after it
        raise OutputExistsError("Output already exists; pass overwrite=True (--overwrite) to replace it", path=url)
    with tempfile.TemporaryDirectory(prefix="owa-events-") as scratch:
        local = Path(scratch)
        with output_write_errors(url, within=scratch):
            report = _write(config, local, on_file, previous=previous, staging=staging)
            _write_report(local, config, report)
        if previous is not None and previous.manifest is not None:
            storage.update_dataset_dir(local, url, options, keep=previous.kept)
        else:
            storage.upload_dataset_dir(local, url, options, overwrite=config.overwrite)
    if staging is not None:
        staging.remove()
    return report


def _write_report(folder: Path, config: EventDatasetConfig, report: EventDatasetReport) -> None:
    (folder / REPORT_FILENAME).write_text(
        json.dumps({"config": config.to_json(), "report": report.to_json()}, indent=2, ensure_ascii=False)
    )


def _write(
    config: EventDatasetConfig,
    folder: Path,
    on_file: Callable[[FileResult], None] | None,
    *,
    previous: PreviousDataset | None = None,
    staging: Staging | None = None,
) -> EventDatasetReport:
    """Plan the shards, run them (in workers), write the dataset metadata into ``folder``."""
    started = time.perf_counter()
    found = split_recordings(
        config.train_dir,
        config.test_dir,
        test_percent=config.test_percent,
        seed=config.seed,
        storage_options=config.storage_options,
        split_key=(lambda p: _stored_path(p, config.relative_to)) if config.incremental else None,
    )
    splits = found.files
    if not any(splits.values()):
        raise InvalidInputError("No .mcap recordings found", path=config.train_dir)
    report = EventDatasetReport(symlink_loops=[str(p) for p in found.loops])
    for split, duplicate, kept in found.duplicates:
        report.add_duplicate(str(duplicate), str(kept), split)
    for split in ("train", "test"):
        (folder / split).mkdir()
    if config.incremental:
        assert staging is not None
        _write_incremental(config, folder, found, report, on_file, previous or PreviousDataset(None), staging)
        write_metadata(folder, _metadata(config))
        (folder / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
        report.seconds = time.perf_counter() - started
        return report
    tasks = _plan_shards(splits, config, folder, found.objects)
    for results in _run_shards(tasks, config.resolved_workers()):
        for result in results:
            report.add(result)
            if on_file is not None:
                on_file(result)
    fingerprint = hashlib.sha256(repr(tasks).encode()).hexdigest()[:16]
    for split in ("train", "test"):
        shards = [Path(t.shard_path).name for t in tasks if t.split == split]
        write_split_metadata(folder / split, shards, config.features_dict(), fingerprint=fingerprint)
    write_metadata(folder, _metadata(config))  # before the marker below: a loadable dataset always has it
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    report.seconds = time.perf_counter() - started
    return report


def _metadata(config: EventDatasetConfig) -> DatasetMetadata:
    """The Event Dataset's ``owa_data.json``: its config, and the folder relative episode paths resolve against
    (``relative_to``; else the training recordings' folder)."""
    root = config.relative_to if config.relative_to is not None else config.train_dir
    return DatasetMetadata(
        stage="events",
        config={"events": config.to_json()},
        recordings_root=str(root) if storage.is_url(root) else os.path.abspath(root),
        created_by="owa.data.events",
    )


# --------------------------------------------------------------------------------------------------
# Incremental runs (owa.data.incremental)
# --------------------------------------------------------------------------------------------------


def _row_settings(config: EventDatasetConfig) -> dict[str, Any]:
    """The settings that decide an incremental dataset's rows and report (see owa.data.incremental)."""
    return {
        "rates_hz": {topic: float(rate) for topic, rate in sorted(config.rates_hz.items())},
        "keep_topics": list(config.keep_topics),
        "split": "test_dir"
        if config.test_dir is not None
        else {"rule": "hash", "test_percent": config.test_percent, "seed": config.seed},
        "relative_to": None if config.relative_to is None else str(config.relative_to),
        "strict": config.strict,
        "check_media": config.check_media,
        "interval": config.interval.to_json(),
    }


def _write_incremental(
    config: EventDatasetConfig,
    folder: Path,
    found: RecordingSplits,
    report: EventDatasetReport,
    on_file: Callable[[FileResult], None] | None,
    previous: PreviousDataset,
    staging: Staging,
) -> None:
    """Convert what :func:`~owa.data.incremental.plan_update` leaves pending, one shard per recording, into the
    staging folder; lay ``folder`` out in full-rebuild order with every shard, reused or new."""
    recordings = {
        split: [(str(path), _stored_path(path, config.relative_to)) for path in found.files[split]]
        for split in ("train", "test")
    }
    plan = plan_update(
        recordings,
        settings=_row_settings(config),
        previous=previous,
        staging=staging,
        objects=found.objects,
        storage_options=config.storage_options,
    )
    if on_file is not None:
        for result in plan.reused():
            on_file(result)
    tasks = [_ShardTask(str(p.shard_path), p.split, ((p.source, p.stored),), config) for p in plan.pending]
    for pending, results in zip(plan.pending, _run_shards(tasks, config.resolved_workers()), strict=True):
        (result,) = results
        plan.completed(pending, result)
        if on_file is not None:
            on_file(result)
    listed, results = plan.lay_out(folder)
    for result in results:
        report.add(result)
    for split, names in listed.items():
        if not names:  # datasets cannot load a split of no shards
            names.append("empty.arrow")
            with pa.ipc.new_stream(str(folder / split / names[0]), _hf_schema(config.selects_intervals)):
                pass
    fingerprint = hashlib.sha256(json.dumps([plan.key, listed]).encode()).hexdigest()[:16]
    for split, names in listed.items():
        write_split_metadata(folder / split, names, config.features_dict(), fingerprint=fingerprint)
    report.incremental = plan.counts()
