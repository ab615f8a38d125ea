"""Packed datasets on disk (owa-data pack, save_packed_dataset, FSLDataset.load) and owa-data tokenize.

Real parts only: stage 1 on two real recordings, the offline BPE tokenizer saved to a folder (so ``--tokenizer PATH``
loads it with AutoTokenizer), the CLI through typer's CliRunner (the same app object), and an S3 server (moto over
HTTP) for URLs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
from transformers import AutoTokenizer
from typer.testing import CliRunner

from owa.data.cli import EXIT_DATA_ERROR, EXIT_OK, EXIT_USAGE, app
from owa.data.episode_tokenizer import EpisodeTokenizer
from owa.data.errors import DatasetError, InvalidInputError, OutputExistsError, TokenizerMismatchError
from owa.data.events import EventDatasetConfig, write_event_dataset
from owa.data.fsl_dataset import FSLDataset
from owa.data.metadata import read_metadata
from owa.data.packed import save_packed_dataset
from owa.data.testing import tiny_bpe_tokenizer
from owa.data.vocabulary import vocabulary_fingerprint

LENGTH = 512


@pytest.fixture(scope="module")
def folders(recordings_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An Event Dataset of two real recordings (both splits non-empty) and a saved tokenizer folder."""
    root = tmp_path_factory.mktemp("packed")
    recordings = root / "recordings"
    recordings.mkdir()
    for name in ("0.5.1", "0.4.2"):
        for suffix in (".mcap", ".mkv"):
            shutil.copy(recordings_dir / f"{name}{suffix}", recordings / f"{name}{suffix}")
    events = root / "events"
    write_event_dataset(EventDatasetConfig(train_dir=recordings, output_dir=events, test_percent=0.5, num_workers=1))
    assert all(len(split) for split in datasets.load_from_disk(str(events)).values())
    tiny_bpe_tokenizer().save_pretrained(root / "tokenizer")
    return {"root": root, "recordings": recordings, "events": events, "tokenizer": root / "tokenizer"}


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def packed_dir(folders: dict[str, Path]) -> Path:
    out = folders["root"] / "packed"
    result = invoke(
        "pack",
        folders["events"],
        "--tokenizer",
        folders["tokenizer"],
        "--max-sequence-length",
        LENGTH,
        "--output-dir",
        out,
    )
    assert result.exit_code == EXIT_OK, result.output
    assert f"Saved packed dataset to {out}" in result.output
    return out


def reference(folders: dict[str, Path], **fsl_options: Any) -> dict[str, FSLDataset]:
    """What the issue compares with: the same tokenizer and defaults, tokenized and prepared in this process."""
    tokenizer = AutoTokenizer.from_pretrained(folders["tokenizer"])
    episode_tokenizer = EpisodeTokenizer()
    episode_tokenizer.prepare_model(tokenizer=tokenizer)
    events = datasets.load_from_disk(str(folders["events"]))
    options = {"pad_token_id": tokenizer.pad_token_id, "max_sequence_length": LENGTH, "load_images": False}
    return {
        name: FSLDataset(episode_tokenizer.tokenize_event_dataset(split), **{**options, **fsl_options}).prepare()
        for name, split in events.items()
    }


def assert_same_samples(got: FSLDataset, expected: FSLDataset) -> None:
    assert len(got) == len(expected) > 0
    for index in range(len(expected)):
        a, b = got[index], expected[index]
        assert a.keys() == b.keys()
        for key, value in b.items():
            if isinstance(value, np.ndarray):
                assert a[key].dtype == value.dtype and np.array_equal(a[key], value), (index, key)
            else:
                assert a[key] == value, (index, key)


# ------------------------------------------------------------------------------------------------------------
# pack -> load
# ------------------------------------------------------------------------------------------------------------


