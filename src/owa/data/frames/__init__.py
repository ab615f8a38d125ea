"""Video frames for screen messages: one engine, shared by every consumer, with replaceable backends.

>>> from owa.data.frames import decode_screens, DecodeStats
>>> stats = DecodeStats()
>>> frames = decode_screens(screens, on_error="skip", stats=stats)  # doctest: +SKIP

See :mod:`owa.data.frames.engine` for the played-at semantics, the valid time range and how batches
are decoded; :mod:`owa.data.frames.cache` for decoder lifetime across threads and forks.
"""

from owa.data.frames.cache import DecoderCache
from owa.data.frames.engine import (
    BACKEND_ENV_VAR,
    DEFAULT_SEEK_GAP_FRAMES,
    DEFAULT_TOLERANCE_NS,
    DEVICE_ENV_VAR,
    THREADS_ENV_VAR,
    DecodeStats,
    FrameDecoder,
    FrameEngine,
    VideoIndex,
    decode_image,
    decode_screen,
    decode_screens,
    get_engine,
    plan_seeks,
    resolve_backend,
    set_engine,
)

__all__ = [
    "BACKEND_ENV_VAR",
    "DEFAULT_SEEK_GAP_FRAMES",
    "DEFAULT_TOLERANCE_NS",
    "DEVICE_ENV_VAR",
    "THREADS_ENV_VAR",
    "DecodeStats",
    "DecoderCache",
    "FrameDecoder",
    "FrameEngine",
    "VideoIndex",
    "decode_image",
    "decode_screen",
    "decode_screens",
    "get_engine",
    "plan_seeks",
    "resolve_backend",
    "set_engine",
]
