"""Reading OWAMcap recordings: ordered, filtered, version-normalized, and honest about damage.

:class:`OWAMcapReader` yields :class:`RecordedMessage` tuples ``(topic, timestamp_ns, message_type, data)``
in log-time order. It parses MCAP records itself (with ``struct``) rather than through
``mcap.reader``'s per-record objects, because this loop is the hot path of stage 1; the ``mcap``
package is still used for the summary section.

* **Filters go down.** With a summary, chunks whose channels or time range miss the filter are never
  decompressed; messages of other topics are skipped before their payload is sliced.
* **Order.** A file's kept messages are gathered and ordered once (a linear check, and no sort when the
  chunks follow each other in time): chunks' declared time bounds are not trusted for ordering.
* **Versions.** Schema names and payloads of every recorder version are normalized in memory by
  :mod:`owa.data.recordings.versions`; current payloads pass through as the same bytes.
* **Damage.** A file without summary/footer (the recorder crashed) is scanned record by record; one that
  ends before its DataEnd record was cut short, even when the cut falls cleanly between two chunks. A
  truncated record, a corrupt chunk, a bad record or a missing DataEnd raises a
  :class:`~owa.data.errors.CorruptRecordingError` naming the file and byte offset, after every message
  read before it (``on_damage="raise"``, the default), or is recorded in :attr:`OWAMcapReader.report` and
  logged (``on_damage="salvage"``). Salvage skips a corrupt chunk and goes on with the next, counting
  skipped chunks: through the chunk index with a summary, and without one by searching forward for the
  next record that parses as a whole chunk (known compression, consistent lengths, matching CRC).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Literal, NamedTuple

import orjson

from owa.data.errors import CorruptRecordingError, MessageValidationError, RecordingError
from owa.data.messages import McapMessage
from owa.data.recordings.versions import PayloadNormalizer, normalize_message_type, payload_normalizer
from owa.data.storage import StorageOptions, is_url, open_input

__all__ = ["OWAMcapReader", "ReadReport", "RecordedMessage", "read_messages"]

logger = logging.getLogger(__name__)

MAGIC = b"\x89MCAP0\r\n"
_OP_HEADER, _OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
_OP_DATA_END = 0x0F
_RECORD_HEAD = struct.Struct("<BQ")
_MESSAGE_HEAD = struct.Struct("<HIQQ")  # channel_id, sequence, log_time, publish_time
_CHUNK_HEAD = struct.Struct("<QQQI")  # message_start_time, message_end_time, uncompressed_size, uncompressed_crc
_U16, _U32, _U64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")
_MAX_RECORD_BYTES = 4 * 1024**3
_CHUNK_OPCODE = bytes([_OP_CHUNK])
_COMPRESSION_NAMES = frozenset((b"", b"zstd", b"lz4"))  # the chunk compressions _DECOMPRESSORS reads
# Read-ahead of a recording opened by URL. Each chunk is read in one request of its own length; the
# read-ahead serves the next chunk of a time window and the summary's small records, and is all a
# skipped stretch of the file costs.
_URL_BLOCK_SIZE = 64 * 1024


class RecordedMessage(NamedTuple):
    """One message: ``topic``, ``timestamp_ns`` (log time), normalized ``message_type``, JSON payload ``data``."""

    topic: str
    timestamp_ns: int
    message_type: str
    data: bytes

    def to_mcap_message(self, source_path: str | os.PathLike[str] | None = None) -> McapMessage:
        """As an :class:`~owa.data.messages.McapMessage`; ``source_path`` anchors relative media URIs."""
        message = McapMessage(
            topic=self.topic, timestamp=self.timestamp_ns, message=self.data, message_type=self.message_type
        )
        return message.with_source(source_path)


@dataclasses.dataclass(slots=True)
class ReadReport:
    """What a read produced and what it could not: counted, never silent."""

    path: str
    messages_read: int = 0
    damaged: bool = False
    error: str | None = None
    offset: int | None = None
    chunks_skipped: int = 0
    bad_messages: int = 0
    had_summary: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class _Channel:
    topic: str
    message_type: str
    normalize: PayloadNormalizer | None


class _Damage(Exception):
    """Internal: the byte stream is broken at ``offset``."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


