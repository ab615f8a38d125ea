"""The frame-decoding engine: played-at semantics, batching, range errors, cache lifetime, fork safety.

Videos are encoded here with PyAV (small, variable frame rate, keyframes every 7 frames, H.264 and
HEVC, with and without B-frames); every frame carries its index as a block marker, so each test knows
exactly which frame came back. The real recordings in ../shared/recordings are decoded too.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import io
import multiprocessing
import os
import random
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcap.reader import make_reader
from PIL import Image

from owa.data.errors import (
    FrameDecodeError,
    FrameOutOfRangeError,
    MessageValidationError,
    UnsafeMediaURIError,
    VideoNotFoundError,
)
from owa.data.frames import (
    BACKEND_ENV_VAR,
    DecoderCache,
    DecodeStats,
    FrameEngine,
    VideoIndex,
    decode_screen,
    decode_screens,
    get_engine,
    plan_seeks,
    resolve_backend,
    set_engine,
)
from owa.data.frames import engine as engine_module
from owa.data.messages import MediaPolicy, MediaRef, ScreenCaptured
from owa.data.recordings.sample import SampleConfig, read_frame_marker, render_frame_marker, write_sample_episode

REPO_ROOT = Path(__file__).resolve().parents[1]
VERSIONED_RECORDINGS = ["0.3.2", "0.4.2", "0.5.1"]
MS = 1_000_000
KEYINT = 7
# Irregular gaps (ms) as in screen recordings: bursts, then long static stretches.
GAPS_MS = [40, 17, 33, 250, 16, 100, 66, 500, 20, 50]
PTS_MS = [250 + sum(GAPS_MS[j % len(GAPS_MS)] for j in range(i)) for i in range(30)]


# --------------------------------------------------------------------------------------------------
# Fixtures: videos encoded here
# --------------------------------------------------------------------------------------------------


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


VIDEO_KINDS = {"h264": ("h264", 0), "h264-bframes": ("h264", 2), "hevc": ("hevc", 0), "hevc-bframes": ("hevc", 3)}


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Video]:
    root = tmp_path_factory.mktemp("videos")
    out = {}
    for name, (codec, b_frames) in VIDEO_KINDS.items():
        path = root / f"{name}.mkv"
        encode_video(path, codec, PTS_MS, b_frames=b_frames)
        pts, frames = decode_reference(path)
        assert pts == PTS_MS, f"{name}: encoder changed the timestamps"
        assert [read_frame_marker(f) for f in frames] == list(range(len(PTS_MS)))
        out[name] = Video(path, PTS_MS, frames, has_b_frames=b_frames > 0)
    return out


@pytest.fixture(params=list(VIDEO_KINDS))
def video(request: pytest.FixtureRequest, videos: dict[str, Video]) -> Video:
    return videos[request.param]


@pytest.fixture
def engine():
    engine = FrameEngine(backend="pyav")
    yield engine
    engine.close()


def markers(frames) -> list[int]:
    return [read_frame_marker(f) for f in frames]


def only_decoder(engine: FrameEngine):
    keys = engine.decoders.keys()
    assert len(keys) == 1
    return engine.decoders.get_or_open(keys[0], lambda: pytest.fail("decoder should be open"))


# --------------------------------------------------------------------------------------------------
# Index and played-at arithmetic
# --------------------------------------------------------------------------------------------------


def test_index_lists_every_frame_and_keyframe(video: Video, engine: FrameEngine) -> None:
    index = engine.index(str(video.path))
    assert index.time_base == Fraction(1, 1000)
    assert index.pts.tolist() == PTS_MS
    assert index.keyframe_positions.tolist() == list(range(0, len(PTS_MS), KEYINT))
    assert index.first_pts_ns == PTS_MS[0] * MS
    assert index.last_pts_ns == PTS_MS[-1] * MS
    assert index.end_ns >= index.last_pts_ns


def test_video_index_rounds_requests_to_the_time_base() -> None:
    # The 0.3.2 recording's case: a screen message at 16_666_666 ns, the frame stored at 17 ms.
    index = VideoIndex(
        location="x.mkv",
        time_base=Fraction(1, 1000),
        pts=np.array([10, 17, 110], dtype=np.int64),
        keyframe_positions=np.array([0]),
        end_ns=200 * MS,
    )
    assert index.played_at(16_666_666) == 1
    assert index.played_at(16_499_999) == 0  # rounds to 16 ms: still the frame at 10 ms
    assert index.played_at(16_500_000) == 1  # halves round up
    assert index.played_at(109 * MS) == 1
    assert index.played_at(0) == 0  # 10 ms before the first frame: within the default 100 ms tolerance
    assert index.played_at(300 * MS) == 2  # after the end (200 ms) but within tolerance
    with pytest.raises(FrameOutOfRangeError, match="after the end"):
        index.played_at(300 * MS + 1)
    with pytest.raises(FrameOutOfRangeError, match="before the first frame"):
        index.played_at(-90 * MS - 1)
    assert index.played_at(5 * MS, tolerance_ns=5 * MS) == 0
    with pytest.raises(FrameOutOfRangeError):
        index.played_at(5 * MS - 1, tolerance_ns=5 * MS)
    assert index.keyframe_at_or_before(2) == 0


def test_video_index_with_a_90khz_time_base() -> None:
    index = VideoIndex(
        location="x.ts",
        time_base=Fraction(1, 90_000),
        pts=np.array([0, 3003, 6006, 9009], dtype=np.int64),  # 29.97 fps
        keyframe_positions=np.array([0, 2]),
        end_ns=133_466_666,
    )
    assert index.pts_ns(1) == 33_366_667
    assert index.played_at(33_366_667) == 1
    assert index.played_at(33_362_000) == 1  # 3002.58 ticks: within half a tick of the frame
    assert index.played_at(33_360_000) == 0  # 3002.4 ticks rounds down
    assert index.keyframe_at_or_before(1) == 0
    assert index.keyframe_at_or_before(3) == 2


def test_plan_seeks_continues_forward_and_seeks_only_across_large_gaps() -> None:
    assert plan_seeks(None, [0, 1, 2], [0, 0, 0], 4) == [0, None, None]
    assert plan_seeks(2, [3], [0], 4) == [None]
    assert plan_seeks(2, [20], [14], 4) == [14]  # 12 frames to skip: seek
    assert plan_seeks(10, [15], [14], 4) == [None]  # 4 frames to skip: decode through them
    assert plan_seeks(10, [5], [0], 4) == [0]  # backwards: always seek
    assert plan_seeks(5, [5, 5], [0, 0], 4) == [None, None]  # repeats of the current frame
    assert plan_seeks(None, [3, 30, 31, 2], [0, 28, 28, 0], 4) == [0, 28, None, 0]
    assert plan_seeks(0, [30], [28], 100) == [None]


# --------------------------------------------------------------------------------------------------
# Played-at decoding on encoded videos
# --------------------------------------------------------------------------------------------------


def test_played_at_exact_between_and_rounding(video: Video, engine: FrameEngine) -> None:
    requests, expected = [], []
    for i, t in enumerate(video.pts_ms):
        requests.append(t * MS)  # exactly on the frame
        expected.append(i)
        if i + 1 < len(video.pts_ms):
            nxt = video.pts_ms[i + 1]
            requests += [(t + nxt) * MS // 2, nxt * MS - MS, nxt * MS - MS // 2 + 1]
            # midway, 1 ms before the next frame, and 0.5 ms before it (rounds up to the next frame)
            expected += [i, i, i + 1]
    frames = engine.decode([(str(video.path), t) for t in requests])
    assert markers(frames) == expected
    for frame, i in zip(frames, expected, strict=True):
        assert frame.shape == (64, 128, 3) and frame.dtype == np.uint8
        np.testing.assert_array_equal(frame, video.frames[i])


def test_before_the_first_frame(video: Video, engine: FrameEngine) -> None:
    first = video.pts_ms[0] * MS
    path = str(video.path)
    assert markers(engine.decode([(path, first - 50 * MS), (path, first - 100 * MS)])) == [0, 0]
    with pytest.raises(FrameOutOfRangeError) as info:
        engine.decode([(path, first - 150 * MS)])
    message = str(info.value)
    assert f"pts_ns={first - 150 * MS}" in message and "before the first frame" in message
    assert f"{len(PTS_MS)} frames from pts_ns={first} to pts_ns={PTS_MS[-1] * MS}" in message
    assert info.value.path == str(video.path)
    strict = FrameEngine(backend="pyav", tolerance_ns=0)
    try:
        with pytest.raises(FrameOutOfRangeError):
            strict.decode([(path, first - 1 * MS)])
        assert markers(strict.decode([(path, first)])) == [0]
    finally:
        strict.close()


def test_after_the_end(video: Video, engine: FrameEngine) -> None:
    path = str(video.path)
    index = engine.index(path)
    last = len(PTS_MS) - 1
    inside = [(index.last_pts_ns + index.end_ns) // 2, index.end_ns, index.end_ns + 99 * MS]
    assert markers(engine.decode([(path, t) for t in inside])) == [last] * 3
    beyond = index.end_ns + 101 * MS
    with pytest.raises(FrameOutOfRangeError) as info:
        engine.decode([(path, beyond)])
    error = info.value
    assert "after the end" in str(error) and f"pts_ns={beyond}" in str(error)
    assert error.context["frame_count"] == len(PTS_MS)
    assert error.context["first_pts_ns"] == PTS_MS[0] * MS
    assert error.context["last_pts_ns"] == PTS_MS[-1] * MS
    assert error.context["end_ns"] == index.end_ns


def test_shuffled_batch_comes_back_in_request_order(video: Video, engine: FrameEngine) -> None:
    requests = [t * MS for t in video.pts_ms] + [t * MS + 7 * MS for t in video.pts_ms] + [PTS_MS[5] * MS] * 3
    random.Random(0).shuffle(requests)
    frames = engine.decode([(str(video.path), t) for t in requests])
    expected = [video.expected_position(t) for t in requests]
    assert markers(frames) == expected
    for frame, i in zip(frames, expected, strict=True):
        np.testing.assert_array_equal(frame, video.frames[i])


def test_repeated_requests_get_independent_arrays(video: Video, engine: FrameEngine) -> None:
    a, b = engine.decode([(str(video.path), PTS_MS[3] * MS), (str(video.path), PTS_MS[3] * MS + MS)])
    assert a is not b
    a[:] = 0
    np.testing.assert_array_equal(b, video.frames[3])
    # A repeat across calls (the decoder's current frame) is converted again, not shared.
    (c,) = engine.decode([(str(video.path), PTS_MS[3] * MS)])
    np.testing.assert_array_equal(c, video.frames[3])


def test_in_order_calls_continue_without_seeking(video: Video, engine: FrameEngine) -> None:
    path = str(video.path)
    got = []
    for start in range(0, len(PTS_MS), 4):
        got += engine.decode([(path, t * MS) for t in PTS_MS[start : start + 4]])
    assert markers(got) == list(range(len(PTS_MS)))
    decoder = only_decoder(engine)
    assert decoder.seek_count == 1  # the initial one
    if not video.has_b_frames:
        assert decoder.frames_decoded == len(PTS_MS)
    engine.decode([(path, PTS_MS[2] * MS)])  # backwards: one more seek
    assert decoder.seek_count == 2


def test_sparse_batch_seeks_only_across_large_gaps(video: Video, engine: FrameEngine) -> None:
    path = str(video.path)
    frames = engine.decode([(path, PTS_MS[i] * MS) for i in (20, 1, 2, 16)])
    assert markers(frames) == [20, 1, 2, 16]
    decoder = only_decoder(engine)
    # Sorted: 1, 2 from keyframe 0; 16 from keyframe 14 (a seek: 12 frames ahead); 20 by decoding on.
    assert decoder.seek_count == 2
    if not video.has_b_frames:
        assert decoder.frames_decoded == 3 + 7


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_batches_match_the_reference(videos: dict[str, Video], data: st.DataObject) -> None:
    # One engine across examples, so every batch starts wherever the previous one left the decoder.
    engine = _shared_property_engine()
    video = videos[data.draw(st.sampled_from(sorted(videos)))]
    low, high = (PTS_MS[0] - 100) * MS, (PTS_MS[-1] + 10) * MS
    requests = data.draw(st.lists(st.integers(low, high), min_size=1, max_size=12))
    frames = engine.decode([(str(video.path), t) for t in requests])
    expected = [video.expected_position(t) for t in requests]
    assert markers(frames) == expected
    for frame, i in zip(frames, expected, strict=True):
        np.testing.assert_array_equal(frame, video.frames[i])


_PROPERTY_ENGINE: list[FrameEngine] = []


def _shared_property_engine() -> FrameEngine:
    if not _PROPERTY_ENGINE:
        _PROPERTY_ENGINE.append(FrameEngine(backend="pyav", max_open_decoders=2))
    return _PROPERTY_ENGINE[0]


def remux_flagging_every_packet_as_keyframe(source: Path, target: Path) -> None:
    with av.open(str(source)) as src, av.open(str(target), "w", format="matroska") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.pts is None:
                continue
            packet.is_keyframe = True
            packet.stream = stream
            dst.mux(packet)


@pytest.mark.parametrize("name", ["hevc", "hevc-bframes"])
def test_false_keyframe_flags_are_caught(tmp_path: Path, videos: dict[str, Video], name: str) -> None:
    from owa.data.frames._pyav import PyAVDecoder

    video = videos[name]
    lying_file = tmp_path / "lying.mkv"
    remux_flagging_every_packet_as_keyframe(video.path, lying_file)
    with av.open(str(lying_file)) as container:
        assert all(p.is_keyframe for p in container.demux(video=0) if p.pts is not None)
    engine = FrameEngine(backend="pyav")
    try:
        # The index checks flagged packets against the bitstream: only the real keyframes stay.
        index = engine.index(str(lying_file))
        assert index.keyframe_positions.tolist() == list(range(0, len(PTS_MS), KEYINT))
        frames = engine.decode([(str(lying_file), PTS_MS[i] * MS) for i in (24, 10, 29, 3)])
        assert markers(frames) == [24, 10, 29, 3]
    finally:
        engine.close()
    # Without that check (an index that believes the flags), seeking finds out and stops using them.
    lying_index = dataclasses.replace(index, keyframe_positions=np.arange(index.frame_count))
    decoder = PyAVDecoder(str(lying_file), index=lying_index)
    try:
        for position in (24, 10, 29, 3):
            (frame,) = decoder.decode([position])
            np.testing.assert_array_equal(frame, video.frames[position])
        assert 0 < len(decoder._keys) < len(PTS_MS)
    finally:
        decoder.close()


def test_keyframe_flags_are_checked_against_the_bitstream() -> None:
    from owa.data.frames._pyav import _h264_random_access, _hevc_random_access, _nal_units

    def length_prefixed(*nals: bytes) -> bytes:
        return b"".join(len(n).to_bytes(4, "big") + n for n in nals)

    aud, idr_w_radl, cra, trail_r = b"\x46\x01\x10", b"\x26\x01\xaf", b"\x2a\x01\xaf", b"\x02\x01\xd0"
    assert _hevc_random_access(_nal_units(length_prefixed(aud, idr_w_radl), 4)) is True
    assert _hevc_random_access(_nal_units(length_prefixed(aud, cra), 4)) is True
    assert _hevc_random_access(_nal_units(length_prefixed(aud, trail_r), 4)) is False
    assert _hevc_random_access(_nal_units(b"\x00\x00\x00\x01" + aud + b"\x00\x00\x01" + trail_r, 0)) is False
    # H.264 slice headers: first_mb_in_slice = ue(0) = "1", then slice_type as ue(v).
    idr, i_slice, p_slice = b"\x65\x88", b"\x21\x88", b"\x21\x98"  # slice_type 7 (I), 5 (P)
    assert _h264_random_access(_nal_units(length_prefixed(idr), 4)) is True
    assert _h264_random_access(_nal_units(length_prefixed(i_slice), 4)) is True
    assert _h264_random_access(_nal_units(length_prefixed(p_slice), 4)) is False
    assert _h264_random_access(_nal_units(length_prefixed(b"\x06\x06\x01\xc4\x80", p_slice), 4)) is True
    with pytest.raises(ValueError):
        list(_nal_units(b"\x00\x00\x00\x09\x02", 4))


# --------------------------------------------------------------------------------------------------
# Real recordings
# --------------------------------------------------------------------------------------------------


def screens_of(recording: Path) -> list[ScreenCaptured]:
    """Screen messages of a real recording as ScreenCaptured (0.3.2/0.4.2 path+pts mapped to media_ref)."""
    screens = []
    with recording.open("rb") as f:
        for _, _, message in make_reader(f).iter_messages(topics=["screen"]):
            payload = orjson.loads(message.data)
            ref = payload.get("media_ref") or {"uri": payload["path"], "pts_ns": payload["pts"]}
            screens.append(ScreenCaptured(media_ref=MediaRef(**ref)).with_base_dir(recording.parent))
    return screens


@pytest.mark.parametrize("version", VERSIONED_RECORDINGS)
def test_every_screen_of_the_real_recordings_decodes(recordings_dir: Path, version: str) -> None:
    screens = screens_of(recordings_dir / f"{version}.mcap")
    assert screens
    pts_ms, reference = decode_reference(recordings_dir / f"{version}.mkv")
    with av.open(str(recordings_dir / f"{version}.mkv")) as container:
        stream = container.streams.video[0]
        size = (stream.codec_context.height, stream.codec_context.width, 3)
    engine = FrameEngine(backend="pyav")
    try:
        frames = decode_screens(screens, engine=engine)
    finally:
        engine.close()
    for screen, frame in zip(screens, frames, strict=True):
        assert frame is not None and frame.shape == size and frame.dtype == np.uint8
        t = screen.media_ref.pts_ns
        i = max(0, bisect.bisect_right(pts_ms, (t + MS // 2) // MS) - 1)
        np.testing.assert_array_equal(frame, reference[i])
    # The message API goes through the same engine.
    np.testing.assert_array_equal(screens[-1].to_rgb_array(), frames[-1])
    assert screens[0].to_pil_image().size == (size[1], size[0])


@pytest.mark.parametrize("version", VERSIONED_RECORDINGS)
def test_real_recordings_decode_with_a_seek_for_every_screen(recordings_dir: Path, version: str) -> None:
    # 0.3.2 flags every packet as a keyframe although only two are: seeking must not trust that.
    pts_ms, reference = decode_reference(recordings_dir / f"{version}.mkv")
    screens = screens_of(recordings_dir / f"{version}.mcap")
    engine = FrameEngine(backend="pyav")
    try:
        assert engine.index(str(recordings_dir / f"{version}.mkv")).keyframe_positions.tolist() == (
            [0] if version == "0.5.1" else [0, 30]
        )
        for screen in reversed(screens):  # every call jumps backwards
            (frame,) = decode_screens([screen], engine=engine)
            i = max(0, bisect.bisect_right(pts_ms, (screen.media_ref.pts_ns + MS // 2) // MS) - 1)
            np.testing.assert_array_equal(frame, reference[i])
    finally:
        engine.close()


def test_missing_video_names_the_video_and_pts(recordings_dir: Path) -> None:
    screens = screens_of(recordings_dir / "ztype-no-video.mcap")
    pts_ns = screens[3].media_ref.pts_ns
    with pytest.raises(VideoNotFoundError) as info:
        screens[3].to_rgb_array()
    assert info.value.path == str(recordings_dir / "example.mkv")
    assert "example.mkv" in str(info.value) and f"pts_ns={pts_ns}" in str(info.value)
    stats = DecodeStats()
    assert decode_screens(screens, on_error="skip", stats=stats) == [None] * len(screens)
    assert stats.skipped == len(screens) and stats.errors == {"VideoNotFoundError": len(screens)}


def test_sample_episode_screens_decode_to_their_frames(tmp_path: Path) -> None:
    episode = write_sample_episode(tmp_path, "ep", SampleConfig(seconds=3.0, codec="h264", seed=5))
    screens = screens_of(episode.mcap_path)
    frames = decode_screens(screens, engine=FrameEngine(backend="pyav"))
    assert markers(frames) == [episode.frame_index_at(s.media_ref.pts_ns) for s in screens]


# --------------------------------------------------------------------------------------------------
# Errors, skipping and the URI policy
# --------------------------------------------------------------------------------------------------


def test_skip_returns_none_and_counts(videos: dict[str, Video], engine: FrameEngine) -> None:
    video = videos["h264"]
    base = video.path.parent
    screens = [
        ScreenCaptured(media_ref=MediaRef(uri=video.path.name, pts_ns=PTS_MS[4] * MS)),
        ScreenCaptured(media_ref=MediaRef(uri="missing.mkv", pts_ns=0)),
        ScreenCaptured(media_ref=MediaRef(uri=video.path.name, pts_ns=10**12)),
        ScreenCaptured(media_ref=MediaRef(uri="../escape.mkv", pts_ns=0)),
        ScreenCaptured(),
        ScreenCaptured(media_ref=MediaRef(uri=video.path.name, pts_ns=PTS_MS[9] * MS)),
    ]
    screens = [s.with_base_dir(base) for s in screens]
    stats = DecodeStats()
    frames = decode_screens(screens, on_error="skip", stats=stats, engine=engine)
    assert [f is None for f in frames] == [False, True, True, True, True, False]
    assert markers([frames[0], frames[5]]) == [4, 9]
    assert stats.decoded == 2 and stats.skipped == 4
    assert stats.errors == {
        "VideoNotFoundError": 1,
        "FrameOutOfRangeError": 1,
        "UnsafeMediaURIError": 1,
        "MessageValidationError": 1,
    }
    assert stats.last_error is not None
    decode_screens(screens[:2], on_error="skip", stats=stats, engine=engine)  # counts accumulate
    assert stats.decoded == 3 and stats.skipped == 5 and stats.errors["VideoNotFoundError"] == 2
    # The default raises the typed error of each.
    for screen, error in zip(
        screens[1:5],
        [VideoNotFoundError, FrameOutOfRangeError, UnsafeMediaURIError, MessageValidationError],
        strict=True,
    ):
        with pytest.raises(error):
            decode_screen(screen)
    with pytest.raises(ValueError, match="Supported values are 'raise', 'skip'"):
        decode_screens(screens, on_error="ignore", engine=engine)  # type: ignore[arg-type]


def test_uri_policy_errors_surface(videos: dict[str, Video], engine: FrameEngine) -> None:
    video = videos["hevc"]
    absolute = ScreenCaptured(media_ref=MediaRef(uri=str(video.path), pts_ns=PTS_MS[2] * MS))
    with pytest.raises(UnsafeMediaURIError, match="allow_absolute"):
        decode_screens([absolute], engine=engine)
    frame = decode_screens([absolute], policy=MediaPolicy(allow_absolute=True), engine=engine)[0]
    assert read_frame_marker(frame) == 2
    remote = ScreenCaptured(media_ref=MediaRef(uri="https://example.invalid/v.mkv", pts_ns=0))
    with pytest.raises(UnsafeMediaURIError, match="allow_remote"):
        decode_screen(remote)


def test_still_images_and_data_uris(tmp_path: Path, engine: FrameEngine) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "shot.png")
    screen = ScreenCaptured(media_ref=MediaRef(uri="shot.png")).with_base_dir(tmp_path)
    np.testing.assert_array_equal(decode_screen(screen), rgb)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    inline = ScreenCaptured(media_ref=MediaRef(uri=uri))
    with pytest.raises(UnsafeMediaURIError, match="allow_data"):
        decode_screen(inline)
    np.testing.assert_array_equal(decode_screen(inline, policy=MediaPolicy(allow_data=True)), rgb)
    with pytest.raises(FrameDecodeError, match="still images"):
        decode_screen(ScreenCaptured(media_ref=MediaRef(uri=uri, pts_ns=0)), policy=MediaPolicy(allow_data=True))
    with pytest.raises(VideoNotFoundError):
        decode_screen(ScreenCaptured(media_ref=MediaRef(uri="gone.png")).with_base_dir(tmp_path))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(FrameDecodeError):
        decode_screen(ScreenCaptured(media_ref=MediaRef(uri="bad.png")).with_base_dir(tmp_path))


def test_unreadable_and_damaged_videos(tmp_path: Path, videos: dict[str, Video], engine: FrameEngine) -> None:
    (tmp_path / "garbage.mkv").write_bytes(b"\x00" * 4096)
    with pytest.raises(FrameDecodeError) as info:
        engine.decode([(str(tmp_path / "garbage.mkv"), 5 * MS)])
    assert info.value.context["pts_ns"] == 5 * MS
    (tmp_path / "folder.mkv").mkdir()
    with pytest.raises(VideoNotFoundError):
        engine.decode([(str(tmp_path / "folder.mkv"), 0)])
    # A video cut short (a recorder crash): the frames before the cut still decode exactly.
    data = videos["hevc"].path.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: len(data) * 6 // 10])
    index = engine.index(str(tmp_path / "cut.mkv"))
    assert 0 < index.frame_count < len(PTS_MS)
    first = [PTS_MS[i] * MS for i in range(index.frame_count - 1)]
    frames = engine.decode([(str(tmp_path / "cut.mkv"), t) for t in first])
    assert markers(frames) == list(range(index.frame_count - 1))


# --------------------------------------------------------------------------------------------------
# Decoder cache: eviction, threads, fork
# --------------------------------------------------------------------------------------------------


class Resource:
    """A real closeable object that records its closing."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def close(self) -> None:
        self.log.append(self.name)


