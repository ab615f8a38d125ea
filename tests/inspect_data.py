"""Synthetic recordings for the inspect tests, and counts of them computed independently (``mcap`` + ``json``)."""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

from mcap.reader import make_reader

from owa.data.recordings.synthetic import SampleConfig, SampleEpisode, write_sample_episode

CONFIG = SampleConfig(seconds=4, codec="h264", width=160, height=120, keyframe_interval_s=1.0, seed=0)


def write_episodes(folder: Path, count: int = 3) -> list[SampleEpisode]:
    return [
        write_sample_episode(folder, f"ep{i}", SampleConfig(**{**_fields(CONFIG), "seed": 11 + i}))
        for i in range(count)
    ]


def _fields(config: SampleConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def read_raw(path: Path) -> list[tuple[str, int, dict[str, Any]]]:
    """(topic, log_time, payload) of every message, with the plain ``mcap`` reader."""
    with open(path, "rb") as f:
        return [
            (channel.topic, message.log_time, json.loads(message.data))
            for _, channel, message in make_reader(f).iter_messages(log_time_order=True)
        ]


def expected_counts(paths: list[Path]) -> dict[str, Any]:
    topics: collections.Counter[str] = collections.Counter()
    keys: collections.Counter[int] = collections.Counter()
    clicks = click_events = scrolls = 0
    duration_ns = 0
    for path in paths:
        messages = read_raw(path)
        times = [t for _, t, _ in messages]
        duration_ns += max(times) - min(times)
        for topic, _, payload in messages:
            topics[topic] += 1
            if topic == "keyboard" and payload["event_type"] == "press":
                keys[payload["vk"]] += 1
            if topic == "mouse" and payload["event_type"] == "click":
                click_events += 1
                clicks += payload["pressed"] is True
            if topic == "mouse" and payload["event_type"] == "scroll":
                scrolls += 1
    return {
        "topics": dict(topics),
        "keys": keys,
        "clicks": clicks,
        "click_events": click_events,
        "scrolls": scrolls,
        "duration_s": duration_ns / 1e9,
    }
