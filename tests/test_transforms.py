"""owa.data.transforms on hand-built Event and Binned Datasets made from the real recordings."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import av
import numpy as np
import orjson
import pytest
from datasets import Dataset, DatasetDict
from mcap.reader import make_reader
from PIL import Image

from owa.data import (
    DatasetError,
    EncodingError,
    McapMessage,
    ScreenCaptured,
    VideoNotFoundError,
    create_binned_dataset_transform,
    create_encoder,
    create_event_dataset_transform,
)
from owa.data.transforms import TransformStats, resolve_episode_path
from spec_schemas import BINNED_FEATURES, EVENT_FEATURES

SPEC = Path(__file__).resolve().parents[1].parent / "shared" / "spec" / "SEED-README.md"

TOPICS = ("screen", "keyboard", "mouse", "window")


def read_rows(path: Path, episode_path: str, topics: tuple[str, ...] = TOPICS) -> list[dict[str, Any]]:
    """Event Dataset rows of a 0.5.1-form recording (current message types), read with the bare mcap package."""
    rows = []
    with path.open("rb") as f:
        for schema, channel, message in make_reader(f).iter_messages(topics=list(topics)):
            mcap_message = McapMessage(
                topic=channel.topic, timestamp=message.log_time, message=message.data, message_type=schema.name
            )
            rows.append(
                {
                    "episode_path": episode_path,
                    "topic": channel.topic,
                    "timestamp_ns": message.log_time,
                    "message_type": schema.name,
                    "mcap_message": mcap_message.model_dump_json().encode(),
                }
            )
    return rows


def event_dataset(rows: list[dict[str, Any]]) -> Dataset:
    return Dataset.from_dict({k: [r[k] for r in rows] for k in EVENT_FEATURES}, features=EVENT_FEATURES)


def bin_rows(rows: list[dict[str, Any]], fps: int = 10) -> list[dict[str, Any]]:
    """Binned rows by hand: bin k = [first + k/fps, first + (k+1)/fps); state = last screen at or before its start."""
    step = 1_000_000_000 // fps
    first, last = rows[0]["timestamp_ns"], rows[-1]["timestamp_ns"]
    out = []
    for k in range((last - first) // step + 1):
        start = first + k * step
        screens = [r["mcap_message"] for r in rows if r["topic"] == "screen" and r["timestamp_ns"] <= start]
        actions = [
            r["mcap_message"]
            for r in rows
            if r["topic"] in ("keyboard", "mouse") and start <= r["timestamp_ns"] < start + step
        ]
        out.append(
            {
                "episode_path": rows[0]["episode_path"],
                "bin_idx": k,
                "timestamp_ns": start,
                "state": screens[-1:],
                "actions": actions,
            }
        )
    return out


def binned_dataset(rows: list[dict[str, Any]]) -> Dataset:
    return Dataset.from_dict({k: [r[k] for r in rows] for k in BINNED_FEATURES}, features=BINNED_FEATURES)


def reference_frames(video: Path) -> dict[int, np.ndarray]:
    """Every frame of a video by pts in ns, decoded straight with PyAV (an independent reference)."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        return {
            int(frame.pts * stream.time_base * 1_000_000_000): frame.to_ndarray(format="rgb24")
            for frame in container.decode(stream)
        }


@pytest.fixture(scope="module")
def rows_051(recordings_dir: Path) -> list[dict[str, Any]]:
    path = recordings_dir / "0.5.1.mcap"
    return [r for r in read_rows(path, str(path)) if r["topic"] != "window"]


@pytest.fixture(scope="module")
def frames_051(recordings_dir: Path) -> dict[int, np.ndarray]:
    return reference_frames(recordings_dir / "0.5.1.mkv")


def pts_of(mcap_message_json: bytes) -> int:
    return orjson.loads(orjson.loads(mcap_message_json)["message"])["media_ref"]["pts_ns"]


# ----------------------------------------------------------------------------------------- event dataset