def test_pack_then_load_gives_exactly_the_prepared_samples(folders: dict[str, Path], packed_dir: Path) -> None:
    loaded = FSLDataset.load(packed_dir, load_images=False)
    expected = reference(folders)
    assert isinstance(loaded, dict) and list(loaded) == list(expected) == ["train", "test"]
    for name, fsl in expected.items():
        assert_same_samples(loaded[name], fsl)
        assert loaded[name].config == fsl.config
        assert all(isinstance(image, type(fsl[0]["images"][0])) for image in loaded[name][0]["images"])
    # Read-time options apply to the saved plan as they would after prepare().
    options = {"return_position_ids": True, "return_segment_offsets": True}
    with_positions = FSLDataset.load(packed_dir, load_images=False, split="test", **options)
    assert isinstance(with_positions, FSLDataset)
    assert_same_samples(with_positions, reference(folders, **options)["test"])


def test_the_plan_is_memory_mapped_not_recomputed(packed_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import owa.data.packed

    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("load must not plan again")

    monkeypatch.setattr(owa.data.packed, "plan_packing", fail)
    fsl = FSLDataset.load(packed_dir, load_images=False, split="train")
    for array in (fsl.plan.token_offsets, fsl.plan.event_offsets, fsl.packed_split.image_offsets):
        assert isinstance(array, np.memmap)
    assert fsl.plan.token_range(0) == (0, int(fsl[0]["total_token_count"]))


def test_frames_load_as_after_prepare(folders: dict[str, Path], packed_dir: Path) -> None:
    loaded = FSLDataset.load(packed_dir, split="train", load_images=True)
    expected = reference(folders, load_images=True)["train"]
    index = next(i for i in range(len(expected)) if expected[i]["images"])
    got, want = loaded[index]["images"], expected[index]["images"]
    assert len(got) == len(want) > 0
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(got, want, strict=True))


