"""The frame-decoding engine: (video, ``pts_ns``) requests in, RGB frames out.

Played-at semantics: a request for time ``t`` gets the frame with the greatest presentation time not
after ``t``, the frame on screen at ``t``. Screen messages carry nanoseconds while containers store
coarser ticks (Matroska: milliseconds, rounded to nearest), so ``t`` is first rounded to the stream's
time base: a message at 16_666_666 ns gets the frame stored at 17 ms.

The valid range of a video stream is ``[first frame - tolerance, end + tolerance]``, where ``end`` is
when the last frame stops being shown: the later of the last frame's end (pts + duration) and the
container's duration. In variable-frame-rate screen recordings the last frame stays on screen until
the recording stops, which can be seconds after it was written. Requests outside raise
:class:`~owa.data.errors.FrameOutOfRangeError`.

How a batch is decoded. Requests are grouped by video and mapped to frame positions through the
video's packet index (:class:`~owa.data.frames.index.VideoIndex`, built once per video by demuxing
without decoding). Each video's distinct positions are decoded in ascending order in one forward pass;
the decoder seeks to the keyframe before a target only when going backwards or when that keyframe lies
more than ``seek_gap_frames`` frames ahead (:func:`~owa.data.frames.index.plan_seeks`). The decoder
stays open in a per-process LRU (:mod:`owa.data.frames.cache`) and keeps its position, so in-order
access across calls continues without seeking. Results come back in request order.

Backends (PyAV by default, torchcodec when installed) implement the small
:class:`~owa.data.frames.backend.FrameDecoder` interface and can be replaced without touching this
module's callers. The process-wide engine (:func:`get_engine`) is configured from the environment by
:meth:`FrameEngine.from_env`, the only place that reads ``OWA_FRAMES_*`` variables.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, cast, overload

import numpy as np

from owa.data import storage
from owa.data.errors import (
    FrameDecodeError,
    MediaError,
    OnError,
    OWADataError,
    VideoNotFoundError,
    check_on_error,
)
from owa.data.frames.backend import (
    BackendName,
    DecoderClosedError,
    FrameDecoder,
    Resample,
    check_size,
    resolve_backend,
)
from owa.data.frames.cache import BoundedLRU, DecoderCache
from owa.data.frames.images import decode_image, resize_image
from owa.data.frames.index import DEFAULT_SEEK_GAP_FRAMES, DEFAULT_TOLERANCE_NS, VideoIndex
from owa.data.frames.stats import DecodeStats
from owa.data.media import DEFAULT_MEDIA_POLICY, MediaPolicy

if TYPE_CHECKING:
    from owa.data.messages import ScreenCaptured

__all__ = [
    "BACKEND_ENV_VAR",
    "DEVICE_ENV_VAR",
    "THREADS_ENV_VAR",
    "DecodeStats",
    "FrameEngine",
    "OnError",
    "decode_screen",
    "decode_screens",
    "get_engine",
    "set_engine",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_OPEN_DECODERS = 8
#: Environment variables that set the process engine's backend ("auto", "pyav", "torchcodec") and the
#: torchcodec device ("auto", "cpu", "cuda", "cuda:N"); read only by :meth:`FrameEngine.from_env`.
BACKEND_ENV_VAR = "OWA_FRAMES_BACKEND"
DEVICE_ENV_VAR = "OWA_FRAMES_DEVICE"
#: Decoder threads per video for the process engine (0: FFmpeg's choice); 1 suits many DataLoader workers.
THREADS_ENV_VAR = "OWA_FRAMES_THREADS"


# --------------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------------


class FrameEngine:
    """Decodes frames for (video location, ``pts_ns``) requests; one per process is usually enough.

    The constructor ignores the environment; :meth:`from_env` (used by :func:`get_engine`) reads it.

    Args:
        backend: ``"auto"`` (torchcodec if installed, else PyAV), ``"pyav"`` or ``"torchcodec"``. With
            ``"auto"``, a torchcodec that fails to load (or to open a video) hands over to PyAV with a
            logged warning; an explicit ``"torchcodec"`` raises instead.
        device: torchcodec only: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        max_open_decoders: size of the LRU of open decoders.
        tolerance_ns: how far before the first frame / after the end of a stream a request may lie.
        threads: decoder threads per video (0: FFmpeg's automatic choice).
        seek_gap_frames: see :func:`~owa.data.frames.index.plan_seeks`.

    Raises:
        ValueError, ImportError: see :func:`~owa.data.frames.backend.resolve_backend`.
    """

    def __init__(
        self,
        *,
        backend: BackendName = "auto",
        device: str = "auto",
        max_open_decoders: int = DEFAULT_MAX_OPEN_DECODERS,
        tolerance_ns: int = DEFAULT_TOLERANCE_NS,
        threads: int = 0,
        seek_gap_frames: int = DEFAULT_SEEK_GAP_FRAMES,
    ) -> None:
        if tolerance_ns < 0:
            raise ValueError(f"Invalid tolerance_ns ({tolerance_ns}). It must be >= 0.")
        if threads < 0:
            raise ValueError(f"Invalid threads ({threads}). Use 0 for automatic or a positive count.")
        if seek_gap_frames < 0:
            raise ValueError(f"Invalid seek_gap_frames ({seek_gap_frames}). It must be >= 0.")
        self.backend = resolve_backend(backend)
        # Chosen by "auto", so falling back to PyAV is allowed.
        self._auto_backend = self.backend == "torchcodec" and backend == "auto"
        self.device = device
        self.tolerance_ns = tolerance_ns
        self.threads = threads
        self.seek_gap_frames = seek_gap_frames
        self.decoders: DecoderCache[str, FrameDecoder] = DecoderCache(max_open_decoders)
        # Indexes are plain arrays: they outlive decoder evictions and stay valid after a fork.
        self._indexes: BoundedLRU[tuple[object, ...], VideoIndex] = BoundedLRU(256)

    @classmethod
    def from_env(
        cls,
        *,
        backend: BackendName | None = None,
        device: str | None = None,
        threads: int | None = None,
        **kwargs: Any,
    ) -> FrameEngine:
        """An engine configured from the environment; arguments that are not None win over it.

        ``OWA_FRAMES_BACKEND`` (``auto``, ``pyav``, ``torchcodec``; case and spaces ignored; default
        ``auto``), ``OWA_FRAMES_DEVICE`` (default ``auto``) and ``OWA_FRAMES_THREADS`` (default 0) give
        ``backend``, ``device`` and ``threads``. The variables reach DataLoader workers however they start
        (fork or spawn). Other keyword arguments go to the constructor.

        Raises:
            ValueError: an invalid variable (named in the message) or argument.
            ImportError: see :func:`~owa.data.frames.backend.resolve_backend`.
        """
        if backend is None:
            name = os.environ.get(BACKEND_ENV_VAR, "").strip().lower() or "auto"
            resolve_backend(name, source=BACKEND_ENV_VAR)  # an invalid value is named as the variable
            backend = cast(BackendName, name)
        if device is None:
            device = os.environ.get(DEVICE_ENV_VAR, "").strip() or "auto"
        if threads is None:
            value = os.environ.get(THREADS_ENV_VAR, "").strip() or "0"
            try:
                threads = int(value)
            except ValueError:
                raise ValueError(
                    f"Invalid {THREADS_ENV_VAR} ({value!r}). Use 0 for automatic or a positive count."
                ) from None
        return cls(backend=backend, device=device, threads=threads, **kwargs)

    def __repr__(self) -> str:
        return (
            f"FrameEngine(backend={self.backend!r}, open_decoders={len(self.decoders)}/{self.decoders.max_open}, "
            f"tolerance_ns={self.tolerance_ns})"
        )

    @overload
    def decode(
        self,
        requests: Sequence[tuple[str, int]],
        *,
        on_error: Literal["raise"] = "raise",
        stats: DecodeStats | None = None,
        size: tuple[int, int] | None = None,
        resample: Resample = "bicubic",
    ) -> list[np.ndarray]: ...

    @overload
    def decode(
        self,
        requests: Sequence[tuple[str, int]],
        *,
        on_error: OnError,
        stats: DecodeStats | None = None,
        size: tuple[int, int] | None = None,
        resample: Resample = "bicubic",
    ) -> list[np.ndarray | None]: ...

    def decode(
        self,
        requests: Sequence[tuple[str, int]],
        *,
        on_error: OnError = "raise",
        stats: DecodeStats | None = None,
        size: tuple[int, int] | None = None,
        resample: Resample = "bicubic",
    ) -> list[np.ndarray] | list[np.ndarray | None]:
        """Decode the frame played at each ``(location, pts_ns)``; results come back in request order.

        ``location`` is a local path, an http(s) URL or an object-store URL (``s3://...``) that already passed
        the media policy.

        Args:
            on_error: ``"raise"`` stops at the first failure; ``"skip"`` returns None for each failed
                request and counts it in ``stats``.
            stats: where to count decoded and skipped requests.
            size: ``(height, width)`` to resize every frame to, inside the decoder's colour conversion (one
                pass; the default None keeps the video's size).
            resample: the filter for ``size``: ``"bilinear"``, ``"bicubic"`` (default), ``"lanczos"`` or ``"area"``.

        Returns:
            ``(height, width, 3)`` uint8 RGB arrays (None only for skipped requests with ``"skip"``).
            Repeated requests for one frame get separate copies.

        Raises:
            VideoNotFoundError: a video is missing or cannot be read (names the video and ``pts_ns``).
            FrameOutOfRangeError: a ``pts_ns`` outside the stream (lists the available times).
            FrameDecodeError: the video is not decodable.
        """
        check_on_error(on_error)
        size = check_size(size, resample)
        local_stats = DecodeStats()
        results = self._decode_requests(requests, on_error, local_stats, size, resample)
        _merge_and_report(local_stats, stats, len(requests))
        return results

    def index(self, location: str) -> VideoIndex:
        """The packet index of a video (opening its decoder if needed).

        Raises:
            VideoNotFoundError, FrameDecodeError: as for :meth:`decode`.
        """
        return self._decoder(_normalize_location(location), None).index

    def close(self) -> None:
        """Close every decoder this process opened; the engine stays usable and reopens on demand."""
        self.decoders.close_all()

    # ----------------------------------------------------------------------------------------------

    def _decode_requests(
        self,
        requests: Sequence[tuple[str, int]],
        on_error: OnError,
        stats: DecodeStats,
        size: tuple[int, int] | None = None,
        resample: Resample = "bicubic",
    ) -> list[np.ndarray | None]:
        results: list[np.ndarray | None] = [None] * len(requests)
        groups: dict[str, list[tuple[int, int]]] = {}
        for i, (location, pts_ns) in enumerate(requests):
            groups.setdefault(_normalize_location(location), []).append((i, int(pts_ns)))
        for location, items in groups.items():
            self._decode_group(location, items, results, on_error, stats, (size, resample))
        return results

    def _decode_group(
        self,
        location: str,
        items: list[tuple[int, int]],
        results: list[np.ndarray | None],
        on_error: OnError,
        stats: DecodeStats,
        resize: tuple[tuple[int, int] | None, Resample] = (None, "bicubic"),
    ) -> None:
        try:
            index = self._decoder(location, items[0][1]).index
        except MediaError as e:
            if on_error == "raise":
                raise
            for _ in items:
                stats.record_error(e)
            return
        by_position: dict[int, list[int]] = {}
        for i, pts_ns in items:
            try:
                position = index.played_at(pts_ns, self.tolerance_ns)
            except MediaError as e:  # out of range, or in a damaged part of the video
                if on_error == "raise":
                    raise
                stats.record_error(e)
                continue
            by_position.setdefault(position, []).append(i)
        positions = sorted(by_position)
        if not positions:
            return
        try:
            outcomes: list[np.ndarray | MediaError] = list(self._run(location, positions, resize))
        except MediaError as e:
            self.decoders.evict(location)  # its state is unknown after a failure
            if on_error == "raise":
                raise
            outcomes = self._salvage(location, positions, e, resize)
        for position, outcome in zip(positions, outcomes, strict=True):
            slots = by_position[position]
            if isinstance(outcome, MediaError):
                for _ in slots:
                    stats.record_error(outcome)
                continue
            stats.decoded += len(slots)
            for n, i in enumerate(slots):
                results[i] = outcome if n == 0 else outcome.copy()

    def _salvage(
        self,
        location: str,
        positions: list[int],
        error: MediaError,
        resize: tuple[tuple[int, int] | None, Resample] = (None, "bicubic"),
    ) -> list[np.ndarray | MediaError]:
        """After a failed batch, decode each position on its own so that only the bad frames are lost."""
        logger.debug("Batch decode of %s failed (%s); retrying frame by frame", location, error)
        outcomes: list[np.ndarray | MediaError] = []
        for position in positions:
            try:
                outcomes.append(self._run(location, [position], resize)[0])
            except MediaError as e:
                self.decoders.evict(location)
                outcomes.append(e)
        return outcomes

    def _run(
        self,
        location: str,
        positions: list[int],
        resize: tuple[tuple[int, int] | None, Resample] = (None, "bicubic"),
    ) -> list[np.ndarray]:
        # A decoder can be closed by another thread's eviction between lookup and use: reopen then.
        for _ in range(8):
            decoder = self._decoder(location, None)
            try:
                if resize[0] is None:
                    return decoder.decode(positions)
                return decoder.decode(positions, size=resize[0], resample=resize[1])
            except DecoderClosedError:
                continue
        raise FrameDecodeError("Decoder kept being closed by concurrent evictions", path=location)

    def _decoder(self, location: str, pts_ns: int | None) -> FrameDecoder:
        try:
            return self.decoders.get_or_open(location, lambda: self._open(location))
        except MediaError as e:
            if pts_ns is None or e.context.get("pts_ns") is not None:
                raise
            raise e.with_context(pts_ns=pts_ns) from e

    def _open(self, location: str) -> FrameDecoder:
        is_remote = _is_remote(location)
        if not is_remote:
            try:
                st = os.stat(location)
            except FileNotFoundError as e:
                raise VideoNotFoundError("Video file not found", path=location) from e
            except OSError as e:
                raise VideoNotFoundError(f"Video file cannot be read: {e}", path=location) from e
            index_key: tuple[object, ...] = (location, st.st_mtime_ns, st.st_size)
        else:
            index_key = (location,)
        index = self._indexes.get(index_key)
        from owa.data.frames._pyav import PyAVDecoder, read_index

        decoder: FrameDecoder | None = None
        # torchcodec opens paths and http(s) URLs only; object-store URLs (s3://) are PyAV's, through fsspec.
        if self.backend == "torchcodec" and not _is_object_url(location):
            from owa.data.frames._torchcodec import TorchCodecDecoder

            if index is None:
                index = read_index(location)
            try:
                decoder = TorchCodecDecoder(location, index, device=self.device, threads=self.threads)
            except (ImportError, FrameDecodeError) as e:
                if not self._auto_backend:
                    raise
                # "auto" promised torchcodec only where it works: PyAV takes over (for good if torchcodec
                # itself cannot load, for this video if only this video fails).
                logger.warning("torchcodec cannot decode %s (%s); falling back to PyAV", location, e)
                if isinstance(e, ImportError):
                    self.backend = "pyav"
        if decoder is None:
            decoder = PyAVDecoder(location, index=index, threads=self.threads, seek_gap_frames=self.seek_gap_frames)
        self._indexes.put(index_key, decoder.index)
        return decoder


def _is_remote(location: str) -> bool:
    """A URL (http(s) or object store), used as given: no stat, no abspath."""
    return storage.is_url(location)


def _is_object_url(location: str) -> bool:
    return storage.is_url(location) and not location.startswith(("http://", "https://"))


def _normalize_location(location: str | os.PathLike[str]) -> str:
    location = os.fspath(location)
    return location if _is_remote(location) else os.path.abspath(location)


def _merge_and_report(local: DecodeStats, stats: DecodeStats | None, total: int) -> None:
    if local.skipped:
        logger.warning(
            "Skipped %d of %d frame requests (%s); last error: %s",
            local.skipped,
            total,
            ", ".join(f"{name}={count}" for name, count in sorted(local.errors.items())),
            local.last_error,
        )
    if stats is not None:
        stats.decoded += local.decoded
        stats.skipped += local.skipped
        for name, count in local.errors.items():
            stats.errors[name] = stats.errors.get(name, 0) + count
        if local.last_error is not None:
            stats.last_error = local.last_error


_ENGINE: FrameEngine | None = None
_ENGINE_LOCK = threading.Lock()


def get_engine() -> FrameEngine:
    """The process's shared engine, created on first use by :meth:`FrameEngine.from_env` (``OWA_FRAMES_*``).

    After a fork (DataLoader workers) the child keeps the engine object but its decoder cache starts
    empty: every process opens its own decoders.
    """
    global _ENGINE
    engine = _ENGINE
    if engine is None:
        with _ENGINE_LOCK:
            if _ENGINE is None:
                _ENGINE = FrameEngine.from_env()
            engine = _ENGINE
    return engine


def set_engine(engine: FrameEngine | None) -> FrameEngine | None:
    """Replace the process's shared engine (None: recreate it from the environment on next use).

    Returns the previous engine; its decoders are closed.
    """
    global _ENGINE
    with _ENGINE_LOCK:
        previous, _ENGINE = _ENGINE, engine
    if previous is not None and previous is not engine:
        previous.close()
    return previous


# --------------------------------------------------------------------------------------------------
# Screen messages
# --------------------------------------------------------------------------------------------------


def decode_screen(screen: ScreenCaptured, *, policy: MediaPolicy = DEFAULT_MEDIA_POLICY) -> np.ndarray:
    """Decode one screen message to an ``(height, width, 3)`` uint8 RGB array.

    A ``media_ref`` with ``pts_ns`` gets the frame played at that time in the video ``media_ref.uri``
    points to (relative URIs resolve against ``screen.base_dir``); one without is a still image.

    Raises:
        UnsafeMediaURIError: the URI is not allowed by ``policy``.
        MessageValidationError: the message has no ``media_ref``.
        VideoNotFoundError: the video (or image) is missing or unreadable; names it and ``pts_ns``.
        FrameOutOfRangeError: ``pts_ns`` lies outside the video stream.
        FrameDecodeError: the video or image cannot be decoded.
    """
    frame = decode_screens([screen], policy=policy)[0]
    assert frame is not None  # on_error="raise" never returns None
    return frame


def decode_screens(
    screens: Sequence[ScreenCaptured],
    *,
    policy: MediaPolicy = DEFAULT_MEDIA_POLICY,
    on_error: OnError = "raise",
    stats: DecodeStats | None = None,
    engine: FrameEngine | None = None,
    size: tuple[int, int] | None = None,
    resample: Resample = "bicubic",
) -> list[np.ndarray | None]:
    """Decode many screen messages at once; frames come back in the order of ``screens``.

    Requests for the same video are decoded together, in presentation order, in one forward pass
    (see :mod:`owa.data.frames.engine`).

    Args:
        policy: which media URIs may be opened.
        on_error: ``"raise"`` (default) raises the first error; ``"skip"`` puts None in place of each
            frame that failed and counts it in ``stats``.
        stats: where to count decoded and skipped frames.
        engine: the engine to use; default :func:`get_engine`.
        size: ``(height, width)`` to resize every frame to while it is converted to RGB (decode straight to a
            model's input size; still images are resized with Pillow's filter of the same name). Default: as stored.
        resample: the filter for ``size``: ``"bilinear"``, ``"bicubic"`` (default), ``"lanczos"`` or ``"area"``.

    Raises:
        ValueError: an invalid ``on_error``, ``size`` or ``resample``.
        OWADataError: with ``on_error="raise"``, as for :func:`decode_screen`.
    """
    check_on_error(on_error)
    size = check_size(size, resample)
    engine = engine if engine is not None else get_engine()
    local_stats = DecodeStats()
    results: list[np.ndarray | None] = [None] * len(screens)
    requests: list[tuple[str, int]] = []
    slots: list[int] = []
    for i, screen in enumerate(screens):
        try:
            media = screen.resolve_media(policy)
            assert screen.media_ref is not None  # resolve_media raised otherwise
            pts_ns = screen.media_ref.pts_ns
            if pts_ns is None:
                image = decode_image(media)
                results[i] = image if size is None else resize_image(image, size, resample)
                local_stats.decoded += 1
            elif media.kind == "data":
                raise FrameDecodeError(
                    "Inline data: URIs can only hold still images (a media_ref without pts_ns)",
                    path=media.location[:64],
                    pts_ns=pts_ns,
                )
            else:
                requests.append((media.location, pts_ns))
                slots.append(i)
        except OWADataError as e:
            if on_error == "raise":
                raise
            local_stats.record_error(e)
    frames = engine._decode_requests(requests, on_error, local_stats, size, resample)
    for i, frame in zip(slots, frames, strict=True):
        results[i] = frame
    _merge_and_report(local_stats, stats, len(screens))
    return results