class OWAMcapReader:
    """Reads one OWAMcap file. Use as a context manager or call :meth:`close`.

    Args:
        path: the ``.mcap`` file: a local path or an fsspec URL such as ``s3://bucket/prefix/ep.mcap``. A
            URL is read with range requests (:func:`owa.data.storage.open_input`): with a summary, a
            filtered read fetches the summary and the chunks it needs, not the whole file.
        on_damage: ``"raise"`` (default) raises :class:`CorruptRecordingError` where the damage is, after
            yielding every message before it; ``"salvage"`` skips a corrupt chunk (or stops at the damage),
            logs a warning and records the damage in :attr:`report`.
        validate_crcs: check chunk CRCs (cheap next to decompression, so on by default).
        storage_options: for a URL, the options of its fsspec filesystem (credentials, ``endpoint_url``);
            fsspec's defaults where None.

    Raises:
        RecordingError: the file cannot be opened (missing, unreadable) or is not an MCAP file.
        StorageAccessError: a URL whose object store denies access or cannot be reached.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        on_damage: Literal["raise", "salvage"] = "raise",
        validate_crcs: bool = True,
        storage_options: StorageOptions | None = None,
    ) -> None:
        if on_damage not in ("raise", "salvage"):
            raise ValueError(f"Invalid on_damage ({on_damage!r}). Supported values are 'raise', 'salvage'.")
        #: The recording: a Path, or the URL string as given.
        self.path: Path | str = path if is_url(path) else Path(path)  # type: ignore[assignment]  # is_url: a str
        self._on_damage = on_damage
        self._validate_crcs = validate_crcs
        try:
            self._file: BinaryIO = open_input(self.path, storage_options, block_size=_URL_BLOCK_SIZE)
        except OSError as e:
            raise RecordingError(f"Cannot open recording: {e.strerror or e}", path=self.path) from e
        self.size = self._file.seek(0, os.SEEK_END)
        self._file.seek(0)
        if self._file.read(len(MAGIC)) != MAGIC:
            self.close()
            raise RecordingError("Not an MCAP file (bad magic bytes)", path=self.path)
        self.report = ReadReport(path=str(self.path))
        self.profile, self.library = self._read_header()
        self._summary = self._read_summary()
        self.report.had_summary = self._summary is not None

    # -- public ----------------------------------------------------------------------------------

    def iter_messages(
        self,
        topics: Iterable[str] | str | None = None,
        *,
        start_time_ns: int | None = None,
        end_time_ns: int | None = None,
    ) -> Iterator[RecordedMessage]:
        """Yield messages in log-time order (ties in file order), within ``[start_time_ns, end_time_ns)``.

        Raises:
            CorruptRecordingError: damage found and ``on_damage="raise"``.
            MessageValidationError: a payload of a versioned type is not valid JSON.
        """
        wanted = {topics} if isinstance(topics, str) else None if topics is None else set(topics)
        self.report.messages_read = 0
        window = (start_time_ns, end_time_ns)
        if self._summary is not None and self._summary.chunk_indexes:
            batches = self._indexed_batches(wanted, window)
        else:
            batches = self._scanned_batches(wanted, window)
        for message in _in_log_time_order(batches):
            self.report.messages_read += 1
            yield message
        if self.report.damaged and self._on_damage == "raise":
            raise CorruptRecordingError(
                f"Damaged recording: {self.report.error}",
                path=self.path,
                offset=self.report.offset,
                messages_read=self.report.messages_read,
            )

    def topic_counts(self) -> dict[str, int] | None:
        """Messages per topic from the file's statistics record, or None when it has none."""
        stats = None if self._summary is None else self._summary.statistics
        if stats is None:
            return None
        counts: dict[str, int] = {}
        for channel_id, count in stats.channel_message_counts.items():
            channel = self._summary.channels.get(channel_id) if self._summary else None
            if channel is not None:
                counts[channel.topic] = counts.get(channel.topic, 0) + count
        return counts

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> OWAMcapReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- structure -------------------------------------------------------------------------------

    def _read_header(self) -> tuple[str, str]:
        try:
            opcode, length = _RECORD_HEAD.unpack(self._file.read(_RECORD_HEAD.size))
            if length > self.size:
                raise ValueError("header length exceeds the file")
            body = self._file.read(length)
            if opcode != _OP_HEADER or len(body) != length:
                raise ValueError
            profile, pos = _read_str(body, 0)
            library, _ = _read_str(body, pos)
        except (struct.error, ValueError, UnicodeDecodeError) as e:
            self.close()
            raise RecordingError("MCAP header record is missing or damaged", path=self.path) from e
        return profile, library

    def _read_summary(self):  # -> mcap.summary.Summary | None
        from mcap.exceptions import McapError
        from mcap.reader import SeekingReader

        if self.size < len(MAGIC) * 2 + 29:
            return None
        try:
            self._file.seek(0)
            summary = SeekingReader(self._file).get_summary()
            if summary is not None:
                _check_summary(summary, self.size)
            return summary
        except (McapError, struct.error, ValueError, EOFError, KeyError, OSError, UnicodeDecodeError) as e:
            # A crashed recorder leaves no footer, and a damaged summary cannot be trusted: either way
            # the scan path reads the records themselves, up to any damage.
            logger.debug("%s: no usable summary (%s); scanning records", self.path, e)
            return None

    def _channels_from_summary(self) -> dict[int, _Channel]:
        assert self._summary is not None
        return {
            cid: _make_channel(ch.topic, self._summary.schemas[ch.schema_id].name if ch.schema_id else "")
            for cid, ch in self._summary.channels.items()
        }

    # -- message batches (one per chunk), filtered ------------------------------------------------

    def _indexed_batches(
        self, wanted: set[str] | None, window: tuple[int | None, int | None]
    ) -> Iterator[list[RecordedMessage]]:
        """The kept messages of each chunk, one list per chunk, in declared chunk-start order."""
        assert self._summary is not None
        channels = self._channels_from_summary()
        keep = {cid for cid, ch in channels.items() if wanted is None or ch.topic in wanted}
        start, end = window
        chunk_indexes = sorted(self._summary.chunk_indexes, key=lambda c: (c.message_start_time, c.chunk_start_offset))
        for index in chunk_indexes:
            if not keep.intersection(index.message_index_offsets) and index.message_index_offsets:
                continue
            if (start is not None and index.message_end_time < start) or (
                end is not None and index.message_start_time >= end
            ):
                continue
            offset = index.chunk_start_offset
            try:
                # One read of the whole record (its declared length), so a URL costs one range request.
                self._file.seek(offset)
                record = self._file.read(index.chunk_length)
                if len(record) < _RECORD_HEAD.size:
                    raise _Damage("chunk index points past the end of the file", offset)
                opcode, length = _RECORD_HEAD.unpack_from(record, 0)
                if opcode != _OP_CHUNK or length > index.chunk_length:
                    raise _Damage("chunk index points at something that is not a chunk", offset)
                if _RECORD_HEAD.size + length > len(record):  # a writer that left the prefix out of chunk_length
                    record += self._file.read(_RECORD_HEAD.size + length - len(record))
                body = memoryview(record)[_RECORD_HEAD.size : _RECORD_HEAD.size + length]
                if len(body) != length:
                    raise _Damage("chunk is truncated", offset)
                records = self._decompress_chunk(body, offset)
                batch = list(self._messages_in(records, channels, None, keep, window, offset + 9))
            except _MALFORMED as e:
                self._damaged(_Damage(f"malformed record ({type(e).__name__}: {e})", offset))
            except _Damage as damage:
                self._damaged(damage)
            else:
                yield batch
                continue
            if self._on_damage == "raise":
                return
            self.report.chunks_skipped += 1

    def _scanned_batches(
        self, wanted: set[str] | None, window: tuple[int | None, int | None]
    ) -> Iterator[list[RecordedMessage]]:
        """Linear scan from the start: the path for files without a usable summary (or without chunks).

        Records are read up to the DataEnd record; a file that stops before it was cut short (a crashed
        recorder), even when it stops cleanly between two records, and that is damage at its last byte.
        When salvaging, a damaged record does not end the scan: it goes on at the next whole chunk (see
        :func:`_next_chunk`), counting the skipped part in ``chunks_skipped``.
        """
        channels: dict[int, _Channel] = {}
        schemas: dict[int, str] = {}
        self._file.seek(0)
        raw = self._file.read()
        data = memoryview(raw)
        pos: int | None = len(MAGIC)
        ended = False
        while pos is not None and pos < len(data) and not ended:
            try:
                batch, pos, ended = self._scan_record(data, pos, channels, schemas, wanted, window)
            except _Damage as damage:
                self._damaged(damage)
                if self._on_damage == "raise":
                    return
                pos = self._resync(raw, pos + 1, channels, schemas)
                self.report.chunks_skipped += pos is not None
                continue
            if batch:
                yield batch
        if not ended and pos is not None:
            self._damaged(_Damage("recording ends without a DataEnd record (cut short)", len(data)))

    def _scan_record(
        self,
        data: memoryview,
        pos: int,
        channels: dict[int, _Channel],
        schemas: dict[int, str],
        wanted: set[str] | None,
        window: tuple[int | None, int | None],
    ) -> tuple[list[RecordedMessage], int, bool]:
        """Read the record at ``pos``: ``(its kept messages, the next record's offset, whether data ended)``."""
        if pos + 9 > len(data):
            raise _Damage("truncated record header", pos)
        opcode, length = _RECORD_HEAD.unpack_from(data, pos)
        body_start = pos + 9
        if length > _MAX_RECORD_BYTES or body_start + length > len(data):
            raise _Damage(f"truncated record (opcode 0x{opcode:02x}, {length} bytes declared)", pos)
        batch: list[RecordedMessage] = []
        try:
            if opcode == _OP_CHUNK:
                records = self._decompress_chunk(data[body_start : body_start + length], pos)
                batch.extend(self._messages_in(records, channels, schemas, wanted, window, pos))
            elif opcode in (_OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE):
                batch.extend(self._messages_in(data[pos : body_start + length], channels, schemas, wanted, window, pos))
        except _MALFORMED as e:
            raise _Damage(f"malformed record ({type(e).__name__}: {e})", pos) from e
        return batch, body_start + length, opcode in (_OP_DATA_END, _OP_FOOTER)

    def _resync(self, raw: bytes, pos: int, channels: dict[int, _Channel], schemas: dict[int, str]) -> int | None:
        """Offset of the next whole chunk at or after ``pos`` (None when there is none); see :func:`_next_chunk`.

        A candidate must also decompress to its declared size with a matching CRC and parse.
        """
        while (pos := _next_chunk(raw, pos)) is not None:
            try:
                self._scan_record(memoryview(raw), pos, dict(channels), dict(schemas), set(), (None, None))
            except _Damage:
                pos += 1
                continue
            return pos
        return None

    def _messages_in(
        self,
        records: memoryview | bytes,
        channels: dict[int, _Channel],
        schemas: dict[int, str] | None,
        keep: set[int] | set[str] | None,
        window: tuple[int | None, int | None],
        base_offset: int,
    ) -> Iterator[RecordedMessage]:
        """Parse the records of one chunk (or loose records).

        With ``schemas`` (the scan path) schema and channel records are registered as they come and
        ``keep`` is a set of topics; without (the indexed path) ``keep`` is a set of channel ids.
        """
        start, end = window
        register = schemas is not None
        pos, size = 0, len(records)
        while pos < size:
            if pos + 9 > size:
                raise _Damage("truncated record inside chunk", base_offset + pos)
            opcode, length = _RECORD_HEAD.unpack_from(records, pos)
            body = pos + 9
            stop = body + length
            if stop > size:
                raise _Damage(f"record overruns its chunk (opcode 0x{opcode:02x})", base_offset + pos)
            if opcode == _OP_MESSAGE:
                if length < _MESSAGE_HEAD.size:
                    raise _Damage(f"message record of {length} bytes is too short", base_offset + pos)
                channel_id, _, log_time, _ = _MESSAGE_HEAD.unpack_from(records, body)
                channel = channels.get(channel_id)
                if channel is None:
                    raise _Damage(f"message on unknown channel {channel_id}", base_offset + pos)
                wanted = (channel_id in keep) if not register else (keep is None or channel.topic in keep)
                if wanted and (start is None or log_time >= start) and (end is None or log_time < end):
                    payload: bytes | None = bytes(records[body + _MESSAGE_HEAD.size : stop])
                    if channel.normalize is not None:
                        payload = self._normalize(channel, payload, log_time)
                    if payload is not None:
                        yield RecordedMessage(channel.topic, log_time, channel.message_type, payload)
            elif schemas is not None and opcode == _OP_SCHEMA:
                schema_id = _U16.unpack_from(records, body)[0]
                schemas[schema_id], _ = _read_str(records, body + 2)
            elif register and opcode == _OP_CHANNEL:
                channel_id, schema_id = struct.unpack_from("<HH", records, body)
                topic, _ = _read_str(records, body + 4)
                channels[channel_id] = _make_channel(topic, schemas.get(schema_id, ""))
            pos = stop

    def _normalize(self, channel: _Channel, payload: bytes, log_time: int) -> bytes | None:
        """Rewrite a payload to the current form; None (counted) for a bad payload when salvaging."""
        assert channel.normalize is not None
        try:
            return channel.normalize(payload)
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError) as e:
            error = MessageValidationError(
                f"Cannot normalize {channel.message_type} payload: {e}",
                path=self.path,
                topic=channel.topic,
                timestamp_ns=log_time,
            )
            if self._on_damage == "raise":
                raise error from e
            self.report.bad_messages += 1
            logger.warning("Skipping bad message: %s", error)
            return None

    def _decompress_chunk(self, body: memoryview | bytes, offset: int) -> bytes | memoryview:
        try:
            _, _, uncompressed_size, crc = _CHUNK_HEAD.unpack_from(body, 0)
            compression, pos = _read_str(body, _CHUNK_HEAD.size)
            (data_len,) = _U64.unpack_from(body, pos)
            pos += 8
            if pos + data_len > len(body):
                raise _Damage("chunk data is truncated", offset)
            payload = body[pos : pos + data_len]
            records = _DECOMPRESSORS[compression](payload, uncompressed_size)
        except KeyError as e:
            raise _Damage(f"unsupported chunk compression {e}", offset) from e
        except _Damage:
            raise
        except Exception as e:  # zstd/lz4 raise their own error types; all mean a corrupt chunk here
            raise _Damage(f"corrupt chunk ({type(e).__name__}: {e})", offset) from e
        if len(records) != uncompressed_size:
            raise _Damage(f"chunk decompressed to {len(records)} bytes, expected {uncompressed_size}", offset)
        if self._validate_crcs and crc != 0 and zlib.crc32(records) != crc:
            raise _Damage("chunk CRC mismatch", offset)
        return records

    def _damaged(self, damage: _Damage) -> None:
        """Record the first damage; iter_messages raises it at the end in "raise" mode."""
        report = self.report
        if not report.damaged:
            report.damaged, report.error, report.offset = True, damage.reason, damage.offset
        if self._on_damage == "salvage":
            logger.warning("%s: %s at byte %d; skipping the damaged part", self.path, damage.reason, damage.offset)


