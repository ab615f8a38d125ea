"""Matroska byte-level integrity: whether the bytes around the demuxed packets are what an intact file holds.

FFmpeg's Matroska demuxer is lenient. Over damaged bytes it resyncs to the next cluster and silently
drops the packets in between; a file cut short ends its packets early while its header still
promises the full duration. The packet index uses two checks to notice that, both cheap (a few
bytes read, no decoding):

* :func:`is_packet_gap` - between two consecutive packets (all streams, in file order) an intact file
  holds only element headers (a block header, a new cluster's header and timestamp, a CRC), tens of
  bytes. A larger gap is data the demuxer skipped.
* :func:`tail_is_intact` - the segment is as long as its header says, and what follows the last packet
  parses as Matroska elements (the rest of the cluster, cues, tags) that end exactly at the end of
  the segment.
"""

from __future__ import annotations

import os

__all__ = ["MAX_PACKET_GAP_BYTES", "is_matroska", "is_packet_gap", "tail_is_intact"]

#: Bytes between two packets above which the demuxer is taken to have skipped data. An intact file has
#: a block header (up to 13 bytes), at a cluster boundary also the cluster's header, timestamp and CRC
#: (about 30 more); 0.3.2-0.5.1 recordings have at most 39.
MAX_PACKET_GAP_BYTES = 96

_EBML = 0x1A45DFA3
_SEGMENT = 0x18538067
# Elements that may follow the last packet, by what a walker does with them: step into (their
# children follow) or skip (their size covers them).
_STEP_INTO = {_SEGMENT, 0x1F43B675, 0xA0}  # Segment, Cluster, BlockGroup
_SKIP = {
    0x1C53BB6B,  # Cues
    0x1254C367,  # Tags
    0x114D9B74,  # SeekHead
    0x1549A966,  # Info
    0x1654AE6B,  # Tracks
    0x1043A770,  # Chapters
    0x1941A469,  # Attachments
    0xE7,  # Timestamp (cluster)
    0xA7,  # Position
    0xAB,  # PrevSize
    0x9B,  # BlockDuration
    0xFA,  # ReferencePriority
    0xFB,  # ReferenceBlock
    0xA4,  # CodecState
    0x75A1,  # BlockAdditions
    0x75A2,  # DiscardPadding
    0xEC,  # Void
    0xBF,  # CRC-32
}
# The tail of an intact file (cues, tags) is small; a longer one is not read (and not trusted).
_MAX_TAIL_BYTES = 8 << 20


def is_matroska(format_name: str) -> bool:
    """Whether FFmpeg's format name (``container.format.name``) is Matroska or WebM."""
    return "matroska" in format_name or "webm" in format_name


def is_packet_gap(previous_end: int, next_start: int) -> bool:
    """Whether the bytes between one packet's end and the next packet's start (file order) hide lost data."""
    return next_start - previous_end > MAX_PACKET_GAP_BYTES


def tail_is_intact(path: str, last_packet_pos: int, last_packet_size: int) -> bool:
    """Whether the local Matroska file ``path`` is complete after its last packet.

    ``last_packet_pos`` and ``last_packet_size`` are FFmpeg's ``pos`` (the start of the block's content:
    track number, timecode, flags, then the data) and ``size`` of the packet that comes last in the file.
    False when the segment is longer than the file (cut short), or the bytes after the last packet
    are not Matroska elements ending at the end of the segment (overwritten, or cut inside them).
    """
    try:
        with open(path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            head = f.read(64)
            segment_end = _segment_end(head, file_size)
            if segment_end is None:
                return False
            f.seek(last_packet_pos)
            track = _read_vint(f.read(8), 0, keep_marker=False)
            if track is None:
                return False
            last_packet_end = last_packet_pos + track[1] + 3 + last_packet_size  # + timecode (2) and flags (1)
            end = min(segment_end, file_size)
            if segment_end > file_size or not 0 <= end - last_packet_end <= _MAX_TAIL_BYTES:
                return False
            f.seek(last_packet_end)
            return _elements_end_at(f.read(end - last_packet_end))
    except OSError:
        return False


def _read_vint(data: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int, bool] | None:
    """An EBML variable-length integer at ``pos``: (value, length, all value bits set), or None if invalid."""
    if pos >= len(data) or data[pos] == 0:
        return None
    first = data[pos]
    length = 9 - first.bit_length()
    if pos + length > len(data):
        return None
    value = int.from_bytes(data[pos : pos + length], "big")
    if keep_marker:
        return value, length, False
    value &= (1 << (7 * length)) - 1
    return value, length, value == (1 << (7 * length)) - 1


def _segment_end(head: bytes, file_size: int) -> int | None:
    """Byte offset where the segment ends (``file_size`` when its size is unknown), or None if not Matroska."""
    ebml_id = _read_vint(head, 0, keep_marker=True)
    if ebml_id is None or ebml_id[0] != _EBML:
        return None
    size = _read_vint(head, ebml_id[1], keep_marker=False)
    if size is None:
        return None
    pos = ebml_id[1] + size[1] + size[0]
    segment_id = _read_vint(head, pos, keep_marker=True)
    if segment_id is None or segment_id[0] != _SEGMENT:
        return None
    size = _read_vint(head, pos + segment_id[1], keep_marker=False)
    if size is None:
        return None
    value, length, unknown = size
    return file_size if unknown else pos + segment_id[1] + length + value


def _elements_end_at(data: bytes) -> bool:
    """Whether ``data`` is a run of known element headers and elements that ends exactly at its end."""
    pos = 0
    while pos < len(data):
        element = _read_vint(data, pos, keep_marker=True)
        if element is None:
            return False
        size = _read_vint(data, pos + element[1], keep_marker=False)
        if size is None:
            return False
        start = pos + element[1] + size[1]
        if element[0] in _STEP_INTO:
            pos = start
        elif element[0] in _SKIP and not size[2]:
            pos = start + size[0]
        else:
            return False
    return pos == len(data)
