"""The ``factorized`` encoder: relative raw mouse motion (``mouse/raw``), which first-person games need.

Every event is ``<EVENT_START>``, its type, three time digits, its data and ``<EVENT_END>``, with no spaces::

    <EVENT_START><KEYBOARD><3><4><7><VK_65><press><EVENT_END>
    <EVENT_START><MOUSE><3><4><7><SIGN_PLUS><0><0><1><2><SIGN_MINUS><0><0><0><5><MB_0><MB_0><MB_1><EVENT_END>
    <EVENT_START><MOUSE><3><4><7><SIGN_PLUS><0><0><0><0><SIGN_PLUS><0><0><0><0><MB_4><MB_0><MB_0><SIGN_MINUS><2><EVENT_END>
    <EVENT_START><SCREEN><3><4><7><IMAGE><EVENT_END>

- Time: ``(timestamp_ns // 10 ms) mod 1000`` as three decimal digits, most significant first (wraps every 10 s).
- Keyboard: ``<VK_{vk}>`` and ``<press>`` or ``<release>``.
- Raw mouse (``desktop/RawMouseEvent``): ``last_x`` then ``last_y`` (relative motion), each a sign token and
  four digits with bases ``[2, 10, 10, 10]`` (magnitudes 0-1999); the button flags as three hex digits
  ``<MB_0>``..``<MB_15>``; then, only when the flags carry wheel data (``RI_MOUSE_WHEEL`` 0x0400 or
  ``RI_MOUSE_HWHEEL`` 0x0800, which tell vertical from horizontal), a sign and one digit: the wheel
  delta in notches of 120 (``WHEEL_DELTA``).
- Screen: the image token.

Absolute mouse events (topic ``mouse``) are not encoded: this format has no position. Motion beyond ±1999
and wheel deltas beyond ±9 notches are clamped and counted in :attr:`stats`, never wrapped.
``docs/encoders.md`` has the full policy.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

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
from owa.data.encoders.hierarchical import unwrap_timestamps
from owa.data.errors import EncodingError
from owa.data.messages import KeyboardEvent, McapMessage, RawMouseEvent, ScreenCaptured

__all__ = [
    "DELTA_MAX",
    "TIME_PERIOD_NS",
    "TIME_RESOLUTION_NS",
    "WHEEL_DELTA",
    "WHEEL_MAX_NOTCHES",
    "FactorizedConfig",
    "FactorizedEncoder",
]

logger = logging.getLogger(__name__)

TIME_RESOLUTION_NS = 10_000_000  # 10 ms
_TIME_CELLS = 1000  # three decimal digits
TIME_PERIOD_NS = TIME_RESOLUTION_NS * _TIME_CELLS  # 10 s
DELTA_MAX = 1999  # four digits with bases [2, 10, 10, 10]
WHEEL_DELTA = 120  # Windows' one wheel notch
WHEEL_MAX_NOTCHES = 9  # one decimal digit
MAX_VK = 255
MAX_BUTTON_FLAGS = 0xFFF  # three hex digits; RAWMOUSE defines bits up to RI_MOUSE_HWHEEL (0x0800)
RI_MOUSE_WHEEL = 0x0400
RI_MOUSE_HWHEEL = 0x0800
_WHEEL_FLAGS = RI_MOUSE_WHEEL | RI_MOUSE_HWHEEL
MOUSE_MOVE_ABSOLUTE = 0x0001  # RAWMOUSE us_flags: last_x/last_y are a position, not a motion

SIGN_PLUS = "<SIGN_PLUS>"
SIGN_MINUS = "<SIGN_MINUS>"
_KEYBOARD, _MOUSE, _SCREEN = "<KEYBOARD>", "<MOUSE>", "<SCREEN>"

# Precomputed token strings: the hot path only indexes tables and concatenates.
_DIGIT = tuple(f"<{d}>" for d in range(10))
_TIME_TEXT = tuple(_DIGIT[q // 100] + _DIGIT[q // 10 % 10] + _DIGIT[q % 10] for q in range(_TIME_CELLS))
_KEY_TEXT = {
    "press": tuple(f"<VK_{vk}><press>{EVENT_END}" for vk in range(MAX_VK + 1)),
    "release": tuple(f"<VK_{vk}><release>{EVENT_END}" for vk in range(MAX_VK + 1)),
}


def _delta_text(value: int) -> str:
    magnitude = abs(value)
    digits = (magnitude // 1000, magnitude // 100 % 10, magnitude // 10 % 10, magnitude % 10)
    return (SIGN_MINUS if value < 0 else SIGN_PLUS) + "".join(_DIGIT[d] for d in digits)


_DELTA_TEXT = tuple(_delta_text(v) for v in range(-DELTA_MAX, DELTA_MAX + 1))  # index: value + DELTA_MAX
_FLAGS_TEXT = tuple(
    f"<MB_{f >> 8}><MB_{f >> 4 & 15}><MB_{f & 15}>" for f in range(MAX_BUTTON_FLAGS + 1)
)  # index: button flags
_WHEEL_TEXT = tuple(
    (SIGN_MINUS if n < 0 else SIGN_PLUS) + _DIGIT[abs(n)] for n in range(-WHEEL_MAX_NOTCHES, WHEEL_MAX_NOTCHES + 1)
)  # index: notches + WHEEL_MAX_NOTCHES

_RAW_MOUSE_FIELDS = frozenset(RawMouseEvent.model_fields)

_TOKEN = re.compile(r"<[^<>]*>")
_DIGIT_VALUE = {token: d for d, token in enumerate(_DIGIT)}
_MB_VALUE = {f"<MB_{d}>": d for d in range(16)}
_VK_VALUE = {f"<VK_{vk}>": vk for vk in range(MAX_VK + 1)}
_SIGNS = {SIGN_PLUS: 1, SIGN_MINUS: -1}


@dataclasses.dataclass(frozen=True)
class FactorizedConfig(EncoderConfig):
    """Config of the factorized encoder.

    Attributes:
        image_token: text for one screen frame (default ``"<IMAGE>"``); not one of the format's tokens.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_token in _base_vocab():
            raise ValueError(f"Invalid image_token ({self.image_token!r}): it is already a token of the format")


