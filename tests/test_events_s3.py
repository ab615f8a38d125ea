"""Stage 1 on object storage: recordings read from, and the Event Dataset written to, s3:// URLs.

Against the real S3 server of the ``s3`` fixture (moto on a loopback port, tests/s3_server.py); nothing in the
client library is replaced. Each result is compared with a local run on the same files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import fsspec
import numpy as np
import pytest
from typer.testing import CliRunner

from owa.data import storage
from owa.data.cli import EXIT_DATA_ERROR, EXIT_OK, app
from owa.data.errors import InvalidInputError, StorageAccessError
from owa.data.events import REPORT_FILENAME, EventDatasetConfig, build_event_dataset, write_event_dataset
from owa.data.recordings.synthetic import SampleConfig, write_sample_corpus
from owa.data.transforms import create_event_dataset_transform
from s3_server import S3Server


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three short episodes with their videos, one in a subfolder."""
    root = tmp_path_factory.mktemp("s3-corpus")
    config = SampleConfig(seconds=2, codec="h264", width=96, height=64, seed=11)
    write_sample_corpus(root, 2, config)
    write_sample_corpus(root / "day2", 1, SampleConfig(seconds=2, codec="h264", width=96, height=64, seed=12))
    return root


def upload_tree(s3: S3Server, local: Path, prefix: str) -> str:
    fs, _ = storage.filesystem(s3.url(prefix), s3.storage_options)
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        fs.put_file(str(path), f"{s3.bucket}/{prefix}/{path.relative_to(local).as_posix()}")
    fs.invalidate_cache()
    return s3.url(prefix)


def rows(dataset: datasets.DatasetDict) -> dict[str, list[dict[str, Any]]]:
    return {split: dataset[split].to_list() for split in ("train", "test")}


def as_url(local_rows: dict[str, list[dict[str, Any]]], local: Path, url: str) -> dict[str, list[dict[str, Any]]]:
    """The local run's rows with each episode_path as the URL of the same file."""
    prefix = str(local)
    return {
        split: [{**row, "episode_path": url + row["episode_path"][len(prefix) :]} for row in split_rows]
        for split, split_rows in local_rows.items()
    }


def test_stage_1_from_s3_to_s3_equals_a_local_run(s3: S3Server, corpus: Path, tmp_path: Path) -> None:
    source = upload_tree(s3, corpus, "stage1/recordings")
    local = build_event_dataset(EventDatasetConfig(train_dir=corpus, output_dir=tmp_path / "local", test_percent=0.34))
    out = s3.url("stage1/events")
    options = ["--storage-options", json.dumps(s3.storage_options), "--num-workers", "2"]
    result = CliRunner().invoke(
        app,
        ["events", "--train-dir", source, "--output-dir", out, "--test_percent", "0.34", *options],
    )
    assert result.exit_code == EXIT_OK, result.output
    assert f"Saved event dataset to {out}" in result.output

    remote = datasets.load_from_disk(out, storage_options=s3.storage_options)
    expected = as_url(rows(local), corpus, source)
    assert rows(remote) == expected
    assert len(expected["train"]) > 50 and len(expected["test"]) > 10
    assert {r["episode_path"] for r in expected["test"]} == {f"{source}/day2/episode_0000.mcap"}
    for split in ("train", "test"):
        assert remote[split].features == local[split].features

    # The report: the same counts; media checked in the bucket (no problem); no credential saved.
    fs, root = storage.filesystem(out, s3.storage_options)
    saved = json.loads(fs.cat_file(f"{root}/{REPORT_FILENAME}"))
    local_report = local.report.to_json()
    for key in ("files", "events_read", "events_kept", "rows_per_split", "media_totals", "problems"):
        assert saved["report"][key] == local_report[key], key
    assert saved["report"]["media"] == []
    assert saved["config"]["storage_options"] == sorted(s3.storage_options)
    assert s3.storage_options["secret"] not in json.dumps(saved)


def test_frames_decode_from_the_s3_videos_as_from_local_ones(
    s3: S3Server, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = upload_tree(s3, corpus, "frames1/recordings")
    local = build_event_dataset(EventDatasetConfig(train_dir=corpus, test_percent=0))["train"]
    remote = build_event_dataset(
        EventDatasetConfig(train_dir=source, test_percent=0, storage_options=s3.storage_options)
    )["train"]
    screens = [i for i, topic in enumerate(local["topic"]) if topic == "screen"]
    assert len(screens) > 10 and remote["topic"] == local["topic"]
    # Frames are decoded with fsspec's default options (see docs/storage.md): point them at the server.
    monkeypatch.setitem(fsspec.config.conf, "s3", dict(s3.storage_options))
    local.set_transform(create_event_dataset_transform(load_images=True))
    remote.set_transform(create_event_dataset_transform(load_images=True))
    got, expected = remote[screens]["image"], local[screens]["image"]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(got, expected, strict=True))
    assert remote[screens[0]]["encoded_event"] == local[screens[0]]["encoded_event"]


