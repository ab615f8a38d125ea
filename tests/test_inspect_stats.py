"""``owa-data stats``: every number equals a count made here independently (plain ``mcap``/``datasets`` + ``json``)."""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
from typer.testing import CliRunner

from inspect_data import expected_counts, write_episodes
from owa.data.cli import EXIT_OK, EXIT_USAGE, app
from owa.data.encoders.vk_names import vk_label
from owa.data.events import EventDatasetConfig, write_event_dataset
from owa.data.inspect import collect_stats, detect_kind
from owa.data.inspect.event_stats import TOP_KEYS

MAIN = "from owa.data.cli import main; main()"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("inspect-stats")
    recordings = root / "recordings"
    episodes = write_episodes(recordings, 3)
    (recordings / "empty.mcap").write_bytes(b"")  # a file stage 1 skips and reports
    events = root / "events"
    write_event_dataset(EventDatasetConfig(train_dir=recordings, output_dir=events, test_percent=0.34, num_workers=1))
    return {"root": root, "recordings": recordings, "episodes": episodes, "events": events}


def _top_keys(keys: collections.Counter[int]) -> list[dict[str, Any]]:
    ranked = sorted(keys.items(), key=lambda item: (-item[1], item[0]))[:TOP_KEYS]
    return [{"vk": vk, "name": vk_label(vk), "presses": n} for vk, n in ranked]


def test_recordings_folder_counts(corpus: dict[str, Any]) -> None:
    paths = [e.mcap_path for e in corpus["episodes"]]
    expected = expected_counts(paths)
    stats = collect_stats(corpus["recordings"])
    assert stats["kind"] == "recordings"
    assert stats["episodes"] == 3
    assert stats["events_per_topic"] == dict(sorted(expected["topics"].items()))
    assert stats["duration_s"] == pytest.approx(expected["duration_s"], abs=1e-3)
    rate = expected["topics"]["mouse"] / expected["duration_s"]
    assert stats["events_per_second"]["mouse"] == pytest.approx(rate, rel=1e-3)
    assert stats["keys_top"] == _top_keys(expected["keys"])
    assert stats["key_presses"] == sum(expected["keys"].values())
    assert (stats["clicks"], stats["click_events"], stats["scrolls"]) == (
        expected["clicks"],
        expected["click_events"],
        expected["scrolls"],
    )
    assert stats["screen_resolutions"] == {"160x120": expected["topics"]["screen"]}
    assert stats["source_resolutions"] == {"1920x1080": expected["topics"]["screen"]}
    # The empty file cannot be opened as MCAP: skipped and listed.
    assert stats["recorded"]["files_skipped"] == 1
    assert [p["file"] for p in stats["problems"]] == [str(corpus["recordings"] / "empty.mcap")]


def test_video_codec_fps_and_keyframe_interval(corpus: dict[str, Any]) -> None:
    stats = collect_stats(corpus["recordings"], max_videos=2)
    videos = stats["video"]["videos"]
    assert stats["video"]["codecs"] == {"h264": 2} and len(videos) == 2
    for video, episode in zip(videos, corpus["episodes"], strict=False):
        assert video["location"] == str(episode.video_path)
        frames = np.array(episode.frame_pts_ns)
        keys = np.array(episode.keyframe_pts_ns)
        assert (video["width"], video["height"], video["frames"]) == (160, 120, len(frames))
        assert video["fps"] == pytest.approx((len(frames) - 1) / ((frames[-1] - frames[0]) / 1e9), abs=1e-3)
        assert video["keyframes"] == len(keys)
        assert video["keyframe_interval_s"] == pytest.approx(np.median(np.diff(keys)) / 1e9, abs=1e-3)


