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
    media: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # per recording with media problems
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
        if self.media:
            totals = self.media_totals()
            lines.append(
                f"media: {totals['videos_missing']} video(s) missing, {totals['videos_unreadable']} cannot be opened, "
                f"{totals['screen_messages_out_of_range']} screen message(s) outside their video"
            )
            for entry in self.media:
                lines.extend(f"  media: {entry['file']} — {p['summary']}" for p in entry["problems"])
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
            "seconds": round(self.seconds, 3),
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
