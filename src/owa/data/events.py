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
* **Discovery.** ``*.mcap`` files are found recursively, following symlinked folders; a symlink that leads
  back to a folder it sits in (a loop) is not followed, and is logged and listed in the report. A recording
  reached twice (symlink or hardlink: the same ``st_dev``/``st_ino``) is converted once, under the first of
  its paths in sorted order, and the other paths are listed as duplicates.
* **Order.** Episodes are sorted by path; events are in log-time order within an episode. The result is
  the same for any ``num_workers``.
* **Splits.** ``test_dir`` gives the test split; otherwise a seeded fraction ``test_percent`` of the
  episodes (whole episodes, never events) goes to test. A recording is never in both: with ``test_dir``,
  one file reachable from both folders is a :class:`DatasetError` naming it.
* **Validation.** Every kept row passes the typed message model of its type (:mod:`owa.data.messages`, as
  the encoders check it), so a dataset never holds a row that fails later at tokenization. Rows that fail
  are counted per recording with examples (topic, timestamp, reason); rows of an unknown message type are
  counted by (type, topic). ``strict=True`` makes the first one fatal (:class:`MessageValidationError`).
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
from typing import Any, get_args

import orjson
import pyarrow as pa
from pydantic import ValidationError

from owa.data.atomic import atomic_output_dir
from owa.data.dataset_io import write_split_metadata
from owa.data.errors import InvalidInputError, MessageValidationError, OWADataError, RecordingError
from owa.data.messages import (
    MESSAGE_TYPES,
    KeyboardEvent,
    MediaRef,
    MouseButton,
    MouseEvent,
    RawMouseEvent,
    ScreenCaptured,
    dump_mcap_message_json,
)
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
    bad_examples: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # the first few, see MAX_EXAMPLES
    unknown_types: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)  # (message_type, topic)
    events_invalid: Counter[str] = dataclasses.field(default_factory=Counter)  # bad or unknown type, per topic
    table: pa.Table | None = None

    @property
    def kept(self) -> int:
        return sum(self.events_kept.values())

    def reject_unknown(self, topic: str, message_type: str) -> None:
        """Count a row of a message type no typed model describes; it does not enter the dataset."""
        self.events_invalid[topic] += 1
        self.unknown_types[(message_type, topic)] += 1

    def reject_bad(self, error: MessageValidationError, message_type: str) -> None:
        """Count a row whose payload its typed model rejects (listed up to ``MAX_EXAMPLES``); it is dropped."""
        assert error.topic is not None and error.timestamp_ns is not None
        self.events_invalid[error.topic] += 1
        self.bad_messages += 1
        if len(self.bad_examples) < MAX_EXAMPLES:
            logger.warning("Skipping bad message: %s", error)
            self.bad_examples.append(
                {
                    "topic": error.topic,
                    "timestamp_ns": error.timestamp_ns,
                    "message_type": message_type,
                    "reason": error.reason,
                }
            )


