"""Stage 1: recordings (``**/*.mcap``) → Event Dataset (one row per event, ``train``/``test`` splits).

The rules, in one place:

* **Topics.** Only ``keep_topics`` are read (the filter goes down into the reader).
* **Rates thin continuous samples only.** ``rates_hz={"mouse": 60}`` keeps a mouse *move* only when at
  least ``1/60`` s passed since the last kept move. Clicks, scrolls, key presses and releases are never
  dropped, and do not reset the clock. Continuous samples are: mouse moves, screen frames and relative raw
  mouse motion without button flags or wheel data. A thinned raw sample's motion (``last_x``/``last_y``) is
  added to the topic's next kept raw sample, and motion thinned after the episode's last kept one comes
  back as its last thinned sample, so per episode the raw motion sums to the recording's exactly. A rate
  on a topic without continuous samples (``keyboard``) thins nothing.
  Samples stamped in the same nanosecond as the last kept one count as the same instant and are kept
  (real recorders stamp bursts of moves with one clock tick), so a rate above the recorded rate keeps
  every message. ``inf`` means no limit.
* **Order.** Episodes are sorted by path; events are in log-time order within an episode. The result is
  the same for any ``num_workers``.
* **Splits.** ``test_dir`` gives the test split; otherwise a seeded fraction ``test_percent`` of the
  episodes (whole episodes, never events) goes to test. Train and test must not overlap.
* **Paths.** ``episode_path`` is absolute by default. With ``relative_to`` it is stored relative to that
  folder (move recordings and dataset together, then pass the new folder as ``episode_root`` to the
  transforms). The choice is saved in the report.
* **Bad input.** By default an unreadable file is skipped and a damaged one salvaged up to the damage;
  both are listed (reason, events kept) in the returned report and in ``conversion_report.json`` saved
  in the dataset folder. ``strict=True`` makes any problem fatal. The dataset folder is written
  atomically.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import multiprocessing
import os
import random
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from owa.data.atomic import atomic_output_dir
from owa.data.dataset_io import write_split_metadata
from owa.data.errors import InvalidInputError, MessageValidationError, OWADataError, RecordingError
from owa.data.messages import dump_mcap_message_json
from owa.data.recordings.reader import OWAMcapReader
from owa.data.schema import EVENT_FEATURES_DICT, arrow_schema, event_features

__all__ = [
    "EVENT_FEATURES_DICT",
    "EventDatasetConfig",
    "EventDatasetReport",
    "FileResult",
    "build_event_dataset",
    "discover_recordings",
    "event_features",
    "is_continuous_sample",
    "parse_rates",
    "write_event_dataset",
]

logger = logging.getLogger(__name__)

REPORT_FILENAME = "conversion_report.json"
DEFAULT_RATES_HZ: Mapping[str, float] = {"mouse": 60.0, "screen": 20.0}
DEFAULT_KEEP_TOPICS: tuple[str, ...] = ("screen", "keyboard", "mouse")


# The schema lives in owa.data.schema (kept as data: stage 1 and its workers never import ``datasets``).
_ARROW_SCHEMA = arrow_schema(EVENT_FEATURES_DICT)


@dataclasses.dataclass(frozen=True)
class EventDatasetConfig:
    """Everything stage 1 needs; the script, the CLI and the Python API all build this one object.

    ``rates_hz`` maps topic → maximum rate of continuous samples (Hz). ``test_percent`` is a fraction in
    ``[0, 1)`` used only without ``test_dir``. ``num_workers`` 0 means one per CPU core.
    """

    train_dir: Path
    output_dir: Path | None = None
    test_dir: Path | None = None
    rates_hz: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_RATES_HZ))
    keep_topics: tuple[str, ...] = DEFAULT_KEEP_TOPICS
    test_percent: float = 0.2
    seed: int = 0
    num_workers: int = 0
    strict: bool = False
    overwrite: bool = False
    relative_to: Path | None = None

    def __post_init__(self) -> None:
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

    def resolved_workers(self) -> int:
        return self.num_workers or os.cpu_count() or 1

    def to_json(self) -> dict[str, Any]:
        return {
            k: (str(v) if isinstance(v, Path) else dict(v) if isinstance(v, Mapping) else v)
            for k, v in dataclasses.asdict(self).items()
        }


@dataclasses.dataclass
class FileResult:
    """What one recording contributed. ``problem`` is None for a clean file."""

    path: str
    split: str
    events_read: Counter[str] = dataclasses.field(default_factory=Counter)
    events_kept: Counter[str] = dataclasses.field(default_factory=Counter)
    problem: str | None = None
    skipped: bool = False
    bad_messages: int = 0
    table: pa.Table | None = None

    @property
    def kept(self) -> int:
        return sum(self.events_kept.values())


@dataclasses.dataclass
class EventDatasetReport:
    """Totals of a run; :meth:`format_table` renders the end-of-run summary."""

    files: int = 0
    files_skipped: int = 0
    files_salvaged: int = 0
    events_read: Counter[str] = dataclasses.field(default_factory=Counter)
    events_kept: Counter[str] = dataclasses.field(default_factory=Counter)
    rows_per_split: dict[str, int] = dataclasses.field(default_factory=dict)
    problems: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def add(self, result: FileResult) -> None:
        self.files += 1
        self.events_read.update(result.events_read)
        self.events_kept.update(result.events_kept)
        self.rows_per_split[result.split] = self.rows_per_split.get(result.split, 0) + result.kept
        if result.problem is not None:
            self.files_skipped += result.skipped
            self.files_salvaged += not result.skipped
            self.problems.append(
                {
                    "file": result.path,
                    "split": result.split,
                    "action": "skipped" if result.skipped else "salvaged",
                    "reason": result.problem,
                    "events_kept": result.kept,
                }
            )

    def format_table(self) -> str:
        topics = sorted(set(self.events_read) | set(self.events_kept))
        lines = [f"{'topic':<16}{'read':>12}{'kept':>12}{'dropped by rate':>18}"]
        for topic in topics:
            read, kept = self.events_read[topic], self.events_kept[topic]
            lines.append(f"{topic:<16}{read:>12,}{kept:>12,}{read - kept:>18,}")
        read, kept = sum(self.events_read.values()), sum(self.events_kept.values())
        lines.append(f"{'total':<16}{read:>12,}{kept:>12,}{read - kept:>18,}")
        splits = ", ".join(f"{k}: {v:,} rows" for k, v in sorted(self.rows_per_split.items()))
        lines.append(
            f"files: {self.files:,} ({self.files_skipped} skipped, {self.files_salvaged} salvaged); {splits}; "
            f"{self.seconds:.1f}s"
        )
        for p in self.problems:
            lines.append(f"  {p['action']}: {p['file']} — {p['reason']} ({p['events_kept']} events kept)")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "files_skipped": self.files_skipped,
            "files_salvaged": self.files_salvaged,
            "events_read": dict(self.events_read),
            "events_kept": dict(self.events_kept),
            "dropped_by_rate": {t: self.events_read[t] - self.events_kept[t] for t in self.events_read},
            "rows_per_split": self.rows_per_split,
            "problems": self.problems,
            "seconds": round(self.seconds, 3),
        }


# --------------------------------------------------------------------------------------------------
# The rate rule (pure)
# --------------------------------------------------------------------------------------------------


_RAW_MOUSE = "desktop/RawMouseEvent"
_MOUSE_MOVE_ABSOLUTE = 0x01  # RAWMOUSE us_flags: last_x/last_y are a position, not a motion


def is_continuous_sample(message_type: str, payload: Mapping[str, Any]) -> bool:
    """True for samples that rate limiting may thin: mouse moves, screen frames, raw motion without buttons.

    ``payload`` is the message's parsed JSON object. A raw mouse sample is continuous only when it is
    relative motion and nothing else: no button flags, no wheel data (``button_data``), not absolute.
    """
    if message_type == "desktop/ScreenCaptured":
        return True
    if message_type == "desktop/MouseEvent":
        return payload.get("event_type") == "move"
    if message_type == _RAW_MOUSE:
        return not (
            payload.get("button_flags")
            or payload.get("button_data")
            or (payload.get("us_flags") or 0) & _MOUSE_MOVE_ABSOLUTE
        )
    return False


@dataclasses.dataclass(slots=True)
class _ThinnedMotion:
    """Relative motion of the raw mouse samples thinned since the topic's last kept one."""

    dx: int
    dy: int
    row: int  # where the last thinned sample would have gone among the kept rows
    timestamp_ns: int
    payload: dict[str, Any]


