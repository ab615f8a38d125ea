"""Stage 1 checks the media that screen messages point to, under training's rules, without decoding.

Real cases only: the shared recording whose video is missing, a ``.mkv`` of garbage bytes, a real video shorter
than its screen messages, URIs the media policy refuses. Counts are checked against the frame engine itself:
stage 1 lists exactly the screen messages that ``decode_screens`` would refuse.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import datasets
import pytest
from typer.testing import CliRunner

from owa.data.cli import EXIT_DATA_ERROR, EXIT_OK, app
from owa.data.errors import FrameDecodeError, FrameOutOfRangeError, VideoNotFoundError
from owa.data.events import REPORT_FILENAME, EventDatasetConfig, build_event_dataset
from owa.data.frames import DecodeStats, FrameEngine, decode_screens
from owa.data.messages import McapMessage, MediaRef, ScreenCaptured
from owa.data.recordings.synthetic import SampleConfig, write_sample_episode
from owa.data.recordings.writer import OWAMcapWriter


def _screen_rows(dataset: datasets.DatasetDict, episode: Path) -> list[ScreenCaptured]:
    rows = [
        row
        for split in dataset.values()
        for row in split
        if row["topic"] == "screen" and row["episode_path"] == str(episode)
    ]
    return [
        ScreenCaptured.model_validate_json(McapMessage.model_validate_json(row["mcap_message"]).message).with_base_dir(
            episode.parent
        )
        for row in rows
    ]


def _engine_refusals(screens: list[ScreenCaptured]) -> dict[str, int]:
    """How many frames the training engine refuses, by error type."""
    stats = DecodeStats()
    engine = FrameEngine(backend="pyav")
    try:
        decode_screens(screens, on_error="skip", stats=stats, engine=engine)
    finally:
        engine.close()
    return dict(stats.as_dict()["errors"])


def _media(dataset: datasets.DatasetDict, episode: Path) -> list[dict[str, Any]]:
    return [p for entry in dataset.report.media if entry["file"] == str(episode) for p in entry["problems"]]


def test_real_recordings_report_no_media_problem_but_the_missing_video(recordings_dir: Path) -> None:
    dataset = build_event_dataset(EventDatasetConfig(train_dir=recordings_dir, num_workers=1, test_percent=0))
    assert [entry["file"] for entry in dataset.report.media] == [str(recordings_dir / "ztype-no-video.mcap")]
    (problem,) = _media(dataset, recordings_dir / "ztype-no-video.mcap")
    ztype = _screen_rows(dataset, recordings_dir / "ztype-no-video.mcap")
    assert problem["kind"] == "missing" and problem["uri"] == "example.mkv"
    assert problem["video"] == str(recordings_dir / "example.mkv")
    assert problem["screen_messages"] == len(ztype) > 0  # every kept screen row points into it
    assert _engine_refusals(ztype) == {"VideoNotFoundError": len(ztype)}
    for version in ("0.3.2", "0.4.2", "0.5.1"):  # their videos serve every kept screen row
        screens = _screen_rows(dataset, recordings_dir / f"{version}.mcap")
        assert screens and _engine_refusals(screens) == {}
    assert dataset.report.media_totals() == {
        "videos_missing": 1,
        "videos_unreadable": 0,
        "screen_messages_out_of_range": 0,
    }
    assert f"video missing: example.mkv ({len(ztype)} screen messages)" in dataset.report.format_table()


@pytest.fixture
def bad_media(tmp_path: Path) -> Path:
    """Three synthetic episodes: ``garbage`` (its .mkv is random bytes), ``short`` (a real video of 2 s under
    4 s of screen messages) and ``good``."""
    folder = tmp_path / "recordings"
    write_sample_episode(folder, "garbage", SampleConfig(seconds=2, video=False, seed=1))
    (folder / "garbage.mkv").write_bytes(b"\x13\x37 not a video " * 200)
    write_sample_episode(folder, "short", SampleConfig(seconds=4, video=False, seed=2))
    write_sample_episode(tmp_path / "shorter", "short", SampleConfig(seconds=2, seed=2))
    shutil.copy(tmp_path / "shorter" / "short.mkv", folder / "short.mkv")
    write_sample_episode(folder, "good", SampleConfig(seconds=2, seed=3))
    return folder


def test_unreadable_and_short_videos_are_listed_with_counts(bad_media: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    dataset = build_event_dataset(EventDatasetConfig(train_dir=bad_media, output_dir=out, test_percent=0))

    (garbage,) = _media(dataset, bad_media / "garbage.mcap")
    screens = _screen_rows(dataset, bad_media / "garbage.mcap")
    assert garbage["kind"] == "unreadable" and garbage["screen_messages"] == len(screens) > 0
    assert "cannot be opened" in garbage["reason"]
    assert _engine_refusals(screens) == {"FrameDecodeError": len(screens)}

    (short,) = _media(dataset, bad_media / "short.mcap")
    screens = _screen_rows(dataset, bad_media / "short.mcap")
    refused = _engine_refusals(screens)
    assert short["kind"] == "out_of_range" and short["uri"] == "short.mkv"
    assert short["screen_messages"] == refused["FrameOutOfRangeError"] > 0  # exactly what training refuses
    assert short["screen_messages"] < len(screens)  # the first 2 s are fine
    assert "after the end" in short["reason"]

    assert _media(dataset, bad_media / "good.mcap") == []
    saved = json.loads((out / REPORT_FILENAME).read_text())
    assert saved["config"]["check_media"] is True
    assert saved["report"]["media"] == dataset.report.media
    assert saved["report"]["media_totals"] == {
        "videos_missing": 0,
        "videos_unreadable": 1,
        "screen_messages_out_of_range": short["screen_messages"],
    }
    table = dataset.report.format_table()
    assert "video cannot be opened: garbage.mkv" in table
    assert f"{short['screen_messages']} screen message(s) outside video short.mkv" in table


def test_the_result_is_the_same_for_any_worker_count(bad_media: Path) -> None:
    reports = [
        build_event_dataset(EventDatasetConfig(train_dir=bad_media, test_percent=0, num_workers=n)).report.media
        for n in (1, 2)
    ]
    assert reports[0] == reports[1] and len(reports[0]) == 2


def _write_screens(path: Path, uris: list[str], seconds: int = 1) -> None:
    with OWAMcapWriter(path) as writer:
        for i in range(seconds * 10):
            for uri in uris:
                screen = ScreenCaptured(media_ref=MediaRef(uri=uri, pts_ns=i * 100_000_000))
                writer.write_message("screen", screen, timestamp_ns=1_700_000_000 * 10**9 + i * 100_000_000)


def test_urls_the_policy_refuses_and_one_video_named_two_ways(tmp_path: Path) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()
    write_sample_episode(tmp_path / "videos", "v", SampleConfig(seconds=2, seed=4))
    shutil.copy(tmp_path / "videos" / "v.mkv", folder / "v.mkv")
    _write_screens(folder / "escape.mcap", ["../videos/v.mkv"])
    _write_screens(folder / "absolute.mcap", [str(tmp_path / "videos" / "v.mkv")])
    _write_screens(folder / "twice.mcap", ["v.mkv", "./v.mkv", "gone.mkv"], seconds=3)  # 3 s: past its 2 s video
    rates = {"screen": float("inf")}
    dataset = build_event_dataset(EventDatasetConfig(train_dir=folder, test_percent=0, rates_hz=rates))

    (escape,) = _media(dataset, folder / "escape.mcap")
    assert escape["kind"] == "unreadable" and "escapes the recording's folder" in escape["reason"]
    assert escape["screen_messages"] == 10
    (absolute,) = _media(dataset, folder / "absolute.mcap")
    assert absolute["kind"] == "unreadable" and "Absolute media paths are disabled" in absolute["reason"]

    # v.mkv and ./v.mkv are one file, opened once, listed once with the messages of both names.
    out_of_range, missing = _media(dataset, folder / "twice.mcap")
    assert missing == {**missing, "kind": "missing", "uri": "gone.mkv", "screen_messages": 30}
    screens = [s for s in _screen_rows(dataset, folder / "twice.mcap") if s.media_ref.uri != "gone.mkv"]
    assert out_of_range["kind"] == "out_of_range" and out_of_range["uri"] == "v.mkv"
    assert out_of_range["screen_messages"] == _engine_refusals(screens)["FrameOutOfRangeError"] > 0


def test_no_check_media_skips_it(bad_media: Path) -> None:
    config = EventDatasetConfig(train_dir=bad_media, test_percent=0, check_media=False, strict=True)
    assert build_event_dataset(config).report.media == []


@pytest.mark.parametrize(
    ("episode", "error", "message"),
    [
        ("garbage", FrameDecodeError, "Video cannot be opened as a media container"),
        ("short", FrameOutOfRangeError, "after the end of the video stream"),
        ("missing", VideoNotFoundError, "Video file not found"),
    ],
)
def test_strict_makes_the_first_media_problem_fatal(
    bad_media: Path, tmp_path: Path, episode: str, error: type[Exception], message: str
) -> None:
    folder = tmp_path / episode
    folder.mkdir()
    if episode == "missing":
        write_sample_episode(folder, "missing", SampleConfig(seconds=1, video=False, seed=5))
    else:
        for suffix in (".mcap", ".mkv"):
            shutil.copy(bad_media / f"{episode}{suffix}", folder / f"{episode}{suffix}")
    recording = folder / f"{episode}.mcap"
    for workers in (1, 2):
        with pytest.raises(error, match=message) as caught:
            build_event_dataset(EventDatasetConfig(train_dir=folder, test_percent=0, strict=True, num_workers=workers))
        assert caught.value.context["recording"] == str(recording)
        assert caught.value.path == str(folder / f"{episode}.mkv")


def test_the_cli_lists_media_problems_and_strict_exits_1(bad_media: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["events", "--train-dir", str(bad_media), "--test-percent", "0", "--num-workers", "1"]
    result = runner.invoke(app, [*base, "--output-dir", str(tmp_path / "listed")])
    assert result.exit_code == EXIT_OK, result.output
    assert "video cannot be opened: garbage.mkv" in result.stdout
    assert "screen message(s) outside video short.mkv" in result.stdout

    result = runner.invoke(app, [*base, "--output-dir", str(tmp_path / "strict"), "--strict"])
    assert result.exit_code == EXIT_DATA_ERROR
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert line.startswith("Error: Video cannot be opened as a media container") and "garbage.mkv" in line
    assert not (tmp_path / "strict").exists()

    result = runner.invoke(app, [*base, "--output-dir", str(tmp_path / "skip"), "--strict", "--no-check-media"])
    assert result.exit_code == EXIT_OK, result.output
    saved = json.loads((tmp_path / "skip" / REPORT_FILENAME).read_text())
    assert saved["config"]["check_media"] is False and saved["report"]["media"] == []


def test_only_kept_screen_messages_are_checked(tmp_path: Path) -> None:
    """A rate that thins screen frames thins the count: the report counts dataset rows, as training meets them."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    _write_screens(folder / "r.mcap", ["gone.mkv"], seconds=2)  # 20 messages at 10 Hz
    for rate, kept in ((float("inf"), 20), (5.0, 10)):
        dataset = build_event_dataset(EventDatasetConfig(train_dir=folder, test_percent=0, rates_hz={"screen": rate}))
        (problem,) = _media(dataset, folder / "r.mcap")
        assert problem["kind"] == "missing"
        assert problem["screen_messages"] == kept == len(_screen_rows(dataset, folder / "r.mcap"))


def test_a_media_problem_holds_no_traceback(bad_media: Path, tmp_path: Path) -> None:
    """A problem travels in FileResult for the whole shard: a traceback in it would keep the recording's rows alive."""
    from owa.data.events import _convert_file

    write_sample_episode(tmp_path / "lost", "lost", SampleConfig(seconds=1, video=False, seed=6))
    config = EventDatasetConfig(train_dir=bad_media)
    for path in (tmp_path / "lost" / "lost.mcap", bad_media / "garbage.mcap", bad_media / "short.mcap"):
        (problem,) = _convert_file((str(path), str(path), "train", config)).media_problems
        assert problem.error.__traceback__ is None and problem.error.__cause__ is None, problem.kind