@dataclasses.dataclass
class EventDatasetReport:
    """Totals of a run; :meth:`format_table` renders the end-of-run summary."""

    files: int = 0
    files_skipped: int = 0
    files_salvaged: int = 0
    files_duplicate: int = 0
    events_read: Counter[str] = dataclasses.field(default_factory=Counter)
    events_kept: Counter[str] = dataclasses.field(default_factory=Counter)
    events_invalid: Counter[str] = dataclasses.field(default_factory=Counter)
    rows_per_split: dict[str, int] = dataclasses.field(default_factory=dict)
    problems: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    symlink_loops: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def add(self, result: FileResult) -> None:
        self.files += 1
        self.events_read.update(result.events_read)
        self.events_kept.update(result.events_kept)
        self.events_invalid.update(result.events_invalid)
        self.rows_per_split[result.split] = self.rows_per_split.get(result.split, 0) + result.kept
        if result.problem is not None:
            self.files_skipped += result.skipped
            self.files_salvaged += not result.skipped
            problem: dict[str, Any] = {
                "file": result.path,
                "split": result.split,
                "action": "skipped" if result.skipped else "salvaged",
                "reason": result.problem,
                "events_kept": result.kept,
            }
            if result.bad_messages:
                problem["bad_messages"] = result.bad_messages
                problem["bad_message_examples"] = result.bad_examples
            if result.unknown_types:
                problem["unknown_types"] = [
                    {"message_type": message_type, "topic": topic, "count": count}
                    for (message_type, topic), count in sorted(result.unknown_types.items())
                ]
            self.problems.append(problem)

    def add_duplicate(self, path: str, kept: str, split: str) -> None:
        """List ``path``, not converted because it is the same file as ``kept``."""
        self.files_duplicate += 1
        self.problems.append(
            {"file": path, "split": split, "action": "duplicate", "reason": f"same file as {kept}", "events_kept": 0}
        )

    def dropped_by_rate(self, topic: str) -> int:
        return self.events_read[topic] - self.events_kept[topic] - self.events_invalid[topic]

    def format_table(self) -> str:
        topics = sorted(set(self.events_read) | set(self.events_kept))
        lines = [f"{'topic':<16}{'read':>12}{'kept':>12}{'invalid':>10}{'dropped by rate':>18}"]
        for topic in topics:
            read, kept, bad = self.events_read[topic], self.events_kept[topic], self.events_invalid[topic]
            lines.append(f"{topic:<16}{read:>12,}{kept:>12,}{bad:>10,}{self.dropped_by_rate(topic):>18,}")
        read, kept = sum(self.events_read.values()), sum(self.events_kept.values())
        bad = sum(self.events_invalid.values())
        lines.append(f"{'total':<16}{read:>12,}{kept:>12,}{bad:>10,}{read - kept - bad:>18,}")
        splits = ", ".join(f"{k}: {v:,} rows" for k, v in sorted(self.rows_per_split.items()))
        lines.append(
            f"files: {self.files:,} ({self.files_skipped} skipped, {self.files_salvaged} salvaged, "
            f"{self.files_duplicate} duplicate); {splits}; {self.seconds:.1f}s"
        )
        for p in self.problems:
            lines.append(f"  {p['action']}: {p['file']} — {p['reason']} ({p['events_kept']} events kept)")
            lines.extend(
                f"      {e['topic']} @ {e['timestamp_ns']} ({e['message_type']}): {e['reason']}"
                for e in p.get("bad_message_examples", ())
            )
        lines.extend(f"  symlink loop not followed: {path}" for path in self.symlink_loops)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "files_skipped": self.files_skipped,
            "files_salvaged": self.files_salvaged,
            "files_duplicate": self.files_duplicate,
            "events_read": dict(self.events_read),
            "events_kept": dict(self.events_kept),
            "events_invalid": dict(self.events_invalid),
            "dropped_by_rate": {t: self.dropped_by_rate(t) for t in self.events_read},
            "rows_per_split": self.rows_per_split,
            "problems": self.problems,
            "symlink_loops": self.symlink_loops,
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
                # Validate at the edge, before the rate rule (a bad row must not move its clock): a known
                # message type whose payload is a UTF-8 JSON object (orjson checks both) that its typed
                # model accepts. The fast check passes the common well-formed payloads; pydantic decides
                # the rest, so the verdict is always the model's.
                fast_check = _FAST_CHECKS.get(message_type)
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
                    payload = orjson.loads(data)
                    if type(payload) is not dict:
                        raise TypeError(f"payload is a JSON {type(payload).__name__}, not an object")
                    if not fast_check(payload):
                        _validate_with_model(message_type, data)
                except (orjson.JSONDecodeError, TypeError, ValueError) as e:
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
            result.bad_messages += reader.report.bad_messages  # payloads the reader could not normalize
            result.problem = _describe_damage(reader.report, result) or None
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


def _describe_damage(report: Any, result: FileResult) -> str:
    parts = []
    if report.damaged:
        parts.append(f"damaged at byte {report.offset}: {report.error}")
    if report.chunks_skipped:
        parts.append(f"{report.chunks_skipped} corrupt chunk(s) skipped")
    if result.bad_messages:
        parts.append(f"{result.bad_messages} bad message(s) skipped")
    if result.unknown_types:
        listed = ", ".join(f"{t} on {topic} ({n})" for (t, topic), n in sorted(result.unknown_types.items()))
        parts.append(f"{result.unknown_types.total()} message(s) of unknown type skipped: {listed}")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------------
# Typed validation (the hot path)
# --------------------------------------------------------------------------------------------------

# Up to this many bad rows per recording are listed (and logged) with topic, timestamp and reason; all
# are counted.
MAX_EXAMPLES = 5

