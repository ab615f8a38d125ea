"""`make demo` runs `owa-data demo`: keep it working."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import load_from_disk
from typer.testing import CliRunner

from owa.data.cli import app
from owa.data.demo import run_demo
from owa.data.errors import OutputExistsError


def test_demo_runs_every_stage(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "demo", episodes=2, seconds=2.0)
    titles = [title for title, _ in result.sections]
    assert [t.split(".")[0] for t in titles] == ["1", "2", "3", "4", "5"]
    assert len(load_from_disk(str(tmp_path / "demo" / "event-dataset"))["train"]) > 0
    assert len(load_from_disk(str(tmp_path / "demo" / "binned-dataset"))["train"]) > 0
    text = result.format()
    assert "<EVENT_START>" in text and "DataLoader batch: input_ids (2, 512)" in text
    with pytest.raises(OutputExistsError):
        run_demo(tmp_path / "demo")


def test_demo_command(tmp_path: Path) -> None:
    outcome = CliRunner().invoke(app, ["demo", str(tmp_path / "d"), "--episodes", "2", "--seconds", "2"])
    assert outcome.exit_code == 0, outcome.output
    assert "Everything is under" in outcome.output
