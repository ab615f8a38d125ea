"""Screen messages of every real recorder version resolve to real frames (the foundation's frame check)."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from owa.data.errors import VideoNotFoundError
from owa.data.frames import decode_screens
from owa.data.messages import ScreenCaptured
from owa.data.recordings.reader import read_messages


def video_size(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height


def screens_of(path: Path) -> list[ScreenCaptured]:
    screens = [m.to_mcap_message(path).decoded for m in read_messages(path, "screen")]
    assert screens and all(isinstance(s, ScreenCaptured) for s in screens)
    return screens


@pytest.mark.parametrize("name", ["0.3.2", "0.4.2", "0.5.1"])
def test_every_screen_message_decodes_to_a_real_frame(recordings_dir: Path, name: str) -> None:
    screens = screens_of(recordings_dir / f"{name}.mcap")
    width, height = video_size(recordings_dir / f"{name}.mkv")
    frames = decode_screens(screens)
    assert len(frames) == len(screens)
    for frame in frames:
        assert frame.shape == (height, width, 3) and frame.dtype.name == "uint8"
    # The single-frame path agrees with the batch path.
    first, last = screens[0].to_rgb_array(), screens[-1].to_pil_image()
    assert (first == frames[0]).all()
    assert last.size == (width, height) and last.mode == "RGB"


def test_missing_video_names_the_video_and_pts(recordings_dir: Path) -> None:
    screen = screens_of(recordings_dir / "ztype-no-video.mcap")[3]
    with pytest.raises(VideoNotFoundError) as info:
        screen.to_rgb_array()
    message = str(info.value)
    assert "example.mkv" in message
    assert str(screen.media_ref.pts_ns) in message
