"""The rate rule of stage 1 (pure): which continuous samples to thin, and where thinned raw motion goes.

``rates_hz={"mouse": 60}`` keeps a mouse *move* only when at least ``1/60`` s passed since the last kept move.
Clicks, scrolls, key presses and releases are never dropped, and do not reset the clock. Continuous samples
are: mouse moves, screen frames and relative raw mouse motion without button flags or wheel data
(:func:`is_continuous_sample`). A thinned raw sample's motion (``last_x``/``last_y``) is added to the topic's
next kept raw sample, and motion thinned after the episode's last kept one comes back as its last thinned
sample, so per episode the raw motion sums to the recording's exactly. Samples stamped in the same nanosecond
as the last kept one count as the same instant and are kept. ``inf`` means no limit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

__all__ = ["DEFAULT_RATES_HZ", "RAW_MOUSE_TYPE", "RateLimiter", "is_continuous_sample", "parse_rates"]

DEFAULT_RATES_HZ: Mapping[str, float] = {"mouse": 60.0, "screen": 20.0}

RAW_MOUSE_TYPE = "desktop/RawMouseEvent"
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
    if message_type == RAW_MOUSE_TYPE:
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
        if message_type != RAW_MOUSE_TYPE:
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
