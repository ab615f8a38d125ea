"""examples/train_vlm.py: run as a user would (a subprocess) on a small stage-1 corpus, the loss must fall."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "train_vlm.py"
STEP = re.compile(r"^step +(\d+) +loss ([0-9.]+)", re.MULTILINE)


def _example():
    spec = importlib.util.spec_from_file_location("train_vlm_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def event_dataset(tmp_path_factory) -> Path:
    """Stage 1 on two short sample episodes (the demo's kind of recordings, smaller)."""
    from owa.data.events import EventDatasetConfig, build_event_dataset
    from owa.data.recordings.synthetic import SampleConfig, write_sample_corpus

    root = tmp_path_factory.mktemp("train-vlm")
    write_sample_corpus(root / "recordings", 2, SampleConfig(seconds=2.0, width=160, height=96, seed=1))
    build_event_dataset(EventDatasetConfig(train_dir=root / "recordings", output_dir=root / "events", test_percent=0))
    return root / "events"


def test_tiny_model_loss_falls(event_dataset: Path) -> None:
    steps = 15
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--events",
            str(event_dataset),
            "--steps",
            str(steps),
            "--log-every",
            "1",
            "--batch-size",
            "2",
            "--max-sequence-length",
            "256",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    losses = [(int(step), float(loss)) for step, loss in STEP.findall(result.stdout)]
    assert [step for step, _ in losses] == list(range(1, steps + 1)), result.stdout
    values = [loss for _, loss in losses]
    first, last = sum(values[:3]) / 3, sum(values[-3:]) / 3
    # Seeded, so the run is repeatable; a random model starts near ln(vocabulary) and drops by about a nat here.
    assert last < first - 0.3, values
    assert "0 skipped" in result.stdout


def test_arguments(tmp_path: Path) -> None:
    example = _example()
    events = tmp_path / "events"
    events.mkdir()
    args = example.parse_args(["--events", str(events)])
    assert (args.model, args.steps, args.lr, args.batch_size) == (None, 60, example.TINY_LR, 4)
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    args = example.parse_args(
        ["--events", str(events), "--model", str(checkpoint), "--max-sequence-length", "2048", "--steps", "3"]
    )
    assert (args.model, args.max_sequence_length, args.steps, args.lr) == (checkpoint, 2048, 3, example.CHECKPOINT_LR)
    assert example.parse_args(["--events", str(events), "--lr", "0.1"]).lr == 0.1
    for bad in (["--model", str(tmp_path / "missing")], ["--steps", "0"], ["--events", str(tmp_path / "none")]):
        with pytest.raises(SystemExit):
            example.parse_args(["--events", str(events), *bad])
