"""``owa-data view``: the PNG's size and panels, the pointer drawn at the pixel the events give, frames aligned by the
played-at rule, and the HTML page rendered in headless Chromium without console errors."""

from __future__ import annotations

import bisect
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from chromium_page import find_chromium, run_page
from inspect_data import read_raw, write_episodes
from owa.data.cli import EXIT_OK, EXIT_USAGE, app
from owa.data.errors import InvalidInputError
from owa.data.inspect import load_dataset_episode, load_recording
from owa.data.inspect.view import POINTER_RGB, render_view, require_matplotlib
from owa.data.recordings.synthetic import SampleEpisode, read_frame_marker

WIDTH, HEIGHT, DESKTOP_W, DESKTOP_H = 160, 120, 1920, 1080
POINTER_TOPICS = ("mouse", "mouse/state")


@pytest.fixture(scope="module")
def episode(tmp_path_factory: pytest.TempPathFactory) -> SampleEpisode:
    return write_episodes(tmp_path_factory.mktemp("inspect-view"), 1)[0]


def _latest(times: list[int], t: int) -> int:
    return bisect.bisect_right(times, t) - 1


def _expected_pointer_pixel(raw: list[tuple[str, int, dict[str, Any]]], t: int) -> tuple[int, int] | None:
    """The synthetic screen scales the 1920x1080 desktop to 160x120: pixel = desktop * 160 // 1920 (integers)."""
    moves = [(time, p["x"], p["y"]) for topic, time, p in raw if topic in POINTER_TOPICS]
    i = _latest([m[0] for m in moves], t)
    if i < 0:
        return None
    px, py = moves[i][1] * WIDTH // DESKTOP_W, moves[i][2] * HEIGHT // DESKTOP_H
    return (px, py) if 0 <= px < WIDTH and 0 <= py < HEIGHT else None


def _colored(region: np.ndarray) -> int:
    """Pixels with a clear hue (not white, grey or black)."""
    return int(np.sum(region.max(axis=2).astype(int) - region.min(axis=2) > 60))


def test_png_panels_pointer_and_frames(episode: SampleEpisode, tmp_path: Path) -> None:
    raw = read_raw(episode.mcap_path)
    t0 = min(t for _, t, _ in raw)
    out = tmp_path / "view.png"
    result = render_view(load_recording(episode.mcap_path), out, every_s=0.5)
    png = np.asarray(Image.open(out).convert("RGB"))
    assert (png.shape[1], png.shape[0]) == result.size and result.size[0] == 1600

    # every panel has content: coloured bars, markers, lines and frame ticks; the sheet is mostly frames
    for name in ("keys", "mouse", "pointer", "screens"):
        left, top, right, bottom = result.panels[name]
        assert _colored(png[top:bottom, left:right]) > 30, name
    left, top, right, bottom = result.panels["sheet"]
    assert np.mean(png[top:bottom, left:right] < 250) > 0.3

    screens = [(t, p) for topic, t, p in raw if topic == "screen"]
    screen_times = [t for t, _ in screens]
    assert len(result.frames) == 8  # [0, 4 s) every 0.5 s
    drawn = 0
    for k, placed in enumerate(result.frames):
        sample_t = t0 + round(k * 0.5e9)
        assert placed.sample.time_ns == sample_t
        i = _latest(screen_times, sample_t)
        if i < 0:
            assert placed.box is None and placed.sample.screen_ns is None
            continue
        screen_t, payload = screens[i]
        assert placed.sample.screen_ns == screen_t
        # the frame is the one played at the screen message's pts: its marker says which frame it is
        assert read_frame_marker(placed.sample.image) == episode.frame_index_at(payload["media_ref"]["pts_ns"])
        expected = _expected_pointer_pixel(raw, screen_t)
        assert placed.sample.pointer_pixel == expected
        if expected is None:
            assert placed.pointer_png is None
            continue
        x0, y0, x1, _ = placed.box
        scale = (x1 - x0) / WIDTH
        center = (x0 + int((expected[0] + 0.5) * scale), y0 + int((expected[1] + 0.5) * scale))
        assert placed.pointer_png == center
        assert tuple(png[center[1], center[0]]) == POINTER_RGB
        assert tuple(png[center[1], center[0] + 6]) == POINTER_RGB  # the cross' arm
        drawn += 1
    assert drawn >= 3


def test_view_of_a_dataset_episode(episode: SampleEpisode, tmp_path: Path) -> None:
    from owa.data.events import EventDatasetConfig, write_event_dataset

    events = tmp_path / "events"
    write_event_dataset(
        EventDatasetConfig(train_dir=episode.mcap_path.parent, output_dir=events, test_percent=0, num_workers=1)
    )
    from_dataset = load_dataset_episode(events, str(episode.mcap_path))
    assert from_dataset.keys == load_recording(episode.mcap_path).keys  # key events are never thinned
    assert from_dataset.windows  # read from the recording, since the dataset keeps no window topic
    assert load_dataset_episode(events, None).name == from_dataset.name  # one episode: no need to name it
    result = render_view(from_dataset, tmp_path / "dataset.png", every_s=1.0)
    png = np.asarray(Image.open(tmp_path / "dataset.png").convert("RGB"))
    pointers = [p.pointer_png for p in result.frames if p.pointer_png is not None]
    assert pointers and all(tuple(png[y, x]) == POINTER_RGB for x, y in pointers)
    with pytest.raises(InvalidInputError, match="No episode"):
        load_dataset_episode(events, str(tmp_path / "other.mcap"))


