"""Frames sampled every few seconds of an episode, each with the pointer placed in frame space.

The frame for a sample time ``t`` is the screen shown at ``t``: the latest screen message at or before it, decoded
by the frame engine at its ``media_ref.pts_ns`` (the played-at rule), exactly as the transforms decode that row.
The pointer is the latest mouse position at or before that screen message, mapped into the frame by
:mod:`owa.data.pointer_space`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from owa.data.frames import DecodeStats, decode_screens
from owa.data.inspect.episode import EpisodeTimeline
from owa.data.pointer_space import CaptureArea, CaptureTimeline

__all__ = ["DEFAULT_MAX_FRAMES", "SampledFrame", "sample_frames", "sample_times_ns"]

DEFAULT_MAX_FRAMES = 60
_NS = 1_000_000_000


@dataclasses.dataclass(eq=False)
class SampledFrame:
    """One sampled frame.

    Attributes:
        time_ns: the sample time.
        screen_ns: the time of the screen message shown then (None: no screen yet).
        image: the decoded ``(height, width, 3)`` RGB frame, or None (no screen, or it failed: see ``error``).
        pointer_desktop: the pointer's desktop position at ``screen_ns`` (None: no mouse event yet).
        mapping: desktop -> frame pixels for this frame (None without an image).
        pointer_frame: the pointer in frame coordinates (floats; may lie outside the frame).
        error: why there is no image.
    """

    time_ns: int
    screen_ns: int | None
    image: np.ndarray | None
    pointer_desktop: tuple[int, int] | None
    mapping: CaptureArea | None
    pointer_frame: tuple[float, float] | None
    error: str | None = None

    @property
    def pointer_pixel(self) -> tuple[int, int] | None:
        """The frame pixel holding the pointer, or None when there is none or it lies outside the frame."""
        if self.pointer_frame is None or self.image is None:
            return None
        px, py = math.floor(self.pointer_frame[0]), math.floor(self.pointer_frame[1])
        height, width = self.image.shape[:2]
        return (px, py) if 0 <= px < width and 0 <= py < height else None


def sample_times_ns(
    timeline: EpisodeTimeline, start_s: float, end_s: float, every_s: float, max_frames: int
) -> list[int]:
    """Sample times ``start + k * every`` in ``[start, end)`` seconds after the episode's first event, as ns.

    Raises:
        ValueError: ``every_s`` is not positive, ``start_s >= end_s``, or more than ``max_frames`` samples.
    """
    if not every_s > 0:
        raise ValueError(f"Invalid --every ({every_s}). Use a positive number of seconds.")
    if not end_s > start_s:
        raise ValueError(f"Invalid --start/--end ({start_s}, {end_s}). --end must be after --start.")
    count = math.ceil((end_s - start_s) / every_s - 1e-9)
    if count > max_frames:
        raise ValueError(
            f"Invalid --every ({every_s}): {count} frames from {start_s} s to {end_s} s, more than {max_frames}. "
            "Raise --every or narrow --start/--end."
        )
    return [timeline.start_ns + round((start_s + k * every_s) * _NS) for k in range(count)]


def sample_frames(timeline: EpisodeTimeline, times_ns: list[int]) -> list[SampledFrame]:
    """The frame shown at each of ``times_ns`` with its pointer; a frame that cannot be decoded keeps its error."""
    shown = [timeline.screen_at(t) for t in times_ns]
    wanted = sorted({i for i in shown if i is not None})
    stats = DecodeStats()
    images = decode_screens([timeline.screens[i][1] for i in wanted], on_error="skip", stats=stats)
    decoded = dict(zip(wanted, images, strict=True))
    error = stats.last_error if stats.skipped else None
    samples = []
    for t, i in zip(times_ns, shown, strict=True):
        if i is None:
            samples.append(SampledFrame(t, None, None, None, None, None, "no screen yet"))
            continue
        screen_ns, screen = timeline.screens[i]
        pointer = timeline.pointer_at(screen_ns)
        image = decoded[i]
        if image is None:
            samples.append(SampledFrame(t, screen_ns, None, pointer, None, None, error or "frame not decoded"))
            continue
        frame_size = (image.shape[1], image.shape[0])
        captured = tuple(screen.source_shape) if screen.source_shape else frame_size
        mapping = CaptureTimeline.from_messages([(screen_ns, captured, frame_size)], timeline.windows).area_at(
            screen_ns
        )
        in_frame = None if pointer is None else mapping.to_frame(*pointer)
        samples.append(SampledFrame(t, screen_ns, image, pointer, mapping, in_frame))
    return samples
