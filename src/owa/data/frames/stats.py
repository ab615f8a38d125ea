"""What frame decoding produced and skipped: :class:`DecodeStats`."""

from __future__ import annotations

from owa.data.counters import Counters

__all__ = ["DecodeStats"]


class DecodeStats(Counters):
    """Counts of one or more ``decode_screens`` / ``FrameEngine.decode`` calls made with ``on_error="skip"``.

    Process-local (see :mod:`owa.data.counters`): pass one to a call, then add what it counted to longer-lived,
    shared stats (the transforms and ``FSLDataset`` do).

    Attributes:
        decoded: requests that produced a frame.
        skipped: requests that failed and came back as None.
        errors: skipped requests by error type name, e.g. ``{"VideoNotFoundError": 3}``.
        last_error: message of the most recent failure.
    """

    decoded: int
    skipped: int

    def record_error(self, error: BaseException) -> None:
        """Count one skipped request that failed with ``error``."""
        self.add([error], skipped=1)
