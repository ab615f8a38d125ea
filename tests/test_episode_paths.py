"""owa.data.episode_paths: one rule for where an episode's recording and media are, used by every reader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from owa.data import transforms
from owa.data.encoders import create_encoder
from owa.data.episode_paths import episode_base_dir, resolve_episode_path
from owa.data.messages import McapMessage, MediaRef, ScreenCaptured


def test_resolve_episode_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_episode_path("/abs/ep.mcap", "/elsewhere") == "/abs/ep.mcap"
    assert resolve_episode_path("a/../b/ep.mcap", "/root") == "/root/b/ep.mcap"
    assert resolve_episode_path("ep.mcap", tmp_path) == str(tmp_path / "ep.mcap")
    monkeypatch.chdir(tmp_path)  # default root: the current directory, read at call time
    assert resolve_episode_path("sub/ep.mcap") == os.path.join(os.getcwd(), "sub", "ep.mcap")
    assert transforms.resolve_episode_path is resolve_episode_path  # the transforms' public name


def test_episode_base_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert episode_base_dir("/data/run/ep.mcap") == "/data/run"
    assert episode_base_dir(Path("/data/run/../x/ep.mcap")) == "/data/x"
    monkeypatch.chdir(tmp_path)
    assert episode_base_dir("ep.mcap") == os.getcwd()


def test_messages_and_encoders_attach_the_same_base_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    screen = ScreenCaptured(utc_ns=1, media_ref=MediaRef(uri="ep.mkv", pts_ns=0))
    message = McapMessage(
        topic="screen", timestamp=1, message=screen.model_dump_json().encode(), message_type=screen.message_type
    ).with_source("rec/ep.mcap")
    expected = episode_base_dir("rec/ep.mcap")
    assert expected == os.path.join(os.getcwd(), "rec")
    assert message.decoded.base_dir == expected
    _, images = create_encoder("hierarchical").encode_serialized(message.model_dump_json(), episode_path="rec/ep.mcap")
    assert [image.base_dir for image in images] == [expected]