def test_event_dataset_counts_and_report(corpus: dict[str, Any]) -> None:
    loaded = datasets.load_from_disk(str(corpus["events"]))
    topics: collections.Counter[str] = collections.Counter()
    keys: collections.Counter[int] = collections.Counter()
    clicks = scrolls = 0
    spans: dict[str, list[int]] = {}
    for split in loaded.values():
        for row in split:
            topics[row["topic"]] += 1
            span = spans.setdefault(row["episode_path"], [row["timestamp_ns"], row["timestamp_ns"]])
            span[0], span[1] = min(span[0], row["timestamp_ns"]), max(span[1], row["timestamp_ns"])
            payload = json.loads(json.loads(row["mcap_message"])["message"])
            if row["topic"] == "keyboard" and payload["event_type"] == "press":
                keys[payload["vk"]] += 1
            if row["topic"] == "mouse":
                clicks += payload["event_type"] == "click" and payload["pressed"] is True
                scrolls += payload["event_type"] == "scroll"
    stats = collect_stats(corpus["events"])
    assert stats["kind"] == "event"
    assert stats["rows_per_split"] == {name: len(split) for name, split in loaded.items()}
    assert stats["episodes"] == len(spans) == 3
    assert stats["duration_s"] == pytest.approx(sum(b - a for a, b in spans.values()) / 1e9, abs=1e-3)
    assert stats["events_per_topic"] == dict(sorted(topics.items()))
    assert stats["keys_top"] == _top_keys(keys)
    assert (stats["clicks"], stats["scrolls"]) == (clicks, scrolls)
    assert stats["screen_resolutions"] == {"160x120": topics["screen"]}
    report = json.loads((corpus["events"] / "conversion_report.json").read_text())["report"]
    assert stats["recorded"]["files_skipped"] == report["files_skipped"] == 1
    assert stats["recorded"]["dropped_by_rate"] == report["dropped_by_rate"]
    assert stats["problems"] == report["problems"] and stats["problems"][0]["action"] == "skipped"
    assert stats["video"]["codecs"] == {"h264": min(3, stats["video"]["max_videos"])}


def test_binned_dataset(corpus: dict[str, Any], tmp_path: Path) -> None:
    from owa.data.binning import BinningConfig, build_binned_dataset

    binned_dir = tmp_path / "binned"
    binned = build_binned_dataset(corpus["events"], BinningConfig(fps=10), output_dir=binned_dir)
    events = collect_stats(corpus["events"])
    stats = collect_stats(binned_dir)
    assert stats["kind"] == "binned"
    assert stats["rows_per_split"] == {name: len(split) for name, split in binned.items()}
    for topic in ("keyboard", "mouse"):  # every action lands in one bin
        assert stats["events_per_topic"][topic] == events["events_per_topic"][topic]
    assert (stats["keys_top"], stats["clicks"], stats["scrolls"]) == (
        events["keys_top"],
        events["clicks"],
        events["scrolls"],
    )
    states = [len(row["state"]) for split in binned.values() for row in split]
    distinct_states = {
        (row["episode_path"], bytes(s)) for split in binned.values() for row in split for s in row["state"]
    }
    assert stats["images_per_sample"] == pytest.approx(sum(states) / len(states), abs=1e-3)
    assert stats["events_per_topic"]["screen"] == len(distinct_states)
    assert stats["binning"]["fps"] == 10.0


