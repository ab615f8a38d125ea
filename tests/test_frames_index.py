"""The packet index and the pure planning: tick/ns rounding, played-at lookup, range errors, seek plans."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from frame_videos import KEYINT, MS, PTS_MS, Video
from owa.data.errors import FrameDecodeError, FrameOutOfRangeError
from owa.data.frames import FrameEngine
from owa.data.frames.index import VideoIndex, ns_to_ticks, plan_seeks, ticks_to_ns


def test_ticks_and_ns_round_to_nearest_with_halves_up() -> None:
    ms, ntsc = Fraction(1, 1000), Fraction(1, 90_000)
    assert ticks_to_ns(17, ms) == 17 * MS
    assert ticks_to_ns(3003, ntsc) == 33_366_667  # 33_366_666.67 ns rounds up
    assert ticks_to_ns(1, Fraction(1, 3_000_000_000)) == 0  # 0.33 ns rounds down
    assert ticks_to_ns(1, Fraction(1, 2_000_000_000)) == 1  # 0.5 ns: halves up
    assert ns_to_ticks(16_499_999, ms) == 16
    assert ns_to_ticks(16_500_000, ms) == 17  # halves up
    assert ns_to_ticks(-500_000, ms) == 0  # -0.5 ticks: halves up, towards +inf
    assert ns_to_ticks(-500_001, ms) == -1
    assert ns_to_ticks(33_366_667, ntsc) == 3003
    # Exact integer arithmetic: no float drift at the times of a day-long recording.
    assert ticks_to_ns(86_400 * 90_000 + 1, ntsc) == 86_400 * 10**9 + 11_111


@given(
    ticks=st.integers(-(2**40), 2**40),
    time_base=st.sampled_from([Fraction(1, 1000), Fraction(1, 90_000), Fraction(1001, 30_000), Fraction(1, 10**9)]),
)
def test_ticks_survive_a_round_trip_through_ns(ticks: int, time_base: Fraction) -> None:
    # Every time base here has ticks of at least 1 ns, so rounding to ns never merges two ticks.
    assert ns_to_ticks(ticks_to_ns(ticks, time_base), time_base) == ticks


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


def test_video_index_with_a_90khz_time_base() -> None:
    index = VideoIndex(
        location="x.ts",
        time_base=Fraction(1, 90_000),
        pts=np.array([0, 3003, 6006, 9009], dtype=np.int64),  # 29.97 fps
        keyframe_positions=np.array([0, 2]),
        end_ns=133_466_666,
    )
    assert index.pts_ns(1) == 33_366_667
    assert index.ticks(33_366_667) == 3003
    assert index.played_at(33_366_667) == 1
    assert index.played_at(33_362_000) == 1  # 3002.58 ticks: within half a tick of the frame
    assert index.played_at(33_360_000) == 0  # 3002.4 ticks rounds down
    assert index.frame_count == 4 and index.last_pts_ns == 100_100_000


def test_an_empty_index_is_an_error() -> None:
    with pytest.raises(FrameDecodeError, match="no frames") as info:
        VideoIndex(
            location="empty.mkv",
            time_base=Fraction(1, 1000),
            pts=np.array([], dtype=np.int64),
            keyframe_positions=np.array([], dtype=np.int64),
            end_ns=0,
        )
    assert info.value.path == "empty.mkv"


def test_plan_seeks_continues_forward_and_seeks_only_across_large_gaps() -> None:
    assert plan_seeks(None, [0, 1, 2], [0, 0, 0], 4) == [0, None, None]
    assert plan_seeks(2, [3], [0], 4) == [None]
    assert plan_seeks(2, [20], [14], 4) == [14]  # 12 frames to skip: seek
    assert plan_seeks(10, [15], [14], 4) == [None]  # 4 frames to skip: decode through them
    assert plan_seeks(10, [5], [0], 4) == [0]  # backwards: always seek
    assert plan_seeks(5, [5, 5], [0, 0], 4) == [None, None]  # repeats of the current frame
    assert plan_seeks(None, [3, 30, 31, 2], [0, 28, 28, 0], 4) == [0, 28, None, 0]
    assert plan_seeks(0, [30], [28], 100) == [None]
