"""What a video is: codec, size, frame rate and keyframe interval, from its stream and packet index (no decoding)."""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import numpy as np

from owa.data.errors import FrameDecodeError, OWADataError

__all__ = ["VideoInfo", "read_video_info", "summarize_videos"]


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """One video stream, read from its packets.

    Attributes:
        location: the video's path or URL.
        codec: FFmpeg's codec name (``hevc``, ``h264``, ...).
        width, height: coded frame size in pixels.
        frames: frames in the stream.
        duration_s: from the first frame to when the last stops being shown.
        fps: mean frame rate, ``(frames - 1) / (last pts - first pts)``; screen recordings have a variable rate,
            so this is below the capture rate when the screen was still.
        keyframes: keyframes in the stream.
        keyframe_interval_s: median seconds between consecutive keyframes (None with fewer than two).
    """

    location: str
    codec: str
    width: int
    height: int
    frames: int
    duration_s: float
    fps: float | None
    keyframes: int
    keyframe_interval_s: float | None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_video_info(location: str) -> VideoInfo:
    """Open ``location``, read its first video stream's packets and close it.

    Raises:
        VideoNotFoundError: the video is missing or unreadable.
        FrameDecodeError: it is not a video FFmpeg can read, or has no frames.
    """
    # The PyAV backend's own opener and index builder, so these numbers are what the frame engine sees.
    from owa.data.frames._pyav import build_index, open_container

    container = open_container(location)
    try:
        if not container.streams.video:
            raise FrameDecodeError("Media file has no video stream", path=location)
        stream = container.streams.video[0]
        codec, width, height = stream.codec_context.name, stream.codec_context.width, stream.codec_context.height
        index = build_index(container, stream, location)
    finally:
        container.close()
    pts_ns = np.array([index.pts_ns(i) for i in range(index.frame_count)], dtype=np.int64)
    span_ns = int(pts_ns[-1] - pts_ns[0])
    key_ns = pts_ns[index.keyframe_positions]
    return VideoInfo(
        location=location,
        codec=codec,
        width=int(width),
        height=int(height),
        frames=index.frame_count,
        duration_s=round((index.end_ns - int(pts_ns[0])) / 1e9, 3),
        fps=round((index.frame_count - 1) / (span_ns / 1e9), 3) if span_ns > 0 else None,
        keyframes=len(key_ns),
        keyframe_interval_s=round(float(np.median(np.diff(key_ns))) / 1e9, 3) if len(key_ns) > 1 else None,
    )


def summarize_videos(screens: list[tuple[str, Any]], episodes_with_screens: int, max_videos: int) -> dict[str, Any]:
    """Open the video each ``(episode, screen McapMessage)`` points to once; list each video's :class:`VideoInfo`,
    tally codecs, and list the videos that could not be read (``episode``, ``error``)."""
    videos: list[dict[str, Any]] = []
    unreadable: list[dict[str, str]] = []
    seen: set[str] = set()
    for episode, message in screens:
        try:
            media = message.decoded.resolve_media()
            if media.kind == "data" or media.location in seen:
                continue
            seen.add(media.location)
            videos.append(read_video_info(media.location).to_json())
        except OWADataError as e:
            unreadable.append({"episode": episode, "error": str(e)})
    return {
        "episodes_with_screens": episodes_with_screens,
        "checked": len(videos) + len(unreadable),
        "max_videos": max_videos,
        "codecs": dict(collections.Counter(v["codec"] for v in videos)),
        "videos": videos,
        "unreadable": unreadable,
    }