def read_messages(
    path: str | os.PathLike[str],
    topics: Iterable[str] | str | None = None,
    *,
    start_time_ns: int | None = None,
    end_time_ns: int | None = None,
    on_damage: Literal["raise", "salvage"] = "raise",
    storage_options: StorageOptions | None = None,
) -> Iterator[RecordedMessage]:
    """Convenience generator over :meth:`OWAMcapReader.iter_messages`; closes the file when done."""
    with OWAMcapReader(path, on_damage=on_damage, storage_options=storage_options) as reader:
        yield from reader.iter_messages(topics, start_time_ns=start_time_ns, end_time_ns=end_time_ns)


# -- helpers -------------------------------------------------------------------------------------


# Exceptions that malformed bytes raise while parsing records; they become damage at the record's offset.
_MALFORMED = (struct.error, ValueError, UnicodeDecodeError, KeyError, IndexError, OverflowError)


def _check_summary(summary, size: int) -> None:  # summary: mcap.summary.Summary
    """Raise ValueError when the summary contradicts itself or the file (then it is not used)."""
    for channel_id, channel in summary.channels.items():
        if channel.schema_id and channel.schema_id not in summary.schemas:
            raise ValueError(f"channel {channel_id} names unknown schema {channel.schema_id}")
    for index in summary.chunk_indexes:
        if index.chunk_start_offset + index.chunk_length > size:
            raise ValueError(f"chunk at {index.chunk_start_offset} runs past the end of the file")


