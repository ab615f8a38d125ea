"""Interval selection (owa.data.intervals) and what it means downstream: stage 1, bins, episode tokens, packing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owa.data.binning import BinningConfig, build_binned_dataset
from owa.data.episode_tokenizer import EpisodeTokenizer
from owa.data.errors import DatasetError, InvalidInputError
from owa.data.events import REPORT_FILENAME, EventDatasetConfig, _convert_file, build_event_dataset
from owa.data.fsl_dataset import FSLDataset
from owa.data.intervals import All, Hotkey, Inactivity, SpanFile, Spans, Timeline, parse_hotkey, parse_interval
from owa.data.messages import KeyboardEvent, MouseEvent, ScreenCaptured, dump_mcap_message_json
from owa.data.recordings.writer import OWAMcapWriter
from owa.data.schema import event_features
from owa.data.testing import tiny_bpe_tokenizer
from spec_schemas import BINNED_FEATURES, EVENT_FEATURES

REPO = Path(__file__).resolve().parents[1]
S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * S
UNLIMITED = {"mouse": float("inf"), "screen": float("inf")}


def timeline(
    screen_s: list[float] = (),
    input_s: list[float] = (),
    keys: list[tuple[float, int, bool]] = (),
    path: str = "/data/rec.mcap",
) -> Timeline:
    """A timeline from seconds (as ns after 0); keys are (seconds, vk, is_press) and count as inputs too."""

    def ns(values) -> np.ndarray:
        return np.array([round(v * S) for v in values], dtype=np.int64)

    key_s = [t for t, _, _ in keys]
    everything = [*screen_s, *input_s, *key_s]
    return Timeline(
        path=path,
        start_ns=min(ns(everything)),
        end_ns=max(ns(everything)),
        screen_ns=np.sort(ns(screen_s)),
        input_ns=np.sort(ns([*input_s, *key_s])),
        key_ns=ns(key_s),
        key_vk=np.array([vk for _, vk, _ in keys], dtype=np.int64),
        key_press=np.array([p for _, _, p in keys], dtype=bool),
    )


def seconds(spans: Spans) -> list[tuple[float, float]]:
    return [(s / S, e / S) for s, e in spans]


# --------------------------------------------------------------------------------------------------
# Spans: set algebra on closed integer spans
# --------------------------------------------------------------------------------------------------


def test_spans_merge_overlapping_and_touching_integers() -> None:
    assert Spans([(5, 9), (0, 3), (4, 4), (20, 30), (25, 26)]).pairs == ((0, 9), (20, 30))
    assert Spans([(0, 3), (5, 9)]).pairs == ((0, 3), (5, 9))  # 4 is not held: two spans
    with pytest.raises(ValueError, match="start is after its end"):
        Spans([(3, 2)])


def test_spans_and_or_sub_are_closed_set_operations() -> None:
    a, b = Spans([(0, 10), (20, 30)]), Spans([(10, 20), (25, 25)])
    assert (a & b).pairs == ((10, 10), (20, 20), (25, 25))  # closed ends meet in single instants
    assert (a | b).pairs == ((0, 30),)
    assert (a - b).pairs == ((0, 9), (21, 24), (26, 30))  # B's edges are removed: the rest starts one ns after
    assert (b - a).pairs == ((11, 19),)
    assert (a - Spans()).pairs == a.pairs and (Spans() - a).pairs == ()


def test_index_of_holds_both_ends() -> None:
    spans = Spans([(10, 20), (30, 30)])
    assert spans.index_of(np.array([9, 10, 15, 20, 21, 30, 31])).tolist() == [-1, 0, 0, 0, -1, 1, -1]
    assert Spans().index_of(np.array([1])).tolist() == [-1]


_PAIRS = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 12)).map(lambda p: (p[0], p[0] + p[1])), max_size=6)


@settings(max_examples=200, deadline=None)
@given(a=_PAIRS, b=_PAIRS)
def test_span_algebra_matches_python_sets(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> None:
    def points(pairs) -> set[int]:
        return {t for s, e in pairs for t in range(s, e + 1)}

    left, right = Spans(a), Spans(b)
    assert points(left & right) == points(a) & points(b)
    assert points(left | right) == points(a) | points(b)
    assert points(left - right) == points(a) - points(b)
    for result in (left & right, left | right, left - right):  # normalized: sorted, disjoint, not touching
        assert all(e1 + 1 < s2 for (_, e1), (s2, _) in zip(result.pairs, result.pairs[1:], strict=False))


# --------------------------------------------------------------------------------------------------
# Selectors on hand-written timelines
# --------------------------------------------------------------------------------------------------

SCREEN_0_TO_20 = [k * 0.5 for k in range(41)]  # a frame every 0.5 s


def test_all_is_the_whole_recording() -> None:
    assert seconds(All().select(timeline(SCREEN_0_TO_20, [3.0]))) == [(0.0, 20.0)]


def test_inactivity_drops_the_idle_stretch_between_inputs_whole() -> None:
    inputs = [1.0, 1.1, 2.0, 3.0, 12.0, 13.0, 14.0]  # 9 s without input between 3.0 and 12.0
    assert seconds(Inactivity().select(timeline(SCREEN_0_TO_20, inputs))) == [(1.0, 3.0), (12.0, 14.0)]
    # At exactly the gap the inputs are one span (at most input_gap_s apart).
    assert seconds(Inactivity(input_gap_s=9.0).select(timeline(SCREEN_0_TO_20, inputs))) == [(1.0, 14.0)]


def test_inactivity_needs_the_screen_too_and_is_clipped_to_its_frames() -> None:
    screen = [0.5, 1.0, 1.5, 2.0, 4.0, 4.5, 5.0]  # the screen stalls 2.0 → 4.0 (more than 1 s)
    inputs = [0.0, 1.2, 2.5, 3.0, 4.2, 6.0]  # inputs before the first and after the last frame
    assert seconds(Inactivity().select(timeline(screen, inputs))) == [(0.5, 2.0), (4.0, 5.0)]
    assert seconds(Inactivity(screen_gap_s=2.0).select(timeline(screen, inputs))) == [(0.5, 5.0)]


def test_inactivity_leaves_out_lone_inputs_and_empty_timelines() -> None:
    assert seconds(Inactivity().select(timeline(SCREEN_0_TO_20, [10.0]))) == []  # one input: no duration
    assert seconds(Inactivity().select(timeline(SCREEN_0_TO_20, [1.0, 2.0, 10.0, 17.0, 18.0]))) == [
        (1.0, 2.0),
        (17.0, 18.0),
    ]
    assert seconds(Inactivity().select(timeline([], [1.0, 2.0]))) == []


F9 = 0x78


def test_hotkey_toggles_on_fresh_presses() -> None:
    keys = [
        (1.0, F9, True),
        (1.2, F9, True),  # auto-repeat: no toggle
        (1.3, F9, False),
        (2.0, 65, True),
        (5.0, F9, True),  # ends the first span
        (5.1, F9, False),
        (8.0, F9, True),  # opens a span still open at the end
        (8.1, F9, False),
    ]
    tl = timeline(SCREEN_0_TO_20, [], keys)
    assert seconds(Hotkey().select(tl)) == [(1.0, 5.0), (8.0, 20.0)]
    assert seconds(Hotkey(65).select(tl)) == [(2.0, 20.0)]
    assert Hotkey().hidden_keys() == {F9} and (Hotkey() & Inactivity()).hidden_keys() == {F9}


def test_composition() -> None:
    keys = [(2.5, F9, True), (2.6, F9, False), (13.0, F9, True), (13.1, F9, False)]
    tl = timeline(SCREEN_0_TO_20, [1.0, 2.0, 3.0, 12.0, 14.0], keys)
    assert seconds((Inactivity() & Hotkey()).select(tl)) == [(2.5, 3.0), (12.0, 13.0)]
    assert seconds((Inactivity() | Hotkey()).select(tl)) == [(1.0, 14.0)]
    assert (All() - Hotkey()).select(tl).pairs == ((0, 2_500_000_000 - 1), (13 * S + 1, 20 * S))  # closed ends removed
    assert (Inactivity() - Hotkey()).to_json() == {
        "-": [{"inactivity": {"screen_gap_s": 1.0, "input_gap_s": 5.0}}, {"hotkey": {"vk": F9}}]
    }
    with pytest.raises(TypeError, match="Invalid selector"):
        Inactivity() & "hotkey"


def test_span_file_json_and_csv(tmp_path: Path) -> None:
    spans_json = tmp_path / "spans.json"
    spans_json.write_text(json.dumps({"alice/rec.mcap": [[1, 2.5], [10, 12]], "other": [[0, 1]]}))
    spans_csv = tmp_path / "spans.csv"
    spans_csv.write_text("path,start_s,end_s\n/data/alice/rec,1,2.5\n\n/data/alice/rec, 10 ,12\n")
    tl = timeline(SCREEN_0_TO_20, [], path="/data/alice/rec.mcap")
    for selector in (SpanFile(spans_json), SpanFile(spans_csv), parse_interval(f"file:{spans_csv}")):
        assert seconds(selector.select(tl)) == [(1.0, 2.5), (10.0, 12.0)]
    # Relative to the first event; clipped to the recording; names match at folder boundaries only.
    late = timeline([5.0, 6.0, 7.0], [], path="/data/alice/rec.mcap")
    assert seconds(SpanFile(spans_json).select(late)) == [(6.0, 7.0)]
    assert seconds(SpanFile(spans_json).select(timeline([0.0, 3.0], path="/data/malice/rec.mcap"))) == []
    both = tmp_path / "both.json"
    both.write_text(json.dumps({"rec.mcap": [[0, 1]], "alice/rec": [[0, 1]]}))
    with pytest.raises(InvalidInputError, match="Several entries"):
        SpanFile(both).select(tl)


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("s.json", "[1, 2]", "JSON object"),
        ("s.json", '{"a": [[2, 1]]}', r"start is after its end.*entry=a, item=0"),
        ("s.json", '{"a": [[0, true]]}', "Invalid time"),
        ("s.json", '{"a": [[0, 1, 2]]}', "Invalid span"),
        ("s.json", "{oops", r"not JSON.*line=1"),
        ("s.csv", "file,start,end\na,0,1\n", r"header.*line=1"),
        ("s.csv", "path,start_s,end_s\na,0,1\nb,zero,1\n", r"Invalid time \('zero'\).*line=3"),
        ("s.csv", "path,start_s,end_s\na,0\n", r"Invalid line.*line=2"),
        ("s.csv", "path,start_s,end_s\na,inf,1\n", r"Invalid time.*line=2"),
        ("s.txt", "", "Supported: .json, .csv"),
    ],
)
def test_span_file_errors_name_the_file_and_line(tmp_path: Path, name: str, text: str, match: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=match) as info:
        SpanFile(path)
    assert info.value.path == str(path)
    with pytest.raises(InvalidInputError, match="Cannot read"):
        SpanFile(tmp_path / "missing.json")


def test_parse_interval_and_hotkey() -> None:
    assert parse_interval("all") == All()
    assert parse_interval("inactivity", screen_gap_s=2, input_gap_s=3) == Inactivity(2, 3)
    assert parse_interval("hotkey", hotkey="F10") == Hotkey(0x79)
    assert [parse_hotkey(v) for v in ("F9", "f9", "0x78", "120", 120, "scroll lock", "SCROLL_LOCK")] == [0x78] * 5 + [
        0x91
    ] * 2
    for bad in ("sometimes", "file:", "all:x"):
        with pytest.raises(ValueError, match="Invalid --interval"):
            parse_interval(bad)
    with pytest.raises(ValueError, match="Invalid hotkey"):
        parse_hotkey("F99")
    with pytest.raises(ValueError, match="Invalid input_gap_s"):
        Inactivity(input_gap_s=-1)


# --------------------------------------------------------------------------------------------------
# Stage 1
# --------------------------------------------------------------------------------------------------


def write_recording(path: Path, screen_s: list[float], inputs: list[tuple[float, str, object]]) -> Path:
    """Frames at ``screen_s`` and inputs ``(seconds, topic, message)``, seconds after T0."""
    with OWAMcapWriter(path, chunk_size=512) as writer:
        events = [(t, "screen", ScreenCaptured(utc_ns=T0 + round(t * S), shape=(8, 6))) for t in screen_s]
        for t, topic, message in sorted([*events, *inputs], key=lambda e: e[0]):
            writer.write_message(topic, message, timestamp_ns=T0 + round(t * S))
    return path


IDLE_INPUTS = [
    (1.0, "keyboard", KeyboardEvent(event_type="press", vk=65)),
    (1.1, "keyboard", KeyboardEvent(event_type="release", vk=65)),
    (2.0, "mouse", MouseEvent(event_type="move", x=1, y=1)),
    (3.0, "mouse", MouseEvent(event_type="move", x=2, y=2)),  # a span's last event: kept
    (12.0, "mouse", MouseEvent(event_type="move", x=3, y=3)),  # after 9 s idle
    (13.0, "keyboard", KeyboardEvent(event_type="press", vk=66)),
    (14.0, "keyboard", KeyboardEvent(event_type="release", vk=66)),
]


@pytest.fixture
def idle_recording(tmp_path: Path) -> Path:
    folder = tmp_path / "recordings"
    folder.mkdir()
    write_recording(folder / "idle.mcap", SCREEN_0_TO_20, IDLE_INPUTS)
    return folder


def rows_of(split: datasets.Dataset) -> list[tuple[str, float, int]]:
    return [(r["topic"], (r["timestamp_ns"] - T0) / S, r["interval"]) for r in split]


def test_stage1_inactivity_keeps_exactly_the_spans_with_their_ends(idle_recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "events"
    config = EventDatasetConfig(
        train_dir=idle_recording, output_dir=out, test_percent=0, rates_hz=UNLIMITED, interval="inactivity"
    )
    dataset = build_event_dataset(config)
    train = dataset["train"]
    assert train.features == event_features(interval=True)
    assert train.features == EVENT_FEATURES | datasets.Features({"interval": datasets.Value("int32")})
    kept = [("screen", t, 0) for t in (1.0, 1.5, 2.0, 2.5, 3.0)] + [("screen", t, 1) for t in (12.0, 12.5)]
    kept += [("screen", t, 1) for t in (13.0, 13.5, 14.0)]
    kept += [("keyboard", 1.0, 0), ("keyboard", 1.1, 0), ("mouse", 2.0, 0), ("mouse", 3.0, 0)]
    expected = sorted(
        [*kept, ("mouse", 12.0, 1), ("keyboard", 13.0, 1), ("keyboard", 14.0, 1)],
        key=lambda r: (r[1], r[0] != "screen"),
    )
    assert sorted(rows_of(train), key=lambda r: (r[1], r[0] != "screen")) == expected
    assert ("mouse", 3.0, 0) in rows_of(train)  # upstream's [start, end) would drop each span's last event
    assert [r["interval"] for r in train] == sorted(r["interval"] for r in train)  # spans in time order

    summary = {
        "file": str(idle_recording / "idle.mcap"),
        "split": "train",
        "spans": [[T0 + 1 * S, T0 + 3 * S], [T0 + 12 * S, T0 + 14 * S]],
        "seconds_kept": 4.0,
        "seconds_dropped": 16.0,
        "events_kept": 17,
        "events_dropped": 48 - 17,
    }
    saved = json.loads((out / REPORT_FILENAME).read_text())
    assert saved["config"]["interval"] == {"inactivity": {"screen_gap_s": 1.0, "input_gap_s": 5.0}}
    assert saved["report"]["intervals"] == [summary]
    assert saved["report"]["interval_totals"] == {
        "seconds_kept": 4.0,
        "seconds_dropped": 16.0,
        "events_kept": 17,
        "events_dropped": 31,
    }
    assert saved["report"]["dropped_by_interval"] == {"screen": 31, "keyboard": 0, "mouse": 0}
    assert saved["report"]["dropped_by_rate"] == {"screen": 0, "keyboard": 0, "mouse": 0}
    table = dataset.report.format_table()
    assert "outside intervals" in table
    assert "intervals: 4.0 s kept, 16.0 s dropped; 17 events kept, 31 dropped" in table


def test_stage1_default_has_the_spec_schema_and_no_interval_report(idle_recording: Path) -> None:
    dataset = build_event_dataset(EventDatasetConfig(train_dir=idle_recording, test_percent=0))
    assert dataset["train"].features == EVENT_FEATURES
    assert dataset.report.intervals == [] and "interval" not in dataset.report.format_table()
    assert "intervals" not in dataset.report.to_json()


def test_stage1_rate_rule_runs_per_span_after_selection(idle_recording: Path) -> None:
    # At 1 Hz, a frame every 0.5 s keeps every other frame, counted from each span's own first frame.
    config = EventDatasetConfig(
        train_dir=idle_recording, test_percent=0, rates_hz={"screen": 1.0}, interval="inactivity"
    )
    dataset = build_event_dataset(config)
    assert [t for topic, t, _ in rows_of(dataset["train"]) if topic == "screen"] == [1.0, 2.0, 3.0, 12.0, 13.0, 14.0]
    report = dataset.report.to_json()
    assert report["dropped_by_interval"]["screen"] == 31 and report["dropped_by_rate"]["screen"] == 4


def test_stage1_hotkey_drops_the_toggle_key(tmp_path: Path) -> None:
    inputs = [
        (2.0, "keyboard", KeyboardEvent(event_type="press", vk=F9)),
        (2.1, "keyboard", KeyboardEvent(event_type="release", vk=F9)),
        (3.0, "keyboard", KeyboardEvent(event_type="press", vk=65)),
        (4.0, "keyboard", KeyboardEvent(event_type="press", vk=F9)),
        (9.0, "keyboard", KeyboardEvent(event_type="press", vk=66)),
    ]
    path = write_recording(tmp_path / "hot.mcap", [0.0, 2.0, 3.0, 4.0, 5.0], inputs)
    config = EventDatasetConfig(train_dir=tmp_path, test_percent=0, rates_hz=UNLIMITED, interval="hotkey")
    result = _convert_file((str(path), str(path), "train", config))
    rows = result.table.to_pylist()
    assert [(r["topic"], (r["timestamp_ns"] - T0) / S, r["interval"]) for r in rows] == [
        ("screen", 2.0, 0),
        ("screen", 3.0, 0),
        ("keyboard", 3.0, 0),
        ("screen", 4.0, 0),  # the span's end: kept; the F9 press there is not data
    ]
    assert result.interval_summary()["events_dropped"] == 6  # 3 F9 events, 2 frames, 1 key


def test_stage1_file_selector_and_a_recording_outside_every_span(idle_recording: Path, tmp_path: Path) -> None:
    write_recording(idle_recording / "other.mcap", [0.0, 1.0], [])
    spans = tmp_path / "spans.csv"
    spans.write_text("path,start_s,end_s\nidle.mcap,2,3\nidle.mcap,12.5,12.5\n")
    config = EventDatasetConfig(
        train_dir=idle_recording, test_percent=0, rates_hz=UNLIMITED, interval=parse_interval(f"file:{spans}")
    )
    dataset = build_event_dataset(config)
    assert rows_of(dataset["train"]) == [  # at equal times, in file order (the frame was written first)
        ("screen", 2.0, 0),
        ("mouse", 2.0, 0),
        ("screen", 2.5, 0),
        ("screen", 3.0, 0),
        ("mouse", 3.0, 0),
        ("screen", 12.5, 1),  # a span of one instant holds the event at that instant
    ]
    [skipped] = [p for p in dataset.report.problems if p["file"].endswith("other.mcap")]
    assert skipped["action"] == "skipped" and "no events inside the selected intervals" in skipped["reason"]
    other = next(e for e in dataset.report.intervals if e["file"].endswith("other.mcap"))
    assert (other["seconds_kept"], other["seconds_dropped"], other["events_kept"], other["events_dropped"]) == (
        0.0,
        1.0,
        0,
        2,
    )


_EVENT_TIMES = st.lists(st.integers(0, 5_000), min_size=1, max_size=40)
_SPAN_SETS = st.lists(
    st.tuples(st.integers(0, 5_000), st.integers(0, 800)).map(lambda p: [p[0] / 1000, (p[0] + p[1]) / 1000]),
    max_size=5,
)


@settings(max_examples=25, deadline=None)
@given(times_ms=_EVENT_TIMES, spans_s=_SPAN_SETS)
def test_kept_events_are_exactly_those_inside_the_spans(
    tmp_path_factory: pytest.TempPathFactory, times_ms: list[int], spans_s: list[list[float]]
) -> None:
    folder = tmp_path_factory.mktemp("prop")
    inputs = [(t / 1000, "mouse", MouseEvent(event_type="move", x=i, y=0)) for i, t in enumerate(times_ms)]
    path = write_recording(folder / "rec.mcap", [], inputs)
    (folder / "spans.json").write_text(json.dumps({"rec": spans_s}))
    config = EventDatasetConfig(
        train_dir=folder, test_percent=0, rates_hz=UNLIMITED, interval=SpanFile(folder / "spans.json")
    )
    result = _convert_file((str(path), str(path), "train", config))
    first = min(times_ms)
    selected = Spans((round(s * 1000) + first, round(e * 1000) + first) for s, e in spans_s)  # in ms
    inside = sorted(t for t in times_ms if selected.index_of(np.array([t]))[0] >= 0)
    kept = [] if result.table is None else [(r["timestamp_ns"] - T0) // MS for r in result.table.to_pylist()]
    assert sorted(kept) == inside
    if result.table is not None:  # each kept event's interval is the index of its span among the non-empty ones
        used = sorted({int(selected.index_of(np.array([t]))[0]) for t in inside})
        assert [r["interval"] for r in result.table.to_pylist()] == [
            used.index(int(selected.index_of(np.array([k]))[0])) for k in kept
        ]
    assert result.interval_summary()["events_dropped"] == len(times_ms) - len(inside)


def test_cli_interval_flags(idle_recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = [sys.executable, str(REPO / "scripts" / "01_raw_events_to_event_dataset.py")]
    args += ["--train-dir", str(idle_recording), "--output-dir", str(out), "--test_percent", "0", "--no-check-media"]
    args += ["--interval", "inactivity", "--input-gap-s", "10", "--screen-gap-s", "0.5", "--rate", "screen=inf"]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    saved = json.loads((out / REPORT_FILENAME).read_text())
    assert saved["config"]["interval"] == {"inactivity": {"screen_gap_s": 0.5, "input_gap_s": 10.0}}
    assert saved["report"]["intervals"][0]["spans"] == [[T0 + 1 * S, T0 + 14 * S]]
    bad = subprocess.run(
        [*args[:2], "--train-dir", str(idle_recording), "--output-dir", str(tmp_path / "x"), "--interval", "often"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "Invalid --interval ('often')" in bad.stderr


# --------------------------------------------------------------------------------------------------
# Downstream: every span is its own episode segment
# --------------------------------------------------------------------------------------------------


def event_row(topic: str, seconds_: float, interval: int, path: str = "rec.mcap") -> dict:
    t = T0 + round(seconds_ * S)
    if topic == "screen":
        message = ScreenCaptured(utc_ns=t, shape=(8, 6)).model_dump_json(exclude_none=True).encode()
        kind = "desktop/ScreenCaptured"
    else:
        message, kind = orjson.dumps({"event_type": "press", "vk": 65}), "desktop/KeyboardEvent"
    return {
        "episode_path": path,
        "topic": topic,
        "timestamp_ns": t,
        "message_type": kind,
        "mcap_message": dump_mcap_message_json(topic, t, kind, message),
        "interval": interval,
    }


SEGMENTED = [
    event_row("screen", 1.0, 0),
    event_row("keyboard", 1.25, 0),
    event_row("keyboard", 2.0, 0),  # span 0 ends here
    event_row("screen", 12.5, 1),  # span 1, 10.5 s later
    event_row("keyboard", 13.0, 1),
]


def segmented_dataset(rows: list[dict] = SEGMENTED) -> datasets.Dataset:
    columns = {name: [r[name] for r in rows] for name in event_features(interval=True)}
    return datasets.Dataset.from_dict(columns, features=event_features(interval=True))


def test_bins_are_made_per_span(tmp_path: Path) -> None:
    binned = build_binned_dataset(segmented_dataset(), BinningConfig(fps=1))
    saved = build_binned_dataset(segmented_dataset(), BinningConfig(fps=1), output_dir=tmp_path / "bins")
    assert saved.features == binned.features and saved[:] == binned[:]
    assert len(build_binned_dataset(segmented_dataset().select([]), BinningConfig(fps=1))) == 0
    assert binned.features == BINNED_FEATURES | datasets.Features({"interval": datasets.Value("int32")})
    got = [
        (r["interval"], r["bin_idx"], (r["timestamp_ns"] - T0) / S, len(r["state"]), len(r["actions"])) for r in binned
    ]
    # Span 0 from 1.0 s: bins [1, 2) and [2, 3); span 1 from its own first event at 12.5 s: no bin in the gap.
    assert got == [(0, 0, 1.0, 1, 1), (0, 1, 2.0, 1, 1), (1, 0, 12.5, 1, 1)]
    plain = build_binned_dataset(segmented_dataset().remove_columns("interval"), BinningConfig(fps=1))
    assert plain.features == BINNED_FEATURES and len(plain) == 13  # one episode: the gap is binned


def test_binning_refuses_mixed_splits() -> None:
    mixed = datasets.DatasetDict({"train": segmented_dataset(), "test": segmented_dataset().remove_columns("interval")})
    with pytest.raises(InvalidInputError, match="interval column"):
        build_binned_dataset(mixed, BinningConfig(fps=1))


@pytest.fixture(scope="module")
def episode_tokenizer() -> EpisodeTokenizer:
    tokenizer = EpisodeTokenizer(image_token_length=1)
    tokenizer.prepare_model(tokenizer=tiny_bpe_tokenizer())
    return tokenizer


def test_episode_tokens_sit_at_each_span_ends(episode_tokenizer: EpisodeTokenizer) -> None:
    tokenized = episode_tokenizer.tokenize_event_dataset(segmented_dataset())
    start, end = episode_tokenizer.config.episode_start_token, episode_tokenizer.config.episode_end_token
    texts = tokenized["text"]
    assert [(t.startswith(start), t.endswith(end)) for t in texts] == [
        (True, False),
        (False, False),
        (False, True),  # span 0's last event
        (True, False),  # span 1's first event
        (False, True),
    ]
    assert tokenized["interval"] == [0, 0, 0, 1, 1]
    plain = episode_tokenizer.tokenize_event_dataset(segmented_dataset().remove_columns("interval"))
    assert sum(t.count(start) for t in plain["text"]) == 1 and "interval" not in plain.column_names


def test_a_span_split_in_two_runs_is_refused(episode_tokenizer: EpisodeTokenizer) -> None:
    rows = [SEGMENTED[0], SEGMENTED[3], SEGMENTED[1]]  # span 0, span 1, span 0 again
    with pytest.raises(DatasetError, match=r"same interval \(0\) of one episode_path"):
        episode_tokenizer.tokenize_event_dataset(segmented_dataset(rows))


def test_packing_never_joins_spans(episode_tokenizer: EpisodeTokenizer) -> None:
    tokenized = episode_tokenizer.tokenize_event_dataset(segmented_dataset())
    counts = tokenized["total_token_count"]
    big = sum(counts) + 10
    aware = FSLDataset(
        tokenized,
        pad_token_id=0,
        max_sequence_length=big,
        episode_aware=True,
        return_position_ids=True,
        load_images=False,
        log_every=None,
    ).prepare()
    assert [aware.plan.event_range(k) for k in range(len(aware))] == [(0, 3), (3, 5)]
    mixed = FSLDataset(
        tokenized,
        pad_token_id=0,
        max_sequence_length=big,
        return_position_ids=True,
        return_segment_offsets=True,
        load_images=False,
        log_every=None,
    ).prepare()
    assert len(mixed) == 1
    assert [(path, (rows.start, rows.stop)) for path, rows in mixed.segments(0)] == [
        ("rec.mcap", (0, 3)),
        ("rec.mcap", (3, 5)),
    ]
    sample = mixed[0]
    first = sum(counts[:3])
    assert sample["segment_offsets"].tolist() == [0, first, sum(counts)]
    assert sample["position_ids"][first] == 0 and sample["position_ids"][first - 1] == first - 1
