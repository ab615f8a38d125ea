"""Shared fixtures: the real recordings in ../shared/recordings, temp folders, and an S3 server."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

from frame_videos import VIDEO_KINDS, Video, encoded_videos
from owa.data.frames import FrameEngine

if TYPE_CHECKING:
    from s3_server import S3Server

# Timing deadlines only make property tests flaky on a busy 2-core CI machine; speed lives in benchmarks.
settings.register_profile("owa-data", deadline=None)
settings.load_profile("owa-data")

REPO_ROOT = Path(__file__).resolve().parents[1]
RECORDINGS_DIR = REPO_ROOT.parent / "shared" / "recordings"


@pytest.fixture(scope="session")
def recordings_dir() -> Path:
    if not RECORDINGS_DIR.is_dir():
        pytest.fail(f"Real recordings not found at {RECORDINGS_DIR}; the tests expect ../shared/recordings")
    return RECORDINGS_DIR


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3-compatible server (moto, on a loopback port) with one bucket; see tests/s3_server.py.

    Credentials travel only in ``storage_options``; for the session the AWS variables point at empty
    files so nothing reads the user's ~/.aws or real keys.
    """
    from s3_server import start_server

    aws_dir = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as env:
        for name in (
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
        ):
            env.delenv(name, raising=False)
        env.setenv("AWS_CONFIG_FILE", str(aws_dir / "config"))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(aws_dir / "credentials"))
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        werkzeug = logging.getLogger("werkzeug")  # logs one INFO line per request
        level = werkzeug.level
        werkzeug.setLevel(logging.WARNING)
        running = start_server()
        try:
            yield running.s3
        finally:
            running.stop()
            werkzeug.setLevel(level)


# The frame tests' videos (see frame_videos.py): encoded once per session, one test per kind with `video`.
@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Video]:
    return encoded_videos(tmp_path_factory)


@pytest.fixture(params=list(VIDEO_KINDS))
def video(request: pytest.FixtureRequest, videos: dict[str, Video]) -> Video:
    return videos[request.param]


@pytest.fixture
def engine() -> Iterator[FrameEngine]:
    """A PyAV frame engine of the test's own, closed afterwards."""
    engine = FrameEngine(backend="pyav")
    yield engine
    engine.close()
