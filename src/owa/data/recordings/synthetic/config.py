"""SampleConfig: how to synthesize an episode, validated once, shared by the Python API and ``owa-data sample``."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, get_args

from owa.data.recordings.synthetic.marker import MARKER_BITS
from owa.data.recordings.writer import Compression

__all__ = ["SampleConfig", "VideoCodec"]

VideoCodec = Literal["hevc", "h264"]


@dataclasses.dataclass(frozen=True, slots=True)
class SampleConfig:
    """How to synthesize an episode. One source of truth for the Python API and ``owa-data sample``.

    Attributes:
        seconds: Episode length in seconds (events and video lie in ``[0, seconds)``).
        fps: Screen sampling rate in frames per second (the video's maximum frame rate).
        width: Video width in pixels (even, at least 96).
        height: Video height in pixels (even, at least 48).
        codec: ``"hevc"`` (libx265, as the recorder) or ``"h264"`` (libx264).
        keyframe_interval_s: A keyframe on the first frame at or after each multiple of this many seconds.
        variable_frame_rate: Encode a frame only when the screen changed (True, as the recorder) or at
            every tick of ``fps`` (False, constant frame rate).
        video: Encode the ``.mkv``. False writes only the ``.mcap`` (fast; screen messages still point at
            ``<name>.mkv``, which is then missing, like a recording whose video was lost).
        seed: Seed of every random choice; the same config gives the same files.
        mouse_hz: Rate of ``move`` events while the mouse moves, in Hz (real mice: 60-125).
        screen_width: Width of the recorded desktop in pixels (mouse coordinates and ``source_shape``).
        screen_height: Height of the recorded desktop in pixels.
        raw_mouse: Also write ``mouse/raw`` RawMouseEvents (recorder 0.5.5+).
        stale_screen_prob: Probability that a tick without screen change still logs a screen message.
        offscreen_prob: Probability that a mouse stroke heads off the primary screen (second monitor).
        compression: MCAP chunk compression.
        crf: Encoder constant rate factor (lower is better quality and bigger files).
    """

    seconds: float = 5.0
    fps: float = 20.0
    width: int = 160
    height: int = 120
    codec: VideoCodec = "hevc"
    keyframe_interval_s: float = 2.0
    variable_frame_rate: bool = True
    video: bool = True
    seed: int = 0
    mouse_hz: float = 100.0
    screen_width: int = 1920
    screen_height: int = 1080
    raw_mouse: bool = False
    stale_screen_prob: float = 0.1
    offscreen_prob: float = 0.03
    compression: Compression = "zstd"
    crf: int = 28

    def __post_init__(self) -> None:
        def check(ok: bool, name: str, hint: str) -> None:
            if not ok:
                raise ValueError(f"Invalid {name} ({getattr(self, name)!r}). {hint}")

        check(_finite(self.seconds) and 0 < self.seconds <= 24 * 3600, "seconds", "It must be in (0, 86400]")
        check(_finite(self.fps) and 0 < self.fps <= 240, "fps", "It must be in (0, 240]")
        check(_is_int(self.width) and self.width >= 96 and self.width % 2 == 0, "width", "It must be even and >= 96")
        check(
            _is_int(self.height) and self.height >= 48 and self.height % 2 == 0, "height", "It must be even and >= 48"
        )
        check(self.codec in get_args(VideoCodec), "codec", f"Supported values are: {', '.join(get_args(VideoCodec))}")
        check(
            _finite(self.keyframe_interval_s) and self.keyframe_interval_s >= 0.001,
            "keyframe_interval_s",
            "It must be at least 0.001 seconds",
        )
        check(_is_int(self.seed) and self.seed >= 0, "seed", "It must be a non-negative integer")
        check(_finite(self.mouse_hz) and 1 <= self.mouse_hz <= 1000, "mouse_hz", "It must be in [1, 1000]")
        check(_is_int(self.screen_width) and self.screen_width >= 1, "screen_width", "It must be a positive integer")
        check(_is_int(self.screen_height) and self.screen_height >= 1, "screen_height", "It must be a positive integer")
        check(0 <= self.stale_screen_prob <= 1, "stale_screen_prob", "It must be in [0, 1]")
        check(0 <= self.offscreen_prob <= 1, "offscreen_prob", "It must be in [0, 1]")
        check(self.compression in get_args(Compression), "compression", f"Supported: {get_args(Compression)}")
        check(_is_int(self.crf) and 0 <= self.crf <= 51, "crf", "It must be an integer in [0, 51]")
        if self.seconds * self.fps >= 2**MARKER_BITS:
            raise ValueError(
                f"Invalid seconds*fps ({self.seconds}*{self.fps}). At most {2**MARKER_BITS - 1} frames fit the marker"
            )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
