"""The factorized encoder: exact tokens, clamping, errors, vocabulary, round trips, time unwrapping, tokenizer."""

from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owa.data import McapMessage, ScreenCaptured, create_encoder
from owa.data.encoders import FactorizedConfig, FactorizedEncoder, available_encoders
from owa.data.episode_tokenizer import EpisodeTokenizer
from owa.data.errors import EncodingError
from owa.data.messages import deserialize_screen
from owa.data.recordings.synthetic import SampleConfig, write_sample_episode
from owa.data.testing import event_dataset_from_mcap, tiny_bpe_tokenizer

TOKEN = re.compile(r"<[^<>]*>")
T0 = 1_750_427_723_476_384_500  # (T0 // 10 ms) mod 1000 = 347
PERIOD_NS = 10_000_000_000
CELL_NS = 10_000_000
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
PROPERTY = settings(max_examples=200, deadline=None)

SCREEN_PAYLOAD = (
    b'{"utc_ns":1768131731227929100,"source_shape":[1025,1017],"shape":[1025,1017],'
    b'"media_ref":{"uri":"0.5.1.mkv","pts_ns":50000000}}'
)
START, END = "<EVENT_START>", "<EVENT_END>"
ZERO = "<SIGN_PLUS><0><0><0><0>"


def keyboard(event_type: str = "press", vk: int = 65, timestamp_ns: int = T0) -> McapMessage:
    payload = {"event_type": event_type, "vk": vk}
    return McapMessage(
        topic="keyboard", timestamp=timestamp_ns, message=orjson.dumps(payload), message_type="desktop/KeyboardEvent"
    )


def raw(timestamp_ns: int = T0, **payload: object) -> McapMessage:
    return McapMessage(
        topic="mouse/raw", timestamp=timestamp_ns, message=orjson.dumps(payload), message_type="desktop/RawMouseEvent"
    )


def screen(timestamp_ns: int = T0) -> McapMessage:
    return McapMessage(
        topic="screen", timestamp=timestamp_ns, message=SCREEN_PAYLOAD, message_type="desktop/ScreenCaptured"
    )


def tokens_of(text: str) -> list[str]:
    tokens = TOKEN.findall(text)
    assert "".join(tokens) == text
    return tokens


@pytest.fixture
def fact() -> FactorizedEncoder:
    encoder = create_encoder("factorized")
    assert isinstance(encoder, FactorizedEncoder)
    return encoder


# ----------------------------------------------------------------------------------------- exact tokens


def test_keyboard_exact_tokens(fact: FactorizedEncoder) -> None:
    assert fact.encode(keyboard("press", 65)) == (f"{START}<KEYBOARD><3><4><7><VK_65><press>{END}", [])
    assert fact.encode(keyboard("release", 255, timestamp_ns=0)) == (
        f"{START}<KEYBOARD><0><0><0><VK_255><release>{END}",
        [],
    )


