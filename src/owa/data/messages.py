"""Typed OWAMcap messages and the :class:`McapMessage` envelope.

Payloads are UTF-8 JSON in every recorder version. :mod:`owa.data.recordings.versions` rewrites old
forms to the current field names before anything here sees them, so these models only describe the
current form. The media URI policy (:class:`MediaPolicy`) lives in :mod:`owa.data.media` and is
re-exported here.

The JSON layout of :class:`McapMessage` is the one upstream ``mcap_owa`` uses, with the payload kept as
a JSON *string*::

    {"topic": "keyboard", "timestamp": 1700000000000000000,
     "message": "{\\"event_type\\":\\"press\\",\\"vk\\":65}", "message_type": "desktop/KeyboardEvent"}
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, PrivateAttr, StrictBool, StrictInt, ValidationError

from owa.data.episode_paths import episode_base_dir
from owa.data.errors import MessageValidationError
from owa.data.media import DEFAULT_MEDIA_POLICY, MediaPolicy, ResolvedMedia  # re-exported: the old import path

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

__all__ = [
    "DEFAULT_MEDIA_POLICY",
    "MESSAGE_TYPES",
    "KeyboardEvent",
    "KeyboardState",
    "McapMessage",
    "MediaPolicy",
    "MediaRef",
    "MouseEvent",
    "MouseState",
    "OWAMessage",
    "RawMouseEvent",
    "ResolvedMedia",
    "ScreenCaptured",
    "WindowInfo",
    "decode_payload",
    "deserialize_screen",
    "dump_mcap_message_json",
    "serialize_screen",
]


class OWAMessage(BaseModel):
    """Base of the typed payloads. ``message_type`` is the current schema name."""

    model_config = ConfigDict(extra="forbid")
    message_type: ClassVar[str]


class KeyboardEvent(OWAMessage):
    """A key press or release. ``vk`` is a Windows virtual-key code."""

    message_type: ClassVar[str] = "desktop/KeyboardEvent"
    event_type: Literal["press", "release"]
    vk: StrictInt  # a JSON true is not key 1
    timestamp: int | None = None


MouseButton = Literal["unknown", "left", "middle", "right", "x1", "x2"]


def _not_bool_or_str(value: Any) -> Any:
    # Lax int would read a JSON true as 1 and "100" as 100; no recorder writes either.
    if isinstance(value, bool | str | bytes):
        raise ValueError(f"Input should be a JSON integer, not {type(value).__name__} {value!r}")
    return value


# An integer field: a JSON integer, or a float with no fraction (852.0 is pixel 852); never a bool or a
# string. The JSON schema stays {"type": "integer"}.
_JsonInt = Annotated[int, BeforeValidator(_not_bool_or_str)]


class MouseEvent(OWAMessage):
    """A mouse move, click or scroll. ``x``/``y`` are screen pixels and may be off the primary screen."""

    # Fields are strict (not in the docstring: that is the JSON schema's description, written into files):
    # a JSON true or "100" is not pixel 100 and "yes" is not pressed; a whole float (852.0) is read as an int.
    message_type: ClassVar[str] = "desktop/MouseEvent"
    event_type: Literal["move", "click", "scroll"]
    x: _JsonInt
    y: _JsonInt
    button: MouseButton | None = None
    pressed: StrictBool | None = None
    dx: _JsonInt | None = None
    dy: _JsonInt | None = None
    timestamp: _JsonInt | None = None


class RawMouseEvent(OWAMessage):
    """A raw (HID) mouse report: relative motion ``last_x``/``last_y`` and button flags."""

    message_type: ClassVar[str] = "desktop/RawMouseEvent"
    last_x: _JsonInt  # strict like MouseEvent: no bools or strings
    last_y: _JsonInt
    us_flags: _JsonInt = 0
    button_flags: _JsonInt = 0
    button_data: _JsonInt = 0
    device_handle: _JsonInt | None = None
    timestamp: _JsonInt | None = None


class WindowInfo(OWAMessage):
    """The active window: ``rect`` is ``[left, top, right, bottom]`` in screen pixels."""

    message_type: ClassVar[str] = "desktop/WindowInfo"
    title: str
    rect: tuple[int, int, int, int]
    hWnd: int


class KeyboardState(OWAMessage):
    """The set of virtual-key codes held down."""

    message_type: ClassVar[str] = "desktop/KeyboardState"
    buttons: set[int]


class MouseState(OWAMessage):
    """Pointer position and the buttons held down."""

    message_type: ClassVar[str] = "desktop/MouseState"
    x: int
    y: int
    buttons: set[MouseButton]


# --------------------------------------------------------------------------------------------------
# Media references (the URI policy lives in owa.data.media)
# --------------------------------------------------------------------------------------------------


class MediaRef(BaseModel):
    """Where a frame lives: ``uri`` of a video (or image) and ``pts_ns`` on the video's own timeline.

    No ``pts_ns`` means ``uri`` is a still image.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    uri: str
    pts_ns: int | None = None


