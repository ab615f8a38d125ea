"""Property tests (hypothesis) for encode -> decode, against an exact-rational oracle of the spec."""

from __future__ import annotations

import re
from fractions import Fraction
from math import floor

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from owa.data import McapMessage
from owa.data.encoders import create_encoder, unwrap_timestamps

TOKEN = re.compile(r"<[^<>]*>")
PERIOD_NS = 4_000_000_000
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
PROPERTY = settings(max_examples=150, deadline=None)


def spec_digits(value: Fraction, bases: tuple[int, ...]) -> list[int]:
    """The issue's definition, in exact rationals: d = floor(v * base), v = v * base - d, per base."""
    digits = []
    for base in bases:
        digit = floor(value * base)
        digits.append(digit)
        value = value * base - digit
    return digits


def spec_position_digits(pixel: int, size: int) -> list[int]:
    value = min(max(Fraction(pixel, size), Fraction(0)), Fraction(1))
    digits = spec_digits(value, (16, 16, 16))
    return [15, 15, 15] if digits[0] == 16 else digits  # our choice for a value of exactly 1.0


def message(topic: str, timestamp_ns: int, payload: dict) -> McapMessage:
    message_type = {"keyboard": "desktop/KeyboardEvent", "mouse": "desktop/MouseEvent"}[topic]
    return McapMessage(topic=topic, timestamp=timestamp_ns, message=orjson.dumps(payload), message_type=message_type)


def tokens_of(text: str) -> list[str]:
    tokens = TOKEN.findall(text)
    assert "".join(tokens) == text
    return tokens


keyboard_payloads = st.fixed_dictionaries(
    {"event_type": st.sampled_from(["press", "release"]), "vk": st.integers(0, 255)}
)
buttons = st.sampled_from(["left", "right", "middle", "unknown", "x1", "x2"])
coordinates = st.integers(-20_000, 20_000)
scroll_steps = st.one_of(st.none(), st.integers(-500, 500))


@st.composite
def mouse_payloads(draw: st.DrawFn) -> dict:
    event_type = draw(st.sampled_from(["move", "click", "scroll"]))
    payload = {"event_type": event_type, "x": draw(coordinates), "y": draw(coordinates)}
    if event_type == "click":
        payload.update(button=draw(buttons), pressed=draw(st.booleans()))
    elif event_type == "scroll":
        payload.update(dx=draw(scroll_steps), dy=draw(scroll_steps))
    return payload


@PROPERTY
@given(timestamp_ns=INT64, payload=keyboard_payloads, image_token=st.sampled_from(["<IMAGE>", "<image>"]))
def test_hierarchical_keyboard_matches_spec_and_round_trips(timestamp_ns: int, payload: dict, image_token: str) -> None:
    encoder = create_encoder("hierarchical", image_token=image_token)
    text, images = encoder.encode(message("keyboard", timestamp_ns, payload))
    time_digits = spec_digits(Fraction(timestamp_ns % PERIOD_NS, PERIOD_NS), (4, 10, 10))
    expected = ["<EVENT_START>", "<TIMESTAMP>", *(f"<{d}>" for d in time_digits)]
    expected += ["<KEYBOARD>", f"<{payload['vk']}>", f"<{payload['event_type']}>", "<EVENT_END>"]
    assert tokens_of(text) == expected
    assert set(expected) <= encoder.get_vocab() and images == []
    back = encoder.decode(text)
    assert back.topic == "keyboard" and back.message_type == "desktop/KeyboardEvent"
    assert orjson.loads(back.message) == payload
    assert back.timestamp == timestamp_ns % PERIOD_NS // 10_000_000 * 10_000_000