def test_event_transform_encodes_every_row_and_loads_frames(
    rows_051: list[dict[str, Any]], frames_051: dict[int, np.ndarray]
) -> None:
    dataset = event_dataset(rows_051)
    transform = create_event_dataset_transform()
    dataset.set_transform(transform)
    out = dataset[:]
    assert set(out) == {"encoded_event", "image"}
    encoder = create_encoder("hierarchical")
    for row, text, image in zip(rows_051, out["encoded_event"], out["image"], strict=True):
        assert text == encoder.encode(McapMessage.model_validate_json(row["mcap_message"]))[0]
        if row["topic"] == "screen":
            assert isinstance(image, Image.Image) and image.mode == "RGB"
            assert np.array_equal(np.asarray(image), frames_051[pts_of(row["mcap_message"])])
        else:
            assert image is None
    n_screens = sum(r["topic"] == "screen" for r in rows_051)
    assert n_screens == 17
    assert transform.stats.as_dict() == {
        "rows": len(rows_051),
        "events_encoded": len(rows_051),
        "events_skipped": 0,
        "images_decoded": n_screens,
        "images_skipped": 0,
        **transform.encoder.stats.as_dict(),  # 0.5.1's pointer leaves a 1920x1080 screen: clamps counted
        "errors": {},
        "last_error": None,
    }
    assert transform.stats.coordinates_clamped > 0


def test_event_transform_single_row_slice_and_getitems_agree(rows_051: list[dict[str, Any]]) -> None:
    dataset = event_dataset(rows_051)
    dataset.set_transform(create_event_dataset_transform(load_images=False))
    indices = [0, 5, 2, 17, 40]
    batch = dataset.__getitems__(indices)
    sliced = dataset[:50]
    for position, index in enumerate(indices):
        single = dataset[index]
        assert single["encoded_event"] == batch[position]["encoded_event"] == sliced["encoded_event"][index]
        assert type(single["image"]) is type(batch[position]["image"])
    # Called directly on one row (not through datasets) it returns one row too.
    direct = create_event_dataset_transform(load_images=False)(dict(rows_051[3]))
    assert direct["encoded_event"] == dataset[3]["encoded_event"]


def test_event_transform_options(rows_051: list[dict[str, Any]], recordings_dir: Path) -> None:
    dataset = event_dataset(rows_051)
    dataset.set_transform(create_event_dataset_transform(load_images=False, encode_actions=False, keep_original=True))
    out = dataset[:]
    assert set(out) == {*EVENT_FEATURES, "encoded_event", "image"}
    for row, text, image, original in zip(
        rows_051, out["encoded_event"], out["image"], out["mcap_message"], strict=True
    ):
        assert original == row["mcap_message"]
        if row["topic"] == "screen":
            assert text.endswith("<IMAGE><EVENT_END>")
            assert isinstance(image, ScreenCaptured)  # the lazy reference, resolving beside the recording
            assert image.resolve_media().location == str(recordings_dir / "0.5.1.mkv")
        else:
            assert text is None and image is None  # actions really left unencoded

    encoder = create_encoder("json", image_token="<image>")
    dataset.set_transform(create_event_dataset_transform(encoder=encoder, load_images=False))
    first = dataset[0]
    assert (
        first["encoded_event"].startswith('<EVENT_START>{"type":"screen"')
        and '"image":"<image>"' in first["encoded_event"]
    )
    dataset.set_transform(create_event_dataset_transform(encoder_type="json", load_images=False))
    assert '"image":"<IMAGE>"' in dataset[0]["encoded_event"]


def test_event_transform_on_a_dataset_dict(rows_051: list[dict[str, Any]]) -> None:
    splits = DatasetDict(train=event_dataset(rows_051[:30]), test=event_dataset(rows_051[30:40]))
    transform = create_event_dataset_transform(load_images=False)
    splits.set_transform(transform)
    assert len(list(splits["train"].take(2))) == 2
    assert splits["test"][0]["encoded_event"].startswith("<EVENT_START><TIMESTAMP>")
    assert transform.stats.rows == 3


