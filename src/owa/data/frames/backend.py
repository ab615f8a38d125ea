"""The backend interface: what a frame decoder must do, and which backend decodes.

Backends (:mod:`owa.data.frames._pyav`, :mod:`owa.data.frames._torchcodec`) implement
:class:`FrameDecoder` over a :class:`~owa.data.frames.index.VideoIndex`; they import this module and
the index, never the engine, so a new backend changes no caller.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Literal, Protocol, cast, get_args

import numpy as np

from owa.data.frames.index import VideoIndex

__all__ = ["BackendName", "DecoderClosedError", "FrameDecoder", "resolve_backend"]

BackendName = Literal["auto", "pyav", "torchcodec"]


class DecoderClosedError(RuntimeError):
    """A decoder was used after the cache closed it (another thread evicted it); the engine reopens."""


class FrameDecoder(Protocol):
    """One open video, decoded by one backend. Implementations must be safe to call from threads.

    ``decode`` takes frame positions of ``index`` in ascending order, without repeats, and returns one
    ``(height, width, 3)`` uint8 RGB array per position. It raises
    :class:`~owa.data.errors.FrameDecodeError` when decoding fails and :class:`DecoderClosedError` after
    ``close``; ``close`` waits for a ``decode`` in progress.
    """

    index: VideoIndex

    def decode(self, positions: Sequence[int]) -> list[np.ndarray]: ...

    def close(self) -> None: ...


def _torchcodec_available() -> bool:
    return importlib.util.find_spec("torchcodec") is not None


def resolve_backend(backend: str = "auto", *, source: str = "backend") -> Literal["pyav", "torchcodec"]:
    """Pick the decoding backend.

    ``backend`` is ``"pyav"``, ``"torchcodec"`` or ``"auto"``: torchcodec when it is importable, else
    PyAV. ``source`` names where the value came from in the error (an argument or an environment variable).

    Raises:
        ValueError: an unknown backend name.
        ImportError: ``"torchcodec"`` was asked for explicitly and is not installed.
    """
    if backend not in get_args(BackendName):
        raise ValueError(f"Invalid {source} ({backend!r}). Supported values are 'auto', 'pyav', 'torchcodec'.")
    if backend == "auto":
        return "torchcodec" if _torchcodec_available() else "pyav"
    if backend == "torchcodec" and not _torchcodec_available():
        raise ImportError(
            "The torchcodec frame backend was requested but torchcodec is not installed. "
            "Install it with: pip install 'owa-data[torchcodec]' (or set OWA_FRAMES_BACKEND=pyav)"
        )
    return cast(Literal["pyav", "torchcodec"], backend)