def _next_chunk(raw: bytes, pos: int) -> int | None:
    """Offset of the next record at or after ``pos`` shaped like a whole chunk, or None.

    The shape: opcode 0x06, a length that fits in the file, a known compression name, and a records
    length that accounts for the rest of the body exactly. Random bytes almost never pass; the caller
    still decompresses the candidate and checks its size and CRC.
    """
    size = len(raw)
    while (pos := raw.find(_CHUNK_OPCODE, pos)) >= 0:
        name_at = pos + 9 + _CHUNK_HEAD.size
        if name_at + 4 > size:
            return None
        (length,) = _U64.unpack_from(raw, pos + 1)
        (name_len,) = _U32.unpack_from(raw, name_at)
        records_at = name_at + 4 + name_len
        end = pos + 9 + length
        if length <= _MAX_RECORD_BYTES and end <= size and name_len <= 8 and records_at + 8 <= end:
            (records_len,) = _U64.unpack_from(raw, records_at)
            if records_at + 8 + records_len == end and raw[name_at + 4 : records_at] in _COMPRESSION_NAMES:
                return pos
        pos += 1
    return None


def _make_channel(topic: str, schema_name: str) -> _Channel:
    message_type = normalize_message_type(schema_name)
    return _Channel(topic, message_type, payload_normalizer(message_type))


