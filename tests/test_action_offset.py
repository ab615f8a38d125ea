"""The inverse-dynamics action offset: the sequence order (pure numpy), the exact tokens of a hand-written episode,
decoding back to recorded times, and packed samples across segments decoded with exact absolute timestamps."""

from __future__ import annotations

import datasets
import numpy as np
import orjson
import pytest

from owa.data.action_offset import event_order, offset_order, segment_starts
from owa.data.episode_tokenizer import EpisodeTokenizer, EpisodeTokenizerConfig
from owa.data.errors import DatasetError
from owa.data.fsl_dataset import FSLDataset
from owa.data.messages import McapMessage, MediaRef, ScreenCaptured, dump_mcap_message_json
from owa.data.testing import tiny_bpe_tokenizer

MS = 1_000_000
T0 = 4_000 * 1_000 * MS  # a multiple of 4 s and of 10 s: encoded digits are the milliseconds
TAU_S = 0.1

Row = tuple[str, int, str, bytes]  # topic, timestamp_ns, message_type, payload


def key(ms: int, vk: int = 65, event_type: str = "press", base: int = T0) -> Row:
    payload = orjson.dumps({"event_type": event_type, "vk": vk})
    return "keyboard", base + ms * MS, "desktop/KeyboardEvent", payload


def move(ms: int, base: int = T0) -> Row:
    return "mouse", base + ms * MS, "desktop/MouseEvent", orjson.dumps({"event_type": "move", "x": 0, "y": 0})


def raw(ms: int, dx: int, base: int = T0) -> Row:
    return "mouse/raw", base + ms * MS, "desktop/RawMouseEvent", orjson.dumps({"last_x": dx, "last_y": -dx})


def screen(ms: int, base: int = T0) -> Row:
    payload = ScreenCaptured(utc_ns=base + ms * MS, shape=(8, 6), media_ref=MediaRef(uri="v.mkv", pts_ns=ms * MS))
    return "screen", base + ms * MS, "desktop/ScreenCaptured", payload.model_dump_json(exclude_none=True).encode()


def event_dataset(episodes: dict[str, list[Row]], intervals: list[int] | None = None) -> datasets.Dataset:
    columns: dict[str, list] = {k: [] for k in ("episode_path", "topic", "timestamp_ns", "mcap_message")}
    for path, rows in episodes.items():
        for topic, timestamp_ns, message_type, payload in rows:
            columns["episode_path"].append(path)
            columns["topic"].append(topic)
            columns["timestamp_ns"].append(timestamp_ns)
            columns["mcap_message"].append(dump_mcap_message_json(topic, timestamp_ns, message_type, payload))
    features = {
        "episode_path": datasets.Value("string"),
        "topic": datasets.Value("string"),
        "timestamp_ns": datasets.Value("int64"),
        "mcap_message": datasets.Value("binary"),
    }
    if intervals is not None:
        columns["interval"] = intervals
        features["interval"] = datasets.Value("int64")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


# The hand-written episode: screen frames every 50 ms, a key press at 30 ms, a mouse move at 120 ms, a key release
# at 180 ms (in the last τ: its t + τ = 280 ms is past the last frame, at 200 ms).
EPISODE = [screen(0), key(30), screen(50), screen(100), move(120), screen(150), key(180, event_type="release")]
EPISODE += [screen(200)]


def frame(ms: int) -> str:
    return f"<EVENT_START><TIMESTAMP><0><{ms // 100 % 10}><{ms // 10 % 10}><IMAGE><EVENT_END>"


def key_text(ms: int, event_type: str = "press") -> str:
    return f"<EVENT_START><TIMESTAMP><0><{ms // 100 % 10}><{ms // 10 % 10}><KEYBOARD><65><{event_type}><EVENT_END>"


def move_text(ms: int) -> str:
    return f"<EVENT_START><TIMESTAMP><0><{ms // 100 % 10}><{ms // 10 % 10}><MOUSE><move>" + "<0>" * 6 + "<EVENT_END>"


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_bpe_tokenizer()


