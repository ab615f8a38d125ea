"""Statistics of raw recordings (one ``.mcap`` or a folder of them), read with the salvaging reader.

Every message of every file is read once (damaged files up to their damage, reported in ``problems``) into one
Arrow table, then counted by :func:`owa.data.inspect.event_stats.event_stats`, as datasets are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from owa.data.errors import OWADataError
from owa.data.inspect.event_stats import event_stats
from owa.data.inspect.video_info import summarize_videos

__all__ = ["recordings_stats"]


def recordings_stats(path: Path, *, max_videos: int) -> dict[str, Any]:
    """Stats of the recording ``path`` or of every ``.mcap`` under the folder ``path`` (see :mod:`.stats`).

    Raises:
        InvalidInputError: the folder holds no recording.
    """
    from owa.data.events import discover_recordings
    from owa.data.recordings.reader import OWAMcapReader

    files = [path] if path.is_file() else discover_recordings(path)
    episodes: list[str] = []
    topics: list[str] = []
    times: list[int] = []
    messages: list[bytes] = []
    problems: list[dict[str, Any]] = []
    first_screens: list[tuple[str, Any]] = []
    damaged = chunks_skipped = 0
    for file in files:
        name = str(file)
        try:
            with OWAMcapReader(file, on_damage="salvage") as reader:
                screen = None
                for message in reader.iter_messages():
                    episodes.append(name)
                    topics.append(message.topic)
                    times.append(message.timestamp_ns)
                    messages.append(message.data)
                    if screen is None and message.topic == "screen":
                        screen = message.to_mcap_message(file)
                report = reader.report
        except OWADataError as e:
            problems.append({"file": name, "action": "skipped", "reason": str(e)})
            continue
        if screen is not None:
            first_screens.append((name, screen))
        if report.damaged:
            damaged += 1
            chunks_skipped += report.chunks_skipped
            problems.append(
                {
                    "file": name,
                    "action": "salvaged",
                    "reason": f"{report.error} at byte {report.offset}",
                    "messages_read": report.messages_read,
                }
            )
    table = pa.table(
        {
            "episode": pa.array(episodes, pa.string()),
            "topic": pa.array(topics, pa.string()),
            "timestamp_ns": pa.array(times, pa.int64()),
            "message": pa.array(messages, pa.binary()),
        }
    )
    stats = {"recordings": len(files), **event_stats(table, wrapped=False)}
    stats["video"] = summarize_videos(first_screens[:max_videos], len(first_screens), max_videos)
    stats["recorded"] = {
        "files_skipped": sum(p["action"] == "skipped" for p in problems),
        "files_salvaged": damaged,
        "chunks_skipped": chunks_skipped,
    }
    stats["problems"] = problems
    return stats
