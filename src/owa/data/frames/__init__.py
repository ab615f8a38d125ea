"""Video frames for screen messages: one engine, shared by every consumer, with replaceable backends.

>>> from owa.data.frames import decode_screens, DecodeStats
>>> stats = DecodeStats()
>>> frames = decode_screens(screens, on_error="skip", stats=stats)  # doctest: +SKIP

Modules: :mod:`~owa.data.frames.engine` (the engine, played-at semantics and how batches are decoded),
:mod:`~owa.data.frames.index` (the packet index and seek planning), :mod:`~owa.data.frames.backend`
(the decoder interface and backend choice), :mod:`~owa.data.frames.cache` (decoder lifetime across
threads and forks), :mod:`~owa.data.frames.images` (still images).
"""

from owa.data.frames.engine import FrameEngine, decode_screen, decode_screens, get_engine, set_engine
from owa.data.frames.images import decode_image
from owa.data.frames.stats import DecodeStats

__all__ = [
    "DecodeStats",
    "FrameEngine",
    "decode_image",
    "decode_screen",
    "decode_screens",
    "get_engine",
    "set_engine",
]