@pytest.mark.parametrize(
    ("payload", "data"),
    [
        ({"last_x": 12, "last_y": 345}, "<SIGN_PLUS><0><0><1><2><SIGN_PLUS><0><3><4><5><MB_0><MB_0><MB_0>"),
        ({"last_x": -1, "last_y": -1999}, "<SIGN_MINUS><0><0><0><1><SIGN_MINUS><1><9><9><9><MB_0><MB_0><MB_0>"),
        ({"last_x": 0, "last_y": 0, "button_flags": 0x0001}, f"{ZERO}{ZERO}<MB_0><MB_0><MB_1>"),  # left down
        ({"last_x": 0, "last_y": 0, "button_flags": 0x0200}, f"{ZERO}{ZERO}<MB_2><MB_0><MB_0>"),  # button 5 up
        ({"last_x": 3, "last_y": 0, "button_flags": 0x0022}, f"<SIGN_PLUS><0><0><0><3>{ZERO}<MB_0><MB_2><MB_2>"),
        # vertical wheel (RI_MOUSE_WHEEL 0x400), one notch up; then two down, as a USHORT (65296 = -240)
        ({"last_x": 0, "last_y": 0, "button_flags": 0x0400, "button_data": 120}, f"{ZERO}{ZERO}<MB_4><MB_0><MB_0>"
         "<SIGN_PLUS><1>"),
        ({"last_x": 0, "last_y": 0, "button_flags": 0x0400, "button_data": 65296}, f"{ZERO}{ZERO}<MB_4><MB_0><MB_0>"
         "<SIGN_MINUS><2>"),
        # horizontal wheel (RI_MOUSE_HWHEEL 0x800), signed form
        ({"last_x": 0, "last_y": 0, "button_flags": 0x0800, "button_data": -360}, f"{ZERO}{ZERO}<MB_8><MB_0><MB_0>"
         "<SIGN_MINUS><3>"),
        # button_data without wheel flags carries no wheel: nothing follows the flags
        ({"last_x": 0, "last_y": 0, "button_flags": 0, "button_data": 120}, f"{ZERO}{ZERO}<MB_0><MB_0><MB_0>"),
        # every field the recorder writes; us_flags, device_handle and timestamp are not encoded
        (
            {"last_x": 7, "last_y": -8, "us_flags": 0, "button_flags": 0, "button_data": 0, "device_handle": 65537,
             "timestamp": 5},
            "<SIGN_PLUS><0><0><0><7><SIGN_MINUS><0><0><0><8><MB_0><MB_0><MB_0>",
        ),
    ],
)  # fmt: skip
def test_raw_mouse_exact_tokens(fact: FactorizedEncoder, payload: dict, data: str) -> None:
    text, images = fact.encode(raw(**payload))
    assert text == f"{START}<MOUSE><3><4><7>{data}{END}" and images == []
    assert set(tokens_of(text)) <= fact.get_vocab()


def test_screen_exact_tokens_and_custom_image_token(fact: FactorizedEncoder) -> None:
    text, images = fact.encode(screen())
    assert text == f"{START}<SCREEN><3><4><7><IMAGE>{END}"
    assert [i.model_dump() for i in images] == [ScreenCaptured.model_validate_json(SCREEN_PAYLOAD).model_dump()]
    back = fact.decode(text, images)
    assert back.topic == "screen" and back.timestamp == 3_470_000_000
    assert ScreenCaptured.model_validate_json(back.message) == images[0]
    assert fact.decode(text).message == b"{}"
    custom = create_encoder("factorized", image_token="<image>")
    text, _ = custom.encode(screen())
    assert text == f"{START}<SCREEN><3><4><7><image>{END}" and "<image>" in custom.get_vocab()


@pytest.mark.parametrize(
    ("timestamp_ns", "digits"),
    [
        (0, "<0><0><0>"),
        (CELL_NS - 1, "<0><0><0>"),
        (CELL_NS, "<0><0><1>"),
        (120_000_000, "<0><1><2>"),  # an exact boundary lands in its own cell (integer arithmetic)
        (PERIOD_NS - 1, "<9><9><9>"),
        (PERIOD_NS, "<0><0><0>"),  # wraps every 10 s
        (-1, "<9><9><9>"),
    ],
)
def test_time_digits(fact: FactorizedEncoder, timestamp_ns: int, digits: str) -> None:
    assert fact.encode(keyboard(timestamp_ns=timestamp_ns))[0] == f"{START}<KEYBOARD>{digits}<VK_65><press>{END}"


def test_vocabulary_contents(fact: FactorizedEncoder) -> None:
    structural = {START, END, "<KEYBOARD>", "<MOUSE>", "<SCREEN>", "<press>", "<release>"}
    expected = structural | {"<SIGN_PLUS>", "<SIGN_MINUS>", "<IMAGE>"}
    expected |= {f"<VK_{i}>" for i in range(256)} | {f"<MB_{i}>" for i in range(16)} | {f"<{i}>" for i in range(10)}
    assert fact.get_vocab() == expected and len(expected) == 292
    for token in ("<SCREEN>", "<5>", "<MB_3>", "<SIGN_PLUS>", " <IMAGE>"):
        with pytest.raises(ValueError, match="image_token"):
            create_encoder("factorized", image_token=token)
    assert available_encoders() == ["hierarchical", "json", "factorized"]
    with pytest.raises(TypeError, match="FactorizedConfig"):
        FactorizedEncoder(create_encoder("json").config)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------- out-of-range policy


