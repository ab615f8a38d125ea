"""The ``json`` encoder: one JSON object per event, readable and exact.

::

    <EVENT_START>{"type":"keyboard","timestamp":1750427723476384500,"event_type":"press","vk":65}<EVENT_END>
    <EVENT_START>{"type":"screen","timestamp":...,"utc_ns":...,"source_shape":[906,578],"shape":[906,578],"image":"<IMAGE>"}<EVENT_END>

``type`` is the topic and ``timestamp`` the message time in nanoseconds, followed by the payload's
fields in their order. A payload field named like an envelope key (``timestamp``, which keyboard and
mouse events may carry) is written as ``event_timestamp``. A screen event carries the image token under
``image`` in place of its ``media_ref``. Keyboard and mouse events round-trip exactly; decoding uses a
JSON parser, never ``eval``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from pydantic import ValidationError

from owa.data.encoders.base import (
    EVENT_END,
    EVENT_START,
    SUPPORTED_TOPICS,
    EncoderConfig,
    EventEncoder,
    _snippet,
    register_encoder,
)
from owa.data.errors import EncodingError
from owa.data.messages import MESSAGE_TYPES, McapMessage, ScreenCaptured

__all__ = ["JsonConfig", "JsonEncoder"]

# Payload field -> key in the event object, where the payload's name is taken by the envelope.
_RENAMED = {"timestamp": "event_timestamp"}
_UNRENAMED = {v: k for k, v in _RENAMED.items()}


@dataclasses.dataclass(frozen=True)
class JsonConfig(EncoderConfig):
    """Config of the json encoder.

    Attributes:
        image_token: text for one screen frame (default ``"<IMAGE>"``); it must need no JSON escaping.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if orjson.dumps(self.image_token) != b'"' + self.image_token.encode() + b'"':
            raise ValueError(
                f"Invalid image_token ({self.image_token!r}) for the json encoder: it must appear verbatim in a "
                "JSON string (no quotes, backslashes or control characters)"
            )


@register_encoder("json")
class JsonEncoder(EventEncoder):
    """``<EVENT_START>{json}<EVENT_END>`` per event (see the module docstring and ``docs/encoders.md``)."""

    config_class = JsonConfig
    config: JsonConfig

    def get_vocab(self) -> set[str]:
        """``<EVENT_START>``, ``<EVENT_END>`` and the image token; the JSON itself is plain text."""
        return {EVENT_START, EVENT_END, self.config.image_token}

    def _encode_action(self, topic: str, timestamp_ns: int, fields: dict[str, Any]) -> str:
        message_type = SUPPORTED_TOPICS[topic]
        # Validate names and values, so that decode() accepts every text encode() produces.
        self._validated(message_type, fields, "")
        event: dict[str, Any] = {"type": topic, "timestamp": timestamp_ns}
        for key, value in fields.items():
            name = _RENAMED.get(key, key)
            if name in event or key in _UNRENAMED:
                raise EncodingError(f"Payload field {key!r} collides with the json encoder's key {name!r}")
            event[name] = value
        return f"{EVENT_START}{orjson.dumps(event).decode()}{EVENT_END}"

    def _encode_screen(self, timestamp_ns: int, screen: ScreenCaptured) -> str:
        event: dict[str, Any] = {"type": "screen", "timestamp": timestamp_ns}
        event.update(screen.model_dump(mode="json", exclude={"media_ref"}, exclude_none=True))
        event["image"] = self.config.image_token
        return f"{EVENT_START}{orjson.dumps(event).decode()}{EVENT_END}"

    def decode(self, text: str, images: list[ScreenCaptured] | None = None) -> McapMessage:
        """Turn one event's text back into an :class:`McapMessage` (exact for keyboard and mouse).

        A screen event's payload is ``images[0]`` when given; otherwise it is rebuilt from the JSON
        fields, without ``media_ref``.

        Raises:
            EncodingError: not JSON, not an object, an unknown ``type``, or fields that do not form a
                valid event of that type.
        """
        body = self._unwrap(text)
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise EncodingError(f"Not a json event: {e}", snippet=_snippet(text)) from e
        if not isinstance(event, dict):
            raise EncodingError("Not a json event: the body is not a JSON object", snippet=_snippet(text))
        topic = event.pop("type", None)
        timestamp_ns = event.pop("timestamp", None)
        message_type = SUPPORTED_TOPICS.get(topic) if isinstance(topic, str) else None
        if message_type is None or type(timestamp_ns) is not int:
            raise EncodingError(
                f"Not a json event: needs a 'type' in {sorted(SUPPORTED_TOPICS)} and an integer 'timestamp'",
                snippet=_snippet(text),
            )
        if topic == "screen":
            if event.get("image") != self.config.image_token:
                raise EncodingError(
                    f"A screen event carries 'image': {self.config.image_token!r}", snippet=_snippet(text)
                )
            if images:
                payload = self._screen_payload(images, text)
            else:
                del event["image"]
                payload = self._validated(ScreenCaptured.message_type, event, text)
        else:
            fields = {_UNRENAMED.get(key, key): value for key, value in event.items()}
            payload = self._validated(message_type, fields, text)
        return McapMessage(topic=topic, timestamp=timestamp_ns, message=payload, message_type=message_type)

    @staticmethod
    def _validated(message_type: str, fields: dict[str, Any], text: str) -> bytes:
        try:
            MESSAGE_TYPES[message_type].model_validate(fields)
        except ValidationError as e:
            raise EncodingError(
                f"Not a valid {message_type} event: {e.errors(include_url=False)}", snippet=_snippet(text) or None
            ) from e
        return orjson.dumps(fields)