class RateLimiter:
    """Per-topic minimum spacing of continuous samples, in integer nanoseconds.

    Thinned raw mouse samples are relative motion, so their motion is not dropped with them
    (:meth:`admit`): it is added to the topic's next kept raw sample, and motion still thinned when the
    episode ends comes back as its last thinned sample (:meth:`leftover_motion`). Over an episode the sums
    of ``last_x`` and of ``last_y`` are then exactly the recording's. Use one limiter per episode.
    """

    def __init__(self, rates_hz: Mapping[str, float]) -> None:
        self._interval_ns = {topic: round(1e9 / rate) for topic, rate in rates_hz.items() if rate != math.inf}
        self._last_kept: dict[str, int] = {}
        self._thinned: dict[str, _ThinnedMotion] = {}

    def keep(self, topic: str, timestamp_ns: int, message_type: str, payload: Mapping[str, Any]) -> bool:
        """Whether to keep this message; ``payload`` is its parsed JSON object."""
        interval = self._interval_ns.get(topic)
        if interval is None or not is_continuous_sample(message_type, payload):
            return True
        last = self._last_kept.get(topic)
        # Samples stamped in the same nanosecond as the last kept one share its instant: the recorder's
        # clock could not tell them apart, so they are kept and do not move the clock.
        if last is not None and 0 < timestamp_ns - last < interval:
            return False
        self._last_kept[topic] = timestamp_ns
        return True

    def admit(
        self, topic: str, timestamp_ns: int, message_type: str, payload: dict[str, Any], data: bytes, row: int
    ) -> bytes | None:
        """:meth:`keep`, carrying thinned raw motion: None to drop, else the payload bytes to store.

        ``data`` is the message's payload bytes and ``payload`` their parsed object; ``row`` is the index the
        message takes among the kept rows if kept. A kept raw mouse sample after thinned ones is returned
        rewritten with their ``last_x``/``last_y`` added to its own.
        """
        kept = self.keep(topic, timestamp_ns, message_type, payload)
        if message_type != _RAW_MOUSE:
            return data if kept else None
        thinned = self._thinned.get(topic)
        if not kept:  # only relative motion is ever thinned (is_continuous_sample)
            dx, dy = int(payload.get("last_x") or 0), int(payload.get("last_y") or 0)
            if thinned is not None:
                dx, dy = dx + thinned.dx, dy + thinned.dy
            self._thinned[topic] = _ThinnedMotion(dx, dy, row, timestamp_ns, payload)
            return None
        if thinned is None:
            return data
        del self._thinned[topic]
        return _with_motion(
            payload, thinned.dx + int(payload.get("last_x") or 0), thinned.dy + int(payload.get("last_y") or 0)
        )

    def leftover_motion(self) -> list[tuple[int, str, int, bytes]]:
        """At the episode's end: ``(row, topic, timestamp_ns, payload bytes)`` per topic with motion still thinned.

        Each is the topic's last thinned raw sample, carrying all the motion thinned after the last kept
        one; insert it at ``row`` (rows in descending order, so earlier indices stay valid) to keep time order.
        """
        leftovers = [
            (t.row, topic, t.timestamp_ns, _with_motion(t.payload, t.dx, t.dy)) for topic, t in self._thinned.items()
        ]
        self._thinned.clear()
        return sorted(leftovers, key=lambda item: item[0], reverse=True)


