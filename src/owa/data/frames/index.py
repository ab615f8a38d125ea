"""The packet index of a video and the pure planning over it: which frame is played at a time, where to seek.

A :class:`VideoIndex` lists the presentation times of every frame of one video stream, read from its
packets without decoding. Times convert between the stream's ticks and nanoseconds with
:func:`ticks_to_ns` and :func:`ns_to_ticks`, both rounding to nearest, everywhere in the package.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from owa.data.errors import FrameDecodeError, FrameOutOfRangeError

__all__ = [
    "DEFAULT_SEEK_GAP_FRAMES",
    "DEFAULT_TOLERANCE_NS",
    "VideoIndex",
    "ns_to_ticks",
    "plan_seeks",
    "ticks_to_ns",
]

#: How far (ns) a request may lie before the first frame or after the end of the stream and still
#: get the first / last frame. Absorbs timestamp rounding and recorder clock jitter.
DEFAULT_TOLERANCE_NS = 100_000_000
#: Seek forward only when the target's keyframe is more than this many frames past the decoder's
#: position; closer targets are reached by decoding on, which is cheaper than flushing and seeking.
DEFAULT_SEEK_GAP_FRAMES = 4
_NS_PER_S = 1_000_000_000


def ticks_to_ns(ticks: int, time_base: Fraction) -> int:
    """``ticks`` of ``time_base`` seconds in ns, rounded to nearest (halves up); exact integer arithmetic."""
    num, den = time_base.numerator, time_base.denominator
    return (ticks * num * _NS_PER_S + den // 2) // den


def ns_to_ticks(pts_ns: int, time_base: Fraction) -> int:
    """``pts_ns`` in ticks of ``time_base`` seconds, rounded to nearest (halves up); exact integer arithmetic."""
    num, den = time_base.numerator, time_base.denominator
    scale = num * _NS_PER_S
    return (pts_ns * den + scale // 2) // scale


@dataclasses.dataclass(frozen=True, eq=False)
class VideoIndex:
    """Presentation times of every frame of one video stream, from its packets (no decoding).

    Attributes:
        location: the video's path or URL.
        time_base: seconds per tick of ``pts``.
        pts: presentation times in ticks, strictly increasing (int64); position ``i`` is the i-th frame
            in presentation order.
        keyframe_positions: positions (into ``pts``) of the keyframes, increasing.
        end_ns: when the last frame stops being shown, in ns on the video's timeline.
        stream_index: the container's index of the video stream.
        damaged_positions: positions (increasing) of frames that cannot be trusted: packets around them
            are missing or damaged, so they, or a lost frame shown in their place, would decode wrong.
        complete: False when the end of the stream is lost (the file is cut short or overwritten):
            nothing is known to be on screen after the last frame present.
    """

    location: str
    time_base: Fraction
    pts: np.ndarray
    keyframe_positions: np.ndarray
    end_ns: int
    stream_index: int = 0
    damaged_positions: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    complete: bool = True

    def __post_init__(self) -> None:
        if len(self.pts) == 0:
            raise FrameDecodeError("Video stream has no frames", path=self.location)
        # Python ints for bisect: exact and overflow-free whatever the time base.
        object.__setattr__(self, "_pts_list", self.pts.tolist())
        object.__setattr__(self, "_damaged", frozenset(self.damaged_positions.tolist()))

    @property
    def frame_count(self) -> int:
        return len(self._pts_list)

    def pts_ns(self, position: int) -> int:
        """Presentation time of the frame at ``position``, in ns (rounded to nearest)."""
        return ticks_to_ns(self._pts_list[position], self.time_base)

    def ticks(self, pts_ns: int) -> int:
        """``pts_ns`` in ticks of the stream's time base, rounded to nearest (halves up)."""
        return ns_to_ticks(pts_ns, self.time_base)

    @property
    def first_pts_ns(self) -> int:
        return self.pts_ns(0)

    @property
    def last_pts_ns(self) -> int:
        return self.pts_ns(self.frame_count - 1)

    def played_at(self, pts_ns: int, tolerance_ns: int = DEFAULT_TOLERANCE_NS) -> int:
        """Position of the frame on screen at ``pts_ns``: the greatest pts not after it.

        Raises:
            FrameOutOfRangeError: ``pts_ns`` lies more than ``tolerance_ns`` before the first frame or
                after ``end_ns``, or after the last frame present when the stream is not ``complete``;
                the message lists the requested and available times.
            FrameDecodeError: the frame on screen at ``pts_ns`` lies in a damaged part of the video.
        """
        ticks = self.ticks(pts_ns)
        position = bisect.bisect_right(self._pts_list, ticks) - 1
        if position < 0:
            if pts_ns < self.first_pts_ns - tolerance_ns:
                raise self._out_of_range(pts_ns, tolerance_ns, "before the first frame")
            position = 0
        elif pts_ns > self.end_ns + tolerance_ns:
            raise self._out_of_range(pts_ns, tolerance_ns, "after the end")
        elif not self.complete and ticks > self._pts_list[-1]:
            raise self._out_of_range(pts_ns, 0, "after the last frame present (the end of the file is damaged)")
        if position in self._damaged:
            raise FrameDecodeError(
                f"Frame requested at pts_ns={pts_ns} lies in a damaged part of the video (packets around it are "
                f"missing or corrupt); the frame on screen then is unknown",
                path=self.location,
                pts_ns=pts_ns,
                frame_pts_ns=self.pts_ns(position),
            )
        return position

    def _out_of_range(self, pts_ns: int, tolerance_ns: int, where: str) -> FrameOutOfRangeError:
        return FrameOutOfRangeError(
            f"Frame requested at pts_ns={pts_ns} is {where} of the video stream, which has "
            f"{self.frame_count} frames from pts_ns={self.first_pts_ns} to pts_ns={self.last_pts_ns}, "
            f"the last shown until {self.end_ns} ns (tolerance {tolerance_ns} ns)",
            path=self.location,
            pts_ns=pts_ns,
            first_pts_ns=self.first_pts_ns,
            last_pts_ns=self.last_pts_ns,
            end_ns=self.end_ns,
            frame_count=self.frame_count,
        )


def plan_seeks(
    current: int | None, targets: Sequence[int], keyframes: Sequence[int], seek_gap_frames: int
) -> list[int | None]:
    """Decide, for frame positions decoded in the given order, where to seek before each one.

    Args:
        current: position of the frame the decoder output last, or None when it has no usable position
            (fresh, after an error or after the end of the stream).
        targets: frame positions to decode, in decoding order (normally ascending).
        keyframes: for each target, the position of the keyframe at or before it.
        seek_gap_frames: seek forward only if the keyframe is more than this many frames past the
            position reached so far; otherwise keep decoding forward.

    Returns:
        For each target, the keyframe position to seek to first, or None to continue from the
        current position (also for a repeat of the frame just decoded).
    """
    plan: list[int | None] = []
    for target, keyframe in zip(targets, keyframes, strict=True):
        if current is not None and target == current:
            plan.append(None)
        elif current is None or target < current or keyframe - current > seek_gap_frames:
            plan.append(keyframe)
        else:
            plan.append(None)
        current = target
    return plan
