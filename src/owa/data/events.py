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
* **Paths.** ``episode_path`` is absolute by default. With ``relative_to`` it is stored relative to that
  folder (move recordings and dataset together, then pass the new folder as ``episode_root`` to the
  transforms). The choice is saved in the report.
* **Bad input.** By default an unreadable file is skipped and a damaged one salvaged up to the damage;
  both are listed (reason, events kept) in the returned report (:mod:`owa.data.conversion_report`) and in
  ``conversion_report.json`` saved in the dataset folder. ``strict=True`` makes any problem fatal. The
  dataset folder is written atomically.
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
import signal
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from owa.data.atomic import atomic_output_dir, output_write_errors
from owa.data.conversion_report import REPORT_FILENAME, EventDatasetReport, FileResult, describe_damage
from owa.data.dataset_io import write_split_metadata
from owa.data.discovery import discover_recordings, split_recordings
from owa.data.errors import InvalidInputError, MessageValidationError, OWADataError, RecordingError
from owa.data.media_check import check_media
from owa.data.messages import MESSAGE_TYPES, ScreenCaptured, dump_mcap_message_json
from owa.data.metadata import DatasetMetadata, write_metadata
from owa.data.rate import DEFAULT_RATES_HZ, RAW_MOUSE_TYPE, RateLimiter, is_continuous_sample, parse_rates
from owa.data.recordings.reader import OWAMcapReader
from owa.data.schema import EVENT_FEATURES_DICT, arrow_schema, event_features
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

# The schema lives in owa.data.schema (kept as data: stage 1 and its workers never import ``datasets``).
_ARROW_SCHEMA = arrow_schema(EVENT_FEATURES_DICT)


@dataclasses.dataclass(frozen=True)
class EventDatasetConfig:
    """Everything stage 1 needs; the script, the CLI and the Python API all build this one object.

    ``rates_hz`` maps topic → maximum rate of continuous samples (Hz). ``test_percent`` is a fraction in
    ``[0, 1)`` used only without ``test_dir``. ``num_workers`` 0 means one per CPU core. ``check_media``
    opens each video the kept screen messages point to and checks their times (:mod:`owa.data.media_check`).
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
    check_media: bool = True

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


# --------------------------------------------------------------------------------------------------
# One file
# --------------------------------------------------------------------------------------------------


def _convert_file(task: tuple[str, str, str, EventDatasetConfig]) -> FileResult:
    """Read one recording into an Arrow table of kept events (runs in worker processes)."""
    path, stored_path, split, config = task
    result = FileResult(path=path, split=split)
    limiter = RateLimiter(config.rates_hz)
    media_refs: dict[str, list[int | None]] | None = {} if config.check_media else None
    topics: list[str] = []
    times: list[int] = []
    types: list[str] = []
    payloads: list[bytes] = []
    try:
        with OWAMcapReader(path, on_damage="raise" if config.strict else "salvage") as reader:
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
                data = limiter.admit(topic, timestamp_ns, message_type, payload, data, len(times))
                if data is None:
                    continue
                result.events_kept[topic] += 1
                if message_type == _SCREEN_TYPE and media_refs is not None and (ref := payload.get("media_ref")):
                    media_refs.setdefault(ref["uri"], []).append(ref.get("pts_ns"))
                topics.append(topic)
                times.append(timestamp_ns)
                types.append(message_type)
                payloads.append(dump_mcap_message_json(topic, timestamp_ns, message_type, data))
            for row, topic, timestamp_ns, data in limiter.leftover_motion():  # thinned raw motion at the end
                result.events_kept[topic] += 1
                topics.insert(row, topic)
                times.insert(row, timestamp_ns)
                types.insert(row, RAW_MOUSE_TYPE)
                payloads.insert(row, dump_mcap_message_json(topic, timestamp_ns, RAW_MOUSE_TYPE, data))
            result.bad_messages += reader.report.bad_messages  # payloads the reader could not normalize
            result.problem = describe_damage(reader.report, result) or None
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
    if media_refs:
        result.media_problems = check_media(path, media_refs)
        if result.media_problems and config.strict:
            raise result.media_problems[0].error
    return result


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def _stored_path(path: Path, relative_to: Path | None) -> str:
    if relative_to is None:
        return str(path)
    return os.path.relpath(path, relative_to.absolute())


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
        with tempfile.TemporaryDirectory(prefix="owa-events-") as scratch, output_write_errors(scratch, within=scratch):
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
    found = split_recordings(config.train_dir, config.test_dir, test_percent=config.test_percent, seed=config.seed)
    splits = found.files
    if not any(splits.values()):
        raise InvalidInputError("No .mcap recordings found", path=config.train_dir)
    report = EventDatasetReport(symlink_loops=[str(p) for p in found.loops])
    for split, duplicate, kept in found.duplicates:
        report.add_duplicate(str(duplicate), str(kept), split)
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
        recordings_root=os.path.abspath(root),
        created_by="owa.data.events",
    )
