"""The exception hierarchy of owa-data.

Every error the library raises on purpose derives from :class:`OWADataError`. Subclasses carry the
context that failed (file, topic, timestamp in nanoseconds, dataset row, byte offset) as attributes,
and render it in their message, so a failure in a thousand-file run points at the exact place.
"""

from __future__ import annotations

import copy
import os
from os import PathLike
from typing import Any, Literal

__all__ = [
    "CorruptRecordingError",
    "DatasetError",
    "EncodingError",
    "ExecutionError",
    "FrameDecodeError",
    "FrameOutOfRangeError",
    "ImageLayoutError",
    "InvalidInputError",
    "MediaError",
    "MessageValidationError",
    "OWADataError",
    "OnError",
    "OutputExistsError",
    "OutputWriteError",
    "PackingError",
    "RecordingError",
    "StorageAccessError",
    "TokenizerMismatchError",
    "TokenizerNotPreparedError",
    "UnsafeMediaURIError",
    "VideoNotFoundError",
    "check_on_error",
]

OnError = Literal["raise", "skip"]
"""The policy for bad data, wherever a function offers one: ``"raise"`` a typed error naming the row,
file or frame, or ``"skip"`` it (counted in the caller's stats and logged)."""
_ON_ERROR_VALUES: tuple[OnError, ...] = ("raise", "skip")


def check_on_error(value: object, *, name: str = "on_error") -> OnError:
    """``value`` if it is a valid :data:`OnError`, else ValueError naming the argument ``name``.

    >>> check_on_error("ignore")
    Traceback (most recent call last):
    ...
    ValueError: Invalid on_error ('ignore'). Supported values are 'raise', 'skip'.
    """
    if value not in _ON_ERROR_VALUES:
        supported = ", ".join(repr(v) for v in _ON_ERROR_VALUES)
        raise ValueError(f"Invalid {name} ({value!r}). Supported values are {supported}.")
    return value  # type: ignore[return-value]  # checked just above


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
        """A copy of this error (same type, message and attributes) that also carries ``fields``.

        Fields that are None are ignored; what the error already names (file, topic, timestamp, row or
        other context) wins over ``fields``. Raise it ``from`` the original to keep the chain.

        >>> VideoNotFoundError("Video file not found", path="a.mkv").with_context(path="b.mkv", row=3).args[0]
        'Video file not found (file=a.mkv, row=3)'
        """
        fields = {k: v for k, v in fields.items() if v is not None}
        error = copy.copy(self)  # keeps subclass attributes (offset, ...) and notes
        for name in _LOCATION_FIELDS:
            value = fields.pop(name, None)
            if getattr(error, name) is None and value is not None:
                setattr(error, name, str(value) if name == "path" else value)
        # New fields come first, as they name the outer place (row, sample) and the error's own detail follows.
        error.context = {**{k: v for k, v in fields.items() if k not in self.context}, **self.context}
        error.args = (error._render(),)
        return error

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickling (DataLoader and multiprocessing workers send errors back), copy.copy and copy.deepcopy all
        # come here: rebuild without calling a subclass __init__ (whose arguments may differ), then restore
        # every attribute, subclass fields included.
        return (_rebuild_error, (type(self), self.args), self.__dict__)


_LOCATION_FIELDS = ("path", "topic", "timestamp_ns", "row")


def _rebuild_error(cls: type[OWADataError], args: tuple[Any, ...]) -> OWADataError:
    return cls.__new__(cls, *args)


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


class StorageAccessError(OWADataError):
    """Object storage refused or could not serve a request: access denied, no usable credentials, or an
    unreachable endpoint. Names the URL and the service's reason (see :mod:`owa.data.storage`)."""


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


class InvalidInputError(DatasetError):
    """A dataset or folder given to read or write cannot be used as asked: missing, not the expected kind
    of dataset, overlapping another input, or (:class:`OutputExistsError`) already there.

    The caller's arguments are wrong, not the data inside: the CLI exits with status 2 for it (1 for other
    errors)."""


class OutputExistsError(InvalidInputError):
    """The output folder exists and overwriting was not requested."""


class OutputWriteError(OWADataError):
    """An output (a dataset folder, a recording) cannot be written: permission denied, a path under a file, a name
    too long, a full disk, a read-only file system... ``path`` is the output asked for; ``reason`` says why, with
    the operating system's own words; ``errno`` is its error number when it gave one.

    The data and arguments may be fine, the place is not: the CLI exits with status 1.
    """

    errno: int | None = None

    @classmethod
    def from_os_error(
        cls, error: OSError, *, path: str | PathLike[str], action: str = "write", **context: Any
    ) -> OutputWriteError:
        """The error for ``error`` (raised while doing ``action`` at or under ``path``); chain it with ``from``."""
        # os.strerror: the same words whoever raised it (pyarrow wraps them in longer messages).
        reason = os.strerror(error.errno) if error.errno else str(error) or type(error).__name__
        if error.filename is not None and str(error.filename) != str(path):
            context.setdefault("at", str(error.filename))
        new = cls(f"Cannot {action} output: {reason}", path=path, **context)
        new.errno = error.errno
        return new


class ExecutionError(OWADataError):
    """The engine could not run a stage's tasks: the Ray cluster cannot be reached, or a task lost its worker on
    every try (:mod:`owa.data.executors`)."""


class TokenizerMismatchError(DatasetError):
    """A tokenized or packed dataset was opened with a tokenizer whose vocabulary differs from the one that made its
    ids. The context names the dataset (``file``) and both tokenizers' names and vocabulary fingerprints
    (``recorded``, ``given``)."""


class TokenizerNotPreparedError(OWADataError):
    """Tokenization was attempted before ``EpisodeTokenizer.prepare_model``."""


class PackingError(OWADataError):
    """Events cannot be packed into sequences (e.g. one event is longer than the sequence length)."""
