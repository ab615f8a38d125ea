"""What stage 1 reports: per recording (:class:`FileResult`) and for the run (:class:`EventDatasetReport`).

The report is returned by the stage-1 functions, rendered at the end of a CLI run
(:meth:`EventDatasetReport.format_table`) and saved as ``conversion_report.json`` in the dataset folder
(:meth:`EventDatasetReport.to_json`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from typing import Any

import pyarrow as pa

from owa.data.errors import MessageValidationError
from owa.data.media_check import MediaProblem
from owa.data.recordings.reader import ReadReport

__all__ = ["MAX_EXAMPLES", "REPORT_FILENAME", "EventDatasetReport", "FileResult", "describe_damage"]

logger = logging.getLogger(__name__)

REPORT_FILENAME = "conversion_report.json"

# Up to this many bad rows per recording are listed (and logged) with topic, timestamp and reason; all
# are counted.
MAX_EXAMPLES = 5


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
    media_problems: list[MediaProblem] = dataclasses.field(default_factory=list)  # see owa.data.media_check
    # With an interval selector (owa.data.intervals): valid events outside the spans, per topic; the spans
    # kept, ``interval`` i being spans[i]; and the recording's first and last event. None without a selector.
    events_outside: Counter[str] = dataclasses.field(default_factory=Counter)
    spans: list[tuple[int, int]] | None = None
    extent_ns: tuple[int, int] | None = None
    table: pa.Table | None = None

    @property
    def kept(self) -> int:
        return sum(self.events_kept.values())

    def interval_summary(self) -> dict[str, Any] | None:
        """Seconds and events kept and dropped by the interval selector, or None without one.

        Seconds are the recording's time (first to last event) inside and outside the kept spans; events are
        its valid events inside the spans (before the rate rule) and outside them.
        """
        if self.spans is None:
            return None
        first, last = self.extent_ns or (0, 0)
        kept_ns = sum(end - start for start, end in self.spans)
        inside = sum(self.events_read.values()) - sum(self.events_invalid.values()) - self.events_outside.total()
        return {
            "file": self.path,
            "split": self.split,
            "spans": [[start, end] for start, end in self.spans],
            "seconds_kept": round(kept_ns / 1e9, 3),
            "seconds_dropped": round((last - first - kept_ns) / 1e9, 3),
            "events_kept": inside,
            "events_dropped": self.events_outside.total(),
        }

    def to_json(self) -> dict[str, Any]:
        """Everything but the rows, as JSON: what an incremental run stores to report a reused recording again."""
        return {
            "path": self.path,
            "split": self.split,
            "events_read": dict(self.events_read),
            "events_kept": dict(self.events_kept),
            "problem": self.problem,
            "skipped": self.skipped,
            "bad_messages": self.bad_messages,
            "bad_examples": self.bad_examples,
            "unknown_types": [[message_type, topic, n] for (message_type, topic), n in self.unknown_types.items()],
            "events_invalid": dict(self.events_invalid),
            "media_problems": [p.to_json() for p in self.media_problems],
            "events_outside": dict(self.events_outside),
            "spans": None if self.spans is None else [list(span) for span in self.spans],
            "extent_ns": None if self.extent_ns is None else list(self.extent_ns),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileResult:
        """The result :meth:`to_json` saved (without rows)."""
        return cls(
            path=data["path"],
            split=data["split"],
            events_read=Counter(data["events_read"]),
            events_kept=Counter(data["events_kept"]),
            problem=data["problem"],
            skipped=data["skipped"],
            bad_messages=data["bad_messages"],
            bad_examples=list(data["bad_examples"]),
            unknown_types=Counter({(t, topic): n for t, topic, n in data["unknown_types"]}),
            events_invalid=Counter(data["events_invalid"]),
            media_problems=[MediaProblem.from_json(p) for p in data["media_problems"]],
            events_outside=Counter(data.get("events_outside") or {}),
            spans=None if data.get("spans") is None else [(start, end) for start, end in data["spans"]],
            extent_ns=None if data.get("extent_ns") is None else tuple(data["extent_ns"]),
        )

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
    media: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # per recording with media problems
    events_outside: Counter[str] = dataclasses.field(default_factory=Counter)  # outside the selected intervals
    intervals: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # per recording, with a selector
    seconds: float = 0.0
    # An incremental run (owa.data.incremental): recordings converted, reused from earlier runs, and removed.
    incremental: dict[str, int] | None = None

    def add(self, result: FileResult) -> None:
        self.files += 1
        self.events_read.update(result.events_read)
        self.events_kept.update(result.events_kept)
        self.events_invalid.update(result.events_invalid)
        self.events_outside.update(result.events_outside)
        if (summary := result.interval_summary()) is not None:
            self.intervals.append(summary)
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
        if result.media_problems:
            self.media.append(
                {"file": result.path, "split": result.split, "problems": [p.to_json() for p in result.media_problems]}
            )

    def media_totals(self) -> dict[str, int]:
        """Videos missing, videos that cannot be opened, screen messages outside their video: over all recordings."""
        totals = {"videos_missing": 0, "videos_unreadable": 0, "screen_messages_out_of_range": 0}
        for entry in self.media:
            for problem in entry["problems"]:
                if problem["kind"] == "out_of_range":
                    totals["screen_messages_out_of_range"] += problem["screen_messages"]
                else:
                    totals[f"videos_{problem['kind']}"] += 1
        return totals

    def add_duplicate(self, path: str, kept: str, split: str) -> None:
        """List ``path``, not converted because it is the same file as ``kept``."""
        self.files_duplicate += 1
        self.problems.append(
            {"file": path, "split": split, "action": "duplicate", "reason": f"same file as {kept}", "events_kept": 0}
        )

    def dropped_by_rate(self, topic: str) -> int:
        return (
            self.events_read[topic] - self.events_kept[topic] - self.events_invalid[topic] - self.events_outside[topic]
        )

    def interval_totals(self) -> dict[str, float | int]:
        """Seconds and events kept and dropped by the interval selector, over all recordings."""
        totals: dict[str, float | int] = {
            "seconds_kept": 0.0,
            "seconds_dropped": 0.0,
            "events_kept": 0,
            "events_dropped": 0,
        }
        for entry in self.intervals:
            for name in totals:
                totals[name] += entry[name]
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in totals.items()}

    def format_table(self) -> str:
        topics = sorted(set(self.events_read) | set(self.events_kept))
        selecting = bool(self.intervals)  # the column only with an interval selector
        outside = f"{'outside intervals':>19}" if selecting else ""
        lines = [f"{'topic':<16}{'read':>12}{'kept':>12}{'invalid':>10}{outside}{'dropped by rate':>18}"]
        for topic in topics:
            read, kept, bad = self.events_read[topic], self.events_kept[topic], self.events_invalid[topic]
            outside = f"{self.events_outside[topic]:>19,}" if selecting else ""
            lines.append(f"{topic:<16}{read:>12,}{kept:>12,}{bad:>10,}{outside}{self.dropped_by_rate(topic):>18,}")
        read, kept = sum(self.events_read.values()), sum(self.events_kept.values())
        bad, out = sum(self.events_invalid.values()), self.events_outside.total()
        outside = f"{out:>19,}" if selecting else ""
        lines.append(f"{'total':<16}{read:>12,}{kept:>12,}{bad:>10,}{outside}{read - kept - bad - out:>18,}")
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
        if selecting:
            t = self.interval_totals()
            lines.append(
                f"intervals: {t['seconds_kept']:,.1f} s kept, {t['seconds_dropped']:,.1f} s dropped; "
                f"{t['events_kept']:,} events kept, {t['events_dropped']:,} dropped"
            )
            lines.extend(
                f"  intervals: {e['file']} — {len(e['spans'])} span(s), {e['seconds_kept']:,.1f} s kept, "
                f"{e['seconds_dropped']:,.1f} s dropped; {e['events_kept']:,} events kept, "
                f"{e['events_dropped']:,} dropped"
                for e in self.intervals
            )
        if self.media:
            totals = self.media_totals()
            lines.append(
                f"media: {totals['videos_missing']} video(s) missing, {totals['videos_unreadable']} cannot be opened, "
                f"{totals['screen_messages_out_of_range']} screen message(s) outside their video"
            )
            for entry in self.media:
                lines.extend(f"  media: {entry['file']} — {p['summary']}" for p in entry["problems"])
        if self.incremental is not None:
            counts = self.incremental
            lines.append(
                f"incremental: {counts['converted']:,} converted, {counts['reused']:,} reused, "
                f"{counts['removed']:,} removed"
            )
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
            "media": self.media,
            "media_totals": self.media_totals(),
            **(
                {
                    "dropped_by_interval": {t: self.events_outside[t] for t in self.events_read},
                    "intervals": self.intervals,
                    "interval_totals": self.interval_totals(),
                }
                if self.intervals
                else {}
            ),
            "seconds": round(self.seconds, 3),
            **({} if self.incremental is None else {"incremental": self.incremental}),
        }


def describe_damage(report: ReadReport, result: FileResult) -> str:
    """One line on what was lost reading a recording (``report`` is the reader's), or "" when nothing was."""
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