def test_real_recording_pointer_sits_on_the_cursor(recordings_dir: Path, tmp_path: Path) -> None:
    """0.4.2 captures a 906x578 window whose rect is 918x584 (6 px invisible borders): the I-beam cursor the
    recorder captured lies under the pointer the events give, 1.935 s in."""
    from owa.data.inspect.frames_sample import sample_frames

    timeline = load_recording(recordings_dir / "0.4.2.mcap")
    (sample,) = sample_frames(timeline, [timeline.start_ns + 1_950_000_000])
    assert (
        sample.mapping is not None
        and sample.mapping.is_window
        and (sample.mapping.left, sample.mapping.top) == (366, 307)
    )
    assert sample.pointer_desktop == (751, 636) and sample.pointer_pixel == (385, 329)
    x, y = sample.pointer_pixel
    assert sample.image is not None
    cursor = sample.image[y - 10 : y + 11, x - 5 : x + 6]
    assert cursor.min() < 60  # the black I-beam
    assert sample.image[y - 40 : y - 20, x - 30 : x + 30].min() > 200  # on a blank page
    result = render_view(timeline, tmp_path / "real.png", every_s=0.5)
    assert len(result.frames) == 8 and sum(p.pointer_png is not None for p in result.frames) >= 2


def test_missing_video_still_draws(recordings_dir: Path, tmp_path: Path) -> None:
    result = render_view(load_recording(recordings_dir / "ztype-no-video.mcap"), tmp_path / "z.png", every_s=2.0)
    assert result.frames and all(p.box is None for p in result.frames)
    assert any("example.mkv" in (p.sample.error or "") for p in result.frames)


def test_matplotlib_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'owa-data\[view\]'"):
        require_matplotlib()


def test_cli(episode: SampleEpisode, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli.png"
    ok = runner.invoke(app, ["view", str(episode.mcap_path), "--out", str(out), "--start", "1", "--end", "3"])
    assert ok.exit_code == EXIT_OK, ok.output
    assert Image.open(out).size[0] == 1600
    both = runner.invoke(app, ["view", str(episode.mcap_path), "--out", str(out), "--html", str(tmp_path / "a.html")])
    assert both.exit_code == EXIT_USAGE
    many = runner.invoke(app, ["view", str(episode.mcap_path), "--out", str(out), "--every", "0.01"])
    assert many.exit_code == EXIT_USAGE and "--every" in many.output
    backwards = runner.invoke(app, ["view", str(episode.mcap_path), "--out", str(out), "--start", "3", "--end", "1"])
    assert backwards.exit_code == EXIT_USAGE


def _chromium() -> str:
    found = find_chromium()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed; .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium); CI=true makes this a failure")
    return found


def test_html_page_renders_without_console_errors(episode: SampleEpisode, tmp_path: Path) -> None:
    chromium = _chromium()
    page = tmp_path / "view.html"
    result = CliRunner().invoke(app, ["view", str(episode.mcap_path), "--html", str(page), "--every", "0.5"])
    assert result.exit_code == EXIT_OK, result.output
    raw = read_raw(episode.mcap_path)
    logged = [(t, topic) for topic, t, _ in raw if topic in ("keyboard", "mouse", "mouse/state", "screen", "window")]
    t0 = min(t for _, t, _ in raw)
    playhead = 2.345
    at = t0 + round(playhead * 1e9)
    latest_row = max(t for t, _ in logged if t <= at)
    expected_pointer = _expected_pointer_pixel(raw, at)
    move = (
        "(() => { const s = document.getElementById('playhead'); s.value = '2.345';"
        " s.dispatchEvent(new Event('input'));"
        " const p = document.getElementById('pointer');"
        " return [document.querySelector('tr.current').dataset.t, Number(document.body.dataset.shownFrame),"
        " document.getElementById('frame').src.slice(0, 22), p.hidden, p.style.left, p.style.top]; })()"
    )
    run = run_page(
        page.as_uri(),
        ["document.body.dataset.ready", "document.querySelectorAll('#events tr.event').length", move],
        chromium=chromium,
    )
    assert run.errors == []
    ready, rows, (row_t, frame, src, hidden, left, top) = run.values
    assert ready == "true"
    assert rows == len(logged)
    assert float(row_t) == pytest.approx((latest_row - t0) / 1e9, abs=1e-6)
    assert frame == math.floor(playhead / 0.5) and src == "data:image/jpeg;base64"
    assert hidden is (expected_pointer is None)
    if expected_pointer is not None:
        assert float(left.rstrip("%")) == pytest.approx(100 * (expected_pointer[0] + 0.5) / WIDTH, abs=1e-3)
        assert float(top.rstrip("%")) == pytest.approx(100 * (expected_pointer[1] + 0.5) / HEIGHT, abs=1e-3)
