"""The ``hierarchical`` encoder: the spec's compositional token format.

One event is ``<EVENT_START>`` + tokens + ``<EVENT_END>``, with no spaces::

    <EVENT_START><TIMESTAMP><d1><d2><d3><KEYBOARD><65><press><EVENT_END>
    <EVENT_START><TIMESTAMP><d1><d2><d3><MOUSE><move><x1><y1><x2><y2><x3><y3>[<left><press> | <dx><dy>]<EVENT_END>
    <EVENT_START><TIMESTAMP><d1><d2><d3><IMAGE><EVENT_END>

- Time: ``v = (timestamp_ns mod 4 s) / 4 s`` as mixed-radix digits with bases ``[4, 10, 10]`` (10 ms).
- Mouse position: ``x / width`` and ``y / height`` clamped to ``[0, 1]``, three base-16 digits each,
  interleaved ``x1 y1 x2 y2 x3 y3``; then the button and ``<press>``/``<release>`` for a click, or
  ``<dx><dy>`` for a scroll, or nothing for a move.

Digits are computed with integer arithmetic from ``timestamp_ns`` and pixels, never with floats: the
mixed-radix digits of ``v`` are exactly those of ``floor(v * prod(bases))``, so a value on a cell
boundary always lands in the same cell. Values the seed vocabulary cannot hold are handled as
``docs/encoders.md`` describes: buttons ``x1``/``x2`` extend the vocabulary; coordinates off the
screen, values of exactly 1.0 and scrolls beyond ±10 are clamped and counted in :attr:`stats`; key
codes outside 0-255 raise :class:`~owa.data.errors.EncodingError`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from typing import Any

import orjson

from owa.data.encoders.base import (
    EVENT_END,
    EVENT_START,
    EncoderConfig,
    EventEncoder,
    _snippet,
    keyboard_key,
    register_encoder,
    validate_fields,
)
from owa.data.encoders.vk_names import vk_name
from owa.data.errors import EncodingError
from owa.data.messages import KeyboardEvent, McapMessage, MouseEvent, ScreenCaptured

__all__ = [
    "TIME_PERIOD_NS",
    "TIME_RESOLUTION_NS",
    "HierarchicalConfig",
    "HierarchicalEncoder",
    "unwrap_timestamps",
]

logger = logging.getLogger(__name__)

TIMESTAMP_BASES = (4, 10, 10)
MOUSE_BASES = (16, 16, 16)
TIME_PERIOD_NS = 4_000_000_000
_TIME_CELLS = 4 * 10 * 10
TIME_RESOLUTION_NS = TIME_PERIOD_NS // _TIME_CELLS  # 10 ms
_MOUSE_CELLS = 16**3  # per axis
SCROLL_MIN, SCROLL_MAX = -10, 10
MAX_VK = 255

_BUTTONS = ("left", "right", "middle", "unknown")
_EXTRA_BUTTONS = ("x1", "x2")  # real mice's side buttons: extend the vocabulary
_BUTTON_WORDS = {  # X1 and X2 are the side buttons that browsers map to back and forward
    "left": "left mouse button",
    "right": "right mouse button",
    "middle": "middle mouse button",
    "unknown": "unknown mouse button",
    "x1": "back mouse button",
    "x2": "forward mouse button",
}
_DIGIT_MAX = 15  # number tokens up to here are digits (time, mouse position, scroll); above, only key codes

# Precomputed token strings: the hot path only indexes tables and concatenates.
_TIME_TEXT = tuple(
    f"{EVENT_START}<TIMESTAMP><{q // 100}><{q // 10 % 10}><{q % 10}>" for q in range(_TIME_CELLS)
)  # index: timestamp cell 0..399
_KEY_TEXT = {
    "press": tuple(f"<KEYBOARD><{vk}><press>{EVENT_END}" for vk in range(MAX_VK + 1)),
    "release": tuple(f"<KEYBOARD><{vk}><release>{EVENT_END}" for vk in range(MAX_VK + 1)),
}
_PAIR = tuple(f"<{dx}><{dy}>" for dx in range(16) for dy in range(16))  # index: dx * 16 + dy
_CLICK_TEXT = {
    (button, pressed): f"<{button}><{'press' if pressed else 'release'}>{EVENT_END}"
    for button in _BUTTONS + _EXTRA_BUTTONS
    for pressed in (True, False)
}
_SCROLL_TEXT = {
    (dx, dy): f"<{dx}><{dy}>{EVENT_END}"
    for dx in range(SCROLL_MIN, SCROLL_MAX + 1)
    for dy in range(SCROLL_MIN, SCROLL_MAX + 1)
}
_MOUSE_EVENT_TYPES = frozenset({"move", "click", "scroll"})
_MOUSE_FIELDS = frozenset(MouseEvent.model_fields)

_TOKEN = re.compile(r"<[^<>]*>")
_NUMBER = re.compile(r"<(-?\d{1,3})>")


@dataclasses.dataclass(frozen=True)
class HierarchicalConfig(EncoderConfig):
    """Config of the hierarchical encoder.

    Attributes:
        image_token: text for one screen frame (default ``"<IMAGE>"``).
        screen_size: ``(width, height)`` in pixels that mouse coordinates are normalized by
            (default 1920x1080). Pixels 0..size round-trip exactly while each side is below 4096 px.
    """

    screen_size: tuple[int, int] = (1920, 1080)

    def __post_init__(self) -> None:
        super().__post_init__()
        size = self.screen_size
        if not isinstance(size, tuple | list) or len(size) != 2 or not all(type(v) is int and v > 0 for v in size):
            raise ValueError(f"Invalid screen_size ({size!r}). It must be (width, height) in positive integer pixels")
        object.__setattr__(self, "screen_size", tuple(size))
        if _TOKEN.fullmatch(self.image_token) and self.image_token in _base_vocab():
            raise ValueError(f"Invalid image_token ({self.image_token!r}): it is already a token of the format")


@register_encoder("hierarchical")
class HierarchicalEncoder(EventEncoder):
    """The spec's hierarchical token format (see the module docstring and ``docs/encoders.md``)."""

    config_class = HierarchicalConfig
    config: HierarchicalConfig

    def __init__(self, config: HierarchicalConfig | None = None) -> None:
        super().__init__(config)
        self._width, self._height = self.config.screen_size
        self._image_text = self.config.image_token + EVENT_END
        self._vocab = frozenset(_base_vocab() | {self.config.image_token})

    def get_vocab(self) -> set[str]:
        """The seed vocabulary, the image token and ``<x1>``/``<x2>`` (side mouse buttons)."""
        return set(self._vocab)

    def token_descriptions(self) -> dict[str, str]:
        """Each token in plain words, by what it means in this format.

        A number token ``<n>`` is shared by every role a number plays: ``<0>``..``<15>`` are time digits, mouse
        position digits (base 16) and scroll amounts, and also key codes 0-15 (mostly mouse buttons, backspace,
        tab and enter), so they are described as the number (``"13"``); ``<16>``..``<255>`` occur only as key
        codes, so they are the key's name (``<65>`` -> ``"A"``, ``<160>`` -> ``"left shift"``; the number where
        Windows assigns no key); ``<-10>``..``<-1>`` are scroll amounts (``"-3"``). Button tokens name the mouse
        button (``<x1>`` -> ``"back mouse button"``); the rest read as their text (``<KEYBOARD>`` -> ``"keyboard"``).
        """
        descriptions = super().token_descriptions()
        for value in range(SCROLL_MIN, MAX_VK + 1):
            words = str(value) if value <= _DIGIT_MAX else vk_name(value) or str(value)
            descriptions[f"<{value}>"] = words
        for button, words in _BUTTON_WORDS.items():
            descriptions[f"<{button}>"] = words
        return descriptions

    # ------------------------------------------------------------------------------------------ encode

    def _encode_screen(self, timestamp_ns: int, screen: ScreenCaptured) -> str:
        return _TIME_TEXT[timestamp_ns % TIME_PERIOD_NS // TIME_RESOLUTION_NS] + self._image_text

    def _encode_action(self, topic: str, timestamp_ns: int, fields: dict[str, Any]) -> str:
        time_text = _TIME_TEXT[timestamp_ns % TIME_PERIOD_NS // TIME_RESOLUTION_NS]
        if topic == "keyboard":
            return time_text + self._keyboard(fields)
        return time_text + self._mouse(fields)

    @staticmethod
    def _keyboard(fields: dict[str, Any]) -> str:
        vk, event_type = keyboard_key(fields, max_vk=MAX_VK, format_name="hierarchical")
        return _KEY_TEXT[event_type][vk]

    def _mouse(self, fields: dict[str, Any]) -> str:
        event_type = fields.get("event_type")
        x = fields.get("x")
        y = fields.get("y")
        if (
            type(x) is not int
            or type(y) is not int
            or type(event_type) is not str
            or event_type not in _MOUSE_EVENT_TYPES
            or not fields.keys() <= _MOUSE_FIELDS
        ):
            event = validate_fields(MouseEvent, fields)
            fields, event_type, x, y = event.model_dump(), event.event_type, event.x, event.y
        qx = self._cell(x, self._width)
        qy = self._cell(y, self._height)
        text = (
            "<MOUSE><move>"
            + _PAIR[(qx >> 8) * 16 + (qy >> 8)]
            + _PAIR[(qx >> 4 & 15) * 16 + (qy >> 4 & 15)]
            + _PAIR[(qx & 15) * 16 + (qy & 15)]
        )
        if event_type == "move":
            return text + EVENT_END
        if event_type == "click":
            button = fields.get("button") or "unknown"  # a click without a button is encoded as unknown
            pressed = fields.get("pressed")
            tail = _CLICK_TEXT.get((button, pressed)) if type(button) is str and type(pressed) is bool else None
            if tail is None:
                event = validate_fields(MouseEvent, fields)
                if event.pressed is None:
                    raise EncodingError("A mouse click needs pressed (true or false)", button=event.button)
                tail = _CLICK_TEXT[(event.button or "unknown", event.pressed)]
            return text + tail
        dx = fields.get("dx") or 0
        dy = fields.get("dy") or 0
        if type(dx) is not int or type(dy) is not int:
            event = validate_fields(MouseEvent, fields)
            dx, dy = event.dx or 0, event.dy or 0
        tail = _SCROLL_TEXT.get((dx, dy))
        if tail is None:
            self.stats.scrolls_clamped += 1
            if self.stats.scrolls_clamped == 1:
                logger.warning(
                    "Scroll (dx=%d, dy=%d) is beyond the hierarchical format's range %d..%d; clamping "
                    "(counted in encoder.stats.scrolls_clamped, logged once)",
                    dx,
                    dy,
                    SCROLL_MIN,
                    SCROLL_MAX,
                )
            tail = _SCROLL_TEXT[(min(max(dx, SCROLL_MIN), SCROLL_MAX), min(max(dy, SCROLL_MIN), SCROLL_MAX))]
        return text + tail

    def _cell(self, value: int, size: int) -> int:
        """``floor(clamp(value / size, 0, 1) * 4096)`` exactly, with 1.0 kept in the last cell."""
        if 0 <= value < size:
            return value * _MOUSE_CELLS // size
        stats = self.stats
        if value == size:
            stats.coordinates_saturated += 1
            if stats.coordinates_saturated == 1:
                logger.warning(
                    "Mouse coordinate %d equals the screen size (normalized 1.0); encoded in the last cell "
                    "(counted in encoder.stats.coordinates_saturated, logged once)",
                    value,
                )
            return _MOUSE_CELLS - 1
        stats.coordinates_clamped += 1
        if stats.coordinates_clamped == 1:
            logger.warning(
                "Mouse coordinate %d is off the configured screen %dx%d; clamped to its edge "
                "(counted in encoder.stats.coordinates_clamped, logged once; set screen_size to change)",
                value,
                self._width,
                self._height,
            )
        return 0 if value < 0 else _MOUSE_CELLS - 1

    # ------------------------------------------------------------------------------------------ decode

    def decode(self, text: str, images: list[ScreenCaptured] | None = None) -> McapMessage:
        """Turn one event's text back into an :class:`McapMessage`.

        The timestamp comes back modulo 4 s, at the start of its 10 ms cell (use
        :func:`unwrap_timestamps` for absolute times). Mouse pixels come back exactly for positions on
        ``0..size`` (sides below 4096 px); clamped values come back clamped.

        Raises:
            EncodingError: the text is not an event of this format.
        """
        body = self._unwrap(text)
        image_token = self.config.image_token
        if body.endswith(image_token):
            time_tokens = _TOKEN.findall(body[: -len(image_token)])
            if len(time_tokens) == 4 and sum(map(len, time_tokens)) == len(body) - len(image_token):
                return McapMessage(
                    topic="screen",
                    timestamp=self._decode_time(time_tokens, text),
                    message=self._screen_payload(images, text),
                    message_type=ScreenCaptured.message_type,
                )
        tokens = _tokens(body, text)
        timestamp_ns = self._decode_time(tokens, text)
        kind, rest = tokens[4] if len(tokens) > 4 else None, tokens[5:]
        if kind == "<KEYBOARD>":
            if len(rest) != 2 or rest[1] not in ("<press>", "<release>"):
                raise _bad(text, "a keyboard event is <KEYBOARD><vk><press|release>")
            vk = _number(rest[0], 0, MAX_VK, text, "vk")
            payload: dict[str, Any] = {"event_type": rest[1][1:-1], "vk": vk}
            return McapMessage(
                topic="keyboard",
                timestamp=timestamp_ns,
                message=orjson.dumps(payload),
                message_type=KeyboardEvent.message_type,
            )
        if kind == "<MOUSE>":
            return self._decode_mouse(rest, timestamp_ns, text)
        raise _bad(text, f"after the time comes <KEYBOARD>, <MOUSE> or {self.config.image_token}")

    def _decode_mouse(self, rest: list[str], timestamp_ns: int, text: str) -> McapMessage:
        if len(rest) < 7 or rest[0] != "<move>":
            raise _bad(text, "a mouse event is <MOUSE><move> and six base-16 digits")
        digits = [_number(token, 0, 15, text, "mouse digit") for token in rest[1:7]]
        qx = digits[0] * 256 + digits[2] * 16 + digits[4]
        qy = digits[1] * 256 + digits[3] * 16 + digits[5]
        # The smallest pixel in the cell: the only one when the cell is narrower than a pixel.
        payload: dict[str, Any] = {
            "event_type": "move",
            "x": -(-qx * self._width // _MOUSE_CELLS),
            "y": -(-qy * self._height // _MOUSE_CELLS),
        }
        tail = rest[7:]
        if len(tail) == 2 and tail[1] in ("<press>", "<release>"):
            button = tail[0][1:-1]
            if button not in _BUTTONS and button not in _EXTRA_BUTTONS:
                raise _bad(text, f"unknown mouse button {tail[0]}")
            payload.update(event_type="click", button=button, pressed=tail[1] == "<press>")
        elif len(tail) == 2:
            dx = _number(tail[0], SCROLL_MIN, SCROLL_MAX, text, "scroll dx")
            dy = _number(tail[1], SCROLL_MIN, SCROLL_MAX, text, "scroll dy")
            payload.update(event_type="scroll", dx=dx, dy=dy)
        elif tail:
            raise _bad(text, "after the position comes nothing (move), <button><press|release> or <dx><dy>")
        return McapMessage(
            topic="mouse", timestamp=timestamp_ns, message=orjson.dumps(payload), message_type=MouseEvent.message_type
        )

    @staticmethod
    def _decode_time(tokens: list[str], text: str) -> int:
        if len(tokens) < 4 or tokens[0] != "<TIMESTAMP>":
            raise _bad(text, "an event starts with <TIMESTAMP> and three digits")
        q = 0
        for token, base in zip(tokens[1:4], TIMESTAMP_BASES, strict=True):
            q = q * base + _number(token, 0, base - 1, text, "time digit")
        return q * TIME_RESOLUTION_NS

    def unwrap_timestamps(self, times_mod_ns: Sequence[int], start_ns: int) -> list[int]:
        """:func:`unwrap_timestamps` with this format's period and resolution."""
        return unwrap_timestamps(times_mod_ns, start_ns)


def unwrap_timestamps(
    times_mod_ns: Sequence[int],
    start_ns: int,
    *,
    period_ns: int = TIME_PERIOD_NS,
    resolution_ns: int = TIME_RESOLUTION_NS,
) -> list[int]:
    """Absolute times (ns) for decoded times that wrap every ``period_ns`` (4 s for ``hierarchical``).

    ``start_ns`` is the true time of the first event (or any time in its ``resolution_ns`` cell).
    Each time is placed at the earliest instant congruent to it modulo ``period_ns`` that is not before
    the previous one (the first: not before ``start_ns`` rounded down to ``resolution_ns``). This
    recovers every time (to its cell) when events are in time order and consecutive events are less
    than ``period_ns - resolution_ns`` (3.99 s) apart; a longer gap can lose whole periods, which no
    decoder can recover from times modulo a period.

    Raises:
        ValueError: a non-positive period or resolution, or a resolution that does not divide the period.

    >>> unwrap_timestamps([3_990_000_000, 10_000_000, 20_000_000], start_ns=7_995_000_000)
    [7990000000, 8010000000, 8020000000]
    """
    if period_ns <= 0 or resolution_ns <= 0 or period_ns % resolution_ns:
        raise ValueError(
            f"Invalid period_ns/resolution_ns ({period_ns}/{resolution_ns}): both positive, resolution dividing period"
        )
    out: list[int] = []
    previous = start_ns - start_ns % resolution_ns
    for t in times_mod_ns:
        previous += (int(t) - previous) % period_ns
        out.append(previous)
    return out


def _base_vocab() -> set[str]:
    tokens = {EVENT_START, EVENT_END, "<TIMESTAMP>", "<KEYBOARD>", "<MOUSE>"}
    tokens.update(f"<{i}>" for i in range(256))
    tokens.update(f"<{i}>" for i in range(SCROLL_MIN, SCROLL_MAX + 1))
    tokens.update(f"<{t}>" for t in ("press", "release", "move", "click", "scroll", *_BUTTONS, *_EXTRA_BUTTONS))
    return tokens


def _tokens(body: str, text: str) -> list[str]:
    tokens = _TOKEN.findall(body)
    if sum(map(len, tokens)) != len(body):
        raise _bad(text, "text between tokens")
    return tokens


def _number(token: str, low: int, high: int, text: str, what: str) -> int:
    match = _NUMBER.fullmatch(token)
    # Only the canonical spelling: "<07>" or "<-0>" are not tokens of the vocabulary.
    if match is None or not low <= (value := int(match[1])) <= high or str(value) != match[1]:
        raise _bad(text, f"{what} must be a token <{low}>..<{high}>, got {token}")
    return value


def _bad(text: str, reason: str) -> EncodingError:
    return EncodingError(f"Not a hierarchical event: {reason}", snippet=_snippet(text))