# The fast checks below accept only payloads their model surely accepts (plain JSON ints and bools, known
# keys, allowed literals); anything else goes to the model, which decides. They read the models' own
# field names and literals, so a change to a model cannot make them accept more than it does.
_KEYBOARD_KEYS = frozenset(KeyboardEvent.model_fields)
_KEY_EVENT_TYPES = get_args(KeyboardEvent.model_fields["event_type"].annotation)
_MOUSE_KEYS = frozenset(MouseEvent.model_fields)
_MOUSE_EVENT_TYPES = get_args(MouseEvent.model_fields["event_type"].annotation)
_MOUSE_BUTTONS = get_args(MouseButton)
_RAW_MOUSE_KEYS = frozenset(RawMouseEvent.model_fields)
_SCREEN_KEYS = frozenset(ScreenCaptured.model_fields)
_MEDIA_REF_KEYS = frozenset(MediaRef.model_fields)


def _int_or_none(value: Any) -> bool:
    return value is None or type(value) is int


def _keyboard_ok(p: dict[str, Any]) -> bool:
    # Tuples, not sets: ``in`` compares with ==, so an unhashable JSON value cannot raise.
    return (
        type(p.get("vk")) is int
        and p.get("event_type") in _KEY_EVENT_TYPES
        and (len(p) == 2 or (p.keys() <= _KEYBOARD_KEYS and _int_or_none(p.get("timestamp"))))
    )


def _mouse_ok(p: dict[str, Any]) -> bool:
    if type(p.get("x")) is not int or type(p.get("y")) is not int or p.get("event_type") not in _MOUSE_EVENT_TYPES:
        return False
    if len(p) == 3:  # a move: exactly event_type, x and y
        return True
    button, pressed = p.get("button"), p.get("pressed")
    return (
        p.keys() <= _MOUSE_KEYS
        and (button is None or button in _MOUSE_BUTTONS)
        and (pressed is None or type(pressed) is bool)
        and _int_or_none(p.get("dx"))
        and _int_or_none(p.get("dy"))
        and _int_or_none(p.get("timestamp"))
    )


def _raw_mouse_ok(p: dict[str, Any]) -> bool:
    return (
        type(p.get("last_x")) is int
        and type(p.get("last_y")) is int
        and p.keys() <= _RAW_MOUSE_KEYS
        and type(p.get("us_flags", 0)) is int
        and type(p.get("button_flags", 0)) is int
        and type(p.get("button_data", 0)) is int
        and _int_or_none(p.get("device_handle"))
        and _int_or_none(p.get("timestamp"))
    )


def _screen_ok(p: dict[str, Any]) -> bool:
    if not (p.keys() <= _SCREEN_KEYS and _int_or_none(p.get("utc_ns"))):
        return False
    for key in ("shape", "source_shape"):
        value = p.get(key)
        if value is not None and not (
            type(value) is list and len(value) == 2 and type(value[0]) is int and type(value[1]) is int
        ):
            return False
    ref = p.get("media_ref")
    return ref is None or (
        type(ref) is dict
        and type(ref.get("uri")) is str
        and ref.keys() <= _MEDIA_REF_KEYS
        and _int_or_none(ref.get("pts_ns"))
    )


def _model_decides(p: dict[str, Any]) -> bool:
    return False  # rare types (window, state): pydantic validates every one


_FAST_CHECKS: dict[str, Callable[[dict[str, Any]], bool]] = {
    message_type: {
        KeyboardEvent.message_type: _keyboard_ok,
        MouseEvent.message_type: _mouse_ok,
        RawMouseEvent.message_type: _raw_mouse_ok,
        ScreenCaptured.message_type: _screen_ok,
    }.get(message_type, _model_decides)
    for message_type in MESSAGE_TYPES
}


def _validate_with_model(message_type: str, data: bytes) -> None:
    """Validate ``data`` with its typed model, as ``decode_payload`` and the encoders do.

    Raises:
        ValueError: the model rejects it, with a one-line reason per field (``vk: Field required``).
    """
    try:
        MESSAGE_TYPES[message_type].model_validate_json(data)
    except ValidationError as e:
        reasons = []
        for err in e.errors(include_url=False):
            where = ".".join(str(part) for part in err["loc"]) or "payload"
            got = "" if err["type"] in ("missing", "extra_forbidden") else f" (got {err['input']!r:.40})"
            reasons.append(f"{where}: {err['msg']}{got}")
        raise ValueError("; ".join(reasons)) from e


# --------------------------------------------------------------------------------------------------
# Discovery and splits
# --------------------------------------------------------------------------------------------------