def _with_motion(payload: dict[str, Any], dx: int, dy: int) -> bytes:
    return orjson.dumps({**payload, "last_x": dx, "last_y": dy})


# --------------------------------------------------------------------------------------------------
# One file
# --------------------------------------------------------------------------------------------------


def _convert_file(task: tuple[str, str, str, EventDatasetConfig]) -> FileResult:
    """Read one recording into an Arrow table of kept events (runs in worker processes)."""
    path, stored_path, split, config = task
    result = FileResult(path=path, split=split)
    limiter = RateLimiter(config.rates_hz)
    topics: list[str] = []
    times: list[int] = []
    types: list[str] = []
    payloads: list[bytes] = []
    try:
        with OWAMcapReader(path, on_damage="raise" if config.strict else "salvage") as reader:
            for topic, timestamp_ns, message_type, data in reader.iter_messages(config.keep_topics):
                result.events_read[topic] += 1
                # Validate at the edge: every stored payload is a UTF-8 JSON object (orjson checks both).
                try:
                    payload = orjson.loads(data)
                    if type(payload) is not dict:
                        raise TypeError(f"payload is a JSON {type(payload).__name__}, not an object")
                except (orjson.JSONDecodeError, TypeError) as e:
                    error = MessageValidationError(
                        f"Invalid {message_type} payload: {e}", path=path, topic=topic, timestamp_ns=timestamp_ns
                    )
                    if config.strict:
                        raise error from e
                    logger.warning("Skipping bad message: %s", error)
                    result.bad_messages += 1
                    continue
                data = limiter.admit(topic, timestamp_ns, message_type, payload, data, len(times))
                if data is None:
                    continue
                result.events_kept[topic] += 1
                topics.append(topic)
                times.append(timestamp_ns)
                types.append(message_type)
                payloads.append(dump_mcap_message_json(topic, timestamp_ns, message_type, data))
            for row, topic, timestamp_ns, data in limiter.leftover_motion():  # thinned raw motion at the end
                result.events_kept[topic] += 1
                topics.insert(row, topic)
                times.insert(row, timestamp_ns)
                types.insert(row, _RAW_MOUSE)
                payloads.insert(row, dump_mcap_message_json(topic, timestamp_ns, _RAW_MOUSE, data))
            report = reader.report
            report.bad_messages += result.bad_messages
            if report.damaged or report.bad_messages:
                result.problem = _describe_damage(report)
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
    if not times:
        result.problem = result.problem or f"no events on topics {', '.join(config.keep_topics)}"
        result.skipped = True
        return result
    n = len(times)
    result.table = pa.Table.from_arrays(
        [
            pa.array([stored_path] * n, pa.string()),
            pa.array(topics, pa.string()),
            pa.array(times, pa.int64()),
            pa.array(types, pa.string()),
            pa.array(payloads, pa.binary()),
        ],
        schema=_ARROW_SCHEMA,
    )
    return result