def test_relative_to_a_url_prefix(s3: S3Server, corpus: Path) -> None:
    source = upload_tree(s3, corpus, "relative/recordings")
    config = EventDatasetConfig(
        train_dir=source, test_percent=0, relative_to=s3.url("relative"), storage_options=s3.storage_options
    )
    paths = set(build_event_dataset(config)["train"]["episode_path"])
    assert paths == {
        "recordings/episode_0000.mcap",
        "recordings/episode_0001.mcap",
        "recordings/day2/episode_0000.mcap",
    }
    elsewhere = EventDatasetConfig(
        train_dir=source, test_percent=0, relative_to=s3.url("other"), storage_options=s3.storage_options
    )
    with pytest.raises(InvalidInputError, match="not under it"):
        build_event_dataset(elsewhere)


def test_a_missing_video_object_is_listed(s3: S3Server, corpus: Path) -> None:
    fs, _ = storage.filesystem(s3.url("x"), s3.storage_options)
    source = upload_tree(s3, corpus, "lost/recordings")
    fs.rm_file(f"{s3.bucket}/lost/recordings/episode_0001.mkv")
    fs.invalidate_cache()
    dataset = build_event_dataset(
        EventDatasetConfig(train_dir=source, test_percent=0, storage_options=s3.storage_options)
    )
    report = dataset.report.to_json()
    assert report["media_totals"]["videos_missing"] == 1
    (entry,) = report["media"]
    assert entry["file"] == f"{source}/episode_0001.mcap"
    (problem,) = entry["problems"]
    assert (problem["kind"], problem["video"]) == ("missing", f"{source}/episode_0001.mkv")
    assert len(dataset["train"]) > 0  # the rows are kept; training would refuse those frames


def test_a_missing_recording_prefix_finds_nothing(s3: S3Server, tmp_path: Path) -> None:
    config = EventDatasetConfig(
        train_dir=s3.url("nothing/here"), output_dir=tmp_path / "o", storage_options=s3.storage_options
    )
    with pytest.raises(InvalidInputError, match=r"No \.mcap recordings found"):
        write_event_dataset(config)
    assert not (tmp_path / "o").exists()


def test_denied_credentials_are_one_clear_error(s3: S3Server, corpus: Path, tmp_path: Path) -> None:
    source = upload_tree(s3, corpus, "denied-stage1/recordings")
    config = EventDatasetConfig(train_dir=source, output_dir=tmp_path / "o", storage_options=s3.denied_options)
    with pytest.raises(StorageAccessError, match="Access denied by the object store") as error:
        write_event_dataset(config)
    assert error.value.path == source
    assert not (tmp_path / "o").exists()

    # Denied reading the recordings, or writing the output: one line each, and nothing left at the output.
    out = s3.url("denied-stage1/events")
    for args in (
        [
            "--train-dir",
            source,
            "--output-dir",
            str(tmp_path / "o2"),
            "--storage-options",
            json.dumps(s3.denied_options),
        ],
        ["--train-dir", str(corpus), "--output-dir", out, "--storage-options", json.dumps(s3.denied_options)],
    ):
        result = CliRunner().invoke(app, ["events", *args])
        assert result.exit_code == EXIT_DATA_ERROR, result.output
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
        assert len(errors) == 1 and errors[0].startswith("Error: Access denied by the object store"), result.stderr
        assert "Traceback" not in result.stderr
    fs, root = storage.filesystem(out, s3.storage_options)
    fs.invalidate_cache()
    assert fs.find(root) == []


def test_storage_options_from_flags(s3: S3Server, corpus: Path, tmp_path: Path) -> None:
    from owa.data.cli.events import parse_storage_options

    assert parse_storage_options(None, []) is None
    assert parse_storage_options('{"anon": false, "key": "a"}', ["key=b", 'client_kwargs={"region_name": "x"}']) == {
        "anon": False,
        "key": "b",
        "client_kwargs": {"region_name": "x"},
    }
    for bad_json, pairs in (("[1]", []), ("{", []), (None, ["novalue"])):
        with pytest.raises(ValueError, match="Invalid --storage-option"):
            parse_storage_options(bad_json, pairs)
    source = upload_tree(s3, corpus, "flags/recordings")
    options = s3.storage_options
    flags = [
        f"--storage-option=endpoint_url={options['endpoint_url']}",
        f"--storage-option=key={options['key']}",
        f"--storage-option=secret={options['secret']}",
        "--storage-option=client_kwargs=" + json.dumps(options["client_kwargs"]),
    ]
    result = CliRunner().invoke(
        app,
        ["events", "--train-dir", source, "--output-dir", str(tmp_path / "out"), "--no-check-media", *flags],
    )
    assert result.exit_code == EXIT_OK, result.output
    loaded = datasets.load_from_disk(str(tmp_path / "out"))
    assert {p.rsplit("/", 1)[0] for p in loaded["train"]["episode_path"]} <= {source, f"{source}/day2"}