def prepared(tokenizer, **options) -> EpisodeTokenizer:
    event_tokenizer = EpisodeTokenizer(image_token_length=1, **options)
    event_tokenizer.prepare_model(tokenizer=tokenizer)
    return event_tokenizer


# ------------------------------------------------------------------------------------------------------------
# The order, pure numpy
# ------------------------------------------------------------------------------------------------------------


def test_actions_move_tau_later_after_the_frames_up_to_their_shifted_time() -> None:
    # frames 0, 50, 100, 150, 200; actions at 30 (-> 130), 100 (-> 200: a tie with the frame at 200), 180 (-> 280)
    times = np.array([0, 30, 50, 100, 100, 150, 180, 200])
    is_action = np.array([False, True, False, False, True, False, True, False])
    starts = np.array([True] + [False] * 7)
    order, encoded, moved = offset_order(times, is_action, starts, 100)
    assert order.tolist() == [0, 2, 3, 1, 5, 7, 4, 6]
    assert encoded.tolist() == [0, 50, 100, 130, 150, 200, 200, 280]  # the frame at 200 before the action at 200
    assert moved.tolist() == [False, False, False, True, False, False, True, True]
    # Offset 0: nothing moves.
    assert offset_order(times, is_action, starts, 0).order.tolist() == list(range(8))


def test_actions_never_leave_their_segment() -> None:
    # Two segments; the action at 190 would land after the second segment's first frame (250) if segments mixed.
    times = np.array([0, 190, 200, 250, 260, 300])
    is_action = np.array([False, True, False, False, True, False])
    starts = np.array([True, False, False, True, False, False])
    order, encoded, _ = offset_order(times, is_action, starts, 100)
    assert order.tolist() == [0, 2, 1, 3, 5, 4]
    assert encoded.tolist() == [0, 200, 290, 250, 300, 360]


def test_rows_out_of_time_order_are_never_reordered_within_their_kind() -> None:
    times = np.array([100, 0, 50, 10, 200])  # a frame at 100 before one at 0: kept in that order
    is_action = np.array([False, False, True, True, False])
    order, encoded, _ = offset_order(times, is_action, np.array([True, False, False, False, False]), 100)
    assert order.tolist() == [0, 1, 2, 3, 4]  # actions (150, 110 -> running max 150) stay between 100 and 200
    assert encoded.tolist() == [100, 0, 150, 110, 200]


def test_segments_follow_episode_path_and_interval() -> None:
    events = event_dataset(
        {"a": [screen(0), key(10)], "b": [screen(0), key(10), screen(20)]}, intervals=[0] * 3 + [1] * 2
    )
    table = events.with_format("arrow")[:]
    assert segment_starts(table).tolist() == [True, False, True, True, False]
    assert segment_starts(table.drop_columns(["interval"])).tolist() == [True, False, True, False, False]


def test_the_offset_needs_timestamps_and_topics() -> None:
    events = event_dataset({"a": EPISODE}).remove_columns(["topic"])
    with pytest.raises(DatasetError, match="topic"):
        event_order(events, TAU_S, ("keyboard",))


def test_the_config_validates_serializes_and_fingerprints_the_offset(tokenizer) -> None:
    config = EpisodeTokenizerConfig(action_offset_s=0.1, action_topics=["keyboard", "mouse"])  # type: ignore[arg-type]
    assert config.action_topics == ("keyboard", "mouse")
    assert EpisodeTokenizerConfig().action_offset_s == 0.0
    assert EpisodeTokenizerConfig().action_topics == ("keyboard", "mouse", "mouse/raw")
    json = orjson.loads(orjson.dumps(config.to_json()))
    assert (json["action_offset_s"], json["action_topics"]) == (0.1, ["keyboard", "mouse"])
    assert EpisodeTokenizerConfig.from_json(json) == config
    for bad in (-0.1, float("nan"), True, "0.1"):
        with pytest.raises(ValueError, match="action_offset_s"):
            EpisodeTokenizerConfig(action_offset_s=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="action_topics"):
        EpisodeTokenizerConfig(action_topics="keyboard")  # type: ignore[arg-type]
    events = event_dataset({"a.mcap": EPISODE})
    plain, shifted = prepared(tokenizer), prepared(tokenizer, action_offset_s=TAU_S)
    assert plain._fingerprint(events, "/") != shifted._fingerprint(events, "/")