class ScreenCaptured(OWAMessage):
    """A captured screen frame, usually a reference into the recording's video.

    ``shape`` and ``source_shape`` are ``(width, height)``. Relative ``media_ref.uri`` resolves against
    the recording's folder, which readers and transforms attach with :meth:`with_base_dir`.
    """

    message_type: ClassVar[str] = "desktop/ScreenCaptured"
    utc_ns: int | None = None
    source_shape: tuple[int, int] | None = None
    shape: tuple[int, int] | None = None
    media_ref: MediaRef | None = None

    _base_dir: str | None = PrivateAttr(default=None)

    def with_base_dir(self, base_dir: str | os.PathLike[str] | None) -> ScreenCaptured:
        """Return a copy whose relative URI resolves against ``base_dir``."""
        copy = self.model_copy()
        copy._base_dir = None if base_dir is None else os.fspath(base_dir)
        return copy

    @property
    def base_dir(self) -> str | None:
        return self._base_dir

    def resolve_media(self, policy: MediaPolicy = DEFAULT_MEDIA_POLICY) -> ResolvedMedia:
        """Apply ``policy`` to ``media_ref.uri``.

        Raises:
            MessageValidationError: the message has no ``media_ref``.
            UnsafeMediaURIError: the URI is not allowed.
        """
        if self.media_ref is None:
            raise MessageValidationError("ScreenCaptured has no media_ref to decode")
        return policy.resolve(self.media_ref.uri, self._base_dir)

    def to_rgb_array(self, policy: MediaPolicy = DEFAULT_MEDIA_POLICY) -> np.ndarray:
        """Decode the frame played at ``media_ref.pts_ns`` as an ``(height, width, 3)`` uint8 array.

        Raises:
            VideoNotFoundError: the video is missing (names the video and ``pts_ns``).
            FrameDecodeError, FrameOutOfRangeError, UnsafeMediaURIError.
        """
        from owa.data.frames import decode_screen

        return decode_screen(self, policy=policy)

    def to_pil_image(self, policy: MediaPolicy = DEFAULT_MEDIA_POLICY) -> Image.Image:
        """Like :meth:`to_rgb_array`, as a ``PIL.Image`` in RGB mode."""
        from PIL import Image

        return Image.fromarray(self.to_rgb_array(policy=policy), mode="RGB")


MESSAGE_TYPES: dict[str, type[OWAMessage]] = {
    cls.message_type: cls
    for cls in (KeyboardEvent, MouseEvent, RawMouseEvent, WindowInfo, KeyboardState, MouseState, ScreenCaptured)
}


def decode_payload(
    message_type: str,
    data: bytes | str,
    *,
    path: str | os.PathLike[str] | None = None,
    topic: str | None = None,
    timestamp_ns: int | None = None,
) -> OWAMessage:
    """Validate a current-form JSON payload into its typed model.

    Raises:
        MessageValidationError: unknown ``message_type`` or a payload that does not fit it; the error
            names the file, topic and timestamp when given.
    """
    cls = MESSAGE_TYPES.get(message_type)
    if cls is None:
        raise MessageValidationError(
            f"Unknown message type {message_type!r}. Supported: {', '.join(sorted(MESSAGE_TYPES))}",
            path=path,
            topic=topic,
            timestamp_ns=timestamp_ns,
        )
    try:
        return cls.model_validate_json(data)
    except ValidationError as e:
        raise MessageValidationError(
            f"Invalid {message_type} payload: {e.errors(include_url=False)}",
            path=path,
            topic=topic,
            timestamp_ns=timestamp_ns,
        ) from e


