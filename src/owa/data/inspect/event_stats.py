"""Counts over event rows with Arrow compute (no Python loop over rows): the hot path of ``owa-data stats``.

The input is one table of events: ``episode`` (string), ``topic`` (string), ``timestamp_ns`` (int64) and ``message``
(the payload JSON, or the Event Dataset's ``mcap_message`` JSON, where the payload sits escaped inside a string).
Payload fields are read with regular expressions that accept both forms (``"vk":65`` and ``\\"vk\\":65``), run
only over the rows of the topic they concern.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from owa.data.inspect.keys import vk_name

__all__ = ["TOP_KEYS", "event_stats"]

TOP_KEYS = 20
"""How many keys ``keys_top`` lists, most pressed first."""

_Q = r'\\?"'  # a JSON quote, escaped or not
_EVENT_TYPE = _Q + r"event_type" + _Q + r":\s*" + _Q + r"(?P<event_type>\w+)"
_VK = _Q + r"vk" + _Q + r":\s*(?P<vk>-?\d+)"
_PRESSED = _Q + r"pressed" + _Q + r":\s*(?P<pressed>true|false|null)"
_SHAPE = _Q + r"{name}" + _Q + r":\s*\[\s*(?P<w>\d+)\s*,\s*(?P<h>\d+)\s*\]"


def event_stats(events: pa.Table) -> dict[str, Any]:
    """Episodes, duration, events per topic and rate, keys, clicks, scrolls and screen sizes of ``events``.

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

    keyboard = _text(events.filter(pc.equal(topics, "keyboard")).column("message"))
    key_fields = pc.extract_regex(keyboard, _EVENT_TYPE)
    presses = pc.equal(pc.struct_field(key_fields, "event_type"), "press")
    vks = pc.cast(pc.struct_field(pc.extract_regex(keyboard.filter(presses), _VK), "vk"), pa.int64())
    vk_counts = _value_counts(vks)
    top = sorted(vk_counts.items(), key=lambda item: (-item[1], item[0]))[:TOP_KEYS]
    stats["key_presses"] = sum(vk_counts.values())
    stats["keys_top"] = [{"vk": vk, "name": vk_name(vk), "presses": n} for vk, n in top]

    mouse = _text(events.filter(pc.equal(topics, "mouse")).column("message"))
    mouse_type = pc.struct_field(pc.extract_regex(mouse, _EVENT_TYPE), "event_type")
    click_rows = pc.equal(mouse_type, "click")
    clicks = mouse.filter(click_rows)
    pressed = pc.struct_field(pc.extract_regex(clicks, _PRESSED), "pressed")
    stats["clicks"] = int(pc.sum(pc.equal(pressed, "true")).as_py() or 0)
    stats["click_events"] = len(clicks)
    stats["scrolls"] = int(pc.sum(pc.equal(mouse_type, "scroll")).as_py() or 0)

    screens = _text(events.filter(pc.equal(topics, "screen")).column("message"))
    stats["screen_resolutions"] = _shapes(screens, "shape")
    stats["source_resolutions"] = _shapes(screens, "source_shape")
    return stats


def _episode_durations_s(events: pa.Table) -> np.ndarray:
    if events.num_rows == 0:
        return np.zeros(0)
    spans = events.select(["episode", "timestamp_ns"]).group_by("episode").aggregate(
        [("timestamp_ns", "min"), ("timestamp_ns", "max")]
    )
    first = spans.column("timestamp_ns_min").to_numpy()
    last = spans.column("timestamp_ns_max").to_numpy()
    return (last - first) / 1e9


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


def _shapes(screens: pa.ChunkedArray | pa.Array, name: str) -> dict[str, int]:
    found = pc.extract_regex(screens, _SHAPE.format(name=name))
    sizes = pc.binary_join_element_wise(pc.struct_field(found, "w"), pc.struct_field(found, "h"), "x")
    counts = _value_counts(sizes)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
