"""Stage 1 discovery on real folder trees: symlinked folders, loops, duplicate recordings, split overlap.

Every tree is built in a temp dir from the real recordings (copies, symlinks, hardlinks); the recordings
themselves are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from owa.data.errors import DatasetError
from owa.data.events import REPORT_FILENAME, EventDatasetConfig, build_event_dataset, discover_recordings


@pytest.fixture
def tree(recordings_dir: Path, tmp_path: Path) -> Path:
    """``root/`` with two recordings, ``root/sub/`` with one, ``outside/`` with one reached only by a link.

    Links: ``root/linked -> outside`` (a folder only reachable through the symlink) and
    ``root/zalias -> root/sub`` (the same recording reached twice).
    """
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(recordings_dir / "0.3.2.mcap", root / "a.mcap")
    shutil.copy(recordings_dir / "0.4.2.mcap", root / "b.mcap")
    shutil.copy(recordings_dir / "0.5.1.mcap", root / "sub" / "c.mcap")
    shutil.copy(recordings_dir / "ztype-no-video.mcap", outside / "d.mcap")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "zalias").symlink_to(root / "sub", target_is_directory=True)
    return root


def test_symlinked_folders_are_followed_and_paths_keep_the_link(tree: Path) -> None:
    found = discover_recordings(tree)
    assert tree / "linked" / "d.mcap" in found  # reached only through the symlink; path not resolved
    assert found == sorted(found)
    assert found == [tree / "a.mcap", tree / "b.mcap", tree / "linked" / "d.mcap", tree / "sub" / "c.mcap"]


def test_a_symlink_to_an_ancestor_is_cut_and_reported(tree: Path, tmp_path: Path) -> None:
    (tree / "sub" / "up").symlink_to(tree, target_is_directory=True)  # a loop: sub/up/sub/up/...
    (tree / "sub" / "self").symlink_to(tree / "sub", target_is_directory=True)
    assert len(discover_recordings(tree)) == 4
    dataset = build_event_dataset(EventDatasetConfig(train_dir=tree, output_dir=tmp_path / "out", test_percent=0))
    assert sorted(dataset.report.symlink_loops) == [str(tree / "sub" / "self"), str(tree / "sub" / "up")]
    saved = json.loads((tmp_path / "out" / REPORT_FILENAME).read_text())["report"]
    assert sorted(saved["symlink_loops"]) == sorted(dataset.report.symlink_loops)
    assert "symlink loop" in dataset.report.format_table()


def test_a_recording_reached_twice_is_converted_once_and_listed(tree: Path, tmp_path: Path) -> None:
    os.link(tree / "a.mcap", tree / "hard.mcap")  # a hardlink: another name, the same file
    out = tmp_path / "out"
    dataset = build_event_dataset(EventDatasetConfig(train_dir=tree, output_dir=out, test_percent=0))
    paths = set(dataset["train"]["episode_path"])
    # The first path in sorted order is kept, as discovered (absolute, the symlink not resolved).
    assert paths == {str(tree / n) for n in ("a.mcap", "b.mcap", "linked/d.mcap", "sub/c.mcap")}
    report = dataset.report
    duplicates = {(p["file"], p["reason"]) for p in report.problems if p["action"] == "duplicate"}
    assert duplicates == {
        (str(tree / "hard.mcap"), f"same file as {tree / 'a.mcap'}"),
        (str(tree / "zalias" / "c.mcap"), f"same file as {tree / 'sub' / 'c.mcap'}"),
    }
    assert report.files == 4 and report.files_duplicate == 2
    saved = json.loads((out / REPORT_FILENAME).read_text())["report"]
    assert saved["files_duplicate"] == 2
    assert {p["file"] for p in saved["problems"] if p["action"] == "duplicate"} == {f for f, _ in duplicates}
    summary = report.format_table()
    assert "2 duplicate" in summary and "zalias/c.mcap" in summary and "hard.mcap" in summary


def test_a_duplicate_never_lands_in_both_splits(tree: Path) -> None:
    (tree / "sub" / "link.mcap").symlink_to(tree / "a.mcap")  # a symlinked file, found even without following
    for seed in range(6):
        dataset = build_event_dataset(EventDatasetConfig(train_dir=tree, test_percent=0.5, seed=seed))
        train, test = dataset["train"], dataset["test"]
        assert not set(train["episode_path"]) & set(test["episode_path"])
        assert not set(train["timestamp_ns"]) & set(test["timestamp_ns"])
        assert len(set(train["episode_path"])) + len(set(test["episode_path"])) == 4


def test_duplicates_resolve_the_same_for_any_worker_count(tree: Path) -> None:
    os.link(tree / "b.mcap", tree / "sub" / "0-hard.mcap")
    one = build_event_dataset(EventDatasetConfig(train_dir=tree, num_workers=1, test_percent=0.25, seed=1))
    two = build_event_dataset(EventDatasetConfig(train_dir=tree, num_workers=3, test_percent=0.25, seed=1))
    for split in ("train", "test"):
        assert one[split][:] == two[split][:]
    assert one.report.problems == two.report.problems


@pytest.mark.parametrize("link", ["hardlink", "symlink"])
def test_explicit_dirs_sharing_a_recording_is_an_error_naming_it(tree: Path, tmp_path: Path, link: str) -> None:
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    shared = test_dir / "shared.mcap"
    if link == "hardlink":
        os.link(tree / "b.mcap", shared)
    else:
        shared.symlink_to(tree / "b.mcap")
    with pytest.raises(DatasetError, match="must not overlap") as info:
        build_event_dataset(EventDatasetConfig(train_dir=tree, test_dir=test_dir))
    assert str(shared) in str(info.value) and str(tree / "b.mcap") in str(info.value)