def discover_recordings(root: str | os.PathLike[str]) -> list[Path]:
    """Every recording (``*.mcap`` file) under ``root`` once, recursively, sorted by path.

    Symlinked folders are followed, except one that leads back to a folder it sits in (a loop, logged and
    cut). A file reached by several paths (symlinks, hardlinks) is listed once, under the first of them in
    sorted order. Paths are absolute with symlinks kept (``os.path.abspath``), as the caller reached them.

    Raises:
        InvalidInputError: ``root`` is not a folder.
    """
    return _find_recordings(root).files


@dataclasses.dataclass
class _Found:
    """What a walk found: each recording once, and what it did not list."""

    files: list[Path]
    identity: dict[Path, tuple[int, int]]  # file -> (st_dev, st_ino)
    duplicates: list[tuple[Path, Path]]  # (path not listed, the listed path of the same file)
    loops: list[Path]  # symlinks not followed, each once: each leads back to a folder it sits in


def _find_recordings(root: str | os.PathLike[str]) -> _Found:
    root_path = Path(os.path.abspath(root))
    if not root_path.is_dir():
        raise InvalidInputError("Recordings folder does not exist or is not a folder", path=root_path)
    root_stat = root_path.stat()
    by_identity: dict[tuple[int, int], list[Path]] = {}
    loops: dict[tuple[int, int], list[Path]] = {}  # the link's own identity -> the paths it was met by
    # Depth-first with the identities of the folders above each one: a folder that is its own ancestor is
    # a loop. A folder reached twice otherwise (two links to one folder) is walked twice and its files
    # come out as duplicates.
    stack: list[tuple[str, frozenset[tuple[int, int]]]] = [
        (str(root_path), frozenset({(root_stat.st_dev, root_stat.st_ino)}))
    ]
    while stack:
        folder, ancestors = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as e:
            logger.warning("Cannot list %s (%s); recordings inside it are not included", folder, e)
            continue
        for entry in entries:
            try:
                if entry.is_dir():  # follows symlinks
                    st = entry.stat()
                    identity = (st.st_dev, st.st_ino)
                    if identity in ancestors:
                        link = entry.stat(follow_symlinks=False)
                        loops.setdefault((link.st_dev, link.st_ino), []).append(Path(entry.path))
                    else:
                        stack.append((entry.path, ancestors | {identity}))
                elif entry.name.endswith(".mcap") and entry.is_file():
                    st = entry.stat()
                    by_identity.setdefault((st.st_dev, st.st_ino), []).append(Path(entry.path))
            except OSError:  # vanished while walking, or a broken link: nothing to read
                continue
    identity: dict[Path, tuple[int, int]] = {}
    duplicates: list[tuple[Path, Path]] = []
    for key, paths in by_identity.items():
        first, *others = sorted(paths)
        identity[first] = key
        duplicates.extend((other, first) for other in others)
    cut = sorted(min(paths) for paths in loops.values())
    for path in cut:
        logger.warning("Not following %s: a symlink loop back to a folder it sits in", path)
    return _Found(sorted(identity), identity, sorted(duplicates), cut)


@dataclasses.dataclass
class _Splits:
    files: dict[str, list[Path]]
    duplicates: list[tuple[str, Path, Path]]  # (split, path not converted, the converted path of that file)
    loops: list[Path]


def _split_files(config: EventDatasetConfig) -> _Splits:
    train = _find_recordings(config.train_dir)
    if config.test_dir is not None:
        test = _find_recordings(config.test_dir)
        in_train = {identity: path for path, identity in train.identity.items()}
        shared = [(path, in_train[test.identity[path]]) for path in test.files if test.identity[path] in in_train]
        if shared:
            test_path, train_path = shared[0]
            raise InvalidInputError(
                f"Train and test share {len(shared)} recording(s), e.g. {test_path} is the same file as "
                f"{train_path} in train; they must not overlap",
                path=test_path,
            )
        return _Splits(
            {"train": train.files, "test": test.files},
            [("train", *d) for d in train.duplicates] + [("test", *d) for d in test.duplicates],
            train.loops + test.loops,
        )
    shuffled = list(train.files)
    random.Random(config.seed).shuffle(shuffled)
    n_test = round(len(shuffled) * config.test_percent)
    if len(shuffled) > 1:  # both splits get at least one episode when there are two
        n_test = min(max(n_test, 1 if config.test_percent > 0 else 0), len(shuffled) - 1)
    test_set = set(shuffled[:n_test])
    files = {"train": [p for p in train.files if p not in test_set], "test": sorted(test_set)}
    duplicates = [("test" if kept in test_set else "train", dup, kept) for dup, kept in train.duplicates]
    return _Splits(files, duplicates, train.loops)


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
    found = _split_files(config)
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