def _read_str(buf: memoryview | bytes, pos: int) -> tuple[str, int]:
    (n,) = _U32.unpack_from(buf, pos)
    end = pos + 4 + n
    if end > len(buf):
        raise ValueError("string overruns its record")
    return bytes(buf[pos + 4 : end]).decode("utf-8"), end


def _zstd(payload: memoryview | bytes, size: int) -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().decompress(payload, max_output_size=size)


def _lz4(payload: memoryview | bytes, size: int) -> bytes:
    import lz4.frame

    return lz4.frame.decompress(payload)


_DECOMPRESSORS: dict[str, Callable[[memoryview | bytes, int], bytes | memoryview]] = {
    "": lambda payload, size: payload,
    "zstd": _zstd,
    "lz4": _lz4,
}


def _in_log_time_order(batches: Iterable[list[RecordedMessage]]) -> Iterator[RecordedMessage]:
    """The messages of all batches (chunks) in log-time order; ties keep file order (the sort is stable).

    Chunks' declared time bounds are not trusted for ordering: a writer can get them wrong, and a merge
    that streams by them puts a message outside its chunk's bounds out of place, which no later step can
    repair. So a file's kept messages are gathered and ordered once. For the usual file, whose chunks
    follow each other in time, that is one linear check and no sort; memory follows the file's kept
    messages (stage 1 holds them all anyway), and they are released in blocks as they are yielded.
    """
    messages: list[RecordedMessage] = []
    for batch in batches:
        messages.extend(batch)
    messages = _sorted(messages)
    for start in range(0, len(messages), _RELEASE_BLOCK):
        block = messages[start : start + _RELEASE_BLOCK]
        messages[start : start + _RELEASE_BLOCK] = itertools.repeat(None, len(block))  # type: ignore[list-item]
        yield from block


_RELEASE_BLOCK = 4096  # messages handed on (and released by the reader) at a time


def _sorted(messages: list[RecordedMessage]) -> list[RecordedMessage]:
    if all(a.timestamp_ns <= b.timestamp_ns for a, b in itertools.pairwise(messages)):
        return messages
    return sorted(messages, key=lambda m: m.timestamp_ns)
