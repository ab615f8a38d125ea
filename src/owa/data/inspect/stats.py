"""``owa-data stats``: what a folder of recordings or a dataset holds, as one JSON-ready dict.

:func:`collect_stats` detects what ``path`` is (:mod:`owa.data.inspect.detect`) and gathers:

- every kind: ``kind``, ``path``, ``episodes``, ``duration_s`` (None where the data has no times), events per topic
  and their rate, keys pressed (top 20), click and scroll counts, screen resolutions (:mod:`.event_stats`);
- recordings and Event/Binned Datasets: ``video``: codec, fps and keyframe interval of up to ``max_videos`` videos
  (:mod:`.video_info`), plus how many could not be opened;
- datasets: ``rows_per_split``; tokenized and packed ones ``tokens_per_event`` by event type, ``images_per_sample``
  and, given a sequence length, ``packing`` (efficiency = real tokens / (samples x max_sequence_length));
- ``recorded``: the clamped, skipped and dropped counts a stage recorded, and ``problems``: the conversion report's
  (Event Dataset) or the reader's (recordings) list of bad files.

Dataset columns are read as memory-mapped Arrow tables and counted with Arrow compute.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from owa.data.inspect.detect import PathKind, detect_dataset_kind, detect_kind, packed_sequence_length
from owa.data.inspect.event_stats import episode_codes, event_stats
from owa.data.inspect.saved import SavedDataset, read_saved_dataset
from owa.data.inspect.video_info import summarize_videos

__all__ = ["DEFAULT_MAX_VIDEOS", "collect_stats"]

DEFAULT_MAX_VIDEOS = 4
"""Videos opened for codec, fps and keyframe interval (each is indexed, not decoded)."""

_REPORT_FILENAME = "conversion_report.json"  # written by owa.data.events (REPORT_FILENAME)
# McapMessage JSON as stage 1 and pydantic write it: {"topic":...,"timestamp":...,"message":...,"message_type":...}
_ENVELOPE = r'^\{"topic":"(?P<topic>(?:[^"\\]|\\.)*)","timestamp":(?P<timestamp>-?\d+),'
_KEYBOARD_TEXT = r'<KEYBOARD>|"type":"keyboard"'
_MOUSE_TEXT = r'<MOUSE>|"type":"mouse"'


def collect_stats(
    path: str | os.PathLike[str],
    *,
    max_sequence_length: int | None = None,
    episode_aware: bool = False,
    episode_root: str | os.PathLike[str] | None = None,
    max_videos: int = DEFAULT_MAX_VIDEOS,
) -> dict[str, Any]:
    """Statistics of a folder of recordings (or one ``.mcap``) or of a saved owa-data dataset.

    Args:
        path: the recordings folder, ``.mcap`` file or dataset folder; what it is is detected from its files.
        max_sequence_length: for a tokenized dataset, the sample length to compute packing efficiency with
            (a packed dataset's own length is used when it records one and this is None).
        episode_aware: pack as ``FSLDataset(episode_aware=True)`` does (a sample never spans two episodes).
        episode_root: the folder relative ``episode_path`` values resolve against (default: the current folder).
        max_videos: at most this many videos are opened for codec, fps and keyframe interval; 0 opens none.

    Returns:
        A JSON-ready dict (see the module docs); ``kind`` says what ``path`` is.

    Raises:
        InvalidInputError: ``path`` is missing or is neither recordings nor an owa-data dataset.
        ValueError: an invalid ``max_sequence_length`` or ``max_videos``.
        PackingError: an event is longer than ``max_sequence_length``.
    """
    if max_sequence_length is not None and (isinstance(max_sequence_length, bool) or max_sequence_length <= 0):
        raise ValueError(f"Invalid max_sequence_length ({max_sequence_length!r}). Use a positive token count.")
    if isinstance(max_videos, bool) or not isinstance(max_videos, int) or max_videos < 0:
        raise ValueError(f"Invalid max_videos ({max_videos!r}). Use a count >= 0.")
    target = Path(os.path.abspath(path))
    kind = detect_kind(target)
    if kind == "recordings":
        from owa.data.inspect.recording_stats import recordings_stats

        return {"kind": kind, "path": str(target), **recordings_stats(target, max_videos=max_videos)}
    dataset = read_saved_dataset(target)
    kind = detect_dataset_kind(dataset)
    stats: dict[str, Any] = {"kind": kind, "path": str(target)}
    stats["rows_per_split"] = {name: table.num_rows for name, table in dataset.splits.items()}
    root = os.path.abspath(os.getcwd() if episode_root is None else os.fspath(episode_root))
    if kind == "event":
        events = _event_rows(dataset)
        stats |= event_stats(events, wrapped=True)
        stats["video"] = _dataset_videos(events, root, max_videos)
        stats |= _conversion_report(dataset)
    elif kind == "binned":
        events = _binned_rows(dataset)
        stats |= event_stats(events, wrapped=True)
        stats["video"] = _dataset_videos(events, root, max_videos)
        stats |= _binned_facts(dataset)
    else:
        length = max_sequence_length or packed_sequence_length(dataset)
        stats |= _token_stats(dataset, kind, length, episode_aware)
    return stats


# --------------------------------------------------------------------------------------------------
# Event and Binned Datasets
# --------------------------------------------------------------------------------------------------


def _event_rows(dataset: SavedDataset) -> pa.Table:
    tables = [
        pa.table(
            {
                "episode": t.column("episode_path"),
                "topic": t.column("topic"),
                "timestamp_ns": t.column("timestamp_ns"),
                "message": t.column("mcap_message"),
            }
        )
        for t in dataset.splits.values()
    ]
    return pa.concat_tables(tables, promote_options="permissive")


def _binned_rows(dataset: SavedDataset) -> pa.Table:
    """Every event of every bin, once: actions as they are, states once per (episode, timestamp)."""
    parts = []
    for table in dataset.splits.values():
        for column, dedupe in (("actions", False), ("state", True)):
            lists = table.column(column).combine_chunks()
            messages = pc.list_flatten(lists)
            episode = table.column("episode_path").combine_chunks().take(pc.list_parent_indices(lists))
            envelope = pc.extract_regex(pc.cast(messages, pa.string()), _ENVELOPE)
            part = pa.table(
                {
                    "episode": episode,
                    "topic": pc.struct_field(envelope, "topic"),
                    "timestamp_ns": pc.cast(pc.struct_field(envelope, "timestamp"), pa.int64()),
                    "message": messages,
                }
            )
            if dedupe and part.num_rows:  # a screen is the state of every bin until the next one
                numbered = part.append_column("row", pa.array(np.arange(part.num_rows)))
                keep = numbered.group_by(["episode", "timestamp_ns", "topic"]).aggregate([("row", "min")])
                part = part.take(np.sort(keep.column("row_min").to_numpy()))
            parts.append(part)
    return pa.concat_tables(parts, promote_options="permissive")


def _binned_facts(dataset: SavedDataset) -> dict[str, Any]:
    states = sum(int(pc.sum(pc.list_value_length(t.column("state"))).as_py() or 0) for t in dataset.splits.values())
    actions = sum(int(pc.sum(pc.list_value_length(t.column("actions"))).as_py() or 0) for t in dataset.splits.values())
    bins = sum(t.num_rows for t in dataset.splits.values())
    binning = dataset.description.get("owa_data", {}).get("binning") if dataset.description else None
    return {
        "binning": binning,
        "images_per_sample": round(states / bins, 3) if bins else None,
        "actions_per_bin": round(actions / bins, 3) if bins else None,
        "recorded": {},
        "problems": [],
    }


def _conversion_report(dataset: SavedDataset) -> dict[str, Any]:
    saved = dataset.read_json(_REPORT_FILENAME)
    report = (saved or {}).get("report") or {}
    recorded = {
        name: report[name]
        for name in ("files", "files_skipped", "files_salvaged", "files_duplicate", "events_invalid", "dropped_by_rate")
        if name in report
    }
    return {"recorded": recorded, "problems": report.get("problems", [])}


def _dataset_videos(events: pa.Table, root: str, max_videos: int) -> dict[str, Any]:
    """Codec, fps and keyframe interval of the videos of the first ``max_videos`` episodes with screens."""
    screens = events.filter(pc.equal(events.column("topic"), "screen"))
    codes, episodes = episode_codes(screens.column("episode"))
    rows = np.sort(np.unique(codes, return_index=True)[1])[:max_videos]  # each episode's first screen
    from owa.data.episode_paths import resolve_episode_path
    from owa.data.messages import McapMessage

    found = []
    for row in rows.tolist():
        episode = screens.column("episode")[row].as_py()
        blob = screens.column("message")[row].as_py()
        message = McapMessage.model_validate_json(blob).with_source(resolve_episode_path(episode, root))
        found.append((episode, message))
    return summarize_videos(found, episodes, max_videos)


# --------------------------------------------------------------------------------------------------
# Tokenized and packed datasets
# --------------------------------------------------------------------------------------------------


def _token_stats(dataset: SavedDataset, kind: PathKind, length: int | None, episode_aware: bool) -> dict[str, Any]:
    tables = list(dataset.splits.values())
    if kind == "packed" and "attention_mask" in dataset.column_names:
        return _fixed_sample_stats(tables)
    table = pa.concat_tables([t.select(["episode_path", "text", "images", "total_token_count"]) for t in tables])
    has_image = pc.greater(pc.list_value_length(table.column("images")), 0)
    kinds = pc.case_when(
        pc.make_struct(
            has_image,
            pc.match_substring_regex(table.column("text"), _KEYBOARD_TEXT),
            pc.match_substring_regex(table.column("text"), _MOUSE_TEXT),
        ),
        "screen",
        "keyboard",
        "mouse",
    )
    typed = pa.table({"type": pc.fill_null(kinds, "other"), "tokens": table.column("total_token_count")})
    grouped = typed.group_by("type").aggregate([("tokens", "count"), ("tokens", "sum"), ("tokens", "mean")])
    per_type = {
        name: {"events": count, "tokens": total, "mean": round(mean, 3)}
        for name, count, total, mean in sorted(
            zip(
                *(grouped.column(c).to_pylist() for c in ("type", "tokens_count", "tokens_sum", "tokens_mean")),
                strict=True,
            )
        )
    }
    images = int(pc.sum(pc.list_value_length(table.column("images"))).as_py() or 0)
    tokens = int(pc.sum(table.column("total_token_count")).as_py() or 0)
    stats: dict[str, Any] = {
        "episodes": len(pc.unique(table.column("episode_path"))),
        "duration_s": None,  # token rows keep no absolute times
        "events": table.num_rows,
        "events_per_topic": {name: item["events"] for name, item in per_type.items()},
        "tokens": tokens,
        "images": images,
        "tokens_per_event": per_type,
        "images_per_sample": round(images / table.num_rows, 3) if table.num_rows else None,
        "packing": None,
        "recorded": {},
        "problems": [],
    }
    if length is not None:
        stats["packing"] = _packing(tables, length, episode_aware)
        samples = stats["packing"]["samples"]
        stats["images_per_sample"] = round(images / samples, 3) if samples else None
    return stats


def _packing(tables: list[pa.Table], length: int, episode_aware: bool) -> dict[str, Any]:
    from owa.data.packing import plan_packing

    samples = real = 0
    for table in tables:
        counts = table.column("total_token_count").to_numpy().astype(np.int64)
        episodes = table.column("episode_path")
        starts = None
        if episode_aware:
            starts = np.ones(len(counts), dtype=bool)
            if len(counts) > 1:
                starts[1:] = pc.not_equal(episodes[1:], episodes[:-1]).to_numpy(zero_copy_only=False)
        plan = plan_packing(counts, max_sequence_length=length, episode_start=starts)
        samples += len(plan)
        real += int(plan.token_counts.sum())
    total = samples * length
    return {
        "max_sequence_length": length,
        "episode_aware": episode_aware,
        "samples": samples,
        "real_tokens": real,
        "total_tokens": total,
        "efficiency": round(real / total, 4) if total else None,
    }


def _fixed_sample_stats(tables: list[pa.Table]) -> dict[str, Any]:
    """A dataset of fixed-length samples (``token_ids`` + ``attention_mask``): efficiency from the masks."""
    samples = sum(t.num_rows for t in tables)
    real = sum(int(pc.sum(pc.list_flatten(t.column("attention_mask"))).as_py() or 0) for t in tables)
    total = sum(int(pc.sum(pc.list_value_length(t.column("token_ids"))).as_py() or 0) for t in tables)
    images = (
        sum(int(pc.sum(pc.list_value_length(t.column("images"))).as_py() or 0) for t in tables)
        if "images" in tables[0].schema.names
        else None
    )
    return {
        "episodes": None,
        "duration_s": None,
        "events": None,
        "events_per_topic": {},
        "images_per_sample": round(images / samples, 3) if samples and images is not None else None,
        "packing": {
            "samples": samples,
            "real_tokens": real,
            "total_tokens": total,
            "efficiency": round(real / total, 4) if total else None,
        },
        "recorded": {},
        "problems": [],
    }