def test_motion_beyond_1999_is_clamped_and_counted(fact: FactorizedEncoder, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="owa.data.encoders.factorized"):
        text, _ = fact.encode(raw(last_x=5000, last_y=-2000))
        assert text == f"{START}<MOUSE><3><4><7><SIGN_PLUS><1><9><9><9><SIGN_MINUS><1><9><9><9><MB_0><MB_0><MB_0>{END}"
        fact.encode(raw(last_x=-(2**40), last_y=0))
    assert fact.stats.coordinates_clamped == 3  # each value beyond the range, never wrapped
    assert fact.stats.scrolls_clamped == 0
    assert len([r for r in caplog.records if "beyond" in r.message]) == 1  # logged once
    assert orjson.loads(fact.decode(text).message)["last_x"] == 1999


@pytest.mark.parametrize(
    ("button_data", "tail", "clamped"),
    [
        (1080, "<SIGN_PLUS><9>", 0),  # 9 notches: in range
        (1200, "<SIGN_PLUS><9>", 1),
        (-120 * 12, "<SIGN_MINUS><9>", 1),
        (65536 - 120 * 30, "<SIGN_MINUS><9>", 1),  # a USHORT of -30 notches
        (59, "<SIGN_PLUS><0>", 0),  # less than half a notch (precision wheels): rounds to 0
        (60, "<SIGN_PLUS><1>", 0),  # halves round away from zero
        (-60, "<SIGN_MINUS><1>", 0),
        (-179, "<SIGN_MINUS><1>", 0),
        (0, "<SIGN_PLUS><0>", 0),
    ],
)
def test_wheel_is_rounded_to_notches_and_clamped(button_data: int, tail: str, clamped: int) -> None:
    fact = create_encoder("factorized")
    text, _ = fact.encode(raw(last_x=0, last_y=0, button_flags=0x0400, button_data=button_data))
    assert text == f"{START}<MOUSE><3><4><7>{ZERO}{ZERO}<MB_4><MB_0><MB_0>{tail}{END}"
    assert fact.stats.scrolls_clamped == clamped and fact.stats.coordinates_clamped == 0


def test_values_the_format_cannot_hold_raise(fact: FactorizedEncoder) -> None:
    with pytest.raises(EncodingError, match="MOUSE_MOVE_ABSOLUTE") as info:
        fact.encode(raw(last_x=30000, last_y=30000, us_flags=1))
    assert info.value.topic == "mouse/raw" and info.value.timestamp_ns == T0
    with pytest.raises(EncodingError, match="button_flags=0x1000"):
        fact.encode(raw(last_x=0, last_y=0, button_flags=0x1000))
    with pytest.raises(EncodingError, match="button_flags=0x-1"):
        fact.encode(raw(last_x=0, last_y=0, button_flags=-1))
    with pytest.raises(EncodingError, match="vk=256"):
        fact.encode(keyboard(vk=256))
    for payload in ({"last_x": "1", "last_y": 0}, {"last_x": True, "last_y": 0}, {"last_y": 0}, {"last_x": 0, "a": 1}):
        with pytest.raises(EncodingError, match="desktop/RawMouseEvent"):
            fact.encode(raw(**payload))
    # Unusual but valid: a whole float is an int for the typed model.
    assert fact.encode(raw(last_x=3.0, last_y=0))[0] == fact.encode(raw(last_x=3, last_y=0))[0]


