"""Stage 2, Event Dataset → Binned Dataset: exact bins on tiny hand-written datasets, a brute-force
reference under hypothesis, the real 0.5.1 recording, atomic output, the CLI and the script."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import datasets
import numpy as np
import pytest
from datasets import Features, Value
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcap.reader import make_reader
from typer.testing import CliRunner

from owa.data import binning
from owa.data.binning import BinningConfig, build_binned_dataset
from owa.data.cli import app
from owa.data.errors import DatasetError, MessageValidationError, OutputExistsError
from owa.data.messages import McapMessage, ScreenCaptured
from spec_schemas import BINNED_FEATURES, EVENT_FEATURES

REPO_ROOT = Path(__file__).resolve().parents[1]
MS = 1_000_000  # ns

MESSAGE_TYPES = {
    "screen": "desktop/ScreenCaptured",
    "keyboard": "desktop/KeyboardEvent",
    "mouse": "desktop/MouseEvent",
    "mouse/raw": "desktop/RawMouseEvent",
    "window": "desktop/WindowInfo",
    "keyboard/state": "desktop/KeyboardState",
}
DEFAULT_PAYLOADS = {
    "screen": b'{"utc_ns":1,"shape":[4,4],"media_ref":{"uri":"x.mkv","pts_ns":0}}',
    "keyboard": b'{"event_type":"press","vk":65}',
    "mouse": b'{"event_type":"move","x":10,"y":20}',
    "mouse/raw": b'{"last_x":1,"last_y":-1,"us_flags":0,"button_flags":0,"button_data":0}',
    "window": b'{"title":"w","rect":[0,0,10,10],"hWnd":1}',
    "keyboard/state": b'{"buttons":[]}',
}


def event(episode: str, topic: str, timestamp_ns: int, payload: bytes | None = None) -> dict:
    message = McapMessage(
        topic=topic,
        timestamp=timestamp_ns,
        message=DEFAULT_PAYLOADS[topic] if payload is None else payload,
        message_type=MESSAGE_TYPES[topic],
    )
    return {
        "episode_path": episode,
        "topic": topic,
        "timestamp_ns": timestamp_ns,
        "message_type": message.message_type,
        "mcap_message": message.model_dump_json().encode(),
    }


def event_dataset(rows: list[dict]) -> datasets.Dataset:
    columns = {name: [row[name] for row in rows] for name in EVENT_FEATURES}
    return datasets.Dataset.from_dict(columns, features=EVENT_FEATURES)


def summarize(binned: datasets.Dataset) -> list[tuple]:
    """Each bin as (episode, bin_idx, start_ns, [state (topic, ts)], [action (topic, ts)])."""

    def brief(blob: bytes) -> tuple[str, int]:
        message = McapMessage.model_validate_json(blob)
        return message.topic, message.timestamp

    return [
        (
            row["episode_path"],
            row["bin_idx"],
            row["timestamp_ns"],
            [brief(b) for b in row["state"]],
            [brief(b) for b in row["actions"]],
        )
        for row in binned
    ]


# --------------------------------------------------------------------------------------------------
# Exact bins on hand-written episodes
# --------------------------------------------------------------------------------------------------

T0 = 1_700_000_000_000_000_000
STORY = [
    event("ep", "window", T0),  # first event: bins start here, though the topic is ignored
    event("ep", "mouse", T0 + 30 * MS),  # before any screen: state empty
    event("ep", "screen", T0 + 60 * MS),
    event("ep", "screen", T0 + 100 * MS),  # exactly at bin 1's start: it is bin 1's state
    event("ep", "keyboard", T0 + 100 * MS),  # same ns as that screen: still paired with it
    event("ep", "mouse", T0 + 120 * MS),
    event("ep", "screen", T0 + 150 * MS),  # after bin 1's first action: only from bin 2 on
    event("ep", "screen", T0 + 420 * MS),  # bins 2-4 have no actions
    event("ep", "keyboard", T0 + 499 * MS),
    event("ep", "keyboard/state", T0 + 520 * MS),  # ignored, but it is the episode's last event
]


def test_story_bins_exact_without_filter() -> None:
    binned = build_binned_dataset(event_dataset(STORY), BinningConfig(fps=10))
    assert binned.features == BINNED_FEATURES
    assert summarize(binned) == [
        ("ep", 0, T0, [], [("mouse", T0 + 30 * MS)]),
        ("ep", 1, T0 + 100 * MS, [("screen", T0 + 100 * MS)], [("keyboard", T0 + 100 * MS), ("mouse", T0 + 120 * MS)]),
        ("ep", 2, T0 + 200 * MS, [("screen", T0 + 150 * MS)], []),
        ("ep", 3, T0 + 300 * MS, [("screen", T0 + 150 * MS)], []),
        ("ep", 4, T0 + 400 * MS, [("screen", T0 + 150 * MS)], [("keyboard", T0 + 499 * MS)]),
        ("ep", 5, T0 + 500 * MS, [("screen", T0 + 420 * MS)], []),
    ]


def test_story_bins_exact_with_filter() -> None:
    binned = build_binned_dataset(event_dataset(STORY), BinningConfig(fps=10, filter_empty_actions=True))
    assert [(ep, k, start) for ep, k, start, _, _ in summarize(binned)] == [
        ("ep", 0, T0),
        ("ep", 1, T0 + 100 * MS),
        ("ep", 4, T0 + 400 * MS),
    ]
    assert summarize(binned)[2][3] == [("screen", T0 + 150 * MS)]  # state unchanged by the filter


def test_state_is_the_exact_stored_screen_message() -> None:
    rows = [event("ep", "screen", 0), event("ep", "mouse", 5 * MS)]
    binned = build_binned_dataset(event_dataset(rows), BinningConfig(fps=10))
    assert binned[0]["state"] == [rows[0]["mcap_message"]]
    assert binned[0]["actions"] == [rows[1]["mcap_message"]]
    assert isinstance(McapMessage.model_validate_json(binned[0]["state"][0]).decoded, ScreenCaptured)


def test_fps_3_edges_are_floored_from_k_without_drift() -> None:
    rows = [
        event("ep", "keyboard", 0),
        event("ep", "mouse", 333_333_332),  # bin 0 ends at 333,333,333
        event("ep", "mouse", 333_333_333),  # bin 1 starts exactly here
        event("ep", "mouse", 666_666_665),
        event("ep", "mouse", 666_666_666),  # bin 2
        event("ep", "mouse", 999_999_999),
        event("ep", "mouse", 1_000_000_000),  # bin 3 starts at exactly 1 s
        # 1000 s later: bin 3000 starts at exactly 1e12 ns. Adding int(1e9/3) 3000 times would give
        # 999,999,999,000 and put this event in bin 3000 of a drifted grid starting 1,000 ns early.
        event("ep", "mouse", 10**12 - 1),
        event("ep", "mouse", 10**12),
    ]
    binned = build_binned_dataset(event_dataset(rows), BinningConfig(fps=3, filter_empty_actions=True))
    assert [(k, start, [ts for _, ts in actions]) for _, k, start, _, actions in summarize(binned)] == [
        (0, 0, [0, 333_333_332]),
        (1, 333_333_333, [333_333_333, 666_666_665]),
        (2, 666_666_666, [666_666_666, 999_999_999]),
        (3, 1_000_000_000, [1_000_000_000]),
        (2999, 999_666_666_666, [10**12 - 1]),
        (3000, 10**12, [10**12]),
    ]
    assert (
        len(build_binned_dataset(event_dataset(rows), BinningConfig(fps=3))) == 3001
    )  # unfiltered: every bin to the last event


@pytest.mark.parametrize(
    ("fps", "bin_idx", "start_ns"), [(29.97, 2997, 100 * 10**9), (0.5, 3, 6 * 10**9), (7.5, 1, 133_333_333)]
)
def test_non_integer_bin_widths(fps: float, bin_idx: int, start_ns: int) -> None:
    config = BinningConfig(fps=fps)
    assert config.bin_start_offset_ns(bin_idx) == start_ns
    rows = [event("ep", "mouse", 5), event("ep", "mouse", 5 + start_ns - 1), event("ep", "mouse", 5 + start_ns)]
    binned = build_binned_dataset(event_dataset(rows), BinningConfig(fps=fps, filter_empty_actions=True))
    assert [(k, start) for _, k, start, _, _ in summarize(binned)][-2:] == [
        (bin_idx - 1, 5 + config.bin_start_offset_ns(bin_idx - 1)),
        (bin_idx, 5 + start_ns),
    ]


def test_interleaved_unsorted_episodes_group_and_sort_stably() -> None:
    rows = [
        event("b", "mouse", 1_000 * MS),
        event("a", "screen", 0),
        event("b", "screen", 990 * MS),
        event("a", "mouse", 250 * MS),
        event("a", "keyboard", 40 * MS),
        event("b", "keyboard", 1_000 * MS),  # same ns as b's mouse: input order kept
        event("a", "mouse", 40 * MS),  # same ns as a's keyboard: after it
    ]
    binned = build_binned_dataset(event_dataset(rows), BinningConfig(fps=10))
    assert summarize(binned) == [
        ("a", 0, 0, [("screen", 0)], [("keyboard", 40 * MS), ("mouse", 40 * MS)]),
        ("a", 1, 100 * MS, [("screen", 0)], []),
        ("a", 2, 200 * MS, [("screen", 0)], [("mouse", 250 * MS)]),
        ("b", 0, 990 * MS, [("screen", 990 * MS)], [("mouse", 1_000 * MS), ("keyboard", 1_000 * MS)]),
    ]
    # Sorted input gives the same bins; so does a shuffled view (an indices mapping over the table).
    ordered = sorted(rows, key=lambda r: (r["episode_path"], r["timestamp_ns"]))
    assert summarize(build_binned_dataset(event_dataset(ordered), BinningConfig(fps=10))) == summarize(binned)
    shuffled = event_dataset(rows).shuffle(seed=3)
    assert summarize(build_binned_dataset(shuffled, BinningConfig(fps=10)))[0][:3] == ("a", 0, 0)


def test_mouse_raw_and_other_topics_are_ignored_unless_opted_in() -> None:
    rows = [event("ep", "screen", 0), event("ep", "mouse/raw", 10 * MS), event("ep", "window", 20 * MS)]
    assert summarize(build_binned_dataset(event_dataset(rows), BinningConfig(fps=10))) == [
        ("ep", 0, 0, [("screen", 0)], [])
    ]
    opted = build_binned_dataset(
        event_dataset(rows), BinningConfig(fps=10, action_topics=("keyboard", "mouse", "mouse/raw"))
    )
    assert summarize(opted)[0][4] == [("mouse/raw", 10 * MS)]


def test_dataset_dict_keeps_splits_and_dataset_stays_dataset() -> None:
    train = event_dataset([event("t1", "screen", 0), event("t1", "mouse", 150 * MS)])
    test = event_dataset([event("v1", "keyboard", 7)])
    binned = build_binned_dataset(datasets.DatasetDict({"train": train, "test": test}), BinningConfig(fps=10))
    assert isinstance(binned, datasets.DatasetDict)
    assert list(binned) == ["train", "test"]
    assert binned["train"].features == BINNED_FEATURES
    assert [row[:3] for row in summarize(binned["train"])] == [("t1", 0, 0), ("t1", 1, 100 * MS)]
    assert summarize(binned["test"]) == [("v1", 0, 7, [], [("keyboard", 7)])]
    single = build_binned_dataset(train, BinningConfig(fps=10))
    assert isinstance(single, datasets.Dataset)
    assert summarize(single) == summarize(binned["train"])


def test_empty_split_gives_empty_binned_split() -> None:
    empty = event_dataset([])
    binned = build_binned_dataset(datasets.DatasetDict({"train": empty}))
    assert len(binned["train"]) == 0
    assert binned["train"].features == BINNED_FEATURES


def test_chunked_input_and_small_output_chunks_match_one_pass(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [
        event(f"ep{e}", str(rng.choice(["screen", "mouse", "keyboard", "window"])), int(t))
        for e in range(7)
        for t in np.sort(rng.integers(0, 2 * 10**9, size=40))
    ]
    dataset = event_dataset(rows)
    dataset.save_to_disk(str(tmp_path / "events"), max_shard_size="8KB")  # many files and record batches
    loaded = datasets.load_from_disk(str(tmp_path / "events"))
    assert loaded.data.table.column("mcap_message").num_chunks > 1
    expected = summarize(build_binned_dataset(dataset, BinningConfig(fps=10)))
    assert summarize(build_binned_dataset(loaded, BinningConfig(fps=10), chunk_events=13)) == expected
    reversed_rows = loaded.select(range(len(loaded) - 1, -1, -1))  # unsorted rows spread over all chunks
    assert summarize(build_binned_dataset(reversed_rows, BinningConfig(fps=10), chunk_events=5)) == expected


# --------------------------------------------------------------------------------------------------
# A brute-force reference under hypothesis: every action exactly once, state rule, bin grid
# --------------------------------------------------------------------------------------------------


def reference_bins(rows: list[dict], fps: Fraction, filter_empty: bool) -> list[tuple]:
    """Binning by the definition, one bin at a time, with exact fractions."""
    out = []
    for episode in sorted({r["episode_path"] for r in rows}):
        events = sorted((r for r in rows if r["episode_path"] == episode), key=lambda r: r["timestamp_ns"])
        first, last = events[0]["timestamp_ns"], events[-1]["timestamp_ns"]
        k = 0
        while (start := first + math.floor(k * Fraction(10**9) / fps)) <= last:
            end = first + math.floor((k + 1) * Fraction(10**9) / fps)
            actions = [(e["topic"], e["timestamp_ns"]) for e in events if e["topic"] in ("keyboard", "mouse")]
            actions = [a for a in actions if start <= a[1] < end]
            screens = [(e["topic"], e["timestamp_ns"]) for e in events if e["topic"] == "screen"]
            screens = [s for s in screens if s[1] <= start][-1:]
            if actions or not filter_empty:
                out.append((episode, k, start, screens, actions))
            k += 1
    return out


event_rows = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["screen", "keyboard", "mouse", "window"]),
        st.integers(0, 3 * 10**9),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=event_rows,
    fps=st.sampled_from([Fraction(10), Fraction(3), Fraction(2997, 100), Fraction(1, 3), Fraction(15, 2)]),
    filter_empty=st.booleans(),
    chunk_events=st.integers(1, 50),
    snap=st.booleans(),
)
def test_matches_reference_and_places_every_action_once(rows, fps, filter_empty, chunk_events, snap) -> None:
    if snap:  # put events on bin edges and on shared timestamps, where off-by-one errors live
        rows = [(ep, topic, math.floor((ts // 10**8) * Fraction(10**9) / fps) % (3 * 10**9)) for ep, topic, ts in rows]
    events = [event(ep, topic, ts) for ep, topic, ts in rows]
    binned = build_binned_dataset(
        event_dataset(events),
        BinningConfig(fps=float(fps), filter_empty_actions=filter_empty),
        chunk_events=chunk_events,
    )
    got = summarize(binned)
    # Stable sort inside the reference keeps the input order of ties, as the library must.
    assert got == reference_bins(events, fps, filter_empty)
    placed = sorted(a for *_, actions in got for a in actions)
    assert placed == sorted((t, ts) for _, t, ts in rows if t in ("keyboard", "mouse"))


@settings(max_examples=200, deadline=None)
@given(
    offset_ns=st.integers(0, 10**15),
    fps=st.sampled_from([10.0, 3.0, 29.97, 59.94, 23.976, 1 / 3, 0.001, 1000.0, 144.0, 1e9]),
)
def test_bin_index_and_start_are_exact(offset_ns: int, fps: float) -> None:
    config = BinningConfig(fps=fps)
    a, b = binning._rate_terms(config)
    assert Fraction(a, b) == Fraction(10**9) / Fraction(repr(fps)) or fps == 1 / 3
    k = int(binning._bin_index(np.array([offset_ns], dtype=np.int64), a, b)[0])
    starts = binning._bin_start(np.array([k, k + 1], dtype=np.int64), a, b).tolist()
    assert starts == [config.bin_start_offset_ns(k), config.bin_start_offset_ns(k + 1)]
    assert starts[0] <= offset_ns < starts[1]


# --------------------------------------------------------------------------------------------------
# The real 0.5.1 recording (bare mcap reader; its payloads are in current form)
# --------------------------------------------------------------------------------------------------


def test_real_recording_0_5_1(recordings_dir: Path) -> None:
    with open(recordings_dir / "0.5.1.mcap", "rb") as f:
        rows = [
            {
                "episode_path": str(recordings_dir / "0.5.1.mcap"),
                "topic": channel.topic,
                "timestamp_ns": message.log_time,
                "message_type": schema.name,
                "mcap_message": McapMessage(
                    topic=channel.topic, timestamp=message.log_time, message=message.data, message_type=schema.name
                )
                .model_dump_json()
                .encode(),
            }
            for schema, channel, message in make_reader(f).iter_messages(log_time_order=True)
        ]
    binned = build_binned_dataset(event_dataset(rows), BinningConfig(fps=10))
    first = min(r["timestamp_ns"] for r in rows)
    last = max(r["timestamp_ns"] for r in rows)
    assert len(binned) == (last - first) * 10 // 10**9 + 1
    assert binned["timestamp_ns"] == [first + k * 10**8 for k in range(len(binned))]
    got = summarize(binned)
    actions = [a for *_, acts in got for a in acts]
    assert actions == [(r["topic"], r["timestamp_ns"]) for r in rows if r["topic"] in ("keyboard", "mouse")]
    assert len(actions) == 238  # 20 keyboard + 218 mouse; window and the state topics are ignored
    screens = sorted(r["timestamp_ns"] for r in rows if r["topic"] == "screen")
    for _, _, start, state, _ in got:
        before = [ts for ts in screens if ts <= start]
        assert state == ([("screen", before[-1])] if before else [])
    decoded = McapMessage.model_validate_json(binned[len(binned) - 1]["state"][0]).decoded
    assert isinstance(decoded, ScreenCaptured) and decoded.media_ref.uri == "0.5.1.mkv"
    filtered = build_binned_dataset(event_dataset(rows), BinningConfig(fps=10, filter_empty_actions=True))
    assert summarize(filtered) == [bin_ for bin_ in got if bin_[4]]


# --------------------------------------------------------------------------------------------------
# Numeric action columns (beyond the spec)
# --------------------------------------------------------------------------------------------------


def test_numeric_action_columns_exact() -> None:
    click = b'{"event_type":"click","x":%d,"y":%d,"button":"%s","pressed":%s}'
    rows = [
        event("a", "keyboard", 0, b'{"event_type":"press","vk":65}'),
        event("a", "mouse", 10 * MS, b'{"event_type":"move","x":100,"y":200}'),
        event("a", "mouse", 50 * MS, b'{"event_type":"move","x":130,"y":190}'),
        event("a", "keyboard", 120 * MS, b'{"event_type":"press","vk":16}'),
        event("a", "keyboard", 130 * MS, b'{"event_type":"release","vk":65}'),
        event("a", "mouse", 140 * MS, click % (140, 195, b"left", b"true")),
        event("a", "mouse", 150 * MS, click % (140, 195, b"left", b"false")),
        event("a", "mouse", 160 * MS, click % (141, 195, b"right", b"true")),
        event("a", "mouse", 170 * MS, b'{"event_type":"scroll","x":141,"y":195,"dx":0,"dy":-2}'),
        event("a", "screen", 250 * MS),  # bin 2: no action, values carry over
        event("a", "mouse", 330 * MS, b'{"event_type":"move","x":150,"y":150}'),
        event("b", "mouse", 0, b'{"event_type":"move","x":5,"y":6}'),  # new episode: nothing carried over
        event("b", "keyboard", 100 * MS, b'{"event_type":"press","vk":32}'),
    ]
    binned = build_binned_dataset(event_dataset(rows), BinningConfig(fps=10, numeric_actions=True))
    assert binned.features == BINNED_FEATURES | binning.binned_features(numeric_actions=True)
    keys = [sorted(np.flatnonzero(held).tolist()) for held in binned["keys_held"]]
    assert keys == [[65], [16], [16], [16], [], [32]]
    assert binned["mouse_x"] == [130, 141, 141, 150, 5, 5]
    assert binned["mouse_y"] == [190, 195, 195, 150, 6, 6]
    assert binned["mouse_dx"] == [30, 11, 0, 9, 0, 0]
    assert binned["mouse_dy"] == [-10, 5, 0, -45, 0, 0]
    assert binned["mouse_clicks"] == [[0] * 5, [1, 0, 1, 0, 0], [0] * 5, [0] * 5, [0] * 5, [0] * 5]
    assert binned["scroll_dy"] == [0, -2, 0, 0, 0, 0]
    assert binned["scroll_dx"] == [0] * 6
    # Before a mouse event the position is unknown (null).
    no_mouse = build_binned_dataset(event_dataset([event("k", "keyboard", 0)]), BinningConfig(numeric_actions=True))
    assert no_mouse["mouse_x"] == [None] and no_mouse["mouse_dx"] == [0]
    filtered = build_binned_dataset(
        event_dataset(rows), BinningConfig(fps=10, numeric_actions=True, filter_empty_actions=True)
    )
    assert filtered["mouse_dx"] == [30, 11, 9, 0, 0] and filtered["bin_idx"] == [0, 1, 3, 0, 1]


def test_numeric_columns_name_the_bad_action() -> None:
    rows = [event("ep", "keyboard", 0), event("ep", "keyboard", 5, b'{"event_type":"press","vk":999}')]
    with pytest.raises(MessageValidationError, match=r"vk 999.*file=ep, topic=keyboard, timestamp_ns=5, row=1"):
        build_binned_dataset(event_dataset(rows), BinningConfig(numeric_actions=True))


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fps", [0, -1.0, math.nan, math.inf, 1e-9, 2e9, True])
def test_invalid_fps(fps: float) -> None:
    with pytest.raises(ValueError, match=r"Invalid fps"):
        BinningConfig(fps=fps)


def test_invalid_config_fields() -> None:
    with pytest.raises(ValueError, match="Invalid action_topics"):
        BinningConfig(action_topics=())
    with pytest.raises(ValueError, match="Invalid action_topics"):
        BinningConfig(action_topics="mouse")
    with pytest.raises(ValueError, match="also an action topic"):
        BinningConfig(action_topics=("screen",))
    # The config is the only way to pass settings: no keyword copies that could disagree with it.
    with pytest.raises(TypeError, match="fps"):
        build_binned_dataset(event_dataset(STORY), BinningConfig(fps=5), fps=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"Invalid config \(dict\). Pass a BinningConfig"):
        build_binned_dataset(event_dataset(STORY), {"fps": 5})  # type: ignore[arg-type]
    assert BinningConfig(action_topics=["mouse", "mouse"]).action_topics == ("mouse",)


def test_not_an_event_dataset() -> None:
    with pytest.raises(DatasetError, match=r"column 'topic' is missing"):
        build_binned_dataset(datasets.Dataset.from_dict({"episode_path": ["a"], "timestamp_ns": [1]}))
    float_features = Features({**EVENT_FEATURES, "timestamp_ns": Value("float64")})
    columns = {name: [row[name] for row in STORY[:2]] for name in EVENT_FEATURES} | {"timestamp_ns": [1.0, 2.0]}
    wrong = datasets.Dataset.from_dict(columns, features=float_features)
    with pytest.raises(DatasetError, match=r"'timestamp_ns' has type double; expected int64"):
        build_binned_dataset(datasets.DatasetDict({"train": wrong}))
    nulls = datasets.Dataset.from_dict(
        {name: [row[name] for row in STORY[:3]] for name in EVENT_FEATURES} | {"timestamp_ns": [1, None, 3]},
        features=EVENT_FEATURES,
    )
    with pytest.raises(DatasetError, match=r"'timestamp_ns' holds a null \(row=1"):
        build_binned_dataset(nulls)
    with pytest.raises(DatasetError, match="Input folder does not exist"):
        build_binned_dataset("/no/such/folder")


# --------------------------------------------------------------------------------------------------
# Atomic output folder
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def saved_events(tmp_path: Path) -> Path:
    path = tmp_path / "events"
    datasets.DatasetDict({"train": event_dataset(STORY), "test": event_dataset(STORY[:3])}).save_to_disk(str(path))
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_output_written_refused_and_overwritten(saved_events: Path, tmp_path: Path) -> None:
    out = tmp_path / "binned"
    result = build_binned_dataset(saved_events, BinningConfig(fps=10), output_dir=out)
    assert isinstance(result, datasets.DatasetDict) and list(result) == ["train", "test"]
    reloaded = datasets.load_from_disk(str(out))
    assert reloaded["train"].features == BINNED_FEATURES
    assert summarize(reloaded["train"]) == summarize(build_binned_dataset(event_dataset(STORY), BinningConfig(fps=10)))
    assert '"fps": 10' in reloaded["train"].info.description
    assert saved_config(reloaded["train"]) == BinningConfig(fps=10)

    with pytest.raises(OutputExistsError, match="already exists"):
        build_binned_dataset(saved_events, BinningConfig(fps=5), output_dir=out)
    assert len(datasets.load_from_disk(str(out))["train"]) == 6  # untouched

    build_binned_dataset(saved_events, BinningConfig(fps=5), output_dir=out, overwrite=True)
    assert len(datasets.load_from_disk(str(out))["train"]) == 3
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("failure", [KeyboardInterrupt, DatasetError])
def test_failure_leaves_no_half_written_output(
    saved_events: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: type[BaseException]
) -> None:
    out = tmp_path / "binned"
    build_binned_dataset(saved_events, BinningConfig(fps=10), output_dir=out)
    real = binning._chunk_table
    calls = []

    def crash_on_second_split(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:  # the first split is already streamed to disk
            raise failure("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(binning, "_chunk_table", crash_on_second_split)
    with pytest.raises(failure):
        build_binned_dataset(saved_events, BinningConfig(fps=5), output_dir=out, overwrite=True)
    calls.clear()
    with pytest.raises(failure):
        build_binned_dataset(saved_events, BinningConfig(fps=5), output_dir=tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    assert len(datasets.load_from_disk(str(out))["train"]) == 6  # the previous output survives
    assert leftovers(tmp_path) == []


def test_output_inside_input_is_refused(saved_events: Path) -> None:
    with pytest.raises(DatasetError, match="holds the input"):
        build_binned_dataset(saved_events, output_dir=saved_events, overwrite=True)
    assert datasets.load_from_disk(str(saved_events))["train"].features == EVENT_FEATURES


# --------------------------------------------------------------------------------------------------
# CLI and script
# --------------------------------------------------------------------------------------------------


def saved_config(binned: datasets.Dataset) -> BinningConfig:
    """The BinningConfig a binned dataset records in its metadata."""
    return BinningConfig.from_json(json.loads(binned.info.description)["owa_data"]["binning"])


def run_cli(*args: str):
    return CliRunner().invoke(app, ["bin", *args])


def test_cli_end_to_end(saved_events: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = run_cli(
        "--input-dir", str(saved_events), "--output-dir", str(out), "--fps", "10", "--filter-empty-actions"
    )
    assert result.exit_code == 0, result.output
    assert "train: 3 bins" in result.output
    assert datasets.load_from_disk(str(out))["train"]["bin_idx"] == [0, 1, 4]
    # The flags, the Python API and the saved metadata are one BinningConfig.
    assert saved_config(datasets.load_from_disk(str(out))["test"]) == BinningConfig(fps=10, filter_empty_actions=True)
    result = run_cli(
        "--input-dir",
        str(saved_events),
        "--output-dir",
        str(out),
        "--no-filter-empty-actions",
        "--overwrite",
        "--numeric-actions",
    )
    assert result.exit_code == 0, result.output
    assert datasets.load_from_disk(str(out))["train"]["mouse_x"] == [10, 10, 10, 10, 10, 10]
    assert saved_config(datasets.load_from_disk(str(out))["train"]) == BinningConfig(numeric_actions=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fps", "0"], "Error: Invalid fps (0.0)"),
        (["--fps", "-3"], "Error: Invalid fps (-3.0)"),
        (["--action-topic", "screen"], "Error: Invalid state_topic"),
    ],
)
def test_cli_bad_flags_give_one_line(saved_events: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("--input-dir", str(saved_events), "--output-dir", str(tmp_path / "o"), *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_cli_bad_input_and_existing_output(saved_events: Path, tmp_path: Path) -> None:
    result = run_cli("--input-dir", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "o"))
    assert result.exit_code == 2 and result.stderr.startswith("Error: Input folder does not exist")
    other = tmp_path / "other"
    datasets.Dataset.from_dict({"text": ["hi"]}).save_to_disk(str(other))
    result = run_cli("--input-dir", str(other), "--output-dir", str(tmp_path / "o"))
    assert result.exit_code == 2 and result.stderr.startswith("Error: Not an Event Dataset: column 'episode_path'")
    assert result.stderr.count("\n") == 1
    (tmp_path / "o").mkdir()
    result = run_cli("--input-dir", str(saved_events), "--output-dir", str(tmp_path / "o"))
    assert result.exit_code == 2 and "already exists" in result.stderr


def test_script_runs_as_plain_script_with_spec_flags(saved_events: Path, tmp_path: Path) -> None:
    out = tmp_path / "script-out"
    script = REPO_ROOT / "scripts" / "02_event_dataset_to_binned_dataset.py"
    completed = subprocess.run(
        [
            sys.executable,
            str(script),
            "--input-dir",
            str(saved_events),
            "--output-dir",
            str(out),
            "--fps",
            "10",
            "--filter-empty-actions",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"},
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "Binned split train" in completed.stderr  # the library's INFO log, configured by the script
    binned = datasets.load_from_disk(str(out))
    assert binned["train"].features == BINNED_FEATURES
    assert binned["test"]["bin_idx"] == [0]


def test_benchmark_quick_mode_runs() -> None:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from benchmarks import bench_binning

    table = bench_binning.synthesize(3, seed=1)
    assert table.schema == EVENT_FEATURES.arrow_schema.remove_metadata()
    assert all(McapMessage.model_validate_json(blob).decoded for blob in table.column("mcap_message").to_pylist())
    results = bench_binning.main(["--quick", "--episodes", "4"])
    assert results["event_ratio_3n_over_n"] == pytest.approx(3, rel=0.3)
    for size, episodes in (("n", 4), ("3n", 12), ("n_unsorted", 4)):  # every episode and action was binned
        assert results[f"binned_episodes_{size}"] == results[f"episodes_{size}"] == episodes
        assert results[f"binned_actions_{size}"] == results[f"actions_{size}"] > 0
    assert results["events_per_s_n"] > 0 and results["upstream_events_per_s"] > 0


def test_config_is_json_ready_and_fractions_are_exact() -> None:
    config = BinningConfig(fps=Fraction(1, 3))
    assert config.fps == 1 / 3 and config.bin_width_ns == Fraction(3 * 10**9)
    assert config.to_json() == {
        "fps": 1 / 3,
        "filter_empty_actions": False,
        "action_topics": ["keyboard", "mouse"],
        "state_topic": "screen",
        "numeric_actions": False,
    }
    assert BinningConfig(fps=29.97).bin_width_ns == Fraction(10**11, 2997)
    with pytest.raises(ValueError, match="Invalid filter_empty_actions"):
        BinningConfig(filter_empty_actions="yes")
