"""Self-describing datasets: every stage's ``owa_data.json``, and ``owa.data.load`` opening each stage's output.

Real stage outputs: stage 1 on real recordings, stage 2, ``owa-data tokenize`` and ``owa-data pack`` with the offline
tokenizer saved to a folder; URLs through the S3 server of ``tests/s3_server.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import datasets
import pytest
from transformers import AutoTokenizer
from typer.testing import CliRunner

import owa.data
from owa.data.binning import BinningConfig, build_binned_dataset
from owa.data.cli import EXIT_OK, app
from owa.data.dataset_io import publish_dataset
from owa.data.episode_tokenizer import EpisodeTokenizer
from owa.data.errors import InvalidInputError, OutputExistsError, TokenizerMismatchError
from owa.data.events import EventDatasetConfig, write_event_dataset
from owa.data.fsl_dataset import FSLDataset
from owa.data.metadata import METADATA_FILENAME, DatasetMetadata, TokenizerInfo, read_metadata, write_metadata
from owa.data.testing import tiny_bpe_tokenizer
from owa.data.vocabulary import vocabulary_fingerprint


@pytest.fixture(scope="module")
def stages(recordings_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every stage's output from two real recordings; episode paths stored relative to the recordings' folder."""
    root = tmp_path_factory.mktemp("stages")
    recordings = root / "recordings"
    recordings.mkdir()
    for name in ("0.5.1", "0.4.2"):
        for suffix in (".mcap", ".mkv"):
            shutil.copy(recordings_dir / f"{name}{suffix}", recordings / f"{name}{suffix}")
    events = root / "events"
    config = EventDatasetConfig(
        train_dir=recordings, output_dir=events, test_percent=0.5, num_workers=1, relative_to=recordings
    )
    write_event_dataset(config)
    binned = root / "binned"
    build_binned_dataset(events, BinningConfig(fps=5), output_dir=binned)
    tokenizer = root / "tokenizer"
    tiny_bpe_tokenizer().save_pretrained(tokenizer)
    runner = CliRunner()
    for command, extra in (("tokenize", []), ("pack", ["--max-sequence-length", "512"])):
        args = [command, str(events), "--tokenizer", str(tokenizer), "--output-dir", str(root / command), *extra]
        result = runner.invoke(app, args)
        assert result.exit_code == EXIT_OK, result.output
    return {
        "root": root,
        "recordings": recordings,
        "events": events,
        "binned": binned,
        "tokenized": root / "tokenize",
        "packed": root / "pack",
        "tokenizer": tokenizer,
    }


def test_every_stage_records_its_stage_config_root_and_version(stages: dict[str, Path]) -> None:
    recordings = str(stages["recordings"])
    events = read_metadata(stages["events"])
    assert events.stage == "events" and events.recordings_root == recordings
    assert events.config["events"]["rates_hz"] == {"mouse": 60.0, "screen": 20.0}
    assert events.config["events"]["keep_topics"] == ["screen", "keyboard", "mouse"]
    assert events.config["events"]["relative_to"] == recordings
    assert events.library_version == owa.data.__version__ and events.tokenizer is None

    binned = read_metadata(stages["binned"])
    assert binned.stage == "binned" and binned.created_by == "build_binned_dataset"
    assert binned.config == {"events": events.config["events"], "binning": BinningConfig(fps=5).to_json()}
    assert binned.recordings_root == recordings

    tokenizer = AutoTokenizer.from_pretrained(stages["tokenizer"])
    episode_tokenizer = EpisodeTokenizer()
    episode_tokenizer.prepare_model(tokenizer=tokenizer)
    tokenized = read_metadata(stages["tokenized"])
    assert tokenized.stage == "tokenized" and tokenized.recordings_root == recordings
    assert tokenized.config == {"events": events.config["events"], "tokenizer": episode_tokenizer.config.to_json()}
    assert tokenized.tokenizer == TokenizerInfo(
        name_or_path=str(stages["tokenizer"]), vocab_size=len(tokenizer), fingerprint=vocabulary_fingerprint(tokenizer)
    )

    packed = read_metadata(stages["packed"])
    assert packed.stage == "packed" and packed.created_by == "owa-data pack"
    assert packed.config == {
        **tokenized.config,
        "packing": {"max_sequence_length": 512, "pad_token_id": tokenizer.pad_token_id, "episode_aware": False},
    }
    assert packed.tokenizer == tokenized.tokenizer
    # The file itself: plain JSON at the folder's root, with the layout version first.
    raw = json.loads((stages["packed"] / METADATA_FILENAME).read_text())
    assert list(raw)[:2] == ["format_version", "stage"] and raw["tokenizer"]["fingerprint"].startswith("sha256:")
    assert DatasetMetadata.from_json(raw) == packed


