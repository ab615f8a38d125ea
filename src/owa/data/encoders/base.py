"""The event-encoder interface, its registry and what every encoder shares.

An encoder turns one :class:`~owa.data.messages.McapMessage` (a keyboard, mouse or screen event) into
text for a language model, plus the screen references its image tokens stand for, and back. Each
format is a small plugin: a subclass of :class:`EventEncoder` with its own typed config dataclass,
registered under a name with :func:`register_encoder`. :func:`create_encoder` builds one by name.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import orjson

from owa.data.counters import Counters
from owa.data.episode_paths import episode_base_dir
from owa.data.errors import EncodingError, MessageValidationError
from owa.data.messages import KeyboardEvent, McapMessage, MouseEvent, ScreenCaptured, decode_payload

__all__ = [
    "EVENT_END",
    "EVENT_START",
    "SUPPORTED_TOPICS",
    "EncoderConfig",
    "EncoderStats",
    "EventEncoder",
    "available_encoders",
    "create_encoder",
    "encoder_class",
    "keyboard_key",
    "register_encoder",
    "token_words",
    "validate_fields",
]

logger = logging.getLogger(__name__)

EVENT_START = "<EVENT_START>"
EVENT_END = "<EVENT_END>"

# topic -> the (current, normalized) message type an encoder accepts on it (an encoder's default
# ``supported_topics``). Stage 1 normalizes every recorder version to these names, so older schema names never
# reach an encoder.
SUPPORTED_TOPICS: dict[str, str] = {
    "keyboard": KeyboardEvent.message_type,
    "mouse": MouseEvent.message_type,
    "screen": ScreenCaptured.message_type,
}


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Settings every encoder has.

    Attributes:
        image_token: the text that stands for one screen frame (``"<IMAGE>"``; EpisodeTokenizer passes
            its own, such as ``"<image>"``).
    """

    image_token: str = "<IMAGE>"

    def __post_init__(self) -> None:
        if (
            not isinstance(self.image_token, str)
            or not self.image_token
            or self.image_token.strip() != self.image_token
        ):
            raise ValueError(
                f"Invalid image_token ({self.image_token!r}). It must be a non-empty string without surrounding "
                "whitespace, such as '<IMAGE>' or '<image>'."
            )


class EncoderStats(Counters):
    """What an encoder changed to make events fit its format; counts in this process (see
    :mod:`owa.data.counters` for how counts made in other processes come back).

    Attributes:
        coordinates_clamped: mouse coordinates (each ``x`` or ``y`` value) outside ``[0, screen size]``
            (off the configured screen, e.g. on another monitor), encoded at the nearest edge; for the
            factorized encoder, raw motion values (``last_x`` or ``last_y``) beyond ±1999, clamped to it.
        coordinates_saturated: mouse coordinates equal to the screen size (a normalized value of exactly
            1.0), encoded in the last cell.
        scrolls_clamped: scroll events with ``dx`` or ``dy`` beyond the format's range, clamped to it (for the
            factorized encoder: raw wheel deltas beyond ±9 notches).
    """

    TRACKS_ERRORS = False

    coordinates_clamped: int
    coordinates_saturated: int
    scrolls_clamped: int


ConfigT = TypeVar("ConfigT", bound=EncoderConfig)