def _describe_damage(report: Any) -> str:
    parts = []
    if report.damaged:
        parts.append(f"damaged at byte {report.offset}: {report.error}")
    if report.chunks_skipped:
        parts.append(f"{report.chunks_skipped} corrupt chunk(s) skipped")
    if report.bad_messages:
        parts.append(f"{report.bad_messages} bad message(s) skipped")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------------
# Discovery and splits
# --------------------------------------------------------------------------------------------------


def discover_recordings(root: str | os.PathLike[str]) -> list[Path]:
    """All ``*.mcap`` files under ``root``, recursively, sorted by path.

    Raises:
        InvalidInputError: ``root`` is not a folder.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        raise InvalidInputError("Recordings folder does not exist or is not a folder", path=root_path)
    return sorted(Path(os.path.abspath(p)) for p in root_path.rglob("*.mcap") if p.is_file())


def _split_files(config: EventDatasetConfig) -> dict[str, list[Path]]:
    train = discover_recordings(config.train_dir)
    if config.test_dir is not None:
        test = discover_recordings(config.test_dir)
        overlap = {p.resolve() for p in train} & {p.resolve() for p in test}
        if overlap:
            raise InvalidInputError(
                f"Train and test share {len(overlap)} recording(s), e.g. {sorted(overlap)[0]}; they must not overlap",
                path=config.test_dir,
            )
        return {"train": train, "test": test}
    shuffled = list(train)
    random.Random(config.seed).shuffle(shuffled)
    n_test = round(len(shuffled) * config.test_percent)
    if len(shuffled) > 1:  # both splits get at least one episode when there are two
        n_test = min(max(n_test, 1 if config.test_percent > 0 else 0), len(shuffled) - 1)
    test_set = set(shuffled[:n_test])
    return {"train": [p for p in train if p not in test_set], "test": sorted(test_set)}


def _stored_path(path: Path, relative_to: Path | None) -> str:
    if relative_to is None:
        return str(path)
    return os.path.relpath(path, relative_to.absolute())


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


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


def _plan_shards(splits: Mapping[str, Sequence[Path]], config: EventDatasetConfig, folder: Path) -> list[_ShardTask]:
    """Group each split's sorted recordings into contiguous shards by input size.

    The plan depends only on the files, never on the worker count, so the output is identical for any
    ``num_workers``. Small shards keep workers balanced and progress smooth.
    """
    tasks: list[_ShardTask] = []
    for split in ("train", "test"):
        groups: list[list[Path]] = [[]]
        size = 0
        for path in splits[split]:
            if groups[-1] and (size >= _SHARD_INPUT_BYTES or len(groups[-1]) >= _SHARD_MAX_FILES):
                groups.append([])
                size = 0
            groups[-1].append(path)
            size += path.stat().st_size
        for i, group in enumerate(groups):
            name = f"data-{i:05d}-of-{len(groups):05d}.arrow"
            files = tuple((str(p), _stored_path(p, config.relative_to)) for p in group)
            tasks.append(_ShardTask(str(folder / split / name), split, files, config))
    return tasks


def _write_shard(task: _ShardTask) -> list[FileResult]:
    """Convert a shard's recordings and stream their rows into its Arrow file (runs in workers)."""
    results = []
    with pa.ipc.new_stream(task.shard_path, _hf_schema()) as writer:
        for path, stored in task.files:
            result = _convert_file((path, stored, task.split, task.config))
            if result.table is not None:
                writer.write_table(result.table.replace_schema_metadata(_hf_schema().metadata))
                result.table = None
            results.append(result)
    return results


