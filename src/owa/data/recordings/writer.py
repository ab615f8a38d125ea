"""OWAMcap writer: typed messages (or raw payloads) into an MCAP file that ``mcap`` and upstream read.

The file looks like one written by upstream's recorder: header profile ``owa``, every channel with
``message_encoding="json"``, every schema with ``encoding="jsonschema"``, the message type as schema
name and the typed model's JSON schema as schema data. Payloads are compact UTF-8 JSON with ``None``
fields left out, as upstream's ``model_dump_json(exclude_none=True)`` writes them.

Example::

    from owa.data import KeyboardEvent
    from owa.data.recordings.writer import OWAMcapWriter

    with OWAMcapWriter("episode.mcap") as writer:
        writer.write_message("keyboard", KeyboardEvent(event_type="press", vk=65), timestamp_ns=1_700_000_000 * 10**9)
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal, get_args

import mcap
import orjson
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import CompressionType, Writer

from owa.data.messages import MESSAGE_TYPES, McapMessage, OWAMessage

__all__ = ["DEFAULT_CHUNK_SIZE", "Compression", "OWAMcapWriter", "default_library_string", "json_schema_bytes"]

Compression = Literal["zstd", "lz4", "none"]
_COMPRESSION_TYPES: dict[str, CompressionType] = {
    "zstd": CompressionType.ZSTD,
    "lz4": CompressionType.LZ4,
    "none": CompressionType.NONE,
}
DEFAULT_CHUNK_SIZE = 1024 * 1024
"""Uncompressed bytes per chunk, upstream's default (1 MiB)."""


def default_library_string() -> str:
    """The header library string, ``owa-data <version>; mcap <version>``."""
    from owa.data import __version__

    return f"owa-data {__version__}; mcap {getattr(mcap, '__version__', 'unknown')}"


