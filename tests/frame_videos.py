"""Videos encoded for the frame tests, and helpers shared by the ``test_frames_*`` files.

Videos are encoded with PyAV (small, variable frame rate, keyframes every 7 frames, H.264 and HEVC, with
and without B-frames); every frame carries its index as a block marker, so each test knows exactly
which frame came back. :func:`encoded_videos` encodes them once per test session.
"""

from __future__ import annotations

import bisect
import dataclasses
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import orjson
import pytest
from mcap.reader import make_reader

from owa.data.frames import FrameEngine
from owa.data.messages import MediaRef, ScreenCaptured
from owa.data.recordings.synthetic import read_frame_marker, render_frame_marker

__all__ = [
    "GAPS_MS",
    "KEYINT",
    "MS",
    "PTS_MS",
    "VERSIONED_RECORDINGS",
    "VIDEO_KINDS",
    "Video",
    "decode_reference",
    "encode_video",
    "encoded_videos",
    "markers",
    "only_decoder",
    "screens_of",
]

VERSIONED_RECORDINGS = ["0.3.2", "0.4.2", "0.5.1"]
MS = 1_000_000
KEYINT = 7
# Irregular gaps (ms) as in screen recordings: bursts, then long static stretches.
GAPS_MS = [40, 17, 33, 250, 16, 100, 66, 500, 20, 50]
PTS_MS = [250 + sum(GAPS_MS[j % len(GAPS_MS)] for j in range(i)) for i in range(30)]
VIDEO_KINDS = {"h264": ("h264", 0), "h264-bframes": ("h264", 2), "hevc": ("hevc", 0), "hevc-bframes": ("hevc", 3)}


@dataclasses.dataclass
class Video:
    path: Path
    pts_ms: list[int]
    frames: list[np.ndarray]  # reference: every frame decoded front to back, in pts order
    has_b_frames: bool

    def expected_position(self, pts_ns: int) -> int:
        """Played-at reference: the request rounded to the container's ms, then the last frame not after it."""
        ticks = (pts_ns + MS // 2) // MS
        return max(0, bisect.bisect_right(self.pts_ms, ticks) - 1)


def encode_video(path: Path, codec: str, pts_ms: list[int], *, b_frames: int = 0, size=(128, 64)) -> None:
    """Encode one frame per ``pts_ms`` (ms, Matroska), a keyframe every ``KEYINT`` frames, index markers."""
    width, height = size
    params = f"keyint=1000:min-keyint=1:scenecut=0:bframes={b_frames}"
    if codec == "hevc":
        options = {"preset": "ultrafast", "forced-idr": "1", "x265-params": f"log-level=none:{params}"}
    else:
        options = {"preset": "ultrafast", "forced-idr": "1", "x264-params": params}
    time_base = Fraction(1, 1000)
    with av.open(str(path), mode="w", format="matroska") as container:
        stream = container.add_stream({"hevc": "libx265", "h264": "libx264"}[codec], options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        stream.codec_context.thread_count = 1
        for i, t in enumerate(pts_ms):
            rgb = np.full((height, width, 3), 40 + (i * 29) % 170, dtype=np.uint8)
            render_frame_marker(rgb, i)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = t, time_base
            frame.pict_type = av.video.frame.PictureType.I if i % KEYINT == 0 else av.video.frame.PictureType.NONE
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def decode_reference(path: Path) -> tuple[list[int], list[np.ndarray]]:
    with av.open(str(path)) as container:
        decoded = [(f.pts, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    return [p for p, _ in decoded], [a for _, a in decoded]


_ENCODED: dict[Path, dict[str, Video]] = {}


def encoded_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Video]:
    """The four test videos (see ``VIDEO_KINDS``), encoded once per session and checked against PyAV."""
    key = tmp_path_factory.getbasetemp()
    if key not in _ENCODED:
        root = tmp_path_factory.mktemp("videos")
        out = {}
        for name, (codec, b_frames) in VIDEO_KINDS.items():
            path = root / f"{name}.mkv"
            encode_video(path, codec, PTS_MS, b_frames=b_frames)
            pts, frames = decode_reference(path)
            assert pts == PTS_MS, f"{name}: encoder changed the timestamps"
            assert [read_frame_marker(f) for f in frames] == list(range(len(PTS_MS)))
            out[name] = Video(path, PTS_MS, frames, has_b_frames=b_frames > 0)
        _ENCODED[key] = out
    return _ENCODED[key]


def markers(frames) -> list[int]:
    return [read_frame_marker(f) for f in frames]


def only_decoder(engine: FrameEngine):
    keys = engine.decoders.keys()
    assert len(keys) == 1
    return engine.decoders.get_or_open(keys[0], lambda: pytest.fail("decoder should be open"))


def screens_of(recording: Path) -> list[ScreenCaptured]:
    """Screen messages of a real recording as ScreenCaptured (0.3.2/0.4.2 path+pts mapped to media_ref)."""
    screens = []
    with recording.open("rb") as f:
        for _, _, message in make_reader(f).iter_messages(topics=["screen"]):
            payload = orjson.loads(message.data)
            ref = payload.get("media_ref") or {"uri": payload["path"], "pts_ns": payload["pts"]}
            screens.append(ScreenCaptured(media_ref=MediaRef(**ref)).with_base_dir(recording.parent))
    return screens