def test_topics_absolute_mouse_and_others_raise_naming_topic(fact: FactorizedEncoder) -> None:
    absolute = McapMessage(
        topic="mouse", timestamp=9, message=b'{"event_type":"move","x":1,"y":2}', message_type="desktop/MouseEvent"
    )
    window = McapMessage(
        topic="window",
        timestamp=5,
        message=b'{"title":"x","rect":[0,0,1,1],"hWnd":1}',
        message_type="desktop/WindowInfo",
    )
    for message in (absolute, window):
        with pytest.raises(EncodingError, match="Supported topics: keyboard, mouse/raw, screen") as info:
            fact.encode(message)
        assert info.value.topic == message.topic and info.value.timestamp_ns == message.timestamp
    wrong_type = raw(last_x=0, last_y=0).model_copy(update={"message_type": "desktop/MouseEvent"})
    with pytest.raises(EncodingError, match="expected 'desktop/RawMouseEvent'"):
        fact.encode(wrong_type)
    # The other encoders name mouse/raw as unsupported, so a pipeline cannot feed it to them by mistake.
    with pytest.raises(EncodingError, match="cannot encode topic 'mouse/raw'"):
        create_encoder("hierarchical").encode(raw(last_x=0, last_y=0))


def test_encode_serialized_and_pickle(fact: FactorizedEncoder) -> None:
    for message in (keyboard(), raw(last_x=-4, last_y=9, button_flags=0x400, button_data=240), screen()):
        assert fact.encode_serialized(message.model_dump_json()) == fact.encode(message)
    fact.encode(raw(last_x=9999, last_y=0))
    clone = pickle.loads(pickle.dumps(fact))
    assert clone.config == fact.config == FactorizedConfig() and clone.stats == fact.stats
    assert clone.encode(keyboard()) == fact.encode(keyboard())


# ------------------------------------------------------------------------------------------------ decode


@pytest.mark.parametrize(
    "text",
    [
        "<KEYBOARD><3><4><7><VK_65><press>",  # no event tokens
        f"{START}{END}",
        f"{START}<TIMESTAMP><3><4><7><VK_65><press>{END}",
        f"{START}<KEYBOARD><3><4><VK_65><press>{END}",
        f"{START}<KEYBOARD><3><4><17><VK_65><press>{END}",
        f"{START}<KEYBOARD><3><4><7><VK_256><press>{END}",
        f"{START}<KEYBOARD><3><4><7><VK_065><press>{END}",
        f"{START}<KEYBOARD><3><4><7><VK_65><hold>{END}",
        f"{START}<KEYBOARD><3><4><7> <VK_65><press>{END}",
        f"{START}<MOUSE><3><4><7>{ZERO}{ZERO}<MB_0><MB_0>{END}",
        f"{START}<MOUSE><3><4><7><SIGN_PLUS><2><0><0><0>{ZERO}<MB_0><MB_0><MB_0>{END}",  # first digit is base 2
        f"{START}<MOUSE><3><4><7><SIGN_MINUS><0><0><0><0>{ZERO}<MB_0><MB_0><MB_0>{END}",  # zero is SIGN_PLUS
        f"{START}<MOUSE><3><4><7><0><0><0><0><0>{ZERO}<MB_0><MB_0><MB_0>{END}",
        f"{START}<MOUSE><3><4><7>{ZERO}{ZERO}<MB_0><MB_16><MB_0>{END}",
        f"{START}<MOUSE><3><4><7>{ZERO}{ZERO}<MB_0><MB_0><MB_0><SIGN_PLUS><1>{END}",  # wheel without wheel flags
        f"{START}<MOUSE><3><4><7>{ZERO}{ZERO}<MB_4><MB_0><MB_0>{END}",  # wheel flags without wheel
        f"{START}<MOUSE><3><4><7>{ZERO}{ZERO}<MB_4><MB_0><MB_0><SIGN_PLUS><10>{END}",
        f"{START}<SCREEN><3><4><IMAGE>{END}",
        f"{START}<SCREEN><3><4><7>{END}",
        f"{START}<SCREEN><3><4><7><image>{END}",
    ],
)
def test_decode_rejects_malformed_text(fact: FactorizedEncoder, text: str) -> None:
    with pytest.raises(EncodingError, match="event"):
        fact.decode(text)


