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

__all__ = [
    "RESAMPLES",
    "BackendName",
    "DecoderClosedError",
    "FrameDecoder",
    "Resample",
    "check_size",
    "resolve_backend",
]

BackendName = Literal["auto", "pyav", "torchcodec"]
Resample = Literal["bilinear", "bicubic", "lanczos", "area"]
#: The resampling filters a decoder can resize with (the same names as PIL's and swscale's filters).
RESAMPLES: tuple[str, ...] = get_args(Resample)


class DecoderClosedError(RuntimeError):
    """A decoder was used after the cache closed it (another thread evicted it); the engine reopens."""


class FrameDecoder(Protocol):
    """One open video, decoded by one backend. Implementations must be safe to call from threads.

    ``decode`` takes frame positions of ``index`` in ascending order, without repeats, and returns one
    ``(height, width, 3)`` uint8 RGB array per position; with ``size=(height, width)`` the frame is resized to it
    with the ``resample`` filter while it is converted to RGB (one pass, no full-size RGB copy). It raises
    :class:`~owa.data.errors.FrameDecodeError` when decoding fails and :class:`DecoderClosedError` after
    ``close``; ``close`` waits for a ``decode`` in progress.
    """

    index: VideoIndex

    def decode(
        self, positions: Sequence[int], *, size: tuple[int, int] | None = None, resample: Resample = "bicubic"
    ) -> list[np.ndarray]: ...

    def close(self) -> None: ...


def check_size(size: object, resample: object = "bicubic") -> tuple[int, int] | None:
    """``size`` as ``(height, width)`` (or None) after checking it and ``resample``.

    Raises:
        ValueError: ``size`` is not two positive ints, or ``resample`` is not one of :data:`RESAMPLES`.
    """
    if resample not in RESAMPLES:
        raise ValueError(f"Invalid resample ({resample!r}). Supported values are {', '.join(map(repr, RESAMPLES))}.")
    if size is None:
        return None
    if (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or not all(isinstance(side, int | np.integer) and not isinstance(side, bool) and side > 0 for side in size)
    ):
        raise ValueError(
            f"Invalid size ({size!r}). Supported values are None or (height, width) in pixels, e.g. (448, 448)."
        )
    return int(size[0]), int(size[1])


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
