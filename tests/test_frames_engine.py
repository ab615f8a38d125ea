"""The engine on encoded videos: played-at decoding, batching, damaged files, decoder lifetime, threads, fork, env.

The videos (see ``frame_videos``) carry their frame index as a marker, so each test knows exactly
which frame came back.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frame_videos import MS, PTS_MS, Video, markers, only_decoder
from owa.data.errors import FrameDecodeError, FrameOutOfRangeError, VideoNotFoundError
from owa.data.frames import FrameEngine, decode_screens, get_engine, set_engine
from owa.data.frames.engine import DEVICE_ENV_VAR, THREADS_ENV_VAR
from owa.data.messages import MediaRef, ScreenCaptured
from owa.data.recordings.synthetic import read_frame_marker

REPO_ROOT = Path(__file__).resolve().parents[1]


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
# Decoder lifetime: eviction, threads, fork
# --------------------------------------------------------------------------------------------------


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
# Configuration from the environment, and the benchmark
# --------------------------------------------------------------------------------------------------


def test_threads_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(THREADS_ENV_VAR, "1")
    assert FrameEngine.from_env().threads == 1
    assert FrameEngine.from_env(threads=3).threads == 3
    assert FrameEngine(threads=3).threads == 3
    assert FrameEngine().threads == 0  # the constructor never reads the environment
    monkeypatch.setenv(THREADS_ENV_VAR, "many")
    with pytest.raises(ValueError, match=THREADS_ENV_VAR):
        FrameEngine.from_env()
    with pytest.raises(ValueError, match="Invalid threads"):
        FrameEngine(threads=-1)


def test_device_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEVICE_ENV_VAR, raising=False)
    assert FrameEngine.from_env(backend="pyav").device == "auto"
    monkeypatch.setenv(DEVICE_ENV_VAR, " cuda:1 ")
    assert FrameEngine.from_env(backend="pyav").device == "cuda:1"
    assert FrameEngine.from_env(backend="pyav", device="cpu").device == "cpu"
    assert FrameEngine(backend="pyav").device == "auto"
    # Other arguments pass through to the constructor.
    assert FrameEngine.from_env(backend="pyav", tolerance_ns=5).tolerance_ns == 5


def test_the_process_engine_is_made_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(THREADS_ENV_VAR, "2")
    monkeypatch.setenv(DEVICE_ENV_VAR, "cpu")
    previous = set_engine(None)
    try:
        engine = get_engine()
        assert engine.threads == 2 and engine.device == "cpu"
        assert get_engine() is engine  # made once, then shared
    finally:
        set_engine(previous)


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