def test_load_sets_the_transform_of_each_stage(stages: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(stages["root"].parent)  # relative episode paths resolve against the recorded root, not here
    events = owa.data.load(stages["events"])
    row = events["train"][0]
    assert isinstance(row["encoded_event"], str) and row["encoded_event"].startswith("<EVENT_START>")
    screen = next(i for i, topic in enumerate(events["train"].with_format(None)["topic"]) if topic == "screen")
    assert events["train"][screen]["image"].size[0] > 0  # a decoded frame, found through the recorded root

    binned = owa.data.load(stages["binned"], split="train", load_images=False)
    row = binned[0]
    assert row["instruction"] == "Complete the computer task" and isinstance(row["encoded_events"], list)

    tokenized = owa.data.load(stages["tokenized"])
    assert isinstance(tokenized, datasets.DatasetDict)
    assert {"token_ids", "images", "total_token_count"} <= set(tokenized["train"].column_names)

    packed = owa.data.load(stages["packed"], load_images=False)
    assert isinstance(packed["train"], FSLDataset) and len(packed["train"][0]["token_ids"]) == 512


def test_load_checks_the_tokenizer(stages: dict[str, Path]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(stages["tokenizer"])
    assert len(owa.data.load(stages["tokenized"], split="test", tokenizer=tokenizer)) > 0
    other = tiny_bpe_tokenizer()
    other.add_tokens(["<OTHER>"])
    for stage in ("tokenized", "packed"):
        with pytest.raises(TokenizerMismatchError) as error:
            owa.data.load(stages[stage], tokenizer=other)
        assert read_metadata(stages[stage]).tokenizer.fingerprint in error.value.context["recorded"]
    with pytest.raises(ValueError, match="holds no token ids"):
        owa.data.load(stages["events"], tokenizer=tokenizer)
    with pytest.raises(TypeError, match="takes no options"):
        owa.data.load(stages["tokenized"], load_images=False)
    with pytest.raises(InvalidInputError, match="No split 'dev'"):
        owa.data.load(stages["events"], split="dev")


def test_a_dataset_at_a_url_loads_with_its_metadata(s3: Any, stages: dict[str, Path]) -> None:
    tokenized = datasets.load_from_disk(str(stages["tokenized"]))
    metadata = read_metadata(stages["tokenized"])
    url = s3.url("self-describing/tokenized")
    publish_dataset(tokenized, url, metadata=metadata, storage_options=s3.storage_options)
    assert read_metadata(url, s3.storage_options) == metadata  # straight from the bucket
    tokenizer = AutoTokenizer.from_pretrained(stages["tokenizer"])
    loaded = owa.data.load(url, tokenizer=tokenizer, storage_options=s3.storage_options)
    assert loaded["train"]["token_ids"] == tokenized["train"]["token_ids"]
    with pytest.raises(OutputExistsError):
        publish_dataset(tokenized, url, metadata=metadata, storage_options=s3.storage_options)
    with pytest.raises(InvalidInputError, match=r"No owa_data\.json"):
        owa.data.load(s3.url("self-describing/nothing"), storage_options=s3.storage_options)


def test_missing_or_invalid_metadata_is_a_clear_error(stages: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    datasets.Dataset.from_dict({"a": [1]}).save_to_disk(str(folder))
    with pytest.raises(InvalidInputError, match=r"No owa_data\.json") as error:
        owa.data.load(folder)
    assert error.value.path == str(folder / METADATA_FILENAME)
    assert read_metadata(folder, missing_ok=True) is None
    cases = {
        "not JSON": "{",
        "not an object": "[1]",
        "newer layout": json.dumps({"format_version": 99, "stage": "events"}),
        "unknown stage": json.dumps(
            {"format_version": 1, "stage": "raw", "config": {}, "recordings_root": None, "created_by": ""}
        ),
        "missing field": json.dumps({"format_version": 1, "stage": "events", "config": {}}),
    }
    for case, text in cases.items():
        (folder / METADATA_FILENAME).write_text(text)
        with pytest.raises(InvalidInputError, match=r"owa_data\.json") as error:
            read_metadata(folder)
        assert error.value.path == str(folder / METADATA_FILENAME), case


def test_an_output_is_never_published_without_its_metadata(stages: dict[str, Path], tmp_path: Path) -> None:
    tokenized = datasets.load_from_disk(str(stages["tokenized"]))
    metadata = read_metadata(stages["tokenized"])

    def fail(folder: Path) -> None:
        assert (folder / METADATA_FILENAME).is_file() and (folder / "dataset_dict.json").is_file()
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        publish_dataset(tokenized, tmp_path / "out", metadata=metadata, add_files=fail)
    assert list(tmp_path.iterdir()) == []  # neither the output nor its staging folder
    publish_dataset(tokenized, tmp_path / "out", metadata=metadata)
    assert read_metadata(tmp_path / "out") == metadata
    write_metadata(tmp_path, metadata)
    assert read_metadata(tmp_path) == metadata