def test_decode_screen_needs_one_screencaptured(fact: FactorizedEncoder) -> None:
    text, images = fact.encode(screen())
    with pytest.raises(EncodingError, match="exactly one ScreenCaptured"):
        fact.decode(text, images * 2)


# ------------------------------------------------------------------------------------- property tests


def spec_tokens(timestamp_ns: int, kind: str, data: list[str]) -> list[str]:
    """The issue's format, written independently of the encoder's tables."""
    cell = f"{timestamp_ns // CELL_NS % 1000:03d}"
    return [START, kind, *(f"<{c}>" for c in cell), *data, END]


def spec_signed(value: int, width: int) -> list[str]:
    return ["<SIGN_MINUS>" if value < 0 else "<SIGN_PLUS>", *(f"<{c}>" for c in f"{abs(value):0{width}d}")]


deltas = st.integers(-1999, 1999)
flags = st.integers(0, 0xFFF)
notches = st.integers(-9, 9)


@PROPERTY
@given(timestamp_ns=INT64, event_type=st.sampled_from(["press", "release"]), vk=st.integers(0, 255))
def test_keyboard_matches_spec_and_round_trips(timestamp_ns: int, event_type: str, vk: int) -> None:
    fact = create_encoder("factorized")
    text, _ = fact.encode(keyboard(event_type, vk, timestamp_ns))
    assert tokens_of(text) == spec_tokens(timestamp_ns, "<KEYBOARD>", [f"<VK_{vk}>", f"<{event_type}>"])
    assert set(tokens_of(text)) <= fact.get_vocab()
    back = fact.decode(text)
    assert back.topic == "keyboard" and back.timestamp == timestamp_ns % PERIOD_NS // CELL_NS * CELL_NS
    assert orjson.loads(back.message) == {"event_type": event_type, "vk": vk}
    assert fact.encode(back)[0] == text


@PROPERTY
@given(
    timestamp_ns=INT64,
    dx=deltas,
    dy=deltas,
    button_flags=flags,
    wheel=notches,
    ushort=st.booleans(),
    extra=st.fixed_dictionaries({}, optional={"device_handle": st.integers(0, 2**40), "timestamp": INT64}),
)
def test_raw_mouse_matches_spec_and_round_trips(
    timestamp_ns: int, dx: int, dy: int, button_flags: int, wheel: int, ushort: bool, extra: dict
) -> None:
    fact = create_encoder("factorized")
    has_wheel = bool(button_flags & 0xC00)
    delta = wheel * 120 if has_wheel else 0
    stored = delta + 65536 if ushort and delta < 0 else delta  # recorders write the USHORT or the signed value
    message = raw(
        timestamp_ns, last_x=dx, last_y=dy, us_flags=0, button_flags=button_flags, button_data=stored, **extra
    )
    text, _ = fact.encode(message)
    data = [*spec_signed(dx, 4), *spec_signed(dy, 4), *(f"<MB_{int(c, 16)}>" for c in f"{button_flags:03x}")]
    if has_wheel:
        data += spec_signed(wheel, 1)
    assert tokens_of(text) == spec_tokens(timestamp_ns, "<MOUSE>", data)
    assert set(tokens_of(text)) <= fact.get_vocab()
    back = fact.decode(text)
    assert back.topic == "mouse/raw" and back.message_type == "desktop/RawMouseEvent"
    assert back.timestamp == timestamp_ns % PERIOD_NS // CELL_NS * CELL_NS
    expected = {"last_x": dx, "last_y": dy, "us_flags": 0, "button_flags": button_flags, "button_data": delta}
    assert orjson.loads(back.message) == expected
    assert fact.encode(back)[0] == text
    assert fact.stats.counts() == {name: 0 for name in fact.stats.COUNTERS}


