"""Typed validation of stage-1 payloads (the hot path): a row enters the Event Dataset only if its model accepts it.

A payload is valid when it is a UTF-8 JSON object (orjson checks both) that the typed model of its message type
(:data:`owa.data.messages.MESSAGE_TYPES`, as the encoders check it) accepts. Fast checks pass the common
well-formed payloads without pydantic; anything they do not vouch for goes to the model, which decides, so the
verdict is always the model's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

import orjson
from pydantic import ValidationError

from owa.data.messages import (
    MESSAGE_TYPES,
    KeyboardEvent,
    MediaRef,
    MouseButton,
    MouseEvent,
    RawMouseEvent,
    ScreenCaptured,
)

__all__ = ["FAST_CHECKS", "parse_valid_payload", "validate_with_model"]

# The fast checks below accept only payloads their model surely accepts (plain JSON ints and bools, known
# keys, allowed literals); anything else goes to the model, which decides. They read the models' own
# field names and literals, so a change to a model cannot make them accept more than it does.
_KEYBOARD_KEYS = frozenset(KeyboardEvent.model_fields)
_KEY_EVENT_TYPES = get_args(KeyboardEvent.model_fields["event_type"].annotation)
_MOUSE_KEYS = frozenset(MouseEvent.model_fields)
_MOUSE_EVENT_TYPES = get_args(MouseEvent.model_fields["event_type"].annotation)
_MOUSE_BUTTONS = get_args(MouseButton)
_RAW_MOUSE_KEYS = frozenset(RawMouseEvent.model_fields)
_SCREEN_KEYS = frozenset(ScreenCaptured.model_fields)
_MEDIA_REF_KEYS = frozenset(MediaRef.model_fields)


def _int_or_none(value: Any) -> bool:
    return value is None or type(value) is int


def _keyboard_ok(p: dict[str, Any]) -> bool:
    # Tuples, not sets: ``in`` compares with ==, so an unhashable JSON value cannot raise.
    return (
        type(p.get("vk")) is int
        and p.get("event_type") in _KEY_EVENT_TYPES
        and (len(p) == 2 or (p.keys() <= _KEYBOARD_KEYS and _int_or_none(p.get("timestamp"))))
    )


def _mouse_ok(p: dict[str, Any]) -> bool:
    if type(p.get("x")) is not int or type(p.get("y")) is not int or p.get("event_type") not in _MOUSE_EVENT_TYPES:
        return False
    if len(p) == 3:  # a move: exactly event_type, x and y
        return True
    button, pressed = p.get("button"), p.get("pressed")
    return (
        p.keys() <= _MOUSE_KEYS
        and (button is None or button in _MOUSE_BUTTONS)
        and (pressed is None or type(pressed) is bool)
        and _int_or_none(p.get("dx"))
        and _int_or_none(p.get("dy"))
        and _int_or_none(p.get("timestamp"))
    )


def _raw_mouse_ok(p: dict[str, Any]) -> bool:
    return (
        type(p.get("last_x")) is int
        and type(p.get("last_y")) is int
        and p.keys() <= _RAW_MOUSE_KEYS
        and type(p.get("us_flags", 0)) is int
        and type(p.get("button_flags", 0)) is int
        and type(p.get("button_data", 0)) is int
        and _int_or_none(p.get("device_handle"))
        and _int_or_none(p.get("timestamp"))
    )


def _screen_ok(p: dict[str, Any]) -> bool:
    if not (p.keys() <= _SCREEN_KEYS and _int_or_none(p.get("utc_ns"))):
        return False
    for key in ("shape", "source_shape"):
        value = p.get(key)
        if value is not None and not (
            type(value) is list and len(value) == 2 and type(value[0]) is int and type(value[1]) is int
        ):
            return False
    ref = p.get("media_ref")
    return ref is None or (
        type(ref) is dict
        and type(ref.get("uri")) is str
        and ref.keys() <= _MEDIA_REF_KEYS
        and _int_or_none(ref.get("pts_ns"))
    )


def _model_decides(p: dict[str, Any]) -> bool:
    return False  # rare types (window, state): pydantic validates every one


FAST_CHECKS: dict[str, Callable[[dict[str, Any]], bool]] = {
    message_type: {
        KeyboardEvent.message_type: _keyboard_ok,
        MouseEvent.message_type: _mouse_ok,
        RawMouseEvent.message_type: _raw_mouse_ok,
        ScreenCaptured.message_type: _screen_ok,
    }.get(message_type, _model_decides)
    for message_type in MESSAGE_TYPES
}


def validate_with_model(message_type: str, data: bytes) -> None:
    """Validate ``data`` with its typed model, as ``decode_payload`` and the encoders do.

    Raises:
        ValueError: the model rejects it, with a one-line reason per field (``vk: Field required``).
    """
    try:
        MESSAGE_TYPES[message_type].model_validate_json(data)
    except ValidationError as e:
        reasons = []
        for err in e.errors(include_url=False):
            where = ".".join(str(part) for part in err["loc"]) or "payload"
            got = "" if err["type"] in ("missing", "extra_forbidden") else f" (got {err['input']!r:.40})"
            reasons.append(f"{where}: {err['msg']}{got}")
        raise ValueError("; ".join(reasons)) from e


def parse_valid_payload(message_type: str, data: bytes, fast_check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """``data`` parsed, if it is a JSON object that the model of ``message_type`` accepts.

    ``fast_check`` is ``FAST_CHECKS[message_type]`` (looked up by the caller, which also handles unknown types).

    Raises:
        ValueError: not JSON, not an object, or rejected by the model; the message is the one-line reason.
    """
    payload = orjson.loads(data)  # orjson.JSONDecodeError is a ValueError
    if type(payload) is not dict:
        raise ValueError(f"payload is a JSON {type(payload).__name__}, not an object")
    if not fast_check(payload):
        validate_with_model(message_type, data)
    return payload