@register_encoder("factorized")
class FactorizedEncoder(EventEncoder):
    """Keyboard, relative raw mouse and screen events as factorized tokens (see the module docstring)."""

    config_class = FactorizedConfig
    config: FactorizedConfig
    supported_topics: ClassVar[Mapping[str, str]] = {
        "keyboard": KeyboardEvent.message_type,
        "mouse/raw": RawMouseEvent.message_type,
        "screen": ScreenCaptured.message_type,
    }

    def __init__(self, config: FactorizedConfig | None = None) -> None:
        super().__init__(config)
        self._image_text = self.config.image_token + EVENT_END
        self._vocab = frozenset(_base_vocab() | {self.config.image_token})

    def get_vocab(self) -> set[str]:
        """The structural tokens, ``<VK_0>``..``<VK_255>``, ``<MB_0>``..``<MB_15>``, ``<0>``..``<9>``, the two
        sign tokens and the image token."""
        return set(self._vocab)

    # ------------------------------------------------------------------------------------------ encode

    def _encode_screen(self, timestamp_ns: int, screen: ScreenCaptured) -> str:
        return EVENT_START + _SCREEN + _TIME_TEXT[timestamp_ns // TIME_RESOLUTION_NS % _TIME_CELLS] + self._image_text

    def _encode_action(self, topic: str, timestamp_ns: int, fields: dict[str, Any]) -> str:
        time_text = _TIME_TEXT[timestamp_ns // TIME_RESOLUTION_NS % _TIME_CELLS]
        if topic == "keyboard":
            return EVENT_START + _KEYBOARD + time_text + self._keyboard(fields)
        return EVENT_START + _MOUSE + time_text + self._raw_mouse(fields)

    @staticmethod
    def _keyboard(fields: dict[str, Any]) -> str:
        vk, event_type = keyboard_key(fields, max_vk=MAX_VK, format_name="factorized")
        return _KEY_TEXT[event_type][vk]

    def _raw_mouse(self, fields: dict[str, Any]) -> str:
        dx = fields.get("last_x")
        dy = fields.get("last_y")
        us_flags = fields.get("us_flags", 0)
        button_flags = fields.get("button_flags", 0)
        button_data = fields.get("button_data", 0)
        if (
            type(dx) is not int
            or type(dy) is not int
            or type(us_flags) is not int
            or type(button_flags) is not int
            or type(button_data) is not int
            or not fields.keys() <= _RAW_MOUSE_FIELDS
        ):
            event = validate_fields(RawMouseEvent, fields)
            dx, dy = event.last_x, event.last_y
            us_flags, button_flags, button_data = event.us_flags, event.button_flags, event.button_data
        if us_flags & MOUSE_MOVE_ABSOLUTE:
            raise EncodingError(
                f"Raw mouse us_flags=0x{us_flags:x} has MOUSE_MOVE_ABSOLUTE (0x1): last_x/last_y are an absolute "
                "position, which the factorized format (relative motion) cannot express; use the hierarchical "
                "encoder with topic 'mouse' for absolute pointers (tablets, remote desktops)",
                us_flags=us_flags,
            )
        if not 0 <= button_flags <= MAX_BUTTON_FLAGS:
            raise EncodingError(
                f"Raw mouse button_flags=0x{button_flags:x} is outside 0x000-0xfff, which no RAWMOUSE report sets "
                "and three hex digits cannot express",
                button_flags=button_flags,
            )
        if not (-DELTA_MAX <= dx <= DELTA_MAX and -DELTA_MAX <= dy <= DELTA_MAX):
            dx, dy = self._clamp_motion(dx), self._clamp_motion(dy)
        text = _DELTA_TEXT[dx + DELTA_MAX] + _DELTA_TEXT[dy + DELTA_MAX] + _FLAGS_TEXT[button_flags]
        if button_flags & _WHEEL_FLAGS:
            text += _WHEEL_TEXT[self._wheel_notches(button_data) + WHEEL_MAX_NOTCHES]
        return text + EVENT_END

    def _clamp_motion(self, value: int) -> int:
        if -DELTA_MAX <= value <= DELTA_MAX:
            return value
        # Counted with the hierarchical encoder's off-screen coordinates: an x or y value beyond the format's range.
        self.stats.coordinates_clamped += 1
        if self.stats.coordinates_clamped == 1:
            logger.warning(
                "Raw mouse motion %d is beyond the factorized format's range ±%d; clamping "
                "(counted in encoder.stats.coordinates_clamped, logged once)",
                value,
                DELTA_MAX,
            )
        return DELTA_MAX if value > 0 else -DELTA_MAX

    def _wheel_notches(self, button_data: int) -> int:
        # RAWMOUSE usButtonData is a USHORT holding a signed wheel delta: recorders store -120 as 65416 or -120.
        delta = button_data - 65536 if 32768 <= button_data <= 65535 else button_data
        quotient, remainder = divmod(abs(delta), WHEEL_DELTA)
        notches = quotient + (2 * remainder >= WHEEL_DELTA)  # nearest notch, halves away from zero
        if notches > WHEEL_MAX_NOTCHES:
            self.stats.scrolls_clamped += 1
            if self.stats.scrolls_clamped == 1:
                logger.warning(
                    "Wheel delta %d (%d notches of %d) is beyond the factorized format's range ±%d notches; "
                    "clamping (counted in encoder.stats.scrolls_clamped, logged once)",
                    delta,
                    notches,
                    WHEEL_DELTA,
                    WHEEL_MAX_NOTCHES,
                )
            notches = WHEEL_MAX_NOTCHES
        return -notches if delta < 0 else notches

    # ------------------------------------------------------------------------------------------ decode

    def decode(self, text: str, images: list[ScreenCaptured] | None = None) -> McapMessage:
        """Turn one event's text back into an :class:`McapMessage`.

        The timestamp comes back modulo 10 s, at the start of its 10 ms cell (use :meth:`unwrap_timestamps`
        for absolute times). A raw mouse event comes back as ``last_x``, ``last_y``, ``us_flags`` 0,
        ``button_flags`` and ``button_data`` (the wheel delta, signed, in multiples of 120; 0 without wheel
        flags); clamped values come back clamped.

        Raises:
            EncodingError: the text is not an event of this format.
        """
        body = self._unwrap(text)
        image_token = self.config.image_token
        if body.startswith(_SCREEN) and body.endswith(image_token):
            time_tokens = _TOKEN.findall(body[len(_SCREEN) : -len(image_token)])
            if len(time_tokens) == 3 and sum(map(len, time_tokens)) == len(body) - len(_SCREEN) - len(image_token):
                return McapMessage(
                    topic="screen",
                    timestamp=_decode_time(time_tokens, text),
                    message=self._screen_payload(images, text),
                    message_type=ScreenCaptured.message_type,
                )
        tokens = _TOKEN.findall(body)
        if sum(map(len, tokens)) != len(body):
            raise _bad(text, "text between tokens")
        kind = tokens[0] if tokens else None
        if kind not in (_KEYBOARD, _MOUSE):
            raise _bad(text, f"an event starts with {_KEYBOARD}, {_MOUSE} or {_SCREEN}")
        timestamp_ns = _decode_time(tokens[1:4], text)
        rest = tokens[4:]
        if kind == _KEYBOARD:
            if len(rest) != 2 or rest[0] not in _VK_VALUE or rest[1] not in ("<press>", "<release>"):
                raise _bad(text, "a keyboard event is <KEYBOARD>, three time digits, <VK_0..255>, <press|release>")
            payload: dict[str, Any] = {"event_type": rest[1][1:-1], "vk": _VK_VALUE[rest[0]]}
            return McapMessage(
                topic="keyboard",
                timestamp=timestamp_ns,
                message=orjson.dumps(payload),
                message_type=KeyboardEvent.message_type,
            )
        return McapMessage(
            topic="mouse/raw",
            timestamp=timestamp_ns,
            message=orjson.dumps(_decode_raw_mouse(rest, text)),
            message_type=RawMouseEvent.message_type,
        )

    def unwrap_timestamps(self, times_mod_ns: Sequence[int], start_ns: int) -> list[int]:
        """Absolute times (ns) for decoded times, which wrap every 10 s.

        ``start_ns`` is the true time of the first event (or any time in its 10 ms cell), e.g. the known start
        of a packed sample or segment, not a guess. The rule is :func:`~owa.data.encoders.unwrap_timestamps`'s
        with a 10 s period: it needs events in time order, consecutive ones less than 9.99 s apart. A longer
        gap between two consecutive events loses whole periods, which no decoder can recover from the times
        alone; start a new segment (with its own start) there.
        """
        return unwrap_timestamps(times_mod_ns, start_ns, period_ns=TIME_PERIOD_NS, resolution_ns=TIME_RESOLUTION_NS)


def _decode_time(tokens: list[str], text: str) -> int:
    if len(tokens) != 3 or not all(token in _DIGIT_VALUE for token in tokens):
        raise _bad(text, "the event type is followed by three time digits <0>..<9>")
    cell = _DIGIT_VALUE[tokens[0]] * 100 + _DIGIT_VALUE[tokens[1]] * 10 + _DIGIT_VALUE[tokens[2]]
    return cell * TIME_RESOLUTION_NS


def _decode_raw_mouse(rest: list[str], text: str) -> dict[str, Any]:
    if len(rest) not in (13, 15):
        raise _bad(
            text,
            "a mouse event is <MOUSE>, three time digits, two signed four-digit motions, three <MB_> digits and, "
            "with wheel flags, a signed wheel digit",
        )
    dx = _decode_signed(rest[0:5], (2, 10, 10, 10), text, "motion dx")
    dy = _decode_signed(rest[5:10], (2, 10, 10, 10), text, "motion dy")
    button_flags = 0
    for token in rest[10:13]:
        digit = _MB_VALUE.get(token)
        if digit is None:
            raise _bad(text, f"button flags are three tokens <MB_0>..<MB_15>, got {token}")
        button_flags = button_flags * 16 + digit
    has_wheel = bool(button_flags & _WHEEL_FLAGS)
    if has_wheel != (len(rest) == 15):
        raise _bad(
            text,
            "a wheel delta follows the button flags exactly when they have RI_MOUSE_WHEEL (0x400) or "
            f"RI_MOUSE_HWHEEL (0x800); flags are 0x{button_flags:03x}",
        )
    button_data = _decode_signed(rest[13:15], (10,), text, "wheel") * WHEEL_DELTA if has_wheel else 0
    return {"last_x": dx, "last_y": dy, "us_flags": 0, "button_flags": button_flags, "button_data": button_data}


def _decode_signed(tokens: list[str], bases: tuple[int, ...], text: str, what: str) -> int:
    sign = _SIGNS.get(tokens[0])
    if sign is None:
        raise _bad(text, f"{what} starts with {SIGN_PLUS} or {SIGN_MINUS}, got {tokens[0]}")
    magnitude = 0
    for token, base in zip(tokens[1:], bases, strict=True):
        digit = _DIGIT_VALUE.get(token)
        if digit is None or digit >= base:
            raise _bad(text, f"{what} digit must be a token <0>..<{base - 1}>, got {token}")
        magnitude = magnitude * base + digit
    if sign < 0 and magnitude == 0:  # only the canonical spelling: zero is <SIGN_PLUS>
        raise _bad(text, f"{what} is zero with {SIGN_MINUS}; zero is written with {SIGN_PLUS}")
    return sign * magnitude


def _base_vocab() -> set[str]:
    tokens = {EVENT_START, EVENT_END, _KEYBOARD, _MOUSE, _SCREEN, "<press>", "<release>", SIGN_PLUS, SIGN_MINUS}
    tokens.update(_VK_VALUE)
    tokens.update(_MB_VALUE)
    tokens.update(_DIGIT)
    return tokens


def _bad(text: str, reason: str) -> EncodingError:
    return EncodingError(f"Not a factorized event: {reason}", snippet=_snippet(text))