def test_decoder_cache_is_a_bounded_lru_that_closes_on_eviction() -> None:
    log: list[str] = []
    cache: DecoderCache[str, Resource] = DecoderCache(max_open=2)
    a = cache.get_or_open("a", lambda: Resource("a", log))
    cache.get_or_open("b", lambda: Resource("b", log))
    assert cache.get_or_open("a", lambda: pytest.fail("a is open")) is a  # now b is least recent
    cache.get_or_open("c", lambda: Resource("c", log))
    assert log == ["b"] and cache.keys() == ["a", "c"]
    assert cache.evict("a") and not cache.evict("a")
    assert log == ["b", "a"]
    cache.close_all()
    assert log == ["b", "a", "c"] and len(cache) == 0
    with pytest.raises(ValueError, match="at least 1"):
        DecoderCache(max_open=0)
    with pytest.raises(RuntimeError):  # a failing opener leaves the cache as it was
        cache.get_or_open("d", lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert len(cache) == 0


def test_engine_eviction_closes_decoders_and_keeps_indexes(videos: dict[str, Video]) -> None:
    engine = FrameEngine(backend="pyav", max_open_decoders=1)
    a, b = str(videos["h264"].path), str(videos["hevc"].path)
    try:
        engine.decode([(a, PTS_MS[1] * MS)])
        first = only_decoder(engine)
        engine.decode([(b, PTS_MS[1] * MS)])
        assert first._closed and engine.decoders.keys() == [b]
        assert markers(engine.decode([(a, PTS_MS[8] * MS)])) == [8]  # reopened on demand
        reopened = only_decoder(engine)
        assert reopened is not first and reopened.index is first.index  # index not rebuilt
    finally:
        engine.close()
    assert reopened._closed


def test_threads_share_one_engine_through_evictions(videos: dict[str, Video]) -> None:
    engine = FrameEngine(backend="pyav", max_open_decoders=1)  # two videos: constant eviction
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            rng = random.Random(seed)
            for _ in range(6):
                video = videos[rng.choice(["h264", "hevc-bframes"])]
                requests = [PTS_MS[rng.randrange(len(PTS_MS))] * MS for _ in range(5)]
                frames = engine.decode([(str(video.path), t) for t in requests])
                assert markers(frames) == [video.expected_position(t) for t in requests]
        except BaseException as e:  # handed to the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    engine.close()
    assert not errors, errors


def _decode_in_child(path: str, requests: list[int], queue) -> None:
    engine = get_engine()
    inherited = len(engine.decoders)
    frames = engine.decode([(path, t) for t in requests])
    queue.put((inherited, markers(frames), engine.decoders.pid))


def test_forked_child_opens_its_own_decoders(videos: dict[str, Video]) -> None:
    video = videos["hevc"]
    path = str(video.path)
    previous = set_engine(FrameEngine(backend="pyav"))
    try:
        engine = get_engine()
        assert markers(engine.decode([(path, PTS_MS[10] * MS)])) == [10]
        parent_decoder = only_decoder(engine)
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        requests = [PTS_MS[i] * MS for i in (3, 11, 25, 0)]
        child = context.Process(target=_decode_in_child, args=(path, requests, queue))
        child.start()
        inherited, got, child_pid = queue.get(timeout=60)
        child.join(timeout=60)
        assert child.exitcode == 0
        assert inherited == 0  # the parent's decoder was set aside, not reused
        assert got == [3, 11, 25, 0] and child_pid == child.pid
        # The parent's decoder was not touched by the child and carries on from where it was.
        assert markers(engine.decode([(path, PTS_MS[12] * MS)])) == [12]
        assert only_decoder(engine) is parent_decoder and parent_decoder.seek_count == 1
    finally:
        set_engine(previous)


class _ScreenDataset:
    """A map-style dataset of screen messages, decoded in ``__getitems__`` batches as transforms do."""

    def __init__(self, screens: list[ScreenCaptured]) -> None:
        self.screens = screens

    def __len__(self) -> int:
        return len(self.screens)

    def __getitems__(self, indices: list[int]) -> list[tuple[int, int, int]]:
        frames = decode_screens([self.screens[i] for i in indices])
        engine = get_engine()
        return [(i, read_frame_marker(f), engine.decoders.pid) for i, f in zip(indices, frames, strict=True)]


def test_dataloader_workers_decode_with_their_own_decoders(videos: dict[str, Video]) -> None:
    torch_data = pytest.importorskip("torch.utils.data")
    video = videos["hevc-bframes"]
    screens = [
        ScreenCaptured(media_ref=MediaRef(uri=video.path.name, pts_ns=t * MS)).with_base_dir(video.path.parent)
        for t in PTS_MS
    ]
    previous = set_engine(FrameEngine(backend="pyav"))
    try:
        decode_screens(screens[:3])  # the parent has an open decoder when the workers fork
        loader = torch_data.DataLoader(
            _ScreenDataset(screens),
            batch_size=8,
            shuffle=True,
            num_workers=2,
            multiprocessing_context="fork",
            collate_fn=list,
            generator=__import__("torch").Generator().manual_seed(0),
        )
        rows = [row for batch in loader for row in batch]
        assert sorted(i for i, _, _ in rows) == list(range(len(PTS_MS)))
        assert all(marker == i for i, marker, _ in rows)
        worker_pids = {pid for _, _, pid in rows}
        assert len(worker_pids) == 2 and os.getpid() not in worker_pids
    finally:
        set_engine(previous)


# --------------------------------------------------------------------------------------------------
# Backend selection
# --------------------------------------------------------------------------------------------------


def test_backend_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BACKEND_ENV_VAR, raising=False)
    monkeypatch.setattr(engine_module, "_torchcodec_available", lambda: False)
    assert resolve_backend() == "pyav"
    assert resolve_backend("auto") == "pyav"
    with pytest.raises(ImportError, match=r"pip install 'owa-data\[torchcodec\]'"):
        resolve_backend("torchcodec")
    monkeypatch.setenv(BACKEND_ENV_VAR, "torchcodec")
    with pytest.raises(ImportError):
        FrameEngine()
    assert FrameEngine(backend="pyav").backend == "pyav"  # the argument wins over the environment
    monkeypatch.setenv(BACKEND_ENV_VAR, "gstreamer")
    with pytest.raises(ValueError, match="OWA_FRAMES_BACKEND"):
        resolve_backend()
    with pytest.raises(ValueError, match="Supported values are 'auto', 'pyav', 'torchcodec'"):
        resolve_backend("ffmpeg")

    monkeypatch.setattr(engine_module, "_torchcodec_available", lambda: True)
    monkeypatch.delenv(BACKEND_ENV_VAR)
    assert resolve_backend() == "torchcodec"
    monkeypatch.setenv(BACKEND_ENV_VAR, "PyAV ")
    assert resolve_backend() == "pyav"


