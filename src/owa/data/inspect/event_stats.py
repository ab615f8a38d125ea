"""Counts over event rows with Arrow compute (no Python loop over rows): the hot path of ``owa-data stats``.

The input is one table of events: ``episode`` (string), ``topic`` (string), ``timestamp_ns`` (int64) and ``message``
(the payload JSON, or the Event Dataset's ``mcap_message`` JSON, where the payload sits escaped inside a string).
Payload fields are read with regular expressions for the form at hand (``"vk":65``, or ``\\"vk\\":65`` inside
McapMessage JSON), run only over the rows of the topic they concern.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from owa.data.encoders.vk_names import vk_label

__all__ = ["TOP_KEYS", "episode_codes", "event_stats"]

TOP_KEYS = 20
"""How many keys ``keys_top`` lists, most pressed first."""


def _patterns(wrapped: bool) -> dict[str, str]:
    """Regexes for payload fields; ``wrapped``: the payload sits escaped inside McapMessage JSON (``\\"vk\\":65``)."""
    q = r'\\"' if wrapped else '"'

    def field(name: str) -> str:
        return q + name + q + r":\s*"

    return {
        "press": field("event_type") + q + "press" + q,
        "click": field("event_type") + q + "click" + q,
        "scroll": field("event_type") + q + "scroll" + q,
        "pressed": field("pressed") + "true",
        "vk": field("vk") + r"(?P<vk>-?\d+)",
        "shape": field("shape") + r"\[\s*(?P<w>\d+)\s*,\s*(?P<h>\d+)\s*\]",
        "source_shape": field("source_shape") + r"\[\s*(?P<w>\d+)\s*,\s*(?P<h>\d+)\s*\]",
    }


def event_stats(events: pa.Table, *, wrapped: bool) -> dict[str, Any]:
    """Episodes, duration, events per topic and rate, keys, clicks, scrolls and screen sizes of ``events``.

    ``wrapped``: ``message`` holds McapMessage JSON (the Event Dataset's ``mcap_message``), not the bare payload.

    Returns a JSON-ready dict:

    - ``episodes``; ``duration_s``: the sum over episodes of last minus first event time; ``events``;
    - ``events_per_topic`` (topic -> count, sorted by topic) and ``events_per_second`` (count / ``duration_s``);
    - ``key_presses`` and ``keys_top``: the :data:`TOP_KEYS` most pressed keys (``vk``, ``name``, ``presses``),
      most first, ties by ``vk``; presses are ``keyboard`` events of type ``press``;
    - ``clicks`` (``mouse`` click events with ``pressed`` true: button presses), ``click_events`` (presses and
      releases) and ``scrolls`` (``mouse`` scroll events);
    - ``screen_resolutions`` and ``source_resolutions``: ``"WxH"`` -> screen messages, from ``shape`` and
      ``source_shape`` (recorders before 0.4 log neither).
    """
    topics = events.column("topic")
    durations = _episode_durations_s(events)
    duration_s = float(durations.sum())
    counts = _value_counts(topics)
    stats: dict[str, Any] = {
        "episodes": len(durations),
        "duration_s": round(duration_s, 3),
        "events": events.num_rows,
        "events_per_topic": counts,
        "events_per_second": {t: round(c / duration_s, 3) if duration_s > 0 else None for t, c in counts.items()},
    }

    patterns = _patterns(wrapped)
    messages = events.column("message")

    def of_topic(topic: str) -> pa.ChunkedArray:
        return _text(pc.filter(messages, pc.equal(topics, topic)))

    keyboard = of_topic("keyboard")
    presses = keyboard.filter(pc.match_substring_regex(keyboard, patterns["press"]))
    vks = pc.cast(pc.struct_field(pc.extract_regex(presses, patterns["vk"]), "vk"), pa.int64())
    vk_counts = _value_counts(vks)
    top = sorted(vk_counts.items(), key=lambda item: (-item[1], item[0]))[:TOP_KEYS]
    stats["key_presses"] = sum(vk_counts.values())
    stats["keys_top"] = [{"vk": vk, "name": vk_label(vk), "presses": n} for vk, n in top]

    mouse = of_topic("mouse")
    clicks = mouse.filter(pc.match_substring_regex(mouse, patterns["click"]))
    stats["clicks"] = _count(pc.match_substring_regex(clicks, patterns["pressed"]))
    stats["click_events"] = len(clicks)
    stats["scrolls"] = _count(pc.match_substring_regex(mouse, patterns["scroll"]))

    screens = of_topic("screen")
    stats["screen_resolutions"] = _shapes(screens, patterns["shape"])
    stats["source_resolutions"] = _shapes(screens, patterns["source_shape"])
    return stats


def _episode_durations_s(events: pa.Table) -> np.ndarray:
    """Last minus first event time of each episode, in seconds (rows need not be grouped or sorted)."""
    codes, count = episode_codes(events.column("episode"))
    times = events.column("timestamp_ns").to_numpy()
    first = np.full(count, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(count, np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(first, codes, times)
    np.maximum.at(last, codes, times)
    return (last - first) / 1e9


def episode_codes(episodes: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, int]:
    """Each row's episode as an integer code (first-seen order), and the number of episodes."""
    encoded = pc.dictionary_encode(episodes)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.unify_dictionaries().combine_chunks() if encoded.num_chunks else pa.array([], pa.int32())
    if isinstance(encoded, pa.DictionaryArray):
        return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), len(encoded.dictionary)
    return np.zeros(0, dtype=np.int64), 0


def _count(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.sum(mask).as_py() or 0)


def _text(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Binary JSON as strings, for the regex kernels (payloads are UTF-8 JSON)."""
    if pa.types.is_binary(column.type):
        return pc.cast(column, pa.string())
    if pa.types.is_large_binary(column.type):
        return pc.cast(column, pa.large_string())
    return column


def _value_counts(values: pa.ChunkedArray | pa.Array) -> dict[Any, int]:
    counted = pc.value_counts(pc.drop_null(values))
    pairs = zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True)
    return dict(sorted(pairs, key=lambda item: item[0]))


def _shapes(screens: pa.ChunkedArray | pa.Array, pattern: str) -> dict[str, int]:
    found = pc.extract_regex(screens, pattern)
    sizes = pc.binary_join_element_wise(pc.struct_field(found, "w"), pc.struct_field(found, "h"), "x")
    counts = _value_counts(sizes)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