class OWAMcapWriter:
    """Write an OWAMcap file. Use as a context manager, or call :meth:`close` yourself.

    Args:
        path: The ``.mcap`` file to create (overwritten if it exists).
        compression: Chunk compression, one of ``"zstd"`` (default, as the recorder), ``"lz4"``, ``"none"``.
        chunk_size: Target uncompressed chunk size in bytes; smaller values give more chunks.
        library: Header library string; defaults to :func:`default_library_string`.

    One channel is registered per ``(topic, message_type)`` pair and one schema per message type (per
    ``(message_type, schema_data)`` for raw writes). Timestamps are integer nanoseconds since the Unix
    epoch; ``timestamp_ns`` becomes the MCAP ``log_time``.

    Raises:
        ValueError: an unsupported ``compression`` or a non-positive ``chunk_size``.
        OSError: the file cannot be created.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        compression: Compression = "zstd",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        library: str | None = None,
    ) -> None:
        if compression not in _COMPRESSION_TYPES:
            raise ValueError(
                f"Invalid compression ({compression!r}). Supported values are: {', '.join(get_args(Compression))}"
            )
        if not isinstance(chunk_size, int) or chunk_size <= 0:
            raise ValueError(f"Invalid chunk_size ({chunk_size!r}). It must be a positive number of bytes")
        self.path = Path(path)
        self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        try:
            self._writer = Writer(self._file, chunk_size=chunk_size, compression=_COMPRESSION_TYPES[compression])
            self._writer.start(profile="owa", library=library if library is not None else default_library_string())
        except BaseException:
            self._file.close()
            raise
        self._schema_ids: dict[tuple[str, bytes], int] = {}
        self._typed_schema_ids: dict[type[OWAMessage], int] = {}
        self._channel_ids: dict[tuple[str, int], int] = {}
        self._message_counts: dict[str, int] = {}
        self._closed = False

    # ----------------------------------------------------------------------------------------------
    # Writing
    # ----------------------------------------------------------------------------------------------

    def write_message(
        self, topic: str, message: OWAMessage, *, timestamp_ns: int, publish_time_ns: int | None = None
    ) -> None:
        """Write a typed message; its class gives the schema name and the JSON schema.

        Args:
            topic: The channel topic, e.g. ``"keyboard"``.
            message: A typed payload such as :class:`~owa.data.messages.KeyboardEvent`.
            timestamp_ns: Log time in nanoseconds since the Unix epoch.
            publish_time_ns: Publish time; defaults to ``timestamp_ns``.

        Raises:
            TypeError: ``message`` is not a typed OWA message.
            ValueError: a negative timestamp, or the writer is closed.
        """
        if not isinstance(message, OWAMessage):
            raise TypeError(
                f"Invalid message ({type(message).__name__}). Expected a typed OWAMessage such as KeyboardEvent"
            )
        cls = type(message)
        schema_id = self._typed_schema_ids.get(cls)
        if schema_id is None:
            schema_id = self._schema_id(cls.message_type, json_schema_bytes(cls))
            self._typed_schema_ids[cls] = schema_id
        payload = message.model_dump_json(exclude_none=True).encode("utf-8")
        self._add(topic, schema_id, payload, timestamp_ns, publish_time_ns)

    def write_raw(
        self,
        topic: str,
        message_type: str,
        payload: bytes,
        *,
        timestamp_ns: int,
        publish_time_ns: int | None = None,
        schema_data: bytes = b"{}",
    ) -> None:
        """Write payload bytes as they are, under any schema name (e.g. a legacy one).

        Nothing is validated or re-serialized: this is how tests build recordings of old recorder versions
        (``owa.env.gst.msg.ScreenEmitted`` with ``path``/``pts``, ...) or deliberately bad payloads.

        Args:
            topic: The channel topic.
            message_type: The schema name, written as is.
            payload: The message bytes (normally UTF-8 JSON).
            timestamp_ns: Log time in nanoseconds since the Unix epoch.
            publish_time_ns: Publish time; defaults to ``timestamp_ns``.
            schema_data: The JSON schema bytes stored with the schema.

        Raises:
            ValueError: a negative timestamp, or the writer is closed.
        """
        self._add(topic, self._schema_id(message_type, bytes(schema_data)), payload, timestamp_ns, publish_time_ns)

    def write_mcap_message(self, message: McapMessage) -> None:
        """Write an :class:`~owa.data.messages.McapMessage` (topic, timestamp, type, payload bytes) as is.

        Known message types get their model's JSON schema; unknown ones an empty schema.
        """
        cls = MESSAGE_TYPES.get(message.message_type)
        schema_data = json_schema_bytes(cls) if cls is not None else b"{}"
        self.write_raw(
            message.topic,
            message.message_type,
            message.message,
            timestamp_ns=message.timestamp,
            schema_data=schema_data,
        )

    @property
    def message_counts(self) -> dict[str, int]:
        """Messages written so far, per topic."""
        return dict(self._message_counts)

    # ----------------------------------------------------------------------------------------------
    # Life cycle
    # ----------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Write the summary and footer and close the file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._writer.finish()
        finally:
            self._file.close()

    def __enter__(self) -> OWAMcapWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Finish even on error so that what was written stays a complete, readable file.
        self.close()

    # ----------------------------------------------------------------------------------------------
    # Internals
    # ----------------------------------------------------------------------------------------------

    def _schema_id(self, name: str, data: bytes) -> int:
        key = (name, data)
        schema_id = self._schema_ids.get(key)
        if schema_id is None:
            self._check_open()
            schema_id = self._writer.register_schema(name=name, encoding=SchemaEncoding.JSONSchema, data=data)
            self._schema_ids[key] = schema_id
        return schema_id

    def _add(self, topic: str, schema_id: int, payload: bytes, timestamp_ns: int, publish_time_ns: int | None) -> None:
        self._check_open()
        if timestamp_ns < 0 or (publish_time_ns is not None and publish_time_ns < 0):
            raise ValueError(f"Invalid timestamp_ns ({timestamp_ns}). Timestamps are non-negative ns since the epoch")
        key = (topic, schema_id)
        channel_id = self._channel_ids.get(key)
        if channel_id is None:
            channel_id = self._writer.register_channel(
                topic=topic, message_encoding=MessageEncoding.JSON, schema_id=schema_id
            )
            self._channel_ids[key] = channel_id
        self._writer.add_message(
            channel_id=channel_id,
            log_time=timestamp_ns,
            data=payload,
            publish_time=timestamp_ns if publish_time_ns is None else publish_time_ns,
            sequence=0,  # upstream's recorder always writes 0
        )
        self._message_counts[topic] = self._message_counts.get(topic, 0) + 1

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"OWAMcapWriter for {self.path} is closed")


_SCHEMA_DATA: dict[type[OWAMessage], bytes] = {}


def json_schema_bytes(cls: type[OWAMessage]) -> bytes:
    """The schema data the writer stores for ``cls``: its pydantic JSON schema as compact JSON (cached)."""
    data = _SCHEMA_DATA.get(cls)
    if data is None:
        data = _SCHEMA_DATA[cls] = orjson.dumps(cls.model_json_schema())
    return data