@pytest.mark.skipif(engine_module._torchcodec_available(), reason="torchcodec is installed")
def test_auto_backend_falls_back_to_pyav_when_torchcodec_cannot_load(
    monkeypatch: pytest.MonkeyPatch, videos: dict[str, Video]
) -> None:
    # The probe says torchcodec is there (as when its package is installed but broken); importing it fails.
    monkeypatch.setattr(engine_module, "_torchcodec_available", lambda: True)
    monkeypatch.delenv(BACKEND_ENV_VAR, raising=False)
    engine = FrameEngine()
    assert engine.backend == "torchcodec"
    try:
        frames = engine.decode([(str(videos["hevc"].path), PTS_MS[i] * MS) for i in (4, 2)])
        assert markers(frames) == [4, 2]
        assert engine.backend == "pyav"
    finally:
        engine.close()
    explicit = FrameEngine(backend="torchcodec")
    with pytest.raises(ImportError, match="pip install"):
        explicit.decode([(str(videos["hevc"].path), PTS_MS[0] * MS)])


@pytest.mark.skipif(engine_module._torchcodec_available(), reason="torchcodec is installed")
def test_torchcodec_backend_without_torchcodec_names_the_install(videos: dict[str, Video]) -> None:
    from owa.data.frames import _pyav, _torchcodec

    index = _pyav.read_index(str(videos["h264"].path))
    with pytest.raises(ImportError, match=r"pip install 'owa-data\[torchcodec\]'"):
        _torchcodec.TorchCodecDecoder(str(videos["h264"].path), index, device="cpu")
    with pytest.raises(ValueError, match="Supported values"):
        _torchcodec.resolve_device("tpu")
    assert _torchcodec.resolve_device("cuda:1") == "cuda:1"