def test_a_single_dataset_and_episode_aware_packing_round_trip(folders: dict[str, Path], tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(folders["tokenizer"])
    episode_tokenizer = EpisodeTokenizer(image_token_length=8)
    episode_tokenizer.prepare_model(tokenizer=tokenizer)
    events = datasets.load_from_disk(str(folders["events"]))
    both = datasets.concatenate_datasets([events["train"], events["test"]])
    tokenized = episode_tokenizer.tokenize_event_dataset(both)
    fsl = FSLDataset(tokenized, pad_token_id=0, max_sequence_length=96, episode_aware=True, load_images=False)
    fsl.prepare()
    metadata = save_packed_dataset(fsl, tmp_path / "one", episode_tokenizer=episode_tokenizer)
    loaded = FSLDataset.load(tmp_path / "one", load_images=False, return_segment_offsets=True)
    assert isinstance(loaded, FSLDataset) and loaded.episode_aware
    expected = FSLDataset(tokenized, fsl.config, return_segment_offsets=True).prepare()
    assert_same_samples(loaded, expected)
    assert any(len(loaded[i]["segment_offsets"]) == 2 for i in range(len(loaded)))  # never two episodes
    assert metadata.config["packing"] == {"max_sequence_length": 96, "pad_token_id": 0, "episode_aware": True}
    assert metadata.config["tokenizer"]["image_token_length"] == 8
    with pytest.raises(OutputExistsError):
        save_packed_dataset(fsl, tmp_path / "one", episode_tokenizer=episode_tokenizer)


def test_plan_settings_are_fixed_and_other_folders_refused(folders: dict[str, Path], packed_dir: Path) -> None:
    assert len(FSLDataset.load(packed_dir, split="train", max_sequence_length=LENGTH, pad_token_id=0)) > 0
    with pytest.raises(ValueError, match="max_sequence_length=512"):
        FSLDataset.load(packed_dir, max_sequence_length=1024)
    with pytest.raises(ValueError, match="episode_aware=False"):
        FSLDataset.load(packed_dir, episode_aware=True)
    with pytest.raises(InvalidInputError, match="No split 'validation'"):
        FSLDataset.load(packed_dir, split="validation")
    with pytest.raises(InvalidInputError, match="stage 'events'") as error:
        FSLDataset.load(folders["events"])
    assert error.value.path == str(folders["events"])
    with pytest.raises(InvalidInputError, match="does not exist"):
        FSLDataset.load(folders["root"] / "missing")


def test_a_damaged_plan_is_an_error_naming_its_file(packed_dir: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(packed_dir, damaged)
    offsets = damaged / "plan" / "train" / "token_offsets.npy"
    np.save(offsets, np.load(offsets)[:-1])
    with pytest.raises(DatasetError, match="entries for") as error:
        FSLDataset.load(damaged, split="train")
    assert error.value.path == str(offsets)
    (damaged / "packing.json").write_text("{}")
    with pytest.raises(InvalidInputError, match="not written by owa-data pack"):
        FSLDataset.load(damaged)


# ------------------------------------------------------------------------------------------------------------
# The tokenizer check
# ------------------------------------------------------------------------------------------------------------


def test_the_recorded_tokenizer_is_accepted_as_loaded_or_prepared(folders: dict[str, Path], packed_dir: Path) -> None:
    raw = AutoTokenizer.from_pretrained(folders["tokenizer"])
    size = len(raw)
    assert len(FSLDataset.load(packed_dir, split="test", tokenizer=raw)) > 0
    assert len(raw) == size  # checked on a copy: the caller's tokenizer is not prepared behind its back
    EpisodeTokenizer().prepare_model(tokenizer=raw)
    assert len(FSLDataset.load(packed_dir, split="test", tokenizer=raw)) > 0
    assert read_metadata(packed_dir).tokenizer.fingerprint == vocabulary_fingerprint(raw)


def test_another_vocabulary_is_a_clear_error(folders: dict[str, Path], packed_dir: Path) -> None:
    recorded = read_metadata(packed_dir).tokenizer
    other = AutoTokenizer.from_pretrained(folders["tokenizer"])
    other.add_tokens(["<SOMETHING_ELSE>"])  # one more token, so every later added token gets another id
    with pytest.raises(TokenizerMismatchError, match="vocabulary differs") as error:
        FSLDataset.load(packed_dir, tokenizer=other)
    assert error.value.path == str(packed_dir)
    assert recorded.fingerprint in error.value.context["recorded"]
    assert vocabulary_fingerprint(other) in error.value.context["given"]
    # Prepared with another layout: the same base tokenizer, other added tokens.
    prepared = AutoTokenizer.from_pretrained(folders["tokenizer"])
    EpisodeTokenizer(image_token="<image>").prepare_model(tokenizer=prepared)
    with pytest.raises(TokenizerMismatchError):
        FSLDataset.load(packed_dir, tokenizer=prepared)


def test_vocabulary_fingerprint_ignores_padding_state_and_sees_added_tokens() -> None:
    tokenizer = tiny_bpe_tokenizer()
    before = vocabulary_fingerprint(tokenizer)
    assert before.startswith("sha256:") and len(before) == len("sha256:") + 64
    tokenizer(["a b c", "d"], padding=True, truncation=True, max_length=4)  # changes the backend's settings
    assert vocabulary_fingerprint(tokenizer) == before == vocabulary_fingerprint(tiny_bpe_tokenizer())
    tokenizer.add_tokens(["<NEW>"])
    assert vocabulary_fingerprint(tokenizer) != before


# ------------------------------------------------------------------------------------------------------------
# URLs
# ------------------------------------------------------------------------------------------------------------


def test_a_packed_dataset_at_a_url_round_trips(s3: Any, folders: dict[str, Path], tmp_path: Path) -> None:
    import owa.data

    expected = reference(folders)
    tokenizer = AutoTokenizer.from_pretrained(folders["tokenizer"])
    episode_tokenizer = EpisodeTokenizer()
    episode_tokenizer.prepare_model(tokenizer=tokenizer)
    url = s3.url("packed/v1")
    save_packed_dataset(expected, url, episode_tokenizer=episode_tokenizer, storage_options=s3.storage_options)
    assert read_metadata(url, s3.storage_options).stage == "packed"  # read from the bucket, nothing written locally

    cache = tmp_path / "cache"
    loaded = FSLDataset.load(url, load_images=False, storage_options=s3.storage_options, cache_dir=cache)
    for name, fsl in expected.items():
        assert_same_samples(loaded[name], fsl)
    # A second open reuses the download: only the small metadata and marker objects are asked about.
    before = s3.traffic.snapshot()[0]
    again = owa.data.load(url, split="test", load_images=False, storage_options=s3.storage_options, cache_dir=cache)
    assert s3.traffic.snapshot()[0] - before < 10_000
    assert_same_samples(again, expected["test"])
    # Replaced at the URL: the copy is stale and downloaded again.
    save_packed_dataset(
        {"test": expected["test"]},
        url,
        episode_tokenizer=episode_tokenizer,
        storage_options=s3.storage_options,
        overwrite=True,
    )
    assert list(FSLDataset.load(url, storage_options=s3.storage_options, cache_dir=cache)) == ["test"]
    with pytest.raises(InvalidInputError, match=r"No owa_data\.json"):
        FSLDataset.load(s3.url("packed/none"), storage_options=s3.storage_options, cache_dir=cache)


def test_pack_writes_to_a_url_with_the_default_credentials(
    s3: Any, folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import fsspec

    monkeypatch.setitem(fsspec.config.conf, "s3", dict(s3.storage_options))  # what a user's fsspec config does
    url = s3.url("packed/cli")
    args = ["pack", folders["events"], "--tokenizer", folders["tokenizer"], "--max-sequence-length", LENGTH]
    result = invoke(*args, "--output-dir", url, "--split", "test")
    assert result.exit_code == EXIT_OK, result.output
    loaded = FSLDataset.load(url, load_images=False, cache_dir=tmp_path)
    assert_same_samples(loaded["test"], reference(folders)["test"])
    assert invoke(*args, "--output-dir", url).exit_code == EXIT_USAGE  # exists


# ------------------------------------------------------------------------------------------------------------
# The commands
# ------------------------------------------------------------------------------------------------------------


def test_tokenize_command_writes_a_self_describing_tokenized_dataset(folders: dict[str, Path]) -> None:
    out = folders["root"] / "tokenized"
    result = invoke(
        "tokenize",
        folders["events"],
        "--tokenizer",
        folders["tokenizer"],
        "--output-dir",
        out,
        "--image-token",
        "<image>",
        "--image-token-length",
        8,
        "--screen-size",
        "2560x1440",
        "--split",
        "train",
    )
    assert result.exit_code == EXIT_OK, result.output
    tokenized = datasets.load_from_disk(str(out))
    assert list(tokenized) == ["train"]
    tokenizer = AutoTokenizer.from_pretrained(folders["tokenizer"])
    episode_tokenizer = EpisodeTokenizer(image_token="<image>", image_token_length=8, screen_size=(2560, 1440))
    episode_tokenizer.prepare_model(tokenizer=tokenizer)
    expected = episode_tokenizer.tokenize_event_dataset(datasets.load_from_disk(str(folders["events"]))["train"])
    assert tokenized["train"]["token_ids"] == expected["token_ids"]
    assert tokenized["train"]["images"] == expected["images"]
    metadata = read_metadata(out)
    assert metadata.stage == "tokenized" and metadata.created_by == "owa-data tokenize"
    assert metadata.config["tokenizer"] == episode_tokenizer.config.to_json()
    assert metadata.config["tokenizer"]["encoder_config"]["screen_size"] == [2560, 1440]
    assert metadata.tokenizer.fingerprint == vocabulary_fingerprint(tokenizer)
    assert metadata.tokenizer.name_or_path == str(folders["tokenizer"])
    assert metadata.tokenizer.vocab_size == len(tokenizer)


def test_tokenize_and_pack_exit_codes(folders: dict[str, Path], packed_dir: Path, tmp_path: Path) -> None:
    events, tokenizer = folders["events"], folders["tokenizer"]
    common = ["--tokenizer", tokenizer]
    pack = ["pack", events, *common, "--max-sequence-length", LENGTH]
    usage = {
        "output exists": [*pack, "--output-dir", packed_dir],
        "missing events": [
            "pack",
            tmp_path / "nothing",
            *common,
            "--max-sequence-length",
            64,
            "--output-dir",
            tmp_path / "a",
        ],
        "not a tokenizer": ["tokenize", events, "--tokenizer", tmp_path, "--output-dir", tmp_path / "b"],
        "bad screen size": ["tokenize", events, *common, "--screen-size", "wide", "--output-dir", tmp_path / "c"],
        "json takes no screen size": [
            "tokenize",
            events,
            *common,
            "--encoder-type",
            "json",
            "--screen-size",
            "800x600",
            "--output-dir",
            tmp_path / "d",
        ],
        "unknown layout": ["tokenize", events, *common, "--image-layout", "nope", "--output-dir", tmp_path / "e"],
        "bad on-error": ["tokenize", events, *common, "--on-error", "ignore", "--output-dir", tmp_path / "f"],
        "unknown split": ["tokenize", events, *common, "--split", "dev", "--output-dir", tmp_path / "g"],
        "zero length": ["pack", events, *common, "--max-sequence-length", 0, "--output-dir", tmp_path / "h"],
        "not events": ["pack", packed_dir, *common, "--max-sequence-length", 64, "--output-dir", tmp_path / "i"],
        "missing flag": ["pack", events, *common, "--output-dir", tmp_path / "j"],
    }
    for case, args in usage.items():
        result = invoke(*args)
        assert result.exit_code == EXIT_USAGE, (case, result.output)
        assert "Traceback" not in result.output
    # A data error: a screen event (64 image tokens) longer than the samples.
    result = invoke(*pack[:-1], 32, "--output-dir", tmp_path / "short")
    assert result.exit_code == EXIT_DATA_ERROR, result.output
    assert "more than max_sequence_length=32" in result.output
    assert not (tmp_path / "short").exists()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging folder left behind


def test_pack_flags_reach_the_saved_configs(folders: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "qwen"
    result = invoke(
        "pack",
        folders["events"],
        "--tokenizer",
        folders["tokenizer"],
        "--max-sequence-length",
        256,
        "--output-dir",
        out,
        "--image-layout",
        "default",
        "--pointer-space",
        "frame",
        "--episode-aware",
        "--split",
        "test",
    )
    assert result.exit_code == EXIT_OK, result.output
    metadata = read_metadata(out)
    assert metadata.config["tokenizer"]["pointer_space"] == "frame"
    assert metadata.config["tokenizer"]["image_layout"]["token"] == "<IMAGE>"
    assert metadata.config["packing"]["episode_aware"] is True
    packing = json.loads((out / "packing.json").read_text())
    assert list(packing["splits"]) == ["test"] and packing["max_sequence_length"] == 256
    loaded = FSLDataset.load(out, load_images=False)
    assert list(loaded) == ["test"] and loaded["test"].episode_aware


def test_bench_pack_quick_runs(tmp_path: Path) -> None:
    from benchmarks.bench_pack import QUICK_COUNTS, QUICK_TOKENS, main

    results = main(["--quick", "--output", str(tmp_path)])  # checks exact counts and every sample against prepare()
    assert {key: results[f"{key}_{QUICK_TOKENS}"] for key in QUICK_COUNTS} == QUICK_COUNTS
    assert 0 < results[f"load_s_{QUICK_TOKENS}"] < 1.0


def test_an_empty_split_round_trips(folders: dict[str, Path], tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(folders["tokenizer"])
    episode_tokenizer = EpisodeTokenizer()
    episode_tokenizer.prepare_model(tokenizer=tokenizer)
    train = episode_tokenizer.tokenize_event_dataset(datasets.load_from_disk(str(folders["events"]))["train"])
    options = {"pad_token_id": 0, "max_sequence_length": LENGTH, "load_images": False}
    packed = {
        "train": FSLDataset(train, **options).prepare(),
        "test": FSLDataset(train.select([]), **options).prepare(),
    }
    save_packed_dataset(packed, tmp_path / "p", episode_tokenizer=episode_tokenizer)
    loaded = FSLDataset.load(tmp_path / "p", load_images=False)
    assert len(loaded["test"]) == 0 and list(loaded["test"]) == []
    assert_same_samples(loaded["train"], packed["train"])