# ------------------------------------------------------------------------------------------------------------
# A hand-written episode, exact
# ------------------------------------------------------------------------------------------------------------


def test_a_hand_written_episode_gets_the_exact_shifted_order_and_timestamps(tokenizer) -> None:
    events = event_dataset({"a.mcap": EPISODE})
    out = prepared(tokenizer, action_offset_s=TAU_S).tokenize_event_dataset(events)
    assert out["text"] == [
        "<EPISODE_START>" + frame(0),
        frame(50),
        frame(100),
        key_text(130),  # pressed at 30 ms: after the frames up to 130 ms (its first τ has its frames), encodes 130
        frame(150),
        frame(200),
        move_text(220),  # moved at 120 ms
        key_text(280, "release") + "<EPISODE_END>",  # released at 180 ms, in the last τ: last, after the last frame
    ]
    assert out["token_ids"] == [tokenizer.encode(text, add_special_tokens=False) for text in out["text"]]
    assert [len(images) for images in out["images"]] == [1, 1, 1, 0, 1, 1, 0, 0]
    assert [orjson.loads(ref)["media_ref"]["pts_ns"] // MS for refs in out["images"] for ref in refs] == [
        0,
        50,
        100,
        150,
        200,
    ]


def test_no_offset_gives_exactly_the_output_without_one(tokenizer) -> None:
    events = event_dataset({"a.mcap": EPISODE})
    out = prepared(tokenizer, action_offset_s=0.0).tokenize_event_dataset(events)
    assert out["text"] == [
        "<EPISODE_START>" + frame(0),
        key_text(30),
        frame(50),
        frame(100),
        move_text(120),
        frame(150),
        key_text(180, "release"),
        frame(200) + "<EPISODE_END>",
    ]
    default = prepared(tokenizer).tokenize_event_dataset(events)
    assert out.data.table.equals(default.data.table) and out.features == default.features


def test_topics_outside_action_topics_stay_in_place(tokenizer) -> None:
    events = event_dataset({"a.mcap": EPISODE})
    out = prepared(tokenizer, action_offset_s=TAU_S, action_topics=("mouse",)).tokenize_event_dataset(events)
    assert out["text"][1:] == [
        key_text(30),
        frame(50),
        frame(100),
        frame(150),
        key_text(180, "release"),
        frame(200),
        move_text(220) + "<EPISODE_END>",
    ]