@PROPERTY
@given(dx=st.integers(-(2**62), 2**62), dy=st.integers(-(2**62), 2**62), data=st.integers(-(2**31), 2**31))
def test_out_of_range_values_clamp_never_wrap(dx: int, dy: int, data: int) -> None:
    fact = create_encoder("factorized")
    back = orjson.loads(
        fact.decode(fact.encode(raw(last_x=dx, last_y=dy, button_flags=0x800, button_data=data))[0]).message
    )
    assert back["last_x"] == max(-1999, min(1999, dx)) and back["last_y"] == max(-1999, min(1999, dy))
    assert fact.stats.coordinates_clamped == (abs(dx) > 1999) + (abs(dy) > 1999)
    signed = data - 65536 if 32768 <= data <= 65535 else data
    assert back["button_data"] * signed >= 0  # the wheel keeps its direction
    assert abs(back["button_data"]) <= 1080 and (fact.stats.scrolls_clamped == 1) == (abs(signed) >= 9.5 * 120)


# -------------------------------------------------------------------------------------------- unwrapping


def test_unwrap_across_a_10_s_boundary_from_a_known_start(fact: FactorizedEncoder) -> None:
    # A sample that starts mid-period (7.5 s into it), crosses two boundaries and has a 9 s pause.
    start = 1_750_427_727_500_000_000  # ...7.5 s mod 10 s
    times = [start, start + 2_495_000_000, start + 2_510_000_000, start + 11_510_000_000, start + 12_000_000_000]
    decoded = [fact.decode(fact.encode(keyboard(timestamp_ns=t))[0]).timestamp for t in times]
    assert decoded == [7_500_000_000, 9_990_000_000, 10_000_000, 9_010_000_000, 9_500_000_000]
    assert fact.unwrap_timestamps(decoded, start) == [t - t % CELL_NS for t in times]
    # Starting from 0 (upstream's decoder) would be off by the sample's start. A gap of 10 s or more between two
    # consecutive events cannot be recovered from times modulo 10 s: a new segment needs its own start.
    far = [start, start + 10_000_000_000]
    assert fact.unwrap_timestamps([t % PERIOD_NS for t in far], start) == [start, start]


@PROPERTY
@given(
    start=st.integers(0, 2**62),
    gaps=st.lists(st.integers(0, PERIOD_NS - CELL_NS - 1), max_size=30),
)
def test_unwrap_recovers_every_time_with_gaps_under_the_period(start: int, gaps: list[int]) -> None:
    fact = create_encoder("factorized")
    times = [start, *(start + s for s in np.cumsum(gaps, dtype=np.int64).tolist())]
    decoded = [fact.decode(fact.encode(keyboard(timestamp_ns=t))[0]).timestamp for t in times]
    assert fact.unwrap_timestamps(decoded, start) == [t - t % CELL_NS for t in times]


# -------------------------------------------------------------------------------------- EpisodeTokenizer


