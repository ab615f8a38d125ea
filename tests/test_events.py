"""Stage 1: recordings → Event Dataset."""

from __future__ import annotations

import collections
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from datasets import load_from_disk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcap.reader import make_reader

from owa.data.errors import DatasetError, OutputExistsError, RecordingError
from owa.data.events import (
    REPORT_FILENAME,
    EventDatasetConfig,
    RateLimiter,
    _convert_file,
    build_event_dataset,
    is_continuous_sample,
    parse_rates,
)
from owa.data.messages import KeyboardEvent, McapMessage, RawMouseEvent
from owa.data.recordings.synthetic import SampleConfig, write_sample_corpus
from owa.data.recordings.writer import OWAMcapWriter
from spec_schemas import EVENT_FEATURES

REPO = Path(__file__).resolve().parents[1]
UNLIMITED = {"mouse": 1e9, "screen": 1e9, "keyboard": 1e9}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six short synthetic episodes (no video: stage 1 never decodes frames), two of them in a subfolder."""
    root = tmp_path_factory.mktemp("corpus")
    write_sample_corpus(root, 4, SampleConfig(seconds=2, video=False, seed=7))
    write_sample_corpus(root / "nested" / "deeper", 2, SampleConfig(seconds=2, video=False, seed=8))
    return root


@pytest.fixture
def real_copy(recordings_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "real"
    root.mkdir()
    for name in ("0.3.2", "0.4.2", "0.5.1"):
        for suffix in (".mcap", ".mkv"):
            shutil.copy(recordings_dir / f"{name}{suffix}", root / f"{name}{suffix}")
    return root


def bare_topics(path: Path, topics: set[str]) -> list[tuple[str, int, bytes]]:
    with open(path, "rb") as f:
        return [(c.topic, m.log_time, m.data) for _, c, m in make_reader(f).iter_messages() if c.topic in topics]


def test_features_literal_matches_datasets() -> None:
    from owa.data.events import EVENT_FEATURES_DICT, event_features

    assert event_features() == EVENT_FEATURES
    assert EVENT_FEATURES.to_dict() == EVENT_FEATURES_DICT


def test_schema_is_exactly_the_spec(real_copy: Path, tmp_path: Path) -> None:
    dataset = build_event_dataset(EventDatasetConfig(train_dir=real_copy, output_dir=tmp_path / "out"))
    assert set(dataset) == {"train", "test"}
    for split in dataset.values():
        assert split.features == EVENT_FEATURES
    reloaded = load_from_disk(str(tmp_path / "out"))
    assert reloaded["train"][:] == dataset["train"][:]


def test_nothing_is_lost_above_recorded_rates(real_copy: Path) -> None:
    topics = ("screen", "keyboard", "mouse")
    dataset = build_event_dataset(
        EventDatasetConfig(train_dir=real_copy, rates_hz=UNLIMITED, keep_topics=topics, test_percent=0)
    )
    rows = dataset["train"]
    assert len(dataset["test"]) == 0
    for mcap in sorted(real_copy.glob("*.mcap")):
        expected = bare_topics(mcap, set(topics))
        got = [r for r in rows if r["episode_path"] == str(mcap)]
        assert collections.Counter((t, ts) for t, ts, _ in expected) == collections.Counter(
            (r["topic"], r["timestamp_ns"]) for r in got
        )
        assert got[-1]["timestamp_ns"] == max(ts for _, ts, _ in expected)  # the last message of the file


def test_rows_are_mcap_message_json_byte_for_byte(real_copy: Path) -> None:
    dataset = build_event_dataset(
        EventDatasetConfig(train_dir=real_copy, keep_topics=("screen", "keyboard", "mouse", "window"), test_percent=0)
    )
    for row in dataset["train"]:
        message = McapMessage.model_validate_json(row["mcap_message"])
        assert row["mcap_message"] == message.model_dump_json().encode()
        assert (message.topic, message.timestamp, message.message_type) == (
            row["topic"],
            row["timestamp_ns"],
            row["message_type"],
        )
    titles = [orjson.loads(McapMessage.model_validate_json(r["mcap_message"]).message) for r in dataset["train"]]
    assert any("메모장" in t.get("title", "") for t in titles)  # non-ASCII survives


def test_every_recorder_version_gets_current_types_and_media_ref(real_copy: Path) -> None:
    dataset = build_event_dataset(EventDatasetConfig(train_dir=real_copy, test_percent=0))
    screens = [r for r in dataset["train"] if r["topic"] == "screen"]
    assert {Path(r["episode_path"]).name for r in screens} == {"0.3.2.mcap", "0.4.2.mcap", "0.5.1.mcap"}
    for row in screens:
        assert row["message_type"] == "desktop/ScreenCaptured"
        payload = orjson.loads(McapMessage.model_validate_json(row["mcap_message"]).message)
        assert payload["media_ref"]["uri"].endswith(".mkv")


def test_rate_limit_thins_only_continuous_samples(corpus: Path) -> None:
    everything = build_event_dataset(EventDatasetConfig(train_dir=corpus, rates_hz=UNLIMITED, test_percent=0))
    thinned = build_event_dataset(
        EventDatasetConfig(train_dir=corpus, rates_hz={"mouse": 2, "screen": 1}, test_percent=0)
    )

    def kinds(rows) -> collections.Counter:
        counter: collections.Counter = collections.Counter()
        for row in rows:
            payload = orjson.loads(McapMessage.model_validate_json(row["mcap_message"]).message)
            counter[(row["topic"], payload.get("event_type"))] += 1
        return counter

    full, thin = kinds(everything["train"]), kinds(thinned["train"])
    for key in (("keyboard", "press"), ("keyboard", "release"), ("mouse", "click"), ("mouse", "scroll")):
        assert full[key] > 0 and thin[key] == full[key], key
    assert 0 < thin[("mouse", "move")] < full[("mouse", "move")]
    assert 0 < thin[("screen", None)] < full[("screen", None)]
    by_episode: dict[str, list[int]] = collections.defaultdict(list)
    for row in thinned["train"]:
        payload = orjson.loads(McapMessage.model_validate_json(row["mcap_message"]).message)
        if row["topic"] == "mouse" and payload["event_type"] == "move":
            by_episode[row["episode_path"]].append(row["timestamp_ns"])
    for times in by_episode.values():
        assert all(b - a >= 500_000_000 or b == a for a, b in itertools.pairwise(times))


def test_rate_rule_units() -> None:
    move, click = {"event_type": "move", "x": 1, "y": 2}, {"event_type": "click", "x": 1, "y": 2, "button": "left"}
    assert is_continuous_sample("desktop/MouseEvent", move)
    assert not is_continuous_sample("desktop/MouseEvent", click)
    assert not is_continuous_sample("desktop/KeyboardEvent", {"event_type": "press", "vk": 1})
    assert is_continuous_sample("desktop/RawMouseEvent", {"last_x": 1, "last_y": 0, "button_flags": 0})
    assert not is_continuous_sample("desktop/RawMouseEvent", {"last_x": 0, "last_y": 0, "button_flags": 1})
    limiter = RateLimiter({"mouse": 10})
    kept = [limiter.keep("mouse", t, "desktop/MouseEvent", move) for t in (0, 50_000_000, 100_000_000, 150_000_000)]
    assert kept == [True, False, True, False]
    assert limiter.keep("mouse", 160_000_000, "desktop/MouseEvent", click)  # clicks always pass
    assert not limiter.keep("mouse", 170_000_000, "desktop/MouseEvent", move)  # and do not reset the clock
    assert limiter.keep("mouse", 200_000_000, "desktop/MouseEvent", move)
    assert limiter.keep("mouse", 200_000_000, "desktop/MouseEvent", move)  # same instant as the last kept
    assert all(RateLimiter({"mouse": float("inf")}).keep("mouse", 5, "desktop/MouseEvent", move) for _ in range(3))


def test_identical_whatever_the_worker_count(corpus: Path) -> None:
    one = build_event_dataset(EventDatasetConfig(train_dir=corpus, num_workers=1, seed=3))
    two = build_event_dataset(EventDatasetConfig(train_dir=corpus, num_workers=2, seed=3))
    for split in ("train", "test"):
        assert one[split][:] == two[split][:]
        paths = one[split]["episode_path"]
        assert paths == sorted(paths)
        for path in set(paths):
            times = [r["timestamp_ns"] for r in one[split] if r["episode_path"] == path]
            assert times == sorted(times)


def test_recursive_discovery_and_seeded_split(corpus: Path) -> None:
    def split_of(seed: int) -> tuple[set[str], set[str]]:
        d = build_event_dataset(EventDatasetConfig(train_dir=corpus, test_percent=0.34, seed=seed))
        return set(d["train"]["episode_path"]), set(d["test"]["episode_path"])

    train, test = split_of(1)
    assert len(train) + len(test) == 6 and len(test) == 2 and not train & test
    assert any("nested/deeper" in p for p in train | test)
    assert split_of(1) == (train, test)
    assert any(split_of(seed) != (train, test) for seed in range(2, 8))


def test_test_dir_and_overlap(corpus: Path, tmp_path: Path) -> None:
    train, test = tmp_path / "train", tmp_path / "test"
    shutil.copytree(corpus, train, ignore=shutil.ignore_patterns("nested"))
    shutil.copytree(corpus / "nested", test)
    dataset = build_event_dataset(EventDatasetConfig(train_dir=train, test_dir=test))
    assert {Path(p).parent for p in dataset["test"]["episode_path"]} == {test / "deeper"}
    assert len(set(dataset["train"]["episode_path"])) == 4
    with pytest.raises(DatasetError, match="must not overlap"):
        build_event_dataset(EventDatasetConfig(train_dir=corpus, test_dir=corpus / "nested"))


def test_relative_paths(corpus: Path, tmp_path: Path) -> None:
    dataset = build_event_dataset(EventDatasetConfig(train_dir=corpus, relative_to=corpus, test_percent=0))
    paths = set(dataset["train"]["episode_path"])
    assert all(not Path(p).is_absolute() and (corpus / p).is_file() for p in paths)


def test_bad_recordings_are_listed_not_fatal(real_copy: Path, tmp_path: Path) -> None:
    (real_copy / "empty.mcap").write_bytes(b"")
    (real_copy / "junk.mcap").write_bytes(b"this is not mcap")
    data = (real_copy / "0.4.2.mcap").read_bytes()
    (real_copy / "truncated.mcap").write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "out"
    dataset = build_event_dataset(EventDatasetConfig(train_dir=real_copy, output_dir=out, test_percent=0))
    report = dataset.report
    problems = {Path(p["file"]).name: p for p in report.problems}
    assert problems["empty.mcap"]["action"] == "skipped" and problems["junk.mcap"]["action"] == "skipped"
    assert problems["truncated.mcap"]["action"] == "salvaged"
    assert problems["truncated.mcap"]["events_kept"] > 0
    assert "byte" in problems["truncated.mcap"]["reason"]
    assert report.files == 6 and report.files_skipped == 2 and report.files_salvaged == 1
    saved = json.loads((out / REPORT_FILENAME).read_text())
    assert {Path(p["file"]).name for p in saved["report"]["problems"]} == set(problems)
    kept = [r for r in dataset["train"] if r["episode_path"].endswith("truncated.mcap")]
    assert len(kept) == problems["truncated.mcap"]["events_kept"]
    summary = report.format_table()
    assert "truncated.mcap" in summary and "skipped" in summary


def test_strict_fails_and_leaves_nothing(real_copy: Path, tmp_path: Path) -> None:
    (real_copy / "zzz-junk.mcap").write_bytes(b"this is not mcap")
    out = tmp_path / "out"
    with pytest.raises(RecordingError, match="zzz-junk"):
        build_event_dataset(EventDatasetConfig(train_dir=real_copy, output_dir=out, strict=True, num_workers=1))
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [real_copy]  # no temporary folder left behind


def test_existing_output_is_refused_unless_overwrite(real_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        build_event_dataset(EventDatasetConfig(train_dir=real_copy, output_dir=out))
    assert (out / "keep.txt").read_text() == "mine"
    build_event_dataset(EventDatasetConfig(train_dir=real_copy, output_dir=out, overwrite=True))
    assert not (out / "keep.txt").exists() and (out / "dataset_dict.json").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rates_hz": {"mouse": 0}}, "Invalid rate"),
        ({"test_percent": 1.5}, "Invalid test_percent"),
        ({"keep_topics": ()}, "Invalid keep_topics"),
        ({"num_workers": -1}, "Invalid num_workers"),
    ],
)
def test_invalid_config(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EventDatasetConfig(train_dir=Path("."), **kwargs)


def test_parse_rates() -> None:
    assert parse_rates(["mouse=30", "mouse/raw=100"]) == {"mouse": 30.0, "screen": 20.0, "mouse/raw": 100.0}
    assert parse_rates(["screen=inf"])["screen"] == float("inf")
    for bad in ("mouse", "=3", "mouse=x", "mouse=-1", "mouse=nan"):
        with pytest.raises(ValueError, match="Invalid --rate"):
            parse_rates([bad])


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    script = REPO / "scripts" / "01_raw_events_to_event_dataset.py"
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120)


def test_script_with_the_spec_flags(real_copy: Path, tmp_path: Path) -> None:
    test_dir = tmp_path / "test-recordings"
    test_dir.mkdir()
    shutil.move(real_copy / "0.5.1.mcap", test_dir / "0.5.1.mcap")
    out = tmp_path / "events"
    result = run_script(
        "--train-dir", str(real_copy), "--test-dir", str(test_dir), "--output-dir", str(out),
        "--rate", "screen=20", "--rate", "mouse=60", "--keep_topic", "screen", "--keep_topic", "keyboard",
        "--num-workers", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "dropped by rate" in result.stdout
    dataset = load_from_disk(str(out))
    assert set(dataset["train"]["topic"]) == {"screen", "keyboard"}
    assert {Path(p).name for p in dataset["test"]["episode_path"]} == {"0.5.1.mcap"}


@pytest.mark.parametrize(
    "args",
    [
        ["--rate", "mouse=fast"],
        ["--test_percent", "2"],
        ["--num-workers", "many"],
    ],
)
def test_script_bad_flags_one_line_error(real_copy: Path, tmp_path: Path, args: list[str]) -> None:
    result = run_script("--train-dir", str(real_copy), "--output-dir", str(tmp_path / "o"), *args)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_benchmark_quick_mode_runs() -> None:
    from benchmarks import bench_events

    figures = bench_events.main(["--quick"])
    assert figures["messages"] > 0 and figures["ours_seconds"] > 0 and figures["ratio"] > 0
    # The timed script really built the dataset: all 6 episodes, every keyboard event, no more than was kept.
    assert figures["ours_episodes"] == figures["episodes"] == 6
    assert 0 < figures["keyboard_messages"] <= figures["ours_rows"] <= figures["kept_topic_messages"]
    assert figures["kept_topic_messages"] < figures["messages"]  # the corpus also has window and state topics


def test_interrupt_leaves_no_partial_output(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"

    def interrupt(result) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_event_dataset(EventDatasetConfig(train_dir=corpus, output_dir=out, num_workers=2), on_file=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_write_event_dataset_returns_the_report_only(real_copy: Path, tmp_path: Path) -> None:
    from owa.data.events import write_event_dataset

    report = write_event_dataset(EventDatasetConfig(train_dir=real_copy, output_dir=tmp_path / "out"))
    assert report.files == 3 and sum(report.rows_per_split.values()) == sum(report.events_kept.values())
    saved = load_from_disk(str(tmp_path / "out"))
    assert sum(len(split) for split in saved.values()) == sum(report.events_kept.values())
    with pytest.raises(ValueError, match="output_dir"):
        write_event_dataset(EventDatasetConfig(train_dir=real_copy))


def _recording_with(path: Path, bad_topic: str, bad_type: str, bad_payload: bytes) -> Path:
    """A keyboard press, a good message and a bad one on ``bad_topic``, written with the real mcap writer."""
    from mcap_helpers import write_mcap

    t0 = 1_700_000_000_000_000_000
    return write_mcap(
        path,
        [
            ("keyboard", "desktop/KeyboardEvent", t0, b'{"event_type":"press","vk":65}'),
            ("mouse", "desktop/MouseEvent", t0 + 10**8, b'{"event_type":"move","x":1,"y":2}'),
            (bad_topic, bad_type, t0 + 2 * 10**8, bad_payload),
        ],
    )


@pytest.mark.parametrize(
    ("bad_topic", "bad_type", "bad_payload"),
    [
        ("mouse", "desktop/MouseEvent", b'{"event_type":"move", garbage'),
        ("keyboard", "desktop/KeyboardEvent", b'\xff\xfe{"event_type":"press","vk":1}'),
        ("mouse", "desktop/MouseEvent", b'["move"]'),
        ("keyboard", "desktop/KeyboardEvent", b"{not json"),
    ],
)
def test_bad_payloads_are_counted_or_fatal_when_strict(
    tmp_path: Path, bad_topic: str, bad_type: str, bad_payload: bytes
) -> None:
    from owa.data.errors import MessageValidationError

    folder = tmp_path / "recs"
    folder.mkdir()
    path = _recording_with(folder / "bad.mcap", bad_topic, bad_type, bad_payload)
    dataset = build_event_dataset(EventDatasetConfig(train_dir=folder, test_percent=0))
    assert len(dataset["train"]) == 2
    (problem,) = dataset.report.problems
    assert problem["action"] == "salvaged" and "1 bad message" in problem["reason"]
    with pytest.raises(MessageValidationError) as info:
        build_event_dataset(EventDatasetConfig(train_dir=folder, test_percent=0, strict=True))
    assert (info.value.path, info.value.topic) == (str(path), bad_topic)


def test_split_keeps_both_sides_non_empty(corpus: Path) -> None:
    dataset = build_event_dataset(EventDatasetConfig(train_dir=corpus, test_percent=0.95))
    assert len(set(dataset["train"]["episode_path"])) == 1
    assert len(set(dataset["test"]["episode_path"])) == 5


def test_empty_topic_is_rejected() -> None:
    with pytest.raises(ValueError, match="Invalid keep_topics"):
        EventDatasetConfig(train_dir=Path("."), keep_topics=("screen", ""))


def test_relative_paths_survive_moving_dataset_and_recordings_together(real_copy: Path, tmp_path: Path) -> None:
    from owa.data.transforms import create_event_dataset_transform

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    recordings = real_copy.rename(bundle / "recordings")
    build_event_dataset(
        EventDatasetConfig(train_dir=recordings, output_dir=bundle / "events", relative_to=bundle, test_percent=0)
    )
    moved = (tmp_path / "elsewhere").resolve()
    bundle.rename(moved)
    dataset = load_from_disk(str(moved / "events"))["train"]
    assert all(p.startswith("recordings/") for p in dataset["episode_path"])
    dataset.set_transform(create_event_dataset_transform(episode_root=moved))
    images = [row["image"] for row in dataset.select(range(40)) if row["image"] is not None]
    assert images and all(image.size[0] > 0 for image in images)


# -- thinning raw mouse motion keeps the motion ------------------------------------------------------

_RAW_SAMPLES = st.lists(
    st.tuples(
        st.integers(0, 40),  # time step in ms (0: a tie with the previous sample)
        st.integers(-50, 50),  # last_x
        st.integers(-50, 50),  # last_y
        st.sampled_from([0, 0, 0, 0, 0x0001, 0x0002, 0x0400]),  # button_flags: none, left down/up, wheel
        st.sampled_from([0, 0, 0, 120, -120]),  # button_data (wheel delta)
    ),
    min_size=1,
    max_size=60,
)


def _write_raw_episode(path: Path, samples: list[tuple[int, int, int, int, int]]) -> list[tuple[int, RawMouseEvent]]:
    written = []
    t = 1_700_000_000_000_000_000
    with OWAMcapWriter(path, chunk_size=256) as writer:
        for step_ms, dx, dy, button_flags, button_data in samples:
            t += step_ms * 1_000_000
            event = RawMouseEvent(last_x=dx, last_y=dy, button_flags=button_flags, button_data=button_data)
            writer.write_message("mouse/raw", event, timestamp_ns=t)
            writer.write_message("keyboard", KeyboardEvent(event_type="press", vk=65), timestamp_ns=t)
            written.append((t, event))
    return written


def _kept_raw(table) -> list[tuple[int, dict]]:
    rows = [r for r in table.to_pylist() if r["topic"] == "mouse/raw"]
    return [(r["timestamp_ns"], orjson.loads(McapMessage.model_validate_json(r["mcap_message"]).message)) for r in rows]


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(samples=_RAW_SAMPLES, rate_hz=st.sampled_from([1.0, 7.5, 30.0, 60.0, 250.0, 1e6]))
def test_thinned_raw_mouse_motion_sums_to_the_recording(
    tmp_path: Path, samples: list[tuple[int, int, int, int, int]], rate_hz: float
) -> None:
    path = tmp_path / "raw.mcap"
    written = _write_raw_episode(path, samples)
    config = EventDatasetConfig(
        train_dir=tmp_path, rates_hz={"mouse/raw": rate_hz}, keep_topics=("mouse/raw", "keyboard"), test_percent=0
    )
    result = _convert_file((str(path), str(path), "train", config))
    table = result.table
    kept = _kept_raw(table)
    # The naive sums over the recording equal the sums over the kept samples, exactly.
    assert sum(p["last_x"] for _, p in kept) == sum(e.last_x for _, e in written)
    assert sum(p["last_y"] for _, p in kept) == sum(e.last_y for _, e in written)
    # Every sample with button or wheel data survives with its flags and data untouched.
    flagged = collections.Counter(
        (t, e.button_flags, e.button_data) for t, e in written if e.button_flags or e.button_data
    )
    assert flagged <= collections.Counter((t, p["button_flags"], p["button_data"]) for t, p in kept)
    # Rows stay in time order, keyboard events are all kept, and nothing is invented.
    times = table.column("timestamp_ns").to_pylist()
    assert times == sorted(times)
    assert result.events_kept["keyboard"] == len(written)
    assert len(kept) == result.events_kept["mouse/raw"] <= len(written)
    assert {t for t, _ in kept} <= {t for t, _ in written}


def test_raw_mouse_rate_keeps_the_path_end_to_end(tmp_path: Path) -> None:
    # 1 kHz relative motion for 0.5 s with one click in the middle; --rate mouse/raw=60 thins it.
    samples = [(1, (i % 7) - 3, (i % 5) - 1, 0x0001 if i == 250 else 0, 0) for i in range(500)]
    written = _write_raw_episode(tmp_path / "episode.mcap", samples)
    dataset = build_event_dataset(
        EventDatasetConfig(
            train_dir=tmp_path, rates_hz=parse_rates(["mouse/raw=60"]), keep_topics=("mouse/raw",), test_percent=0
        )
    )
    train = dataset["train"]
    kept = _kept_raw(train.data.table)
    assert 30 <= len(kept) < 60
    assert sum(p["last_x"] for _, p in kept) == sum(e.last_x for _, e in written)
    assert sum(p["last_y"] for _, p in kept) == sum(e.last_y for _, e in written)
    assert [p["button_flags"] for _, p in kept].count(1) == 1
    assert kept[-1][0] == written[-1][0]  # motion thinned after the last kept sample comes back as the last one


def test_recording_cut_at_a_chunk_boundary_is_listed_as_salvaged(tmp_path: Path) -> None:
    # A crashed recorder can stop between two chunks: no DataEnd, no summary, every record whole.
    root = tmp_path / "recordings"
    root.mkdir()
    path = root / "crashed.mcap"
    with OWAMcapWriter(path, chunk_size=512) as writer:
        for i in range(300):
            writer.write_message("keyboard", KeyboardEvent(event_type="press", vk=65), timestamp_ns=10**9 + i)
    with open(path, "rb") as f:
        chunks = sorted(make_reader(f).get_summary().chunk_indexes, key=lambda c: c.chunk_start_offset)
    boundary = chunks[3].chunk_start_offset + chunks[3].chunk_length
    path.write_bytes(path.read_bytes()[:boundary])

    dataset = build_event_dataset(EventDatasetConfig(train_dir=root, test_percent=0))
    (problem,) = dataset.report.problems
    assert problem["action"] == "salvaged" and f"byte {boundary}" in problem["reason"]
    assert 0 < problem["events_kept"] == len(dataset["train"]) < 300
    assert dataset.report.files_salvaged == 1
    with pytest.raises(RecordingError, match=r"crashed\.mcap"):
        build_event_dataset(EventDatasetConfig(train_dir=root, test_percent=0, strict=True, num_workers=1))