@functools.cache
def _hf_schema() -> pa.Schema:
    """The Arrow schema with the ``datasets`` features in its metadata, as ``save_to_disk`` writes it."""
    return _ARROW_SCHEMA.with_metadata({"huggingface": json.dumps({"info": {"features": EVENT_FEATURES_DICT}})})


def _run_shards(tasks: Sequence[_ShardTask], workers: int) -> Iterator[list[FileResult]]:
    """Shard results in plan order; a process pool when more than one worker and shard."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(_write_shard, tasks)
        return
    # fork: starts in milliseconds and works from notebooks and `python -c`; the parent has done no
    # threaded work yet when the pool starts. Elsewhere spawn (then the caller needs a __main__ guard).
    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with context.Pool(min(workers, len(tasks)), initializer=_worker_signals) as pool:
        yield from pool.imap(_write_shard, tasks)


def _worker_signals() -> None:
    # Interrupts are the parent's to handle: it terminates the pool and removes the partial output.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


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
        with tempfile.TemporaryDirectory(prefix="owa-events-") as scratch:
            report = _write(config, Path(scratch), on_file)
            result = datasets.load_from_disk(scratch, keep_in_memory=True)
    else:
        report = write_event_dataset(config, on_file=on_file)
        result = datasets.load_from_disk(str(config.output_dir))
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

    Raises:
        ValueError: ``config.output_dir`` is None.
        InvalidInputError (a DatasetError): missing folders, overlapping splits, no recordings found.
        OutputExistsError: output exists and ``config.overwrite`` is False.
        OWADataError: any bad recording when ``config.strict``.
    """
    if config.output_dir is None:
        raise ValueError("Invalid output_dir (None). write_event_dataset needs a folder; use build_event_dataset.")
    with atomic_output_dir(config.output_dir, overwrite=config.overwrite) as tmp:
        report = _write(config, tmp, on_file)
        (tmp / REPORT_FILENAME).write_text(
            json.dumps({"config": config.to_json(), "report": report.to_json()}, indent=2, ensure_ascii=False)
        )
    return report


def _write(
    config: EventDatasetConfig, folder: Path, on_file: Callable[[FileResult], None] | None
) -> EventDatasetReport:
    """Plan the shards, run them (in workers), write the dataset metadata into ``folder``."""
    started = time.perf_counter()
    splits = _split_files(config)
    if not any(splits.values()):
        raise InvalidInputError("No .mcap recordings found", path=config.train_dir)
    report = EventDatasetReport()
    tasks = _plan_shards(splits, config, folder)
    for split in ("train", "test"):
        (folder / split).mkdir()
    for results in _run_shards(tasks, config.resolved_workers()):
        for result in results:
            report.add(result)
            if on_file is not None:
                on_file(result)
    fingerprint = hashlib.sha256(repr(tasks).encode()).hexdigest()[:16]
    for split in ("train", "test"):
        shards = [Path(t.shard_path).name for t in tasks if t.split == split]
        write_split_metadata(folder / split, shards, EVENT_FEATURES_DICT, fingerprint=fingerprint)
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    report.seconds = time.perf_counter() - started
    return report


def parse_rates(values: Iterable[str]) -> dict[str, float]:
    """Parse ``topic=Hz`` strings (the ``--rate`` flag), on top of the defaults.

    Raises:
        ValueError: a malformed item, with a one-line message.
    """
    rates = dict(DEFAULT_RATES_HZ)
    for value in values:
        topic, sep, hz = value.partition("=")
        try:
            rate = float(hz)
        except ValueError:
            rate = math.nan
        if not sep or not topic or math.isnan(rate) or rate <= 0:
            raise ValueError(f"Invalid --rate {value!r}. Use topic=Hz with a positive number (or inf), e.g. mouse=60.")
        rates[topic] = rate
    return rates