def test_episode_tokenizer_end_to_end_on_a_synthetic_raw_mouse_recording(tmp_path: Path) -> None:
    config = SampleConfig(seconds=12.0, fps=10.0, video=False, raw_mouse=True, seed=5, offscreen_prob=0.0)
    episode = write_sample_episode(tmp_path, "ep", config)
    events = event_dataset_from_mcap(episode.mcap_path, topics=("screen", "keyboard", "mouse/raw"))
    assert set(events["topic"]) == {"screen", "keyboard", "mouse/raw"}
    timestamps = np.array(events["timestamp_ns"])
    assert timestamps[-1] - timestamps[0] > PERIOD_NS and (np.diff(timestamps) < PERIOD_NS - CELL_NS).all()

    event_tokenizer = EpisodeTokenizer(encoder_type="factorized", image_token_length=3)
    event_tokenizer.prepare_model(tokenizer=tiny_bpe_tokenizer())
    out = event_tokenizer.tokenize_event_dataset(events, num_proc=1)
    assert out[0]["text"].startswith("<EPISODE_START><EVENT_START>") and out[-1]["text"].endswith("<EPISODE_END>")
    raw_text = out["text"][events["topic"].index("mouse/raw")]
    assert raw_text.startswith("<EVENT_START><MOUSE>") or raw_text.startswith("<EPISODE_START><EVENT_START><MOUSE>")
    screen_text = out["text"][events["topic"].index("screen")]
    assert "<SCREEN>" in screen_text and screen_text.count("<IMAGE>") == 3

    ids = [t for row in out["token_ids"] for t in row]
    refs = [deserialize_screen(r) for row in out["images"] for r in row]
    decoded = event_tokenizer.decode(ids, start_timestamp_ns=int(timestamps[0]), images=refs)
    assert len(decoded) == len(events)
    clamped, flags_seen = 0, set()
    for message, original_json in zip(decoded, events["mcap_message"], strict=True):
        original = McapMessage.model_validate_json(original_json)
        assert message.topic == original.topic and message.message_type == original.message_type
        assert message.timestamp == original.timestamp - original.timestamp % CELL_NS
        payload, before = orjson.loads(message.message), orjson.loads(original.message)
        if original.topic == "keyboard":
            assert payload == before
        elif original.topic == "mouse/raw":
            clamped += (abs(before["last_x"]) > 1999) + (abs(before["last_y"]) > 1999)
            flags_seen.add(before["button_flags"])
            assert payload["last_x"] == max(-1999, min(1999, before["last_x"]))
            assert payload["last_y"] == max(-1999, min(1999, before["last_y"]))
            assert payload["button_flags"] == before["button_flags"]
            assert payload["button_data"] == (before["button_data"] if before["button_flags"] & 0xC00 else 0)
        else:
            assert orjson.loads(message.message) == before
    assert event_tokenizer.encoder.stats.coordinates_clamped == clamped
    assert {0x0, 0x1, 0x2} <= flags_seen and flags_seen & {0x400, 0x800}  # motion, a click and a wheel


# ------------------------------------------------------------------------------------------------- docs

DOCS = Path(__file__).resolve().parent.parent / "docs" / "encoders.md"
DOC_SCREEN = b'{"utc_ns":1750427723476384500,"shape":[1920,1080],"media_ref":{"uri":"ep.mkv","pts_ns":50000000}}'


def absolute(event_type: str, **fields: object) -> McapMessage:
    payload = {"event_type": event_type, "x": 852, "y": 613, **fields}  # the json encoder keeps the field order
    return McapMessage(topic="mouse", timestamp=T0, message=orjson.dumps(payload), message_type="desktop/MouseEvent")


DOC_EVENTS = {
    "key press (vk 65)": keyboard("press", 65, T0),
    "mouse move (852, 613)": absolute("move"),
    "mouse click (left press)": absolute("click", button="left", pressed=True),
    "mouse scroll (dy -1)": absolute("scroll", dx=0, dy=-1),
    "raw mouse": raw(last_x=12, last_y=-5),
    "mouse (move, click, scroll)": absolute("move"),
    "raw motion (12, -5)": raw(last_x=12, last_y=-5, us_flags=0, button_flags=0, button_data=0),
    "raw left button down": raw(last_x=0, last_y=0, us_flags=0, button_flags=1, button_data=0),
    "raw wheel (one notch down)": raw(last_x=0, last_y=0, us_flags=0, button_flags=0x400, button_data=-120),
    "screen": McapMessage(topic="screen", timestamp=T0, message=DOC_SCREEN, message_type="desktop/ScreenCaptured"),
}


def test_docs_example_table_is_what_the_encoders_write() -> None:
    section = DOCS.read_text().split("## One event of each type, in each encoder", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\w+) \| ([^|]+?) \| (.+) \|$", section, re.M)
    rows = [row for row in rows if row[0] != "encoder"]
    assert {encoder for encoder, _, _ in rows} == set(available_encoders())
    assert len(rows) == 18
    for encoder_type, event, cell in rows:
        encoder = create_encoder(encoder_type)
        if cell == "—":
            with pytest.raises(EncodingError, match="cannot encode topic"):
                encoder.encode(DOC_EVENTS[event])
        else:
            assert cell == f"`{encoder.encode(DOC_EVENTS[event])[0]}`", (encoder_type, event)
