"""The exception hierarchy of owa-data.

Every error the library raises on purpose derives from :class:`OWADataError`. Subclasses carry the
context that failed (file, topic, timestamp in nanoseconds, dataset row, byte offset) as attributes,
and render it in their message, so a failure in a thousand-file run points at the exact place.
"""

from __future__ import annotations

from os import PathLike
from typing import Any

__all__ = [
    "CorruptRecordingError",
    "DatasetError",
    "EncodingError",
    "FrameDecodeError",
    "FrameOutOfRangeError",
    "ImageLayoutError",
    "MediaError",
    "MessageValidationError",
    "OWADataError",
    "OutputExistsError",
    "PackingError",
    "RecordingError",
    "TokenizerNotPreparedError",
    "UnsafeMediaURIError",
    "VideoNotFoundError",
]


class OWADataError(Exception):
    """Root of every error raised by owa-data.

    Context fields are keyword-only and optional; those given are appended to the message as
    ``(file=..., topic=..., timestamp_ns=...)``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | PathLike[str] | None = None,
        topic: str | None = None,
        timestamp_ns: int | None = None,
        row: int | None = None,
        **context: Any,
    ) -> None:
        self.reason = message
        self.path = None if path is None else str(path)
        self.topic = topic
        self.timestamp_ns = timestamp_ns
        self.row = row
        self.context = context
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [
            f"{name}={value}"
            for name, value in (
                ("file", self.path),
                ("topic", self.topic),
                ("timestamp_ns", self.timestamp_ns),
                ("row", self.row),
                *self.context.items(),
            )
            if value is not None
        ]
        return f"{self.reason} ({', '.join(parts)})" if parts else self.reason

    def with_context(self, **fields: Any) -> OWADataError:
        """A copy of this error (same type, same message) that also carries ``fields``.

        Fields that are None are ignored; what the error already names (file, topic, timestamp, row or
        other context) wins over ``fields``. Raise it ``from`` the original to keep the chain.
        """
        fields = {k: v for k, v in fields.items() if v is not None}
        base = {"path": self.path, "topic": self.topic, "timestamp_ns": self.timestamp_ns, "row": self.row}
        for name, value in base.items():
            if value is None and name in fields:
                base[name] = fields[name]
            fields.pop(name, None)
        copy = type(self).__new__(type(self))
        OWADataError.__init__(copy, self.reason, **base, **{**fields, **self.context})
        return copy

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep context across pickling, e.g. when raised inside a DataLoader or multiprocessing worker.
        kwargs = {"path": self.path, "topic": self.topic, "timestamp_ns": self.timestamp_ns, "row": self.row}
        return (_rebuild_error, (type(self), self.reason, kwargs, self.context))


def _rebuild_error(cls: type[OWADataError], reason: str, kwargs: dict[str, Any], context: dict[str, Any]) -> Exception:
    error = cls.__new__(cls)
    OWADataError.__init__(error, reason, **kwargs, **context)
    return error


class RecordingError(OWADataError):
    """A recording (``.mcap`` file) cannot be opened or read."""


class CorruptRecordingError(RecordingError):
    """A recording is damaged: truncated, a corrupt chunk or a bad record.

    ``offset`` is the byte offset where reading stopped; ``messages_read`` how many messages came
    before the damage.
    """

    def __init__(
        self, message: str, *, path: str | PathLike[str], offset: int | None, messages_read: int, **context: Any
    ) -> None:
        super().__init__(message, path=path, offset=offset, messages_read=messages_read, **context)
        self.offset = offset
        self.messages_read = messages_read


class MessageValidationError(OWADataError):
    """A message payload does not match its declared type."""


class MediaError(OWADataError):
    """A screen frame cannot be resolved or decoded."""


class UnsafeMediaURIError(MediaError):
    """A media URI is outside what the active :class:`~owa.data.messages.MediaPolicy` allows."""


class VideoNotFoundError(MediaError):
    """The video a screen message points into does not exist."""


class FrameDecodeError(MediaError):
    """The video exists but the frame cannot be decoded."""


class FrameOutOfRangeError(MediaError):
    """A frame was requested past the end (or before the start) of the video stream."""


class EncodingError(OWADataError):
    """An event cannot be encoded to, or decoded from, text."""


class ImageLayoutError(OWADataError, ValueError):
    """An image layout is invalid, or does not fit a tokenizer, processor or event vocabulary.

    Also a :class:`ValueError`, as it reports an invalid setting.
    """


class DatasetError(OWADataError):
    """A dataset has the wrong schema, overlapping splits or similar structural problems."""


class OutputExistsError(DatasetError):
    """The output folder exists and overwriting was not requested."""


class TokenizerNotPreparedError(OWADataError):
    """Tokenization was attempted before ``EpisodeTokenizer.prepare_model``."""


class PackingError(OWADataError):
    """Events cannot be packed into sequences (e.g. one event is longer than the sequence length)."""