def test_single_events_and_decoding_use_the_same_clock(tokenizer) -> None:
    event_tokenizer = prepared(tokenizer, action_offset_s=TAU_S)
    press = McapMessage(topic="keyboard", timestamp=T0 + 30 * MS, message=key(30)[3], message_type=key(30)[2])
    assert event_tokenizer.tokenize(press)["text"] == key_text(130)
    events = event_dataset({"a.mcap": EPISODE})
    out = event_tokenizer.tokenize_event_dataset(events)
    ids = [token for row in out["token_ids"] for token in row]
    decoded = event_tokenizer.decode(ids, start_timestamp_ns=T0)
    # In sequence order, with the recorded times back.
    assert [(m.topic, (m.timestamp - T0) // MS) for m in decoded] == [
        ("screen", 0),
        ("screen", 50),
        ("screen", 100),
        ("keyboard", 30),
        ("screen", 150),
        ("screen", 200),
        ("mouse", 120),
        ("keyboard", 180),
    ]


def test_skipped_rows_are_named_by_their_event_dataset_row(tokenizer) -> None:
    bad = ("keyboard", T0 + 30 * MS, "desktop/KeyboardEvent", b'{"event_type":"press"}')  # no vk
    events = event_dataset({"a.mcap": [screen(0), bad, screen(50), screen(100), screen(150)]})
    event_tokenizer = prepared(tokenizer, action_offset_s=TAU_S)
    with pytest.raises(Exception, match="vk") as info:
        event_tokenizer.tokenize_event_dataset(events)
    assert info.value.row == 1  # type: ignore[attr-defined]  # its row in the Event Dataset, not its new position


# ------------------------------------------------------------------------------------------------------------
# Packed samples across segments, factorized encoder (its times wrap every 10 s)
# ------------------------------------------------------------------------------------------------------------


def factorized_episode(base: int) -> list[Row]:
    """Frames every 50 ms, raw mouse motion and keys in between; the motion at 190 ms is in the last τ."""
    return [
        screen(0, base),
        raw(30, 5, base),
        screen(50, base),
        key(60, base=base),
        screen(100, base),
        raw(120, -7, base),
        screen(150, base),
        key(170, event_type="release", base=base),
        raw(190, 1, base),
        screen(200, base),
    ]


@pytest.mark.parametrize("layout", ["episodes", "intervals"])
@pytest.mark.parametrize("max_sequence_length", [40, 97, 100_000])
def test_a_packed_sample_across_a_gap_decodes_to_exact_absolute_times(
    tokenizer, layout: str, max_sequence_length: int
) -> None:
    first = factorized_episode(T0 + 3_450 * MS)
    second = factorized_episode(T0 + 3_450 * MS + 27_130 * MS)  # 27 s later: beyond the factorized 10 s wrap
    if layout == "episodes":
        events = event_dataset({"a.mcap": first, "b.mcap": second})
    else:  # one recording, two intervals of it
        events = event_dataset({"a.mcap": first + second}, intervals=[0] * len(first) + [1] * len(second))
    event_tokenizer = EpisodeTokenizer(encoder_type="factorized", image_token_length=1, action_offset_s=TAU_S)
    event_tokenizer.prepare_model(tokenizer=tokenizer)
    tokenized = event_tokenizer.tokenize_event_dataset(events)
    fsl = FSLDataset(
        tokenized, pad_token_id=0, max_sequence_length=max_sequence_length, load_images=False, log_every=None
    ).prepare()
    if max_sequence_length == 100_000:
        assert len(fsl) == 1  # one sample holds both segments, across the 27 s gap
    sequence = event_order(events, TAU_S, event_tokenizer.config.action_topics)
    messages = [McapMessage.model_validate_json(m) for m in events["mcap_message"]]
    # Every action comes after the frames of the τ that followed it, in its own segment.
    assert [(messages[row].topic, (messages[row].timestamp - T0) // MS) for row in sequence.order[:10]] == [
        ("screen", 3450),
        ("screen", 3500),
        ("screen", 3550),
        ("mouse/raw", 3480),  # t + τ = 3580
        ("screen", 3600),
        ("keyboard", 3510),  # 3610
        ("screen", 3650),  # the last frame
        ("mouse/raw", 3570),  # 3670
        ("keyboard", 3620),  # 3720
        ("mouse/raw", 3640),
    ]
    decoded_rows = 0
    for index in range(len(fsl)):
        segments = fsl.segments(index)
        for (path, decoded), (_, rows) in zip(fsl.decode(index, event_tokenizer, events), segments, strict=True):
            expected = [messages[sequence.order[row]] for row in rows]
            assert [(m.topic, m.timestamp) for m in decoded] == [(m.topic, m.timestamp) for m in expected], path
            assert [orjson.loads(m.message) for m in decoded if m.topic == "keyboard"] == [
                orjson.loads(m.message) for m in expected if m.topic == "keyboard"
            ]
            decoded_rows += len(decoded)
    assert decoded_rows == len(events)