def test_importing_frames_loads_neither_torch_nor_torchcodec() -> None:
    code = "import sys, owa.data.frames; print(sorted(m for m in ('torch', 'torchcodec') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------------------------------
# The benchmark stays runnable
# --------------------------------------------------------------------------------------------------


def test_benchmark_quick_mode_runs(capsys: pytest.CaptureFixture[str]) -> None:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from benchmarks import bench_frames

    result = bench_frames.main(["--quick"])  # raises if any case returned other frames than requested
    assert set(result) >= {"a", "b", "c", "d", "c_vs_a", "c_vs_b", "d_vs_a"}
    assert all(value > 0 for value in result.values())
    # The quick video: 3 s at 20 fps CFR; the naive loaders time 150 random frames at most, here all of them.
    assert result["frames"] == result["naive_frames"] == 60
    assert "images/s" in capsys.readouterr().out


def test_threads_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from owa.data.frames import THREADS_ENV_VAR, FrameEngine

    monkeypatch.setenv(THREADS_ENV_VAR, "1")
    assert FrameEngine().threads == 1
    assert FrameEngine(threads=3).threads == 3
    monkeypatch.setenv(THREADS_ENV_VAR, "many")
    with pytest.raises(ValueError, match=THREADS_ENV_VAR):
        FrameEngine()
