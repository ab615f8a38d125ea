"""Screen messages to frames: the real recordings, skipping and counting, URI policy errors, still images.

The table of URI verdicts themselves is in test_media.
"""

from __future__ import annotations

import base64
import bisect
import io
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from frame_videos import MS, PTS_MS, VERSIONED_RECORDINGS, Video, decode_reference, markers, screens_of
from owa.data.errors import (
    FrameDecodeError,
    FrameOutOfRangeError,
    MessageValidationError,
    UnsafeMediaURIError,
    VideoNotFoundError,
)
from owa.data.frames import DecodeStats, FrameEngine, decode_screen, decode_screens
from owa.data.messages import MediaPolicy, MediaRef, ScreenCaptured
from owa.data.recordings.reader import read_messages
from owa.data.recordings.synthetic import SampleConfig, read_frame_marker, write_sample_episode

# --------------------------------------------------------------------------------------------------
# Real recordings
# --------------------------------------------------------------------------------------------------


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


def reader_screens_of(path: Path) -> list[ScreenCaptured]:
    """Screen messages as the library reads them: reader, McapMessage envelope, ``decoded``."""
    screens = [m.to_mcap_message(path).decoded for m in read_messages(path, "screen")]
    assert screens and all(isinstance(s, ScreenCaptured) for s in screens)
    return screens


@pytest.mark.parametrize("version", VERSIONED_RECORDINGS)
def test_screens_read_by_the_reader_decode_through_the_process_engine(recordings_dir: Path, version: str) -> None:
    screens = reader_screens_of(recordings_dir / f"{version}.mcap")
    with av.open(str(recordings_dir / f"{version}.mkv")) as container:
        frame = next(container.decode(video=0))
        width, height = frame.width, frame.height
    frames = decode_screens(screens)  # the process engine, as the transforms use it
    assert len(frames) == len(screens)
    for frame in frames:
        assert frame is not None and frame.shape == (height, width, 3) and frame.dtype.name == "uint8"
    # The single-frame path of the message API agrees with the batch path.
    first, last = screens[0].to_rgb_array(), screens[-1].to_pil_image()
    assert (first == frames[0]).all()
    assert last.size == (width, height) and last.mode == "RGB"


def test_missing_video_of_a_read_message_names_the_video_and_pts(recordings_dir: Path) -> None:
    screen = reader_screens_of(recordings_dir / "ztype-no-video.mcap")[3]
    with pytest.raises(VideoNotFoundError) as info:
        screen.to_rgb_array()
    message = str(info.value)
    assert "example.mkv" in message
    assert str(screen.media_ref.pts_ns) in message


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