# --------------------------------------------------------------------------------------------------
# The McapMessage envelope
# --------------------------------------------------------------------------------------------------


class McapMessage(BaseModel):
    """One message of a recording: ``topic``, ``timestamp`` (ns), raw JSON ``message`` bytes, ``message_type``.

    ``model_dump_json()`` and ``model_validate_json()`` use upstream ``mcap_owa``'s layout, where
    ``message`` is the payload JSON as a string. The Event Dataset stores exactly these bytes in its
    ``mcap_message`` column.
    """

    model_config = ConfigDict(extra="forbid", ser_json_bytes="utf8", val_json_bytes="utf8")

    topic: str
    timestamp: int
    message: bytes
    message_type: str

    _source_path: str | None = PrivateAttr(default=None)

    def with_source(self, path: str | os.PathLike[str] | None) -> McapMessage:
        """Attach the recording path (not serialized); relative media resolves against its folder."""
        self._source_path = None if path is None else os.fspath(path)
        return self

    @property
    def source_path(self) -> str | None:
        return self._source_path

    @property
    def decoded(self) -> OWAMessage:
        """The payload as its typed model (:class:`KeyboardEvent`, :class:`ScreenCaptured`, ...).

        Raises:
            MessageValidationError: unknown type or invalid payload, naming topic and timestamp.
        """
        decoded = decode_payload(
            self.message_type, self.message, path=self._source_path, topic=self.topic, timestamp_ns=self.timestamp
        )
        if isinstance(decoded, ScreenCaptured) and self._source_path is not None:
            decoded._base_dir = episode_base_dir(self._source_path)
        return decoded

    def payload(self) -> dict[str, Any]:
        """The payload as a plain dict (fast, no validation)."""
        return orjson.loads(self.message)

    def __repr__(self) -> str:
        shown = self.message if len(self.message) <= 48 else self.message[:48] + b"..."
        return (
            f"McapMessage(topic={self.topic!r}, timestamp={self.timestamp}, "
            f"message_type={self.message_type!r}, message={shown!r})"
        )


def dump_mcap_message_json(topic: str, timestamp_ns: int, message_type: str, payload: bytes) -> bytes:
    """Fast path for ``McapMessage(...).model_dump_json().encode()``, byte-for-byte identical.

    Used by the stage-1 hot loop, where building a pydantic model per message would dominate.
    """
    return orjson.dumps(
        {"topic": topic, "timestamp": timestamp_ns, "message": payload.decode("utf-8"), "message_type": message_type}
    )


def serialize_screen(screen: ScreenCaptured) -> str:
    """A ScreenCaptured reference as a JSON string, keeping its ``base_dir`` (how relative media resolves).

    The form is the payload's fields plus ``"base_dir"``; :func:`deserialize_screen` reads it back. This is what
    the ``images`` column of a tokenized dataset holds.
    """
    payload = screen.model_dump_json(exclude_none=True)  # "{...}"
    base_dir = orjson.dumps(screen.base_dir).decode()
    return f'{{"base_dir":{base_dir}}}' if payload == "{}" else f'{payload[:-1]},"base_dir":{base_dir}}}'


def deserialize_screen(text: str | bytes) -> ScreenCaptured:
    """Read back what :func:`serialize_screen` wrote.

    Raises:
        MessageValidationError: the text is not a serialized ScreenCaptured reference.
    """
    try:
        fields = orjson.loads(text)
        base_dir = fields.pop("base_dir", None)
        return ScreenCaptured.model_validate(fields).with_base_dir(base_dir)
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as e:
        raise MessageValidationError(f"Not a serialized ScreenCaptured reference: {e}", snippet=str(text)[:160]) from e