def test_relative_episode_paths(
    rows_051: list[dict[str, Any]], recordings_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    relative = [dict(r, episode_path="0.5.1.mcap") for r in rows_051[:3]]
    dataset = event_dataset(relative)
    dataset.set_transform(create_event_dataset_transform(episode_root=recordings_dir))
    assert isinstance(dataset[0]["image"], Image.Image)
    dataset.set_transform(create_event_dataset_transform(load_images=False))
    monkeypatch.chdir(recordings_dir)  # default root: the current directory, as os.getcwd() names it
    location = dataset[0]["image"].resolve_media().location
    assert location == os.path.join(os.getcwd(), "0.5.1.mkv")
    assert os.path.samefile(location, recordings_dir / "0.5.1.mkv")
    assert resolve_episode_path("/abs/ep.mcap", "/elsewhere") == "/abs/ep.mcap"
    assert resolve_episode_path("a/../b/ep.mcap", "/root") == "/root/b/ep.mcap"


def test_missing_video_raises_naming_row_episode_and_video(recordings_dir: Path) -> None:
    path = recordings_dir / "ztype-no-video.mcap"
    rows = read_rows(path, str(path), topics=("screen", "keyboard"))[:40]
    dataset = event_dataset(rows)
    dataset.set_transform(create_event_dataset_transform())
    first_screen = next(i for i, r in enumerate(rows) if r["topic"] == "screen")
    with pytest.raises(VideoNotFoundError) as info:
        dataset[:]
    error = info.value
    assert error.path == str(recordings_dir / "example.mkv")  # the video
    assert error.context["episode"] == str(path)  # the episode
    assert error.timestamp_ns == rows[first_screen]["timestamp_ns"]  # the row
    assert "example.mkv" in str(error) and "ztype-no-video.mcap" in str(error)


def test_missing_video_skip_is_counted(recordings_dir: Path) -> None:
    path = recordings_dir / "ztype-no-video.mcap"
    rows = read_rows(path, str(path), topics=("screen", "keyboard"))[:40]
    dataset = event_dataset(rows)
    transform = create_event_dataset_transform(on_error="skip")
    dataset.set_transform(transform)
    out = dataset[:]
    n_screens = sum(r["topic"] == "screen" for r in rows)
    assert n_screens > 0 and out["image"] == [None] * len(rows)
    assert all(text.startswith("<EVENT_START>") for text in out["encoded_event"])  # text is still there
    stats = transform.stats
    assert (stats.images_skipped, stats.images_decoded, stats.events_encoded) == (n_screens, 0, len(rows))
    assert stats.errors == {"VideoNotFoundError": n_screens}
    assert "example.mkv" in stats.last_error


def test_unsupported_topic_rows(recordings_dir: Path) -> None:
    path = recordings_dir / "0.5.1.mcap"
    rows = read_rows(path, str(path), topics=("window", "keyboard"))
    dataset = event_dataset(rows)
    dataset.set_transform(create_event_dataset_transform(load_images=False))
    window = next(i for i, r in enumerate(rows) if r["topic"] == "window")
    with pytest.raises(EncodingError) as info:
        dataset[window]
    assert info.value.topic == "window" and info.value.path == str(path)
    assert info.value.timestamp_ns == rows[window]["timestamp_ns"]
    transform = create_event_dataset_transform(load_images=False, on_error="skip")
    dataset.set_transform(transform)
    out = dataset[:]
    expected = [None if r["topic"] == "window" else "text" for r in rows]
    assert [None if t is None else "text" for t in out["encoded_event"]] == expected
    assert transform.stats.events_skipped == expected.count(None) == 4
    assert transform.stats.errors == {"EncodingError": 4}


def test_argument_and_schema_errors(rows_051: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="on_error"):
        create_event_dataset_transform(on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="encoder_type"):
        create_binned_dataset_transform(encoder_type="flat")
    transform = create_event_dataset_transform()
    with pytest.raises(DatasetError, match="mcap_message"):
        transform({"episode_path": ["x"], "msg": [b"{}"]})
    with pytest.raises(DatasetError, match="state"):
        create_binned_dataset_transform()({k: [v] for k, v in rows_051[0].items()})


# ---------------------------------------------------------------------------------------- binned dataset


def test_binned_transform_exact_outputs(rows_051: list[dict[str, Any]], frames_051: dict[int, np.ndarray]) -> None:
    bins = bin_rows(rows_051)
    dataset = binned_dataset(bins)
    transform = create_binned_dataset_transform()
    dataset.set_transform(transform)
    out = dataset[:]
    assert set(out) == {"instruction", "images", "encoded_events"}
    encoder = create_encoder("hierarchical")
    for row, instruction, images, texts in zip(
        bins, out["instruction"], out["images"], out["encoded_events"], strict=True
    ):
        assert instruction == "Complete the computer task"
        assert texts == [encoder.encode(McapMessage.model_validate_json(a))[0] for a in row["actions"]]
        assert len(images) == len(row["state"])
        for image, state in zip(images, row["state"], strict=True):
            assert np.array_equal(np.asarray(image), frames_051[pts_of(state)])
    assert sum(map(len, out["encoded_events"])) == sum(r["topic"] != "screen" for r in rows_051)
    assert transform.stats.images_decoded == sum(len(r["state"]) for r in bins)


def test_binned_transform_options(rows_051: list[dict[str, Any]]) -> None:
    bins = bin_rows(rows_051)
    dataset = binned_dataset(bins)
    dataset.set_transform(
        create_binned_dataset_transform(
            instruction="Type the word",
            encoder_type="json",
            load_images=False,
            encode_actions=False,
            keep_original=True,
        )
    )
    row = dataset[3]
    assert row["instruction"] == "Type the word" and row["encoded_events"] is None
    assert row["bin_idx"] == 3 and row["actions"] == bins[3]["actions"]
    assert [type(i) for i in row["images"]] == [ScreenCaptured] * len(bins[3]["state"])
    dataset.set_transform(create_binned_dataset_transform(encoder_type="json", load_images=False))
    texts = dataset[:]["encoded_events"]
    assert all(t.startswith('<EVENT_START>{"type":') for ts in texts for t in ts)


def test_binned_missing_video(recordings_dir: Path) -> None:
    path = recordings_dir / "ztype-no-video.mcap"
    bins = bin_rows(read_rows(path, str(path), topics=("screen", "keyboard", "mouse")))[:8]
    dataset = binned_dataset(bins)
    dataset.set_transform(create_binned_dataset_transform())
    with_state = next(i for i, b in enumerate(bins) if b["state"])
    with pytest.raises(VideoNotFoundError) as info:
        dataset.__getitems__([with_state])
    error = info.value
    assert error.path == str(recordings_dir / "example.mkv")
    assert error.context["episode"] == str(path) and error.context["bin_idx"] == bins[with_state]["bin_idx"]
    assert error.timestamp_ns == bins[with_state]["timestamp_ns"]

    transform = create_binned_dataset_transform(on_error="skip")
    dataset.set_transform(transform)
    out = dataset[:]
    assert out["images"] == [[None] * len(b["state"]) for b in bins]
    assert transform.stats.images_skipped == sum(len(b["state"]) for b in bins) > 0


def test_binned_bad_state_entries(rows_051: list[dict[str, Any]], frames_051: dict[int, np.ndarray]) -> None:
    bins = bin_rows(rows_051)[:6]
    screen = bins[5]["state"][0]
    keyboard = next(r["mcap_message"] for r in rows_051 if r["topic"] == "keyboard")
    bins[5] = dict(bins[5], state=[keyboard, screen, b"not json"])
    dataset = binned_dataset(bins)
    dataset.set_transform(create_binned_dataset_transform())
    with pytest.raises(DatasetError, match="message type 'desktop/KeyboardEvent'") as info:
        dataset[5]
    assert info.value.path == bins[5]["episode_path"] and info.value.context["bin_idx"] == 5
    assert info.value.timestamp_ns == bins[5]["timestamp_ns"]

    transform = create_binned_dataset_transform(on_error="skip")
    dataset.set_transform(transform)
    images = dataset[5]["images"]
    assert images[0] is None and images[2] is None  # in place, so positions still match the state
    assert np.array_equal(np.asarray(images[1]), frames_051[pts_of(screen)])
    assert transform.stats.images_skipped == 2 and transform.stats.images_decoded == 1
    assert transform.stats.errors == {"DatasetError": 2}


# ------------------------------------------------------------------------------- workers and pickling


def spec_collate_fn(examples: list[dict[str, Any]]) -> dict[str, list[Any]]:
    # The spec's "PyTorch Integration" collate function, verbatim.
    return {
        "images": [ex["images"] for ex in examples],
        "encoded_events": [ex["encoded_events"] for ex in examples],
        "instruction": [ex["instruction"] for ex in examples],
    }


def test_binned_transform_in_dataloader_workers(rows_051: list[dict[str, Any]]) -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    bins = bin_rows(rows_051)
    dataset = binned_dataset(bins)
    transform = create_binned_dataset_transform(instruction="Complete the computer task")
    dataset.set_transform(transform)
    expected = sorted(
        orjson.dumps(texts)
        for texts in binned_dataset(bins).with_transform(create_binned_dataset_transform(load_images=False))[:][
            "encoded_events"
        ]
    )
    loader = DataLoader(
        dataset,
        batch_size=8,
        shuffle=True,
        collate_fn=spec_collate_fn,
        num_workers=2,
        generator=torch.Generator().manual_seed(0),
    )
    seen, n_images = [], 0
    for batch in loader:
        assert batch["instruction"] == ["Complete the computer task"] * len(batch["images"])
        for images in batch["images"]:
            assert all(isinstance(image, Image.Image) for image in images)
            n_images += len(images)
        seen.extend(orjson.dumps(texts) for texts in batch["encoded_events"])
    assert sorted(seen) == expected
    # The workers counted into the parent's stats (shared memory).
    assert transform.stats.rows == len(bins)
    assert transform.stats.images_decoded == n_images == sum(len(b["state"]) for b in bins)


def test_stats_are_shared_with_spawned_workers(rows_051: list[dict[str, Any]]) -> None:
    """Spawn start (the DataLoader default on macOS/Windows) pickles the transform: counters stay shared."""
    import multiprocessing
    import operator

    transform = create_event_dataset_transform(load_images=False)
    batch = {k: [r[k] for r in rows_051[:7]] for k in EVENT_FEATURES}
    transform(batch)
    child = multiprocessing.get_context("spawn").Process(target=operator.call, args=(transform, batch))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0
    assert (transform.stats.rows, transform.stats.events_encoded) == (14, 14)


def test_transforms_pickle_without_open_handles(rows_051: list[dict[str, Any]]) -> None:
    transform = create_event_dataset_transform(on_error="skip")
    dataset = event_dataset(rows_051[:20])
    dataset.set_transform(transform)
    dataset[:]
    clone = pickle.loads(pickle.dumps(transform))
    assert clone.stats.as_dict() == transform.stats.as_dict()  # a snapshot outside of worker spawning
    dataset.set_transform(clone)
    dataset[:]
    assert clone.stats.rows == 40 and transform.stats.rows == 20
    assert pickle.loads(pickle.dumps(create_binned_dataset_transform())).instruction == "Complete the computer task"
    stats = TransformStats()
    stats._add(events_skipped=2, errors=[EncodingError("bad")])
    assert stats.as_dict()["errors"] == {"EncodingError": 1} and stats.last_error == "bad"
    stats.reset()
    assert stats.events_skipped == 0 and stats.last_error is None


# ------------------------------------------------------------------------------ the spec's snippets, run


@pytest.fixture(scope="module")
def saved_datasets(tmp_path_factory: pytest.TempPathFactory, rows_051: list[dict[str, Any]]) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("datasets")
    events, bins = rows_051, bin_rows(rows_051)
    DatasetDict(train=event_dataset(events[:60]), test=event_dataset(events[60:])).save_to_disk(root / "event")
    DatasetDict(train=binned_dataset(bins[:16]), test=binned_dataset(bins[16:])).save_to_disk(root / "bin")
    return str(root / "event"), str(root / "bin")


def spec_snippets() -> list[str]:
    text = SPEC.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    snippets = [b for b in blocks if "create_event_dataset_transform" in b or "create_binned_dataset_transform" in b]
    quick_start = re.findall(r'python -c "\n(.*?)\n"', text, flags=re.S)
    snippets += [s for s in quick_start if "create_event_dataset_transform" in s]
    return snippets


def test_spec_snippets_run_as_written(saved_datasets: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    event_dir, bin_dir = saved_datasets
    snippets = spec_snippets()
    assert len(snippets) == 4  # event transform, binned transform, PyTorch integration, Quick Start step 3
    for snippet in snippets:
        code = (
            snippet.replace("/mnt/raid12/datasets/owa/data/super-hexagon-event", event_dir)
            .replace("/mnt/raid12/datasets/owa/data/super-hexagon-bin", bin_dir)
            .replace("$EVENT_DATASET_DIR", event_dir)
        )
        namespace: dict[str, Any] = {"__name__": "spec_snippet"}
        exec(compile(code, str(SPEC), "exec"), namespace)  # the spec's own code, paths changed
        if "batch" in namespace:  # the PyTorch Integration snippet
            assert len(namespace["images"]) == len(namespace["actions"]) == len(namespace["instructions"]) == 16
            assert all(isinstance(i, Image.Image) for images in namespace["images"] for i in images)
            assert all(isinstance(t, str) for texts in namespace["actions"] for t in texts)
    printed = capsys.readouterr().out
    assert printed.count("sample=") == 2 + 5 + 5
    assert "'encoded_event': '<EVENT_START><TIMESTAMP>" in printed
    assert "'encoded_events': ['<EVENT_START><TIMESTAMP>" in printed
    assert "PIL.Image.Image image mode=RGB" in printed


def test_transforms_never_print(rows_051: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    dataset = event_dataset(rows_051[:10])
    dataset.set_transform(create_event_dataset_transform(on_error="skip"))
    dataset[:]
    assert capsys.readouterr() == ("", "")


def test_clamp_counts_from_dataloader_workers_reach_the_parent(recordings_dir: Path) -> None:
    """0.3.2 has mouse positions off a 1920x1080 screen; workers' clamp counts land in transform.stats."""
    pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from owa.data.recordings.reader import read_messages

    path = recordings_dir / "0.3.2.mcap"  # an old recorder: read through owa.data to get current types
    rows = [
        {
            "episode_path": str(path),
            "topic": m.topic,
            "timestamp_ns": m.timestamp_ns,
            "message_type": m.message_type,
            "mcap_message": m.to_mcap_message().model_dump_json().encode(),
        }
        for m in read_messages(path, "mouse")
    ]
    in_process = create_event_dataset_transform(load_images=False)
    event_dataset(rows).with_transform(in_process)[:]
    expected = in_process.encoder.stats.coordinates_clamped
    assert expected > 0 and in_process.stats.coordinates_clamped == expected

    transform = create_event_dataset_transform(load_images=False)
    dataset = event_dataset(rows)
    dataset.set_transform(transform)
    for _ in DataLoader(dataset, batch_size=16, num_workers=2, collate_fn=list):
        pass
    assert transform.encoder.stats.coordinates_clamped == 0  # the parent encoded nothing itself
    assert transform.stats.coordinates_clamped == expected
