"""Paths under a symlinked folder: stored and reported paths keep the symlink; identity checks resolve it.

The promise (README, section 1, "Paths"): paths the library stores or reports are absolute but not
symlink-resolved (``os.path.abspath``), so a dataset made under a symlinked folder keeps naming it as the
caller gave it; checks of whether two paths are the same file, or one folder holds another, resolve symlinks.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from owa.data import create_event_dataset_transform
from owa.data.binning import build_binned_dataset
from owa.data.errors import DatasetError
from owa.data.events import EventDatasetConfig, build_event_dataset, discover_recordings
from owa.data.recordings.reader import read_messages
from owa.data.transforms import resolve_episode_path


@pytest.fixture
def linked(recordings_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """``(real, link)``: a folder with the 0.5.1 recording and its video, and a symlink to that folder."""
    real = tmp_path / "real"
    real.mkdir()
    for suffix in (".mcap", ".mkv"):
        shutil.copy(recordings_dir / f"0.5.1{suffix}", real / f"0.5.1{suffix}")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert link.resolve() != link  # the test only means something if the folder really is a symlink
    return real, link


def test_stage1_stores_episode_paths_through_the_symlink(linked: tuple[Path, Path]) -> None:
    _, link = linked
    assert discover_recordings(link) == [link / "0.5.1.mcap"]
    dataset = build_event_dataset(EventDatasetConfig(train_dir=link, test_percent=0))
    assert set(dataset["train"]["episode_path"]) == {str(link / "0.5.1.mcap")}
    relative = build_event_dataset(EventDatasetConfig(train_dir=link, relative_to=link, test_percent=0))
    assert set(relative["train"]["episode_path"]) == {"0.5.1.mcap"}


def test_relative_paths_join_the_current_directory_as_the_os_names_it(
    linked: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    real, link = linked
    monkeypatch.chdir(link)
    # The OS reports the working directory with symlinks resolved; a relative path is joined to that.
    assert os.getcwd() == str(real.resolve())
    assert discover_recordings(".") == [Path(os.getcwd()) / "0.5.1.mcap"]
    assert resolve_episode_path("0.5.1.mcap") == os.path.join(os.getcwd(), "0.5.1.mcap")


def test_media_anchors_keep_the_symlink(linked: tuple[Path, Path]) -> None:
    _, link = linked
    screen = next(read_messages(link / "0.5.1.mcap", "screen")).to_mcap_message(link / "0.5.1.mcap").decoded
    assert screen.base_dir == str(link)
    assert screen.resolve_media().location == str(link / "0.5.1.mkv")
    assert resolve_episode_path("0.5.1.mcap", link) == str(link / "0.5.1.mcap")
    assert resolve_episode_path("sub/../0.5.1.mcap", link) == str(link / "0.5.1.mcap")

    dataset = build_event_dataset(EventDatasetConfig(train_dir=link, relative_to=link, test_percent=0))["train"]
    first_screen = dataset["topic"].index("screen")
    dataset.set_transform(create_event_dataset_transform(episode_root=link))
    row = dataset[first_screen]
    assert isinstance(row["image"], Image.Image)
    dataset.set_transform(create_event_dataset_transform(episode_root=link, load_images=False))
    assert dataset[first_screen]["image"].resolve_media().location == str(link / "0.5.1.mkv")


def test_identity_checks_see_through_the_symlink(linked: tuple[Path, Path], tmp_path: Path) -> None:
    real, link = linked
    # The same recordings reached once directly and once through the symlink still overlap.
    with pytest.raises(DatasetError, match="must not overlap"):
        build_event_dataset(EventDatasetConfig(train_dir=real, test_dir=link))

    events = real / "events"
    build_event_dataset(EventDatasetConfig(train_dir=real, output_dir=events, test_percent=0))
    # Writing the binned dataset over the event dataset, named through the symlink, is refused.
    with pytest.raises(DatasetError, match="holds the input") as info:
        build_binned_dataset(events, output_dir=link / "events", overwrite=True)
    assert info.value.path == str(link / "events")  # reported as given, not resolved
    assert (events / "dataset_dict.json").is_file()
