"""Exit codes of every owa-data subcommand and script: 0 success, 1 data error, 2 usage/configuration, 130 interrupt.

Run through real subprocesses (signals, scripts) or typer's CliRunner (the same app object).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
from typer.testing import CliRunner

from owa.data.cli import EXIT_DATA_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, app
from spec_schemas import EVENT_FEATURES

REPO = Path(__file__).resolve().parents[1]
MAIN = "from owa.data.cli import main; main()"


def owa_data(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", MAIN, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = REPO / "scripts" / name
    return subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=300)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error")]


def assert_one_line_error(stderr: str, starts: str) -> None:
    assert "Traceback" not in stderr
    errors = error_lines(stderr)
    assert len(errors) == 1 and errors[0].startswith(starts), stderr


def interrupt(args: list[str], started: object, sig: int) -> tuple[int, str]:
    """Start ``owa-data ARGS``, wait until ``started()`` is true (the work is under way), send ``sig``."""
    process = subprocess.Popen(
        [sys.executable, "-c", MAIN, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not started() and process.poll() is None and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)
    assert process.poll() is None, "the command ended before it could be interrupted"
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


@pytest.fixture
def damaged(recordings_dir: Path, tmp_path: Path) -> Path:
    """One good recording and one cut in half."""
    folder = tmp_path / "damaged"
    folder.mkdir()
    shutil.copy(recordings_dir / "0.4.2.mcap", folder / "a.mcap")
    data = (recordings_dir / "0.5.1.mcap").read_bytes()
    (folder / "b.mcap").write_bytes(data[: len(data) // 2])
    return folder


@pytest.fixture
def events_with_a_null(tmp_path: Path) -> Path:
    """A saved Event Dataset whose second row has no timestamp: a data error for stage 2."""
    rows = {
        "episode_path": ["a.mcap", "a.mcap"],
        "topic": ["keyboard", "keyboard"],
        "timestamp_ns": [1, None],
        "message_type": ["desktop/KeyboardEvent"] * 2,
        "mcap_message": [b"{}", b"{}"],
    }
    folder = tmp_path / "null-events"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows, features=EVENT_FEATURES)}).save_to_disk(str(folder))
    return folder


def test_readme_lists_these_exit_codes() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Exit codes") :]
    section = section[: section.index("\n## ")]
    codes = [int(code) for code in re.findall(r"^\| (\d+) \|", section, flags=re.MULTILINE)]
    assert codes == [EXIT_OK, EXIT_DATA_ERROR, EXIT_USAGE, EXIT_INTERRUPTED] == [0, 1, 2, 130]


# ------------------------------------------------------------------------------------------------- events


def test_events_exit_codes(damaged: Path, recordings_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    good = tmp_path / "good"
    good.mkdir()
    shutil.copy(recordings_dir / "0.5.1.mcap", good / "a.mcap")
    ok = runner.invoke(app, ["events", "--train-dir", str(good), "--output-dir", str(tmp_path / "ok")])
    assert ok.exit_code == EXIT_OK, ok.output

    # 1: a damaged recording with --strict; the same one line whatever the worker count.
    lines = []
    for workers in ("1", "2"):
        out = tmp_path / f"strict{workers}"
        result = runner.invoke(
            app, ["events", "--train-dir", str(damaged), "--output-dir", str(out), "--strict", "--num-workers", workers]
        )
        assert result.exit_code == EXIT_DATA_ERROR
        assert_one_line_error(result.stderr, "Error: Damaged recording")
        lines.append(error_lines(result.stderr)[0])
        assert not out.exists()
    assert lines[0] == lines[1] and "offset=" in lines[0] and "messages_read=" in lines[0]

    # 2: configuration and unusable inputs or outputs.
    for args, starts in [
        (["--train-dir", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "o")], "Error: Recordings folder"),
        (["--train-dir", str(good), "--output-dir", str(tmp_path / "ok")], "Error: Output folder already exists"),
        (["--train-dir", str(good), "--output-dir", str(tmp_path / "o"), "--rate", "mouse=fast"], "Error: Invalid"),
        (["--train-dir", str(good)], "Error: Missing option '--output-dir'"),
        (["--train-dir", str(good), "--output-dir", str(tmp_path / "o"), "--num-workers", "x"], "Error: Invalid"),
    ]:
        result = runner.invoke(app, ["events", *args])
        assert result.exit_code == EXIT_USAGE, result.output
        assert_one_line_error(result.stderr, starts)
    assert not (tmp_path / "o").exists()


def test_events_sigterm_exits_130_and_leaves_no_output(recordings_dir: Path, tmp_path: Path) -> None:
    many = tmp_path / "many"
    many.mkdir()
    for i in range(3000):  # links to one recording: enough work to still be running when the signal comes
        (many / f"r{i:04d}.mcap").symlink_to(recordings_dir / "0.5.1.mcap")
    out = tmp_path / "out"
    code, stderr = interrupt(
        ["events", "--train-dir", str(many), "--output-dir", str(out), "--num-workers", "2"],
        lambda: any(tmp_path.glob(".out.tmp-*")),  # the work has begun in the temporary folder
        signal.SIGTERM,
    )
    assert code == EXIT_INTERRUPTED, stderr
    assert stderr.splitlines()[-1] == "Interrupted" and "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many"]  # no output, no temporary folder


# ---------------------------------------------------------------------------------------------------- bin


def test_bin_exit_codes(events_with_a_null: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["bin", "--input-dir", str(events_with_a_null), "--output-dir", str(tmp_path / "b")])
    assert result.exit_code == EXIT_DATA_ERROR
    assert_one_line_error(result.stderr, "Error: Event Dataset column 'timestamp_ns' holds a null")
    result = runner.invoke(app, ["bin", "--input-dir", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "b")])
    assert result.exit_code == EXIT_USAGE
    assert_one_line_error(result.stderr, "Error: Input folder does not exist")
    result = runner.invoke(app, ["bin", "--output-dir", str(tmp_path / "b")])
    assert result.exit_code == EXIT_USAGE
    assert_one_line_error(result.stderr, "Error: Missing option '--input-dir'")
    assert not (tmp_path / "b").exists()
    # 0 and the other configuration errors: tests/test_binning.py.


# ----------------------------------------------------------------------------------------- sample and demo


def test_sample_sigint_exits_130(tmp_path: Path) -> None:
    out = tmp_path / "sample"
    code, stderr = interrupt(
        ["sample", "--episodes", "5000", "--seconds", "1", "--no-video", "--workers", "1", str(out)],
        lambda: (out / "episode_0001.mcap").exists(),
        signal.SIGINT,
    )
    assert code == EXIT_INTERRUPTED, stderr
    assert stderr.splitlines()[-1] == "Interrupted" and "Traceback" not in stderr
    assert len(list(out.glob("*.mcap"))) < 5000
    # 0 and 2: tests/test_sample.py. sample reads no data, so it has no data errors (1).


def test_demo_exit_codes(tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    result = CliRunner().invoke(app, ["demo", str(existing)])
    assert result.exit_code == EXIT_USAGE  # was 1 before the codes were shared
    assert_one_line_error(result.stderr, "Error: Demo output folder already exists")
    result = CliRunner().invoke(app, ["demo", str(tmp_path / "d"), "--episodes", "1"])
    assert result.exit_code == EXIT_USAGE
    assert_one_line_error(result.stderr, "Error: Invalid value for '--episodes'")

    out = tmp_path / "demo"
    code, stderr = interrupt(["demo", str(out)], lambda: (out / "recordings").exists(), signal.SIGINT)
    assert code == EXIT_INTERRUPTED, stderr
    assert stderr.splitlines()[-1] == "Interrupted" and "Traceback" not in stderr
    # 0: tests/test_demo.py.


# ------------------------------------------------------------------------------------------------ scripts


def test_scripts_use_the_same_exit_codes(damaged: Path, events_with_a_null: Path, tmp_path: Path) -> None:
    stage_1 = "01_raw_events_to_event_dataset.py"
    result = script(stage_1, "--train-dir", str(damaged), "--output-dir", str(tmp_path / "o"), "--strict")
    assert result.returncode == EXIT_DATA_ERROR
    assert_one_line_error(result.stderr, "Error: Damaged recording")
    result = script(stage_1, "--train-dir", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "o"))
    assert result.returncode == EXIT_USAGE
    assert_one_line_error(result.stderr, "Error: Recordings folder does not exist")

    stage_2 = "02_event_dataset_to_binned_dataset.py"
    result = script(stage_2, "--input-dir", str(events_with_a_null), "--output-dir", str(tmp_path / "b"))
    assert result.returncode == EXIT_DATA_ERROR
    assert_one_line_error(result.stderr, "Error: Event Dataset column 'timestamp_ns' holds a null")
    result = script(stage_2, "--input-dir", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "b"))
    assert result.returncode == EXIT_USAGE
    assert_one_line_error(result.stderr, "Error: Input folder does not exist")
    assert not (tmp_path / "o").exists() and not (tmp_path / "b").exists()
    # 0: tests/test_events.py and tests/test_binning.py run both scripts to success.


def test_main_exits_0_on_success(tmp_path: Path) -> None:
    result = owa_data("sample", "--episodes", "1", "--seconds", "1", "--no-video", str(tmp_path / "s"), cwd=tmp_path)
    assert result.returncode == EXIT_OK, result.stderr
    assert "Wrote 1 episode(s)" in result.stdout and not error_lines(result.stderr)