def test_tokenized_and_packed(corpus: dict[str, Any], tmp_path: Path) -> None:
    from owa.data.episode_tokenizer import EpisodeTokenizer
    from owa.data.fsl_dataset import FSLDataset
    from owa.data.testing import tiny_bpe_tokenizer

    tokenizer = tiny_bpe_tokenizer()
    episode_tokenizer = EpisodeTokenizer(image_token="<image>", image_token_length=4)
    episode_tokenizer.prepare_model(tokenizer=tokenizer)
    events = datasets.load_from_disk(str(corpus["events"]))
    tokenized = episode_tokenizer.tokenize_event_dataset(events["train"], num_proc=1)
    folder = tmp_path / "tokenized"
    tokenized.save_to_disk(str(folder))

    per_type: dict[str, list[int]] = collections.defaultdict(list)
    for row in tokenized:
        kind = "screen" if row["images"] else "keyboard" if "<KEYBOARD>" in row["text"] else "mouse"
        per_type[kind].append(row["total_token_count"])
    stats = collect_stats(folder)
    assert stats["kind"] == "tokenized" and stats["packing"] is None
    assert stats["tokens_per_event"] == {
        kind: {"events": len(v), "tokens": sum(v), "mean": round(sum(v) / len(v), 3)}
        for kind, v in sorted(per_type.items())
    }
    assert stats["images_per_sample"] == pytest.approx(len(per_type["screen"]) / len(tokenized), abs=1e-3)

    fsl = FSLDataset(tokenized, pad_token_id=0, max_sequence_length=256, load_images=False).prepare()
    masks = sum(int(np.sum(fsl[i]["attention_mask"])) for i in range(len(fsl)))
    packed = collect_stats(folder, max_sequence_length=256)["packing"]
    assert packed["samples"] == len(fsl)
    assert packed["real_tokens"] == masks == sum(sum(v) for v in per_type.values())
    assert packed["efficiency"] == pytest.approx(masks / (len(fsl) * 256), abs=1e-4)

    (folder / "packing.json").write_text(json.dumps({"max_sequence_length": 256}))
    assert collect_stats(folder)["kind"] == "packed"
    assert collect_stats(folder)["packing"]["samples"] == len(fsl)


def test_cli_json_is_the_only_stdout(corpus: dict[str, Any]) -> None:
    run = subprocess.run(
        [sys.executable, "-c", MAIN, "stats", str(corpus["events"]), "--json"], capture_output=True, text=True
    )
    assert run.returncode == EXIT_OK, run.stderr
    document = json.loads(run.stdout)  # one document, nothing else
    assert document["kind"] == "event"
    assert isinstance(document["events_per_topic"], dict) and document["events_per_topic"]["keyboard"] > 0


def test_cli_table_shows_the_counts(corpus: dict[str, Any]) -> None:
    result = CliRunner().invoke(app, ["stats", str(corpus["recordings"])])
    assert result.exit_code == EXIT_OK, result.output
    expected = expected_counts([e.mcap_path for e in corpus["episodes"]])
    assert f"{expected['topics']['mouse']:,}" in result.output
    for shown in ("Keys pressed", "h264", "160x120", "Problems (1)", "Not an MCAP file"):
        assert shown in result.output


def test_cli_usage_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["stats", str(tmp_path / "nope")])
    assert missing.exit_code == EXIT_USAGE and "does not exist" in missing.output
    (tmp_path / "notes.txt").write_text("hi")
    assert runner.invoke(app, ["stats", str(tmp_path)]).exit_code == EXIT_USAGE
    assert runner.invoke(app, ["stats", str(tmp_path), "--max-sequence-length", "0"]).exit_code == EXIT_USAGE


def test_detect_kind(corpus: dict[str, Any], tmp_path: Path) -> None:
    assert detect_kind(corpus["recordings"]) == "recordings"
    assert detect_kind(corpus["episodes"][0].mcap_path) == "recordings"
    assert detect_kind(corpus["events"]) is None  # a saved dataset: read it, then detect_dataset_kind
    copy = tmp_path / "copy"
    shutil.copytree(corpus["events"] / "train", copy)  # a single split folder is a Dataset
    assert collect_stats(copy)["kind"] == "event"


def test_real_recordings(recordings_dir: Path) -> None:
    stats = collect_stats(recordings_dir)
    assert stats["episodes"] == 4
    assert stats["events_per_topic"]["screen"] == 49 + 33 + 17 + 590
    assert stats["video"]["codecs"] == {"hevc": 3}
    assert [u["episode"] for u in stats["video"]["unreadable"]] == [str(recordings_dir / "ztype-no-video.mcap")]


def test_benchmark_quick_mode_counts() -> None:
    from benchmarks import bench_stats

    figures = bench_stats.main(["--quick"])
    assert figures["episodes"] == 6
    assert figures["rows"] == sum(figures["events_per_topic"].values())
    assert figures["events_per_topic"]["keyboard"] == figures["corpus_keyboard_messages"]  # never thinned
