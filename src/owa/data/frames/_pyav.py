"""PyAV backend: one open container per video, decoded forward from keyframes, converted once to RGB.

Only the video stream is demuxed (audio and subtitle packets are discarded by the demuxer), the codec
uses FFmpeg's frame+slice threading, and each wanted frame is converted straight to ``rgb24`` once,
by one swscale context kept for the decoder's life. Frames passed on the way to a target are never
converted.
"""

from __future__ import annotations

import bisect
import collections
import errno
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO

import av
import av.container
import av.video.stream
import numpy as np
from av.video.reformatter import VideoReformatter

from owa.data import storage
from owa.data.errors import FrameDecodeError, MediaError, VideoNotFoundError
from owa.data.frames import _matroska
from owa.data.frames.backend import DecoderClosedError, Resample
from owa.data.frames.index import DEFAULT_SEEK_GAP_FRAMES, VideoIndex, plan_seeks, ticks_to_ns

__all__ = ["PyAVDecoder", "build_index", "open_container", "read_index"]

logger = logging.getLogger(__name__)

# How many earlier keyframes to try when a seek lands after the target (e.g. sparse Matroska cues)
# or on a false keyframe, before decoding from the start of the stream.
_MAX_SEEK_RETRIES = 3
_NOT_A_KEYFRAME = object()
# swscale's filters for the resampling names (swscale widens each filter when downscaling, as PIL does).
_SWS_INTERPOLATION = {"bilinear": "BILINEAR", "bicubic": "BICUBIC", "lanczos": "LANCZOS", "area": "AREA"}


def open_container(location: str, storage_options: storage.StorageOptions | None = None) -> av.container.InputContainer:
    """Open ``location`` for reading: a local path, an ``http(s)://`` URL (FFmpeg fetches it), or an
    object-store URL such as ``s3://bucket/prefix/video.mkv``, read through :func:`owa.data.storage.open_input`
    (range requests; ``storage_options``, by default fsspec's default options and credentials for the protocol).

    Raises:
        VideoNotFoundError: missing, unreadable (permissions, a folder) or unreachable (remote) video.
        FrameDecodeError: the file exists but is not a media container FFmpeg can read.
        StorageAccessError: the object store denied access or cannot be reached.
    """
    source: str | BinaryIO = location
    if storage.is_url(location) and not location.startswith(("http://", "https://")):
        try:
            source = storage.open_input(location, storage_options)
        except FileNotFoundError as e:
            raise VideoNotFoundError("Video object not found", path=location) from e
        except OSError as e:
            raise VideoNotFoundError(f"Video cannot be opened: {e}", path=location) from e
    try:
        # PyAV reads a file object through its read/seek methods and leaves it open on close(); the
        # container holds the only reference, so the file goes with it.
        return av.open(source, mode="r")
    except (OSError, av.error.HTTPError) as e:
        if isinstance(e, av.error.FFmpegError) and e.errno == errno.EIO and os.path.isfile(location):
            # FFmpeg's demuxers report some damaged files (e.g. a Matroska file cut short) as I/O errors.
            raise FrameDecodeError(f"Video cannot be opened, it is damaged: {e}", path=location) from e
        raise VideoNotFoundError(f"Video cannot be opened: {e}", path=location) from e
    except av.error.FFmpegError as e:
        raise FrameDecodeError(f"Video cannot be opened as a media container: {e}", path=location) from e


