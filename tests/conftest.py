"""Shared fixtures: the real recordings in ../shared/recordings and temp folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

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
