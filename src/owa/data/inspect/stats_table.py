"""The ``owa-data stats`` dict as rich tables, for people (``--json`` gives scripts the dict itself)."""

from __future__ import annotations

import os
from typing import Any

from rich.console import Group
from rich.table import Table

__all__ = ["MAX_PROBLEMS_SHOWN", "stats_renderable"]

MAX_PROBLEMS_SHOWN = 20
"""Problems listed in the table; ``--json`` has them all."""


def stats_renderable(stats: dict[str, Any]) -> Group:
    """Tables for what :func:`owa.data.inspect.collect_stats` returned: overview, topics, keys, screens and videos,
    dataset facts, recorded counts and problems (each only where it has something to show)."""
    parts: list[Table] = [_overview(stats)]
    topics = stats.get("events_per_topic") or {}
    if topics:
        table = Table(title="Events per topic")
        table.add_column("topic")
        table.add_column("events", justify="right")
        table.add_column("per second", justify="right")
        rates = stats.get("events_per_second") or {}
        for topic, count in topics.items():
            rate = rates.get(topic)
            table.add_row(str(topic), f"{count:,}", "-" if rate is None else f"{rate:,.2f}")
        parts.append(table)
    if stats.get("keys_top"):
        table = Table(title=f"Keys pressed (top {len(stats['keys_top'])})")
        for name, justify in (("key", "left"), ("vk", "right"), ("presses", "right")):
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for key in stats["keys_top"]:
            table.add_row(key["name"], str(key["vk"]), f"{key['presses']:,}")
        parts.append(table)
    screens = stats.get("screen_resolutions") or {}
    sources = stats.get("source_resolutions") or {}
    if screens or sources:
        table = Table(title="Screen resolutions (screen messages)")
        table.add_column("field")
        table.add_column("size")
        table.add_column("messages", justify="right")
        for field, sizes in (("shape", screens), ("source_shape", sources)):
            for size, count in sizes.items():
                table.add_row(field, size, f"{count:,}")
        parts.append(table)
    video = stats.get("video")
    if video and (video["videos"] or video["unreadable"]):
        table = Table(title=f"Videos ({video['checked']} checked of {video['episodes_with_screens']} episodes)")
        for name in ("video", "codec", "size", "frames", "fps", "keyframe interval s"):
            table.add_column(name, justify="left" if name == "video" else "right")
        for item in video["videos"]:
            table.add_row(
                os.path.basename(item["location"]),
                item["codec"],
                f"{item['width']}x{item['height']}",
                f"{item['frames']:,}",
                _num(item["fps"]),
                _num(item["keyframe_interval_s"]),
            )
        for item in video["unreadable"]:
            table.add_row(os.path.basename(item["episode"]), "unreadable", "", "", "", "")
        parts.append(table)
    if stats.get("tokens_per_event"):
        table = Table(title="Tokens per event by type")
        for name in ("type", "events", "tokens", "mean"):
            table.add_column(name, justify="left" if name == "type" else "right")
        for name, item in stats["tokens_per_event"].items():
            table.add_row(name, f"{item['events']:,}", f"{item['tokens']:,}", f"{item['mean']:.2f}")
        parts.append(table)
    recorded = _flat(stats.get("recorded") or {})
    if recorded:
        table = Table(title="Recorded by the stage (clamped, skipped, dropped)")
        table.add_column("count")
        table.add_column("value", justify="right")
        for name, value in recorded:
            table.add_row(name, f"{value:,}" if isinstance(value, int) else str(value))
        parts.append(table)
    problems = stats.get("problems") or []
    if problems:
        table = Table(title=f"Problems ({len(problems)})")
        for name in ("file", "action", "reason"):
            table.add_column(name, overflow="fold")
        for problem in problems[:MAX_PROBLEMS_SHOWN]:
            table.add_row(str(problem.get("file")), str(problem.get("action")), str(problem.get("reason")))
        if len(problems) > MAX_PROBLEMS_SHOWN:
            table.add_row(f"... {len(problems) - MAX_PROBLEMS_SHOWN} more (see --json)", "", "")
        parts.append(table)
    return Group(*parts)


def _overview(stats: dict[str, Any]) -> Table:
    table = Table(title=f"{stats['kind']}: {stats['path']}", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    rows: list[tuple[str, Any]] = [
        ("episodes", stats.get("episodes")),
        ("duration", None if stats.get("duration_s") is None else f"{stats['duration_s']:,.1f} s"),
        ("events", stats.get("events")),
        ("key presses", stats.get("key_presses")),
        ("clicks (button presses)", stats.get("clicks")),
        ("scrolls", stats.get("scrolls")),
    ]
    rows += [(f"rows in {split}", n) for split, n in (stats.get("rows_per_split") or {}).items()]
    rows += [("tokens", stats.get("tokens")), ("images", stats.get("images"))]
    rows += [("images per sample", stats.get("images_per_sample")), ("actions per bin", stats.get("actions_per_bin"))]
    packing = stats.get("packing")
    if packing:
        rows += [
            ("packed samples", packing["samples"]),
            ("max sequence length", packing.get("max_sequence_length")),
            ("packing efficiency (real / total tokens)", _percent(packing["efficiency"])),
        ]
    for name, value in rows:
        if value is not None:
            table.add_row(name, f"{value:,}" if isinstance(value, int) else str(value))
    return table


def _flat(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for name, value in values.items():
        if isinstance(value, dict):
            rows += _flat(value, f"{prefix}{name} ")
        else:
            rows.append((f"{prefix}{name}", value))
    return rows


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _percent(value: float | None) -> str | None:
    return None if value is None else f"{value:.1%}"