def _video_stream(container: av.container.InputContainer, location: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise FrameDecodeError("Media file has no video stream", path=location)
    return container.streams.video[0]


def build_index(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, location: str
) -> VideoIndex:
    """Read every packet of ``stream`` (without decoding) into a :class:`VideoIndex`.

    Leaves the container at the end of the file. A read error after some packets keeps the frames
    before it (a recording cut short by a crash) and logs a warning. The index lists only the packets
    actually present, and marks where data is missing (see :class:`VideoIndex`): in a local Matroska
    file, bytes the demuxer skipped between packets, or a tail cut short or overwritten
    (:mod:`owa.data.frames._matroska`); in any file, a read error or a packet flagged corrupt. The
    header's duration extends the stream's end only when the end is intact.

    Raises:
        FrameDecodeError: no packet could be read, or the stream has no timestamps.
    """
    pts_list: list[int] = []
    dts_list: list[int | None] = []
    key_list: list[bool] = []
    # Decode-order spans of packets whose data may be missing or damaged: (first damaged, first after).
    damage: list[tuple[int, int]] = []
    last_end = None
    check_keyframe = _keyframe_checker(stream)
    demoted = 0
    # Byte-level checks need the packets of every stream, in file order, and the file itself.
    check_bytes = _matroska.is_matroska(container.format.name) and os.path.isfile(location)
    complete = True
    previous_end: int | None = None
    last_in_file: tuple[int, int, bool] | None = None  # pos, size, whether it is a video packet
    try:
        for packet in container.demux() if check_bytes else container.demux(stream):
            if check_bytes and packet.size and packet.pos is not None and packet.pos >= 0:
                if previous_end is not None and _matroska.is_packet_gap(previous_end, packet.pos):
                    # Data lost before this packet; the packet before it may end in the damage.
                    damage.append((max(0, len(pts_list) - 1), len(pts_list)))
                previous_end = max(previous_end or 0, packet.pos + packet.size)
                last_in_file = (packet.pos, packet.size, packet.stream_index == stream.index)
            if packet.stream_index != stream.index:
                continue
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:  # the empty packet that flushes the decoder at the end
                continue
            is_key = packet.is_keyframe
            if is_key and check_keyframe is not None and check_keyframe(bytes(packet)) is False:
                is_key = False
                demoted += 1
            if packet.is_corrupt:
                damage.append((len(pts_list), len(pts_list) + 1))
            pts_list.append(ts)
            dts_list.append(packet.dts)
            key_list.append(is_key)
            end = ts + (packet.duration or 0)
            if last_end is None or end > last_end:
                last_end = end
    except av.error.FFmpegError as e:
        if not pts_list:
            raise FrameDecodeError(f"Video packets cannot be read: {e}", path=location) from e
        logger.warning("Reading packets of %s stopped after %d frames: %s", location, len(pts_list), e)
        complete = False
    if not pts_list:
        raise FrameDecodeError("Video stream has no frames with timestamps", path=location)
    if check_bytes and last_in_file is not None and not _matroska.tail_is_intact(location, *last_in_file[:2]):
        complete = False
        if last_in_file[2]:  # the damage may begin inside the last video packet's data
            damage.append((len(pts_list) - 1, len(pts_list)))
    if not complete or damage:
        logger.warning(
            "%s is damaged: %s; frames in the damaged parts raise FrameDecodeError",
            location,
            "its end is cut short or overwritten" if not complete else f"{len(damage)} damaged spans",
        )
    if demoted:
        logger.debug("%s: %d packets flagged as keyframes are not random-access points", location, demoted)
    time_base = stream.time_base
    if time_base is None:
        raise FrameDecodeError("Video stream has no time base", path=location)
    damaged_ticks = _damaged_ticks(pts_list, dts_list, key_list, damage)
    pts = np.asarray(pts_list, dtype=np.int64)
    keys = np.asarray(key_list, dtype=bool)
    order = np.argsort(pts, kind="stable")
    pts, keys = pts[order], keys[order]
    unique_pts, first = np.unique(pts, return_index=True)
    unique_keys = np.logical_or.reduceat(keys, first)
    damaged = np.zeros(len(unique_pts), dtype=bool)
    for earliest, stop in damaged_ticks:
        # From the frame on screen at the earliest time a lost or damaged frame can have.
        start = max(0, int(np.searchsorted(unique_pts, earliest, side="right")) - 1)
        damaged[start : np.searchsorted(unique_pts, stop)] = True
    index_end_ticks = int(last_end if last_end is not None else unique_pts[-1])
    end_ns = ticks_to_ns(index_end_ticks, time_base)
    if complete:  # a header's duration says how long the last frame stays on screen, unless the end is lost
        if container.duration is not None and container.duration > 0:  # microseconds, from time zero
            end_ns = max(end_ns, container.duration * 1000)
        if stream.duration is not None and stream.duration > 0:
            start = stream.start_time or 0
            end_ns = max(end_ns, ticks_to_ns(start + stream.duration, time_base))
    return VideoIndex(
        location=location,
        time_base=time_base,
        pts=unique_pts,
        keyframe_positions=np.flatnonzero(unique_keys),
        end_ns=int(end_ns),
        stream_index=stream.index,
        damaged_positions=np.flatnonzero(damaged),
        complete=complete,
    )


def _damaged_ticks(
    pts: list[int], dts: list[int | None], keys: list[bool], damage: list[tuple[int, int]]
) -> list[tuple[int, float]]:
    """The pts ranges (ticks) that damaged or missing packets can affect: ``(earliest, stop)`` each.

    ``damage`` holds decode-order spans ``(first, after)``: packets ``first .. after - 1`` may be damaged,
    or packets are missing just before ``after``. A frame decoded from packet ``first`` on has a pts of
    at least that packet's dts (or, without one, its keyframe's pts), the ``earliest``; frames that
    depend on the damage end at the first keyframe at or after ``after`` (``stop``, excluded; infinity
    past the last keyframe). The frame on screen at ``earliest`` is affected too: a lost frame may
    have replaced it.
    """
    spans: list[tuple[int, float]] = []
    key_indices = [i for i, key in enumerate(keys) if key]
    for first, after in damage:
        earliest = dts[first]
        if earliest is None:
            k = bisect.bisect_right(key_indices, first) - 1
            earliest = pts[key_indices[k]] if k >= 0 else min(pts)
        k = bisect.bisect_left(key_indices, after)
        stop = pts[key_indices[k]] if k < len(key_indices) else math.inf
        spans.append((min(earliest, pts[first]), stop))
    return spans


# --------------------------------------------------------------------------------------------------
# Keyframe flags. Some recorders flag every packet as a keyframe (the 0.3.2 sample recording does);
# seeking to such a "keyframe" gives no picture. For H.264 and HEVC the bitstream says whether a
# packet can start decoding, so flagged packets are checked; other codecs keep their flags.
# --------------------------------------------------------------------------------------------------


def _keyframe_checker(stream: av.video.stream.VideoStream) -> Callable[[bytes], bool | None] | None:
    """A function telling whether packet bytes start a decodable picture (None: cannot tell), or None."""
    codec = stream.codec_context.name
    if codec not in ("h264", "hevc"):
        return None
    extradata = stream.codec_context.extradata or b""
    length_size = 0  # 0: Annex B start codes
    if extradata[:1] == b"\x01":  # avcC / hvcC: NAL units prefixed by their length
        offset = 4 if codec == "h264" else 21
        if len(extradata) <= offset:
            return None
        length_size = (extradata[offset] & 3) + 1
    check = _h264_random_access if codec == "h264" else _hevc_random_access

    def checker(data: bytes) -> bool | None:
        try:
            return check(_nal_units(data, length_size))
        except (IndexError, ValueError):
            return None

    return checker


def _nal_units(data: bytes, length_size: int) -> Iterator[bytes]:
    if length_size:
        pos = 0
        while pos + length_size <= len(data):
            size = int.from_bytes(data[pos : pos + length_size], "big")
            pos += length_size
            if size == 0 or pos + size > len(data):
                raise ValueError("bad NAL length")
            yield data[pos : pos + size]
            pos += size
        return
    for chunk in data.split(b"\x00\x00\x01"):
        chunk = chunk.rstrip(b"\x00")
        if chunk:
            yield chunk


def _hevc_random_access(nals: Iterator[bytes]) -> bool | None:
    for nal in nals:
        nal_type = (nal[0] >> 1) & 0x3F
        if nal_type < 32:  # the first slice decides: IRAP pictures (BLA, IDR, CRA) are types 16-23
            return 16 <= nal_type <= 23
    return None


def _h264_random_access(nals: Iterator[bytes]) -> bool | None:
    sei = False
    for nal in nals:
        nal_type = nal[0] & 0x1F
        if nal_type == 5:
            return True  # IDR
        if nal_type == 6:
            sei = True  # may carry a recovery point
        elif 1 <= nal_type <= 4:
            # A non-IDR slice: random access if an I slice (FFmpeg recovers on those) or after an SEI.
            return sei or _h264_slice_type(nal) in (2, 4, 7, 9)
    return None


def _h264_slice_type(nal: bytes) -> int:
    """``slice_type`` of a slice NAL unit: the second exp-Golomb number of its header."""
    bits = int.from_bytes(nal[1:9].ljust(8, b"\x00"), "big")
    pos = 64

    def read_ue() -> int:
        nonlocal pos
        zeros = 0
        while zeros < 32 and not (bits >> (pos - 1 - zeros)) & 1:
            zeros += 1
        if zeros == 32 or pos - 1 - 2 * zeros < 0:
            raise ValueError("bad exp-Golomb code")
        value = (bits >> (pos - 1 - 2 * zeros)) & ((1 << (zeros + 1)) - 1)
        pos -= 2 * zeros + 1
        return value - 1

    read_ue()  # first_mb_in_slice
    return read_ue()


def _configure_codec(stream: av.video.stream.VideoStream, threads: int) -> None:
    """Set decoding options; they apply when the codec opens, on the first decode."""
    # Frame threading pays off for forward decoding.
    stream.thread_type = "AUTO"
    stream.thread_count = threads
    # Report damaged data as a decode error when it is found, instead of concealing it: a B-frame shown
    # before the damaged picture it references would otherwise come out before any frame is flagged.
    stream.codec_context.options = {**stream.codec_context.options, "err_detect": "explode"}


def read_index(location: str, storage_options: storage.StorageOptions | None = None) -> VideoIndex:
    """Open ``location``, index its first video stream and close it. Raises as :func:`open_container`."""
    container = open_container(location, storage_options)
    try:
        return build_index(container, _video_stream(container, location), location)
    finally:
        container.close()


class PyAVDecoder:
    """An open video decoded with PyAV. Thread-safe; implements :class:`~owa.data.frames.backend.FrameDecoder`.

    Args:
        location: local path or URL.
        index: a packet index built earlier for this file (skips re-reading the packets).
        threads: codec threads (0: FFmpeg's automatic choice).
        seek_gap_frames: see :func:`~owa.data.frames.index.plan_seeks`.

    Raises:
        VideoNotFoundError, FrameDecodeError: see :func:`open_container`.
    """

    def __init__(
        self,
        location: str,
        *,
        index: VideoIndex | None = None,
        threads: int = 0,
        seek_gap_frames: int = DEFAULT_SEEK_GAP_FRAMES,
    ) -> None:
        self.location = location
        self._lock = threading.Lock()
        self._closed = False
        self._container = open_container(location)
        try:
            self._stream = _video_stream(self._container, location)
            _configure_codec(self._stream, threads)
            self.index = index if index is not None else build_index(self._container, self._stream, location)
        except BaseException:
            self._container.close()
            raise
        self._pts: list[int] = self.index.pts.tolist()
        # One converter for the decoder's life: frame.to_ndarray(format=...) builds a new swscale
        # context for every frame, which costs more than the conversion itself at 720p.
        self._to_rgb = VideoReformatter()
        # Seek points: the index's keyframes, less any found not to start a picture.
        self._keys: list[int] = self.index.keyframe_positions.tolist()
        self._seek_gap_frames = seek_gap_frames
        self._packets: Iterator[av.Packet] | None = None  # None: the next decode must seek first
        # Frames out of the codec not yet used, each with whether it can be trusted.
        self._pending: collections.deque[tuple[av.VideoFrame, bool]] = collections.deque()
        self._last: av.VideoFrame | None = None  # the frame output last
        self._position: int | None = None  # index position of _last, None when unknown
        # A frame is trusted only if the codec got every packet from its keyframe on without an error.
        # Damaged data (a decode error, a frame flagged corrupt, a packet the index marks damaged) can
        # also leave wrong state in the codec that outlives a flush (e.g. garbage parsed as a parameter
        # set), so after it nothing is trusted until the next seek, which reopens the video; except
        # frames whose packets went in before a packet known to be damaged (the codec's delay still
        # holds them), which decoded from intact data.
        self._threads = threads
        self._damaged_ticks = frozenset(self.index.pts[self.index.damaged_positions].tolist())
        self._polluted = False
        self._in_flight: set[int] = set()  # pts of packets fed whose frames have not come out yet
        self._clean_in_flight: frozenset[int] = frozenset()  # those fed before the damage
        #: Counters for tests and benchmarks: seeks done and frames that came out of the codec.
        self.seek_count = 0
        self.frames_decoded = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"position={self._position}"
        return f"PyAVDecoder({self.location!r}, frames={self.index.frame_count}, {state})"

    def decode(
        self, positions: Sequence[int], *, size: tuple[int, int] | None = None, resample: Resample = "bicubic"
    ) -> list[np.ndarray]:
        """Decode the frames at ``positions`` (ascending, no repeats) to RGB arrays, resized to ``size``
        (``(height, width)``) with the ``resample`` filter inside the one swscale conversion when given.

        Raises:
            FrameDecodeError: FFmpeg failed, or no frame at or before a target could be decoded.
            DecoderClosedError: the decoder was closed.
        """
        with self._lock:
            if self._closed:
                raise DecoderClosedError(self.location)
            out: list[np.ndarray] = []
            for position in positions:
                try:
                    frame = self._frame_at(position)
                    out.append(self._convert(frame, size, resample))
                except av.error.FFmpegError as e:
                    self._forget_position()
                    raise FrameDecodeError(
                        f"Decoding failed: {e}", path=self.location, pts_ns=self.index.pts_ns(position)
                    ) from e
                except MediaError:
                    self._forget_position()
                    raise
            return out

    def _convert(self, frame: av.VideoFrame, size: tuple[int, int] | None, resample: Resample) -> np.ndarray:
        if size is None:
            rgb = self._to_rgb.reformat(frame, format="rgb24")
        else:
            # Scaling and colour conversion in one swscale pass: no full-size RGB frame is ever made.
            height, width = size
            rgb = self._to_rgb.reformat(
                frame, format="rgb24", width=width, height=height, interpolation=_SWS_INTERPOLATION[resample]
            )
        return np.ascontiguousarray(rgb.to_ndarray())

    def close(self) -> None:
        """Close the container (waits for a decode in progress). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._forget_position()
            self._container.close()

    # ----------------------------------------------------------------------------------------------

    def _frame_at(self, position: int) -> av.VideoFrame:
        if self._last is not None and self._position == position:
            return self._last
        target = self._pts[position]
        keyframe = self._keyframe_before(position)
        current = self._position if self._packets is not None and not self._polluted else None
        seek_to = plan_seeks(current, [position], [keyframe], self._seek_gap_frames)[0]
        if seek_to is None:
            try:
                frame = self._advance(target)
            except FrameDecodeError:
                if not self._polluted:
                    raise
                frame = None  # damage met on the way; decode the target again from its keyframe
            if isinstance(frame, av.VideoFrame):
                return frame
            seek_to = keyframe
        # Seek. If the demuxer lands after the target (sparse cues) or the seek point turns out not to
        # start a picture (a false keyframe flag), try earlier keyframes, and last the stream's start.
        i = bisect.bisect_right(self._keys, seek_to)
        for key in reversed(self._keys[max(0, i - 1 - _MAX_SEEK_RETRIES) : i]):
            self._seek(key)
            frame = self._advance(target, seek_pts=self._pts[key])
            if isinstance(frame, av.VideoFrame):
                return frame
            if frame is _NOT_A_KEYFRAME:
                logger.debug("%s: seeking to pts %d gave no picture; not using it again", self.location, self._pts[key])
                self._keys.remove(key)
        self._seek(0)
        frame = self._advance(target)
        if isinstance(frame, av.VideoFrame):
            return frame
        raise FrameDecodeError(
            "No frame at or before the target could be decoded",
            path=self.location,
            pts_ns=self.index.pts_ns(position),
        )

    def _keyframe_before(self, position: int) -> int:
        i = bisect.bisect_right(self._keys, position) - 1
        return self._keys[i] if i >= 0 else 0

    def _advance(self, target: int, *, seek_pts: int | None = None) -> av.VideoFrame | object | None:
        """Decode forward to the frame with pts ``target``; only that exact frame is ever returned.

        Returns the frame; None if the stream passed the target (or ended) with no frame before it;
        or, right after a seek to ``seek_pts``, ``_NOT_A_KEYFRAME`` when the first picture out is not a
        key frame at or before ``seek_pts`` (the seek point is flagged as a keyframe but cannot start
        decoding: the decoder dropped it, or what follows it would be damaged).

        Raises:
            FrameDecodeError: the target frame came out damaged, or did not come out although frames
                before it did (its packet is missing or undecodable).
        """
        passed_before = self._last is not None and self._last.pts < target
        while True:
            item = self._next_frame()
            if item is None:
                break
            frame, trusted = item
            pts = frame.pts
            if pts is None:
                raise FrameDecodeError("Decoded frame has no timestamp", path=self.location)
            if seek_pts is not None:
                if not frame.key_frame or pts > seek_pts:
                    self._pending.appendleft(item)
                    return _NOT_A_KEYFRAME
                seek_pts = None
            if pts < target:
                passed_before = True
                continue
            if pts == target:
                if not trusted:
                    raise self._damaged(target, "it was decoded from missing or corrupt data")
                self._set_last(frame)
                return frame
            self._pending.appendleft(item)
            break
        if passed_before:
            raise self._damaged(target, "its packet is missing or could not be decoded")
        return None

    def _damaged(self, target: int, why: str) -> FrameDecodeError:
        pts_ns = ticks_to_ns(target, self.index.time_base)
        return FrameDecodeError(f"Frame at pts_ns={pts_ns} cannot be decoded: {why}", path=self.location, pts_ns=pts_ns)

    def _next_frame(self) -> tuple[av.VideoFrame, bool] | None:
        if self._pending:
            return self._pending.popleft()
        if self._packets is None:
            return None
        codec = self._stream.codec_context
        in_flight = self._in_flight
        for packet in self._packets:
            if packet.pts is not None:
                if self._damaged_ticks and packet.pts in self._damaged_ticks and not self._polluted:
                    self._polluted = True
                    self._clean_in_flight = frozenset(in_flight)
                if len(in_flight) > 1024:  # frames the codec dropped; forgetting them only trusts less
                    in_flight.clear()
                in_flight.add(packet.pts)
            try:
                frames = codec.decode(packet)
            except av.error.InvalidDataError:
                # Not attributable to one packet (frame threads report errors late): trust nothing in flight.
                self._polluted, self._clean_in_flight = True, frozenset()
                continue
            if frames:
                self.frames_decoded += len(frames)
                for frame in frames:
                    in_flight.discard(frame.pts)
                    if frame.is_corrupt:  # FFmpeg concealed errors in it, or it references a missing picture
                        self._polluted, self._clean_in_flight = True, frozenset()
                    trusted = not self._polluted or frame.pts in self._clean_in_flight
                    self._pending.append((frame, trusted))
                return self._pending.popleft()
        self._packets = None  # end of stream; the decoder is drained and needs a seek to go on
        return None

    def _seek(self, key_position: int) -> None:
        if self._polluted:
            self._reopen()
        self._container.seek(self._pts[key_position], stream=self._stream, backward=True, any_frame=False)
        self.seek_count += 1
        self._stream.codec_context.flush_buffers()
        self._packets = self._container.demux(self._stream)
        self._pending.clear()
        self._last = None
        self._position = None
        self._in_flight.clear()
        self._clean_in_flight = frozenset()

    def _reopen(self) -> None:
        """Open the video afresh: a new codec, free of whatever damaged data left in the old one."""
        self._container.close()
        self._container = open_container(self.location)
        self._stream = _video_stream(self._container, self.location)
        _configure_codec(self._stream, self._threads)
        self._packets = None
        self._polluted = False

    def _set_last(self, frame: av.VideoFrame) -> None:
        self._last = frame
        self._position = bisect.bisect_right(self._pts, frame.pts) - 1

    def _forget_position(self) -> None:
        self._packets = None
        self._pending.clear()
        self._last = None
        self._position = None