@PROPERTY
@given(
    timestamp_ns=INT64,
    payload=mouse_payloads(),
    width=st.integers(1, 4095),
    height=st.integers(1, 4095),
)
def test_hierarchical_mouse_matches_spec_and_round_trips(
    timestamp_ns: int, payload: dict, width: int, height: int
) -> None:
    encoder = create_encoder("hierarchical", screen_size=(width, height))
    text, _ = encoder.encode(message("mouse", timestamp_ns, payload))
    tokens = tokens_of(text)
    assert set(tokens) <= encoder.get_vocab()  # never a token outside the vocabulary, whatever the values
    xd = spec_position_digits(payload["x"], width)
    yd = spec_position_digits(payload["y"], height)
    assert tokens[5:13] == ["<MOUSE>", "<move>", *(f"<{d}>" for pair in zip(xd, yd, strict=True) for d in pair)]

    back = encoder.decode(text)
    expected = dict(payload, x=min(max(payload["x"], 0), width), y=min(max(payload["y"], 0), height))
    if payload["event_type"] == "scroll":
        expected.update(dx=min(max(payload["dx"] or 0, -10), 10), dy=min(max(payload["dy"] or 0, -10), 10))
    assert orjson.loads(back.message) == expected  # exact for on-screen pixels; clamped otherwise
    assert back.timestamp == timestamp_ns % PERIOD_NS // 10_000_000 * 10_000_000

    clamped = sum(not 0 <= v <= size for v, size in ((payload["x"], width), (payload["y"], height)))
    saturated = (payload["x"] == width) + (payload["y"] == height)
    assert encoder.stats.coordinates_clamped == clamped
    assert encoder.stats.coordinates_saturated == saturated


@PROPERTY
@given(
    digits=st.tuples(st.integers(0, 3), st.integers(0, 9), st.integers(0, 9)),
    position=st.lists(st.integers(0, 15), min_size=6, max_size=6),
    tail=st.one_of(
        st.just([]),
        st.tuples(buttons, st.sampled_from(["press", "release"])).map(lambda t: [f"<{t[0]}>", f"<{t[1]}>"]),
        st.tuples(st.integers(-10, 10), st.integers(-10, 10)).map(lambda t: [f"<{t[0]}>", f"<{t[1]}>"]),
    ),
)
def test_any_hierarchical_mouse_text_decodes_to_a_stable_event(digits: tuple, position: list, tail: list) -> None:
    """Every well-formed text (e.g. generated by a model) decodes, and its event re-encodes to a fixed point."""
    encoder = create_encoder("hierarchical")
    text = "<EVENT_START><TIMESTAMP>" + "".join(f"<{d}>" for d in digits) + "<MOUSE><move>"
    text += "".join(f"<{d}>" for d in position) + "".join(tail) + "<EVENT_END>"
    event = encoder.decode(text)
    again = encoder.decode(encoder.encode(event)[0])
    assert again.model_dump() == event.model_dump()
    assert encoder.stats.coordinates_clamped == 0


@PROPERTY
@given(times=st.lists(st.integers(0, 3_989_999_999), min_size=1, max_size=50), start=st.integers(0, 2**62))
def test_unwrap_recovers_times_with_gaps_under_the_period(times: list[int], start: int) -> None:
    """Exact (to the 10 ms cell) while consecutive events are less than 4 s - 10 ms apart."""
    true_ns = [start]
    for gap in times[1:]:
        true_ns.append(true_ns[-1] + gap)
    encoder = create_encoder("hierarchical")
    decoded = [
        encoder.decode(encoder.encode(message("keyboard", t, {"event_type": "press", "vk": 1}))[0]).timestamp
        for t in true_ns
    ]
    assert unwrap_timestamps(decoded, start) == [t // 10_000_000 * 10_000_000 for t in true_ns]


json_keyboard = st.fixed_dictionaries(
    {"event_type": st.sampled_from(["press", "release"]), "vk": INT64},
    optional={"timestamp": st.one_of(st.none(), INT64)},
)


@st.composite
def json_mouse(draw: st.DrawFn) -> dict:
    payload = draw(mouse_payloads())
    payload["x"], payload["y"] = draw(INT64), draw(INT64)
    for name, strategy in (("button", buttons), ("pressed", st.booleans()), ("dx", INT64), ("dy", INT64)):
        if draw(st.booleans()):
            payload[name] = draw(st.one_of(st.none(), strategy))
    if draw(st.booleans()):
        payload["timestamp"] = draw(INT64)
    return payload


@PROPERTY
@given(
    timestamp_ns=INT64,
    topic_payload=st.one_of(json_keyboard.map(lambda p: ("keyboard", p)), json_mouse().map(lambda p: ("mouse", p))),
)
def test_json_round_trips_exactly(timestamp_ns: int, topic_payload: tuple[str, dict]) -> None:
    topic, payload = topic_payload
    encoder = create_encoder("json")
    original = message(topic, timestamp_ns, payload)
    text, images = encoder.encode(original)
    assert text.startswith("<EVENT_START>{") and text.endswith("}<EVENT_END>") and images == []
    body = orjson.loads(text[len("<EVENT_START>") : -len("<EVENT_END>")])
    assert body["type"] == topic and body["timestamp"] == timestamp_ns
    assert encoder.decode(text).model_dump() == original.model_dump()
