"""Outputs that cannot be written: one typed error naming the path and the reason, exit code 1, no traceback.

Every case is real, produced by the kernel, not mocked: a path under a regular file, a name longer than the
file system allows, permission denied and a full disk. The tests run as root, whom permission bits do not stop,
so those two run the command in a user namespace (``unshare``): there a folder owned by another user is
read-only for us (permission denied), and an 8 KiB tmpfs mounted for the command fills up (no space left on
device). Without user namespaces those two are skipped.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from owa.data.atomic import atomic_output_dir
from owa.data.cli import EXIT_DATA_ERROR, EXIT_OK, app
from owa.data.errors import OutputWriteError

MAIN = "from owa.data.cli import main; main()"
LONG_NAME = "x" * 300  # over the 255 bytes most file systems allow


def _unshare_works(*flags: str) -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", *flags, "true"], capture_output=True).returncode == 0


needs_userns = pytest.mark.skipif(not _unshare_works("-Urm"), reason="user namespaces (unshare -Urm) not available")


@pytest.fixture(scope="module")
def recordings(recordings_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("recordings")
    for name in ("0.4.2", "0.5.1"):
        shutil.copy(recordings_dir / f"{name}.mcap", folder / f"{name}.mcap")
        shutil.copy(recordings_dir / f"{name}.mkv", folder / f"{name}.mkv")
    return folder


@pytest.fixture(scope="module")
def event_dataset(recordings: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("events") / "events"
    result = CliRunner().invoke(app, ["events", "--train-dir", str(recordings), "--output-dir", str(out)])
    assert result.exit_code == EXIT_OK, result.output
    return out


def _commands(recordings: Path, event_dataset: Path, output: Path) -> dict[str, list[str]]:
    return {
        "events": ["events", "--train-dir", str(recordings), "--output-dir", str(output), "--num-workers", "2"],
        "bin": ["bin", "--input-dir", str(event_dataset), "--output-dir", str(output)],
        "sample": ["sample", str(output), "--seconds", "1", "--no-video"],
    }


def _assert_write_error(code: int, stderr: str, output: Path, reason: str) -> None:
    assert code == EXIT_DATA_ERROR, stderr
    assert "Traceback" not in stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("Error")]
    assert line.startswith(f"Error: Cannot write output: {reason}"), line
    assert f"file={output}" in line, line


@pytest.mark.parametrize("command", ["events", "bin", "sample"])
@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("under_a_file", "Not a directory"),
        ("deeper_under_a_file", "Not a directory"),
        ("name_too_long", "File name too long"),
    ],
)
def test_an_unwritable_output_is_one_line_and_exit_1(
    recordings: Path, event_dataset: Path, tmp_path: Path, command: str, case: str, reason: str
) -> None:
    (tmp_path / "a_file").write_text("in the way")
    output = {
        "under_a_file": tmp_path / "a_file" / "out",
        "deeper_under_a_file": tmp_path / "a_file" / "sub" / "out",
        "name_too_long": tmp_path / LONG_NAME,
    }[case]
    result = CliRunner().invoke(app, _commands(recordings, event_dataset, output)[command])
    _assert_write_error(result.exit_code, result.stderr, output, reason)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # nothing left behind


def test_scripts_exit_1_too(recordings: Path, tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("in the way")
    output = tmp_path / "a_file" / "out"
    script = Path(__file__).resolve().parents[1] / "scripts" / "01_raw_events_to_event_dataset.py"
    done = subprocess.run(
        [sys.executable, str(script), "--train-dir", str(recordings), "--output-dir", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    _assert_write_error(done.returncode, done.stderr, output, "Not a directory")


@needs_userns
@pytest.mark.parametrize("command", ["events", "bin", "sample"])
def test_permission_denied(recordings: Path, event_dataset: Path, tmp_path: Path, command: str) -> None:
    # A read-only folder owned by another user: root in a user namespace that maps only root gets no override.
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chown(locked, 65534, 65534)
    locked.chmod(0o555)
    output = locked / "out"
    args = _commands(recordings, event_dataset, output)[command]
    done = subprocess.run(
        ["unshare", "-Ur", sys.executable, "-c", MAIN, *args], capture_output=True, text=True, timeout=300
    )
    _assert_write_error(done.returncode, done.stderr, output, "Permission denied")
    assert list(locked.iterdir()) == []


def _on_a_full_disk(args: list[str], disk: Path) -> subprocess.CompletedProcess[str]:
    """Run ``owa-data ARGS`` with an 8 KiB tmpfs mounted at ``disk``; it exists only in the command's mount
    namespace and is gone when the command ends."""
    shell = 'mount -t tmpfs -o size=8k tmpfs "$0" && exec "$@"'
    return subprocess.run(
        ["unshare", "-Urm", "sh", "-c", shell, str(disk), sys.executable, "-c", MAIN, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@needs_userns
@pytest.mark.parametrize(("command", "workers"), [("events", "1"), ("events", "2"), ("bin", None), ("sample", None)])
def test_a_full_disk(recordings: Path, event_dataset: Path, tmp_path: Path, command: str, workers: str | None) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    output = disk / "out"
    args = _commands(recordings, event_dataset, output)[command]
    if workers is not None:
        args[args.index("--num-workers") + 1] = workers
    if command == "sample":
        args[args.index("--seconds") + 1] = "60"  # more than the disk holds
    done = _on_a_full_disk(args, disk)
    _assert_write_error(done.returncode, done.stderr, output, "No space left on device")


@needs_userns
def test_a_full_disk_met_by_a_worker_is_the_same_error(recordings: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    output = disk / "out"
    args = ["--verbose", "events", "--train-dir", str(recordings), "--output-dir", str(output), "--num-workers", "2"]
    done = _on_a_full_disk(args, disk)
    assert done.returncode == EXIT_DATA_ERROR
    # --verbose logs the chain: the OSError came from a pool worker writing its shard.
    assert "multiprocessing.pool.RemoteTraceback" in done.stderr and "_write_shard" in done.stderr
    assert done.stderr.splitlines()[-1] == f"Error: Cannot write output: No space left on device (file={output})"


def test_inside_the_folder_failures_are_typed_and_inputs_are_not(tmp_path: Path) -> None:
    output = tmp_path / "out"
    with pytest.raises(OutputWriteError) as caught, atomic_output_dir(output) as tmp:
        (tmp / "missing-sub" / "file").write_text("x")
    assert caught.value.path == str(output) and caught.value.errno == errno.ENOENT
    assert "No such file or directory" in str(caught.value)
    # What a worker raises comes back pickled: the fields survive.
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (type(copy), copy.path, copy.errno, str(copy)) == (
        OutputWriteError,
        str(output),
        errno.ENOENT,
        str(caught.value),
    )
    # An input that cannot be read is not an output problem: it passes unchanged.
    with pytest.raises(FileNotFoundError), atomic_output_dir(output):
        (tmp_path / "no-such-input").read_text()
    assert list(tmp_path.iterdir()) == []
