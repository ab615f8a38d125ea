"""Where a desktop mouse position falls in a captured frame (frame space), for drawing the pointer on frames.

The rule, the same as ``owa.data.pointer_space`` (built on another branch; switch to it once merged): the capture is
a window when a ``window`` rect matches the captured size (``source_shape``, else the frame's size): the rect is
wider by ``2b`` and taller by ``b`` (1 px of slack on the height) for an invisible border ``0 <= b <= 16`` px, as
Windows 10/11 adds on the left, right and bottom. The frame's top-left on the desktop is then ``(left + b, top)``.
The latest matching rect at or before the time is used, else the first matching one (the ``window`` topic logs the
*active* window, so other windows' rects are passed over). Without a matching rect the capture is the desktop from
``(0, 0)``. A scaled capture maps ``frame = (desktop - origin) * frame_size / captured_size``.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence

__all__ = ["MAX_BORDER_PX", "CaptureMapping", "capture_mapping", "window_inset"]

MAX_BORDER_PX = 16


def window_inset(rect: Sequence[int], captured_size: tuple[int, int]) -> tuple[int, int] | None:
    """The capture's offset inside window ``rect`` (``[left, top, right, bottom]``), or None if it is not it.

    >>> window_inset([360, 307, 1278, 891], (906, 578))  # a 918x584 rect around a 906x578 capture
    (6, 0)
    >>> window_inset([0, 0, 1280, 1392], (906, 578)) is None
    True
    """
    width, height = rect[2] - rect[0], rect[3] - rect[1]
    extra_w, extra_h = width - captured_size[0], height - captured_size[1]
    if extra_w < 0 or extra_w % 2 or extra_w // 2 > MAX_BORDER_PX:
        return None
    border = extra_w // 2
    return (border, 0) if abs(extra_h - border) <= 1 else None


@dataclasses.dataclass(frozen=True, slots=True)
class CaptureMapping:
    """Desktop pixels -> frame pixels for one frame: ``frame = (desktop - origin) * frame_size / captured_size``.

    Attributes:
        origin: the capture's top-left on the desktop.
        captured_size: the captured area's size in desktop pixels (width, height).
        frame_size: the frame's size in pixels (width, height).
        window: whether a window rect placed the capture (False: the desktop from (0, 0)).
    """

    origin: tuple[int, int]
    captured_size: tuple[int, int]
    frame_size: tuple[int, int]
    window: bool

    def to_frame(self, x: float, y: float) -> tuple[float, float]:
        """Frame coordinates of desktop point ``(x, y)`` (floats; pixel ``(int(fx), int(fy))`` holds it)."""
        return (
            (x - self.origin[0]) * self.frame_size[0] / self.captured_size[0],
            (y - self.origin[1]) * self.frame_size[1] / self.captured_size[1],
        )


def capture_mapping(
    timestamp_ns: int,
    frame_size: tuple[int, int],
    source_shape: tuple[int, int] | None,
    windows: Sequence[tuple[int, Sequence[int]]],
) -> CaptureMapping:
    """The mapping for a frame at ``timestamp_ns`` whose screen message says ``source_shape`` (or None).

    Args:
        timestamp_ns: the screen message's time.
        frame_size: the decoded frame's (width, height).
        source_shape: the captured size the screen message records, or None (recorders before 0.4).
        windows: ``(timestamp_ns, rect)`` of the recording's ``window`` messages, in time order.
    """
    captured = tuple(source_shape) if source_shape else tuple(frame_size)
    matching = [(t, rect, inset) for t, rect in windows if (inset := window_inset(rect, captured)) is not None]  # type: ignore[arg-type]
    if matching:
        i = bisect.bisect_right([t for t, _, _ in matching], timestamp_ns) - 1
        _, rect, inset = matching[max(i, 0)]
        origin = (rect[0] + inset[0], rect[1] + inset[1])
        return CaptureMapping(origin, captured, tuple(frame_size), True)  # type: ignore[arg-type]
    return CaptureMapping((0, 0), captured, tuple(frame_size), False)  # type: ignore[arg-type]
