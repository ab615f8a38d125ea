"""Damaged videos never yield a wrong frame: every request gets exactly the clean frame, or a typed error.

Each test video (see ``frame_videos``: H.264 and HEVC, with and without B-frames, every frame carrying
its index) is damaged in copies: cut at 10 %, 50 % and 90 % of its length, 1 KB overwritten in the
middle, everything after the first 4 KB overwritten. Every frame of the clean video is then requested
from each copy, in order, in shuffled batches and one at a time. Each answer must be the exact frame a
clean decode gives, or ``FrameDecodeError`` / ``FrameOutOfRangeError`` naming the copy and the time
(``on_error="raise"``), or a skip that ``DecodeStats`` counts (``on_error="skip"``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from frame_videos import KEYINT, MS, PTS_MS, Video, decode_reference
from owa.data.errors import FrameDecodeError, FrameOutOfRangeError
from owa.data.frames import DecodeStats, FrameEngine, _matroska
from owa.data.frames.index import VideoIndex
from owa.data.recordings.synthetic import render_frame_marker


def _cut(fraction: float) -> Callable[[bytes], bytes]:
    return lambda data: data[: int(len(data) * fraction)]


def _overwrite_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[: middle - 512] + random.Random(1).randbytes(1024) + data[middle + 512 :]


def _random_after_4k(data: bytes) -> bytes:
    return data[:4096] + random.Random(2).randbytes(len(data) - 4096)


DAMAGES = {
    "cut10": _cut(0.1),
    "cut50": _cut(0.5),
    "cut90": _cut(0.9),
    "overwrite-1k-middle": _overwrite_middle,
    "random-after-4k": _random_after_4k,
}


@pytest.fixture(params=list(DAMAGES))
def damaged(request: pytest.FixtureRequest, video: Video, tmp_path: Path) -> Path:
    path = tmp_path / f"{video.path.stem}-{request.param}.mkv"
    path.write_bytes(DAMAGES[request.param](video.path.read_bytes()))
    return path


def _requests(path: Path) -> list[tuple[str, int]]:
    return [(str(path), t * MS) for t in PTS_MS]


def _check_skipped_batch(video: Video, results: list[np.ndarray | None], frames: list[int], stats: DecodeStats) -> int:
    """Every result is the clean frame or None; the Nones are exactly the counted skips. Returns how many decoded."""
    for result, i in zip(results, frames, strict=True):
        if result is not None:
            np.testing.assert_array_equal(result, video.frames[i], err_msg=f"frame {i} is not the clean frame")
    skipped = sum(result is None for result in results)
    assert stats.skipped == skipped and stats.decoded == len(results) - skipped
    assert sum(stats.errors.values()) == skipped
    assert set(stats.errors) <= {"FrameDecodeError", "FrameOutOfRangeError"}
    return len(results) - skipped


def test_every_frame_in_order_is_exact_or_counted(video: Video, damaged: Path, engine: FrameEngine) -> None:
    stats = DecodeStats()
    results = engine.decode(_requests(damaged), on_error="skip", stats=stats)
    decoded = _check_skipped_batch(video, results, list(range(len(PTS_MS))), stats)
    if "cut90" in damaged.name:  # most of the video is intact: most frames still decode
        assert decoded >= len(PTS_MS) // 2


def test_every_frame_in_shuffled_batches_is_exact_or_counted(video: Video, damaged: Path, engine: FrameEngine) -> None:
    frames = list(range(len(PTS_MS))) * 2
    random.Random(3).shuffle(frames)
    requests = _requests(damaged)
    for start in range(0, len(frames), 7):
        batch = frames[start : start + 7]
        stats = DecodeStats()
        results = engine.decode([requests[i] for i in batch], on_error="skip", stats=stats)
        _check_skipped_batch(video, results, batch, stats)


def test_every_frame_alone_is_exact_or_a_typed_error(video: Video, damaged: Path, engine: FrameEngine) -> None:
    for i in [*range(len(PTS_MS)), *reversed(range(len(PTS_MS)))]:
        pts_ns = PTS_MS[i] * MS
        try:
            [frame] = engine.decode([(str(damaged), pts_ns)])
        except (FrameDecodeError, FrameOutOfRangeError) as e:
            assert e.path == str(damaged) and e.context["pts_ns"] == pts_ns, str(e)
            continue
        np.testing.assert_array_equal(frame, video.frames[i], err_msg=f"frame {i} is not the clean frame")


def test_raise_mode_stops_at_a_typed_error_naming_the_video(video: Video, damaged: Path, engine: FrameEngine) -> None:
    try:
        frames = engine.decode(_requests(damaged))
    except (FrameDecodeError, FrameOutOfRangeError) as e:
        assert e.path == str(damaged) and e.context["pts_ns"] in {t * MS for t in PTS_MS}
        return
    for frame, clean in zip(frames, video.frames, strict=True):  # nothing raised: every frame is exact
        np.testing.assert_array_equal(frame, clean)


def test_nothing_after_the_last_frame_of_a_cut_video(videos: dict[str, Video], tmp_path: Path) -> None:
    for name, video in videos.items():
        path = tmp_path / f"{name}-cut.mkv"
        path.write_bytes(_cut(0.5)(video.path.read_bytes()))
        engine = FrameEngine(backend="pyav")
        try:
            index = engine.index(str(path))
            assert not index.complete
            assert index.end_ns < PTS_MS[-1] * MS  # the header's duration is not trusted
            for pts_ns in (index.last_pts_ns + MS, PTS_MS[-1] * MS):  # just after the last frame present, the end
                with pytest.raises(FrameOutOfRangeError) as info:
                    engine.decode([(str(path), pts_ns)])
                assert info.value.path == str(path) and info.value.context["pts_ns"] == pts_ns
            assert "end of the file is damaged" in str(_out_of_range(engine, path, index.last_pts_ns + MS))
        finally:
            engine.close()


def _encode_textured(path: Path, b_frames: int) -> None:
    """H.264 with noise texture: packets of kilobytes, so 1 KB overwritten lands inside their data."""
    import av

    width, height = 320, 192
    base = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    params = f"keyint=1000:min-keyint=1:scenecut=0:bframes={b_frames}"
    with av.open(str(path), mode="w", format="matroska") as container:
        options = {"preset": "ultrafast", "forced-idr": "1", "x264-params": params}
        stream = container.add_stream("libx264", options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        stream.codec_context.thread_count = 1
        for i, t in enumerate(PTS_MS):
            rgb = np.roll(base, 3 * i, axis=1)
            render_frame_marker(rgb, i)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            frame.pict_type = av.video.frame.PictureType.I if i % KEYINT == 0 else av.video.frame.PictureType.NONE
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.mark.parametrize("b_frames", [0, 2])
def test_corrupt_packet_data_is_caught_by_the_decoder(b_frames: int, tmp_path: Path) -> None:
    # The container stays intact (the demuxer sees every packet); only the decoder can tell.
    clean = tmp_path / "clean.mkv"
    _encode_textured(clean, b_frames)
    pts, frames = decode_reference(clean)
    assert pts == PTS_MS
    data = clean.read_bytes()
    video = Video(clean, PTS_MS, frames, has_b_frames=b_frames > 0)
    for n in range(5):
        offset = len(data) * (2 + n) // 8
        path = tmp_path / f"corrupt{n}.mkv"
        path.write_bytes(data[:offset] + random.Random(n).randbytes(1024) + data[offset + 1024 :])
        for threads in (0, 1):
            engine = FrameEngine(backend="pyav", threads=threads)
            try:
                stats = DecodeStats()
                results = engine.decode(_requests(path), on_error="skip", stats=stats)
                decoded = _check_skipped_batch(video, results, list(range(len(PTS_MS))), stats)
                assert 0 < decoded < len(PTS_MS)  # the damaged GOP is lost, the others decode
            finally:
                engine.close()


def _out_of_range(engine: FrameEngine, path: Path, pts_ns: int) -> FrameOutOfRangeError:
    with pytest.raises(FrameOutOfRangeError) as info:
        engine.decode([(str(path), pts_ns)])
    return info.value


def test_damage_is_logged_and_clean_videos_are_not_flagged(
    videos: dict[str, Video], recordings_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = FrameEngine(backend="pyav")
    try:
        for video in [*videos.values()]:
            index = engine.index(str(video.path))
            assert index.complete and len(index.damaged_positions) == 0
        for recording in sorted(recordings_dir.glob("*.mkv")):  # audio and subtitle tracks interleaved
            index = engine.index(str(recording))
            assert index.complete and len(index.damaged_positions) == 0, recording
        path = tmp_path / "hole.mkv"
        path.write_bytes(_overwrite_middle(videos["h264"].path.read_bytes()))
        with caplog.at_level(logging.WARNING, logger="owa.data.frames"):
            index = engine.index(str(path))
        assert len(index.damaged_positions) > 0
        assert any(str(path) in record.getMessage() and "damaged" in record.getMessage() for record in caplog.records)
    finally:
        engine.close()


def test_played_at_refuses_damaged_positions_and_past_an_incomplete_end() -> None:
    index = VideoIndex(
        location="v.mkv",
        time_base=Fraction(1, 1000),
        pts=np.array([0, 100, 200, 300], dtype=np.int64),
        keyframe_positions=np.array([0, 2]),
        end_ns=1_000 * MS,
        damaged_positions=np.array([1]),
        complete=False,
    )
    assert index.played_at(50 * MS) == 0 and index.played_at(300 * MS) == 3
    with pytest.raises(FrameDecodeError) as info:
        index.played_at(150 * MS)
    assert info.value.path == "v.mkv" and info.value.context["pts_ns"] == 150 * MS
    with pytest.raises(FrameOutOfRangeError):
        index.played_at(301 * MS)  # within the tolerance, but nothing is known after the last frame


def test_matroska_tail_check(videos: dict[str, Video], tmp_path: Path) -> None:
    import av

    data = videos["hevc"].path.read_bytes()
    with av.open(str(videos["hevc"].path)) as container:
        last = [packet for packet in container.demux() if packet.size][-1]
    assert _matroska.tail_is_intact(str(videos["hevc"].path), last.pos, last.size)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: last.pos + last.size + 4])  # ends right after the last packet: the segment is short
    assert not _matroska.tail_is_intact(str(cut), last.pos, last.size)
    overwritten = tmp_path / "overwritten.mkv"
    overwritten.write_bytes(data[: last.pos + last.size + 4] + b"\x42" * (len(data) - last.pos - last.size - 4))
    assert not _matroska.tail_is_intact(str(overwritten), last.pos, last.size)