class EventEncoder(abc.ABC):
    """Base of every event encoder.

    Subclasses set ``name`` and ``config_class`` (and ``supported_topics`` when they take other topics than
    :data:`SUPPORTED_TOPICS`) and implement :meth:`_encode_event`, :meth:`decode` and
    :meth:`get_vocab`. :meth:`encode` and :meth:`encode_serialized` are shared: they check the topic and
    message type, parse the payload with orjson (no pydantic on the keyboard/mouse path) and hand the
    plain dict to the subclass.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[EncoderConfig]] = EncoderConfig
    supported_topics: ClassVar[Mapping[str, str]] = SUPPORTED_TOPICS  # topic -> the message type taken on it

    def __init__(self, config: EncoderConfig | None = None) -> None:
        if config is None:
            config = self.config_class()
        elif not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.stats = EncoderStats()

    # ------------------------------------------------------------------------------------------ encode

    def encode(self, mcap_message: McapMessage) -> tuple[str, list[ScreenCaptured]]:
        """Encode one event as text.

        Args:
            mcap_message: a keyboard, mouse or screen message (current message types). Relative media of
                a screen message resolves against the folder of ``mcap_message.source_path`` when set.

        Returns:
            ``(text, images)``: the event's text, and the screen references its image tokens stand for
            (one for a screen event, none otherwise), in order.

        Raises:
            EncodingError: a topic outside :attr:`supported_topics` (window, state, ``mouse/raw`` or ``mouse``
                depending on the encoder...), a message type that does not
                belong to the topic, an invalid payload, or a value the format cannot hold (see the
                encoder's docs); the error names the topic and timestamp.
        """
        return self._encode_parts(
            mcap_message.topic,
            mcap_message.timestamp,
            mcap_message.message_type,
            mcap_message.message,
            mcap_message.source_path,
        )

    def encode_serialized(
        self, mcap_message_json: bytes | str, *, episode_path: str | os.PathLike[str] | None = None
    ) -> tuple[str, list[ScreenCaptured]]:
        """Like :meth:`encode`, from ``McapMessage.model_dump_json()`` bytes (an Event Dataset cell).

        Skips building the pydantic envelope, which is most of the cost for small events.
        ``episode_path`` is the recording the message came from; relative media resolves against its folder.

        Raises:
            EncodingError: as :meth:`encode`, or the bytes are not an McapMessage JSON object.
        """
        try:
            envelope = orjson.loads(mcap_message_json)
            topic = envelope["topic"]
            timestamp_ns = envelope["timestamp"]
            message_type = envelope["message_type"]
            payload = envelope["message"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            raise EncodingError(
                f"Not an McapMessage JSON object: {e}", path=episode_path, snippet=_snippet(mcap_message_json)
            ) from e
        if not isinstance(topic, str) or type(timestamp_ns) is not int or not isinstance(payload, str):
            raise EncodingError(
                "McapMessage JSON has wrong field types (topic: str, timestamp: int, message: str)",
                path=episode_path,
                snippet=_snippet(mcap_message_json),
            )
        source = None if episode_path is None else os.fspath(episode_path)
        return self._encode_parts(topic, timestamp_ns, message_type, payload, source)

    def _encode_parts(
        self, topic: str, timestamp_ns: int, message_type: str, payload: bytes | str, source_path: str | None
    ) -> tuple[str, list[ScreenCaptured]]:
        expected = self.supported_topics.get(topic)
        if expected is None:
            raise EncodingError(
                f"The {self.name} encoder cannot encode topic {topic!r}. Supported topics: "
                f"{', '.join(self.supported_topics)}; drop other topics before encoding",
                path=source_path,
                topic=topic,
                timestamp_ns=timestamp_ns,
                message_type=message_type,
            )
        if message_type != expected:
            raise EncodingError(
                f"Message type {message_type!r} on topic {topic!r}; expected {expected!r} (recordings read "
                "through owa.data are normalized to current message types)",
                path=source_path,
                topic=topic,
                timestamp_ns=timestamp_ns,
            )
        if topic == "screen":
            screen = self._parse_screen(payload, source_path, topic, timestamp_ns)
            return self._encode_screen(timestamp_ns, screen), [screen]
        try:
            fields = orjson.loads(payload)
        except orjson.JSONDecodeError as e:
            raise EncodingError(
                f"Payload is not JSON: {e}", path=source_path, topic=topic, timestamp_ns=timestamp_ns
            ) from e
        if not isinstance(fields, dict):
            raise EncodingError(
                f"Payload is a JSON {type(fields).__name__}, not an object",
                path=source_path,
                topic=topic,
                timestamp_ns=timestamp_ns,
            )
        try:
            return self._encode_action(topic, timestamp_ns, fields), []
        except EncodingError as e:
            if e.topic is None:  # add the context the format-specific code does not know
                raise e.with_context(path=source_path, topic=topic, timestamp_ns=timestamp_ns) from e
            raise

    @staticmethod
    def _parse_screen(payload: bytes | str, source_path: str | None, topic: str, timestamp_ns: int) -> ScreenCaptured:
        try:
            screen = decode_payload(
                ScreenCaptured.message_type, payload, path=source_path, topic=topic, timestamp_ns=timestamp_ns
            )
        except MessageValidationError as e:
            raise EncodingError(e.reason, path=source_path, topic=topic, timestamp_ns=timestamp_ns) from e
        assert isinstance(screen, ScreenCaptured)
        if source_path is not None:
            screen._base_dir = episode_base_dir(source_path)
        return screen

    @abc.abstractmethod
    def _encode_action(self, topic: str, timestamp_ns: int, fields: dict[str, Any]) -> str:
        """Text for a keyboard or mouse event given its payload dict. Raise EncodingError (no context needed)."""

    @abc.abstractmethod
    def _encode_screen(self, timestamp_ns: int, screen: ScreenCaptured) -> str:
        """Text for a screen event; the image token stands for ``screen``."""

    # ------------------------------------------------------------------------------------------ decode

    @abc.abstractmethod
    def decode(self, text: str, images: list[ScreenCaptured] | None = None) -> McapMessage:
        """Turn the text of one event back into an :class:`McapMessage`.

        Args:
            text: one event, ``<EVENT_START>...<EVENT_END>``, as :meth:`encode` writes it.
            images: for a screen event, the reference its image token stands for (what :meth:`encode`
                returned). Without it the screen payload carries no ``media_ref``.

        Raises:
            EncodingError: the text is not a well-formed event of this format; the error shows the text.
        """

    @abc.abstractmethod
    def get_vocab(self) -> set[str]:
        """Every special token :meth:`encode` can emit (tokenizers add these as single tokens)."""

    def token_descriptions(self) -> dict[str, str]:
        """Each token of :meth:`get_vocab` in a few plain words: ``"<KEYBOARD>"`` -> ``"keyboard"``.

        ``EpisodeTokenizer.prepare_model(init="semantic")`` starts a new token's embedding at the mean embedding
        of these words. This default reads the words off the token's text (:func:`token_words`) and calls the
        image token ``"image"``; an encoder overrides it where a token means more than its text says.
        """
        descriptions = {token: token_words(token) for token in self.get_vocab()}
        descriptions[self.config.image_token] = "image"
        return descriptions

    # ------------------------------------------------------------------------------------------ helpers

    def _unwrap(self, text: str) -> str:
        if not (text.startswith(EVENT_START) and text.endswith(EVENT_END)) or len(text) < len(EVENT_START) + len(
            EVENT_END
        ):
            raise EncodingError(f"An event must be {EVENT_START}...{EVENT_END}", snippet=_snippet(text))
        return text[len(EVENT_START) : -len(EVENT_END)]

    def _screen_payload(self, images: list[ScreenCaptured] | None, text: str) -> bytes:
        if not images:
            return b"{}"
        if len(images) != 1 or not isinstance(images[0], ScreenCaptured):
            raise EncodingError(
                f"A screen event takes exactly one ScreenCaptured image, got {_describe(images)}",
                snippet=_snippet(text),
            )
        return images[0].model_dump_json(exclude_none=True).encode()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


# ---------------------------------------------------------------------------------------------- registry

_REGISTRY: dict[str, type[EventEncoder]] = {}

EncoderT = TypeVar("EncoderT", bound=type[EventEncoder])


def register_encoder(name: str) -> Callable[[EncoderT], EncoderT]:
    """Class decorator: make an :class:`EventEncoder` subclass available to :func:`create_encoder` as ``name``."""

    def decorate(cls: EncoderT) -> EncoderT:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"Encoder name {name!r} is already registered by {existing.__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def available_encoders() -> list[str]:
    """Names :func:`create_encoder` accepts, in registration order (the built-in ones first: hierarchical, json,
    factorized)."""
    return list(_REGISTRY)


def encoder_class(encoder_type: str) -> type[EventEncoder]:
    """The :class:`EventEncoder` subclass registered as ``encoder_type``; its ``config_class`` is its config.

    Raises:
        ValueError: unknown encoder type.
    """
    cls = _REGISTRY.get(encoder_type)
    if cls is None:
        raise ValueError(
            f"Invalid encoder_type ({encoder_type!r}). Supported values are "
            f"{', '.join(repr(n) for n in available_encoders())}"
        )
    return cls


def create_encoder(encoder_type: str, **config: Any) -> EventEncoder:
    """Build the encoder registered as ``encoder_type`` ("hierarchical", "json" or "factorized") from config keywords.

    The keywords are the fields of that encoder's config dataclass, e.g.
    ``create_encoder("hierarchical", image_token="<image>", screen_size=(2560, 1440))``.

    Raises:
        ValueError: unknown encoder type, unknown config keyword, or an invalid config value.
    """
    cls = encoder_class(encoder_type)
    allowed = {f.name for f in dataclasses.fields(cls.config_class)}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(
            f"Invalid config for the {encoder_type} encoder: {', '.join(unknown)}. "
            f"Supported keywords are {', '.join(sorted(allowed))}"
        )
    return cls(cls.config_class(**config))


def token_words(token: str) -> str:
    """The words a token's text spells: ``"<EVENT_START>"`` -> ``"event start"``, ``"<|image_pad|>"`` -> ``"image
    pad"``.

    Angle brackets and bars are dropped, underscores and hyphens become spaces, letters are lower-cased; a token
    with no word characters is returned as it is.
    """
    words = " ".join(token.strip("<>|").replace("_", " ").replace("-", " ").lower().split())
    return words or token


def _snippet(text: bytes | str, limit: int = 160) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[:limit] + "..."


def _describe(images: Any) -> str:
    return f"{len(images)} item(s) of type(s) {sorted({type(i).__name__ for i in images})}"


_KEYBOARD_FIELDS = frozenset(KeyboardEvent.model_fields)
_KEY_EVENT_TYPES = frozenset({"press", "release"})


def validate_fields(model: type[Any], fields: dict[str, Any]) -> Any:
    """``model`` validated from a payload's ``fields``.

    Raises:
        EncodingError: the fields do not make a valid ``model``.
    """
    from pydantic import ValidationError

    try:
        return model.model_validate(fields)
    except ValidationError as e:
        raise EncodingError(f"Invalid {model.message_type} payload: {e.errors(include_url=False)}") from e


def keyboard_key(fields: dict[str, Any], *, max_vk: int, format_name: str) -> tuple[int, str]:
    """``(vk, event_type)`` of a keyboard payload's fields, checked against what ``format_name`` can express.

    Plain payloads take a fast path; anything unusual goes through :class:`KeyboardEvent` (pydantic decides).

    Raises:
        EncodingError: an invalid payload, or ``vk`` outside ``0..max_vk``.
    """
    vk = fields.get("vk")
    event_type = fields.get("event_type")
    if type(vk) is not int or event_type not in _KEY_EVENT_TYPES or not fields.keys() <= _KEYBOARD_FIELDS:
        event = validate_fields(KeyboardEvent, fields)
        vk, event_type = event.vk, event.event_type
    if not 0 <= vk <= max_vk:
        raise EncodingError(
            f"Key code vk={vk} is outside 0-{max_vk}, which the {format_name} format can express "
            "(Windows virtual-key codes are 1-254)",
            vk=vk,
        )
    return vk, event_type
