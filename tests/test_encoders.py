"""owa.data.encoders: exact token output, out-of-range policy, errors, registry, real recordings."""

from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path

import orjson
import pytest
from mcap.reader import make_reader

from owa.data import McapMessage, ScreenCaptured, create_encoder
from owa.data.encoders import (
    EncoderConfig,
    EventEncoder,
    HierarchicalConfig,
    HierarchicalEncoder,
    JsonEncoder,
    available_encoders,
    register_encoder,
    unwrap_timestamps,
)
from owa.data.encoders import base as encoders_base
from owa.data.errors import EncodingError, OWADataError

TOKEN = re.compile(r"<[^<>]*>")
T0 = 1_750_427_723_476_384_500  # 0.3.2.mcap's first screen; mod 4 s = 3.4763845 s -> digits 3 4 7

CURRENT_TYPES = {"keyboard": "desktop/KeyboardEvent", "mouse": "desktop/MouseEvent", "screen": "desktop/ScreenCaptured"}


def keyboard(event_type: str = "press", vk: int = 65, timestamp_ns: int = T0, **extra: object) -> McapMessage:
    payload = {"event_type": event_type, "vk": vk, **extra}
    return McapMessage(
        topic="keyboard", timestamp=timestamp_ns, message=orjson.dumps(payload), message_type="desktop/KeyboardEvent"
    )


def mouse(timestamp_ns: int = T0, **payload: object) -> McapMessage:
    return McapMessage(
        topic="mouse", timestamp=timestamp_ns, message=orjson.dumps(payload), message_type="desktop/MouseEvent"
    )


SCREEN_PAYLOAD = (
    b'{"utc_ns":1768131731227929100,"source_shape":[1025,1017],"shape":[1025,1017],'
    b'"media_ref":{"uri":"0.5.1.mkv","pts_ns":50000000}}'
)


def screen(timestamp_ns: int = T0, payload: bytes = SCREEN_PAYLOAD) -> McapMessage:
    return McapMessage(topic="screen", timestamp=timestamp_ns, message=payload, message_type="desktop/ScreenCaptured")


def read_recording(path: Path) -> list[McapMessage]:
    """keyboard/mouse/screen messages of a real recording, read with the bare mcap package."""
    out = []
    with path.open("rb") as f:
        for _schema, channel, message in make_reader(f).iter_messages(topics=list(CURRENT_TYPES)):
            out.append(
                McapMessage(
                    topic=channel.topic,
                    timestamp=message.log_time,
                    message=message.data,
                    message_type=CURRENT_TYPES[channel.topic],  # payloads of these topics are current-form
                ).with_source(path)
            )
    return out


def tokens_of(text: str) -> list[str]:
    tokens = TOKEN.findall(text)
    assert "".join(tokens) == text
    return tokens


# ----------------------------------------------------------------------------------------- hierarchical


@pytest.fixture
def hier() -> HierarchicalEncoder:
    encoder = create_encoder("hierarchical")
    assert isinstance(encoder, HierarchicalEncoder)
    return encoder


def test_hierarchical_keyboard_exact_tokens(hier: HierarchicalEncoder) -> None:
    text, images = hier.encode(keyboard("press", 65))
    assert text == "<EVENT_START><TIMESTAMP><3><4><7><KEYBOARD><65><press><EVENT_END>"
    assert images == []
    text, _ = hier.encode(keyboard("release", 255, timestamp_ns=0))
    assert text == "<EVENT_START><TIMESTAMP><0><0><0><KEYBOARD><255><release><EVENT_END>"


@pytest.mark.parametrize(
    ("timestamp_ns", "digits"),
    [
        (0, (0, 0, 0)),
        (9_999_999, (0, 0, 0)),
        (10_000_000, (0, 0, 1)),  # exact cell boundaries land in the upper cell
        (30_000_000, (0, 0, 3)),
        (120_000_000, (0, 1, 2)),  # floats (v*4, r*10, r*10) give (0, 1, 1) here
        (180_000_000, (0, 1, 8)),  # ... and (0, 1, 7) here
        (70_000_000, (0, 0, 7)),
        (990_000_000, (0, 9, 9)),
        (1_000_000_000, (1, 0, 0)),
        (3_999_999_999, (3, 9, 9)),
        (4_000_000_000, (0, 0, 0)),  # modulo 4 s
        (4_000_000_000 * 7 + 2_345_000_000, (2, 3, 4)),
        (-10_000_000, (3, 9, 9)),  # before the epoch: still mod 4 s, non-negative
    ],
)
def test_hierarchical_time_digits(hier: HierarchicalEncoder, timestamp_ns: int, digits: tuple[int, int, int]) -> None:
    text, _ = hier.encode(keyboard(timestamp_ns=timestamp_ns))
    assert tokens_of(text)[1:5] == ["<TIMESTAMP>", *(f"<{d}>" for d in digits)]


def test_hierarchical_mouse_exact_tokens(hier: HierarchicalEncoder) -> None:
    # 852/1920*4096 = 1817.6 -> 1817 = 0x719; 613/1080*4096 = 2324.9 -> 2324 = 0x914; interleaved x1 y1 x2 y2 x3 y3.
    text, _ = hier.encode(mouse(event_type="move", x=852, y=613))
    assert text == "<EVENT_START><TIMESTAMP><3><4><7><MOUSE><move><7><9><1><1><9><4><EVENT_END>"
    text, _ = hier.encode(mouse(event_type="click", x=0, y=0, button="right", pressed=False))
    assert text == "<EVENT_START><TIMESTAMP><3><4><7><MOUSE><move><0><0><0><0><0><0><right><release><EVENT_END>"
    text, _ = hier.encode(mouse(event_type="scroll", x=960, y=540, dx=None, dy=-3))
    # 960/1920 = 0.5 -> 0x800 and 540/1080 = 0.5 -> 0x800.
    assert text == "<EVENT_START><TIMESTAMP><3><4><7><MOUSE><move><8><8><0><0><0><0><0><-3><EVENT_END>"
    text, _ = hier.encode(mouse(event_type="click", x=1, y=1, button="middle", pressed=True))
    # 1/1920*4096 = 2.13 -> 2; 1/1080*4096 = 3.79 -> 3
    assert text == "<EVENT_START><TIMESTAMP><3><4><7><MOUSE><move><0><0><0><0><2><3><middle><press><EVENT_END>"
    assert hier.stats.as_dict() == {"coordinates_clamped": 0, "coordinates_saturated": 0, "scrolls_clamped": 0}


def test_hierarchical_screen_and_custom_image_token() -> None:
    encoder = create_encoder("hierarchical", image_token="<image>")
    text, images = encoder.encode(screen())
    assert text == "<EVENT_START><TIMESTAMP><3><4><7><image><EVENT_END>"
    assert images == [ScreenCaptured.model_validate_json(SCREEN_PAYLOAD)]
    assert "<image>" in encoder.get_vocab() and "<IMAGE>" not in encoder.get_vocab()
    decoded = encoder.decode(text, images)
    assert decoded.topic == "screen" and decoded.message_type == "desktop/ScreenCaptured"
    assert decoded.timestamp == 3_470_000_000
    assert decoded.decoded == images[0]
    # Without the image the payload is an empty ScreenCaptured (no media_ref).
    assert encoder.decode(text).message == b"{}"


def test_hierarchical_screen_base_dir_from_source(hier: HierarchicalEncoder, tmp_path: Path) -> None:
    _, images = hier.encode(screen().with_source(tmp_path / "ep.mcap"))
    assert images[0].base_dir == str(tmp_path)
    _, images = hier.encode_serialized(screen().model_dump_json(), episode_path=tmp_path / "ep.mcap")
    assert images[0].base_dir == str(tmp_path)


def test_hierarchical_vocab_is_seed_plus_side_buttons_and_image(hier: HierarchicalEncoder) -> None:
    seed = {"<EVENT_START>", "<EVENT_END>", "<TIMESTAMP>", "<KEYBOARD>", "<MOUSE>", "<IMAGE>"}
    seed |= {f"<{i}>" for i in range(256)} | {f"<{i}>" for i in range(-10, 11)}
    seed |= {f"<{w}>" for w in ("press", "release", "move", "click", "scroll", "left", "right", "middle", "unknown")}
    assert hier.get_vocab() == seed | {"<x1>", "<x2>"}
    assert len(hier.get_vocab()) == 283


# Out-of-range cases: each one's policy.


def test_side_buttons_extend_vocab(hier: HierarchicalEncoder) -> None:
    for button in ("x1", "x2"):
        message = mouse(event_type="click", x=10, y=20, button=button, pressed=True)
        text, _ = hier.encode(message)
        assert tokens_of(text)[-3:] == [f"<{button}>", "<press>", "<EVENT_END>"]
        assert set(tokens_of(text)) <= hier.get_vocab()
        assert hier.decode(text).decoded == message.decoded


def test_vk_outside_0_255_raises(hier: HierarchicalEncoder) -> None:
    for vk in (256, 1000, -1):
        with pytest.raises(EncodingError) as info:
            hier.encode(keyboard(vk=vk).with_source("/data/ep.mcap"))
        assert info.value.topic == "keyboard" and info.value.timestamp_ns == T0
        assert info.value.path == "/data/ep.mcap" and info.value.context["vk"] == vk
        assert "0-255" in str(info.value)


def test_scroll_beyond_10_is_clamped_and_counted(hier: HierarchicalEncoder, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="owa.data.encoders.hierarchical"):
        text, _ = hier.encode(mouse(event_type="scroll", x=0, y=0, dx=-25, dy=11))
        hier.encode(mouse(event_type="scroll", x=0, y=0, dx=0, dy=120))
        hier.encode(mouse(event_type="scroll", x=0, y=0, dx=10, dy=-10))  # in range: not counted
    assert tokens_of(text)[-3:] == ["<-10>", "<10>", "<EVENT_END>"]
    assert hier.stats.scrolls_clamped == 2
    assert len([r for r in caplog.records if "scrolls_clamped" in r.getMessage()]) == 1  # logged once
    assert orjson.loads(hier.decode(text).message) == {"event_type": "scroll", "x": 0, "y": 0, "dx": -10, "dy": 10}


def test_off_screen_coordinates_are_clamped_and_counted(hier: HierarchicalEncoder) -> None:
    text, _ = hier.encode(mouse(event_type="move", x=-1280, y=1294))  # left monitor, below the screen
    assert tokens_of(text)[7:13] == ["<0>", "<15>", "<0>", "<15>", "<0>", "<15>"]
    assert hier.stats.coordinates_clamped == 2
    assert orjson.loads(hier.decode(text).message) == {"event_type": "move", "x": 0, "y": 1080}
    text, _ = hier.encode(mouse(event_type="move", x=5000, y=-3))
    assert tokens_of(text)[7:13] == ["<15>", "<0>", "<15>", "<0>", "<15>", "<0>"]
    assert hier.stats.coordinates_clamped == 4


def test_value_exactly_one_stays_in_last_cell(hier: HierarchicalEncoder) -> None:
    # x/width == 1.0 would give digit 16 by the formula; it is kept in the last cell (15, 15, 15).
    text, _ = hier.encode(mouse(event_type="move", x=1920, y=1080))
    assert tokens_of(text)[7:13] == ["<15>"] * 6
    assert hier.stats.coordinates_saturated == 2 and hier.stats.coordinates_clamped == 0
    # ... and decodes back to exactly the screen size.
    assert orjson.loads(hier.decode(text).message) == {"event_type": "move", "x": 1920, "y": 1080}
    # The last in-range pixel is not saturated.
    text, _ = hier.encode(mouse(event_type="move", x=1919, y=1079))
    assert hier.stats.coordinates_saturated == 2
    assert orjson.loads(hier.decode(text).message) == {"event_type": "move", "x": 1919, "y": 1079}


def test_screen_size_config() -> None:
    encoder = create_encoder("hierarchical", screen_size=(2560, 1440))
    text, _ = encoder.encode(mouse(event_type="move", x=1987, y=1294))  # off a 1920x1080 screen, on this one
    assert encoder.stats.coordinates_clamped == 0
    assert orjson.loads(encoder.decode(text).message) == {"event_type": "move", "x": 1987, "y": 1294}
    with pytest.raises(ValueError, match="screen_size"):
        create_encoder("hierarchical", screen_size=(0, 1080))
    with pytest.raises(ValueError, match="screen_size"):
        HierarchicalConfig(screen_size=(1920.0, 1080))  # type: ignore[arg-type]


def test_click_normalizations_and_errors(hier: HierarchicalEncoder) -> None:
    # A click without a button is encoded as <unknown>.
    text, _ = hier.encode(mouse(event_type="click", x=5, y=5, pressed=True))
    assert tokens_of(text)[-3:-1] == ["<unknown>", "<press>"]
    with pytest.raises(EncodingError, match="needs pressed"):
        hier.encode(mouse(event_type="click", x=5, y=5, button="left"))
    with pytest.raises(EncodingError, match="desktop/MouseEvent"):
        hier.encode(mouse(event_type="click", x=5, y=5, button="x3", pressed=True))
    with pytest.raises(EncodingError, match="desktop/MouseEvent"):
        hier.encode(mouse(event_type="drag", x=5, y=5))
    with pytest.raises(EncodingError, match="desktop/KeyboardEvent"):
        hier.encode(keyboard(event_type="hold"))
    # Unusual but valid payloads go through pydantic: a float pixel with no fraction is accepted.
    text, _ = hier.encode(mouse(event_type="move", x=852.0, y=613))
    assert text == "<EVENT_START><TIMESTAMP><3><4><7><MOUSE><move><7><9><1><1><9><4><EVENT_END>"


@pytest.mark.parametrize("encoder_type", ["hierarchical", "json"])
def test_unsupported_topics_raise_naming_topic(encoder_type: str) -> None:
    encoder = create_encoder(encoder_type)
    window = McapMessage(
        topic="window",
        timestamp=5,
        message=b'{"title":"x","rect":[0,0,1,1],"hWnd":1}',
        message_type="desktop/WindowInfo",
    )
    state = McapMessage(
        topic="keyboard/state", timestamp=6, message=b'{"buttons":[]}', message_type="desktop/KeyboardState"
    )
    for message in (window, state):
        with pytest.raises(EncodingError) as info:
            encoder.encode(message)
        assert info.value.topic == message.topic and info.value.timestamp_ns == message.timestamp
        assert repr(message.topic) in str(info.value)
    legacy = keyboard().model_copy(update={"message_type": "owa.env.desktop.msg.KeyboardEvent"})
    with pytest.raises(EncodingError, match="expected 'desktop/KeyboardEvent'"):
        encoder.encode(legacy)
    for bad in (b"not json", b"[1, 2]"):
        with pytest.raises(EncodingError, match="Payload"):
            encoder.encode(keyboard().model_copy(update={"message": bad}))
    with pytest.raises(EncodingError, match="Not an McapMessage JSON"):
        encoder.encode_serialized(b'{"topic": "keyboard"}')


@pytest.mark.parametrize(
    "text",
    [
        "",
        "<EVENT_START><EVENT_END>",
        "<TIMESTAMP><0><0><0><KEYBOARD><65><press>",
        "<EVENT_START><TIMESTAMP><4><0><0><KEYBOARD><65><press><EVENT_END>",  # first digit is base 4
        "<EVENT_START><TIMESTAMP><0><0><0><KEYBOARD><256><press><EVENT_END>",
        "<EVENT_START><TIMESTAMP><0><0><0><KEYBOARD><65><move><EVENT_END>",
        "<EVENT_START><TIMESTAMP><0><0><0><KEYBOARD><065><press><EVENT_END>",
        "<EVENT_START><TIMESTAMP><0><0><0> <KEYBOARD><65><press><EVENT_END>",
        "<EVENT_START><TIMESTAMP><0><0><0><MOUSE><move><16><0><0><0><0><0><EVENT_END>",
        "<EVENT_START><TIMESTAMP><0><0><0><MOUSE><move><0><0><0><0><0><EVENT_END>",
        "<EVENT_START><TIMESTAMP><0><0><0><MOUSE><move><0><0><0><0><0><0><x3><press><EVENT_END>",
        "<EVENT_START><TIMESTAMP><0><0><0><MOUSE><move><0><0><0><0><0><0><11><0><EVENT_END>",
        "<EVENT_START><TIMESTAMP><0><0><0><MOUSE><move><0><0><0><0><0><0><1><EVENT_END>",
        "<EVENT_START><TIMESTAMP><0><0><0><MOUSE><click><0><0><0><0><0><0><left><press><EVENT_END>",
        "<EVENT_START><TIMESTAMP><0><0><IMAGE><EVENT_END>",
        "<EVENT_START><TIMESTAMP><0><0><0><SCREEN><EVENT_END>",
    ],
)
def test_hierarchical_decode_rejects_malformed_text(hier: HierarchicalEncoder, text: str) -> None:
    with pytest.raises(EncodingError):
        hier.decode(text)


def test_hierarchical_decode_screen_needs_one_screencaptured(hier: HierarchicalEncoder) -> None:
    text, images = hier.encode(screen())
    with pytest.raises(EncodingError, match="exactly one ScreenCaptured"):
        hier.decode(text, images * 2)
    with pytest.raises(EncodingError, match="exactly one ScreenCaptured"):
        hier.decode(text, ["frame.png"])  # type: ignore[list-item]


def test_unwrap_timestamps() -> None:
    # Events at 7.995 s, 7.999 s (wraps), 8.02 s, 11.9 s, 12.5 s: decoded mod 4 s at 10 ms.
    true_ns = [7_995_000_000, 7_999_000_000, 8_020_000_000, 11_900_000_000, 12_500_000_000]
    hier = create_encoder("hierarchical")
    decoded = [hier.decode(hier.encode(keyboard(timestamp_ns=t))[0]).timestamp for t in true_ns]
    assert decoded == [3_990_000_000, 3_990_000_000, 20_000_000, 3_900_000_000, 500_000_000]
    assert unwrap_timestamps(decoded, start_ns=true_ns[0]) == [
        7_990_000_000,
        7_990_000_000,
        8_020_000_000,
        11_900_000_000,
        12_500_000_000,
    ]
    assert hier.unwrap_timestamps(decoded, T0) == unwrap_timestamps(decoded, T0)
    assert unwrap_timestamps([], 5) == []
    with pytest.raises(ValueError, match="resolution"):
        unwrap_timestamps([0], 0, period_ns=10, resolution_ns=3)


# ----------------------------------------------------------------------------------------------- json


def test_json_exact_text_and_round_trip() -> None:
    encoder = create_encoder("json")
    text, images = encoder.encode(keyboard("press", 65))
    assert (
        text
        == '<EVENT_START>{"type":"keyboard","timestamp":1750427723476384500,"event_type":"press","vk":65}<EVENT_END>'
    )
    assert images == []
    message = mouse(event_type="scroll", x=-1280, y=5000, dx=-120, dy=None)
    text, _ = encoder.encode(message)
    assert text == (
        '<EVENT_START>{"type":"mouse","timestamp":1750427723476384500,"event_type":"scroll","x":-1280,'
        '"y":5000,"dx":-120,"dy":null}<EVENT_END>'
    )
    assert encoder.decode(text) == message  # exact: nothing is clamped in json


def test_json_payload_timestamp_field_is_renamed() -> None:
    encoder = create_encoder("json")
    message = keyboard("release", 300, timestamp=123)
    text, _ = encoder.encode(message)
    assert '"event_timestamp":123' in text and text.count('"timestamp"') == 1
    assert encoder.decode(text) == message


def test_json_screen_carries_image_token() -> None:
    encoder = create_encoder("json", image_token="<image>")
    text, images = encoder.encode(screen())
    assert text == (
        '<EVENT_START>{"type":"screen","timestamp":1750427723476384500,"utc_ns":1768131731227929100,'
        '"source_shape":[1025,1017],"shape":[1025,1017],"image":"<image>"}<EVENT_END>'
    )
    assert encoder.decode(text, images) == screen()
    without = encoder.decode(text)
    assert orjson.loads(without.message) == {
        "utc_ns": 1768131731227929100,
        "source_shape": [1025, 1017],
        "shape": [1025, 1017],
    }
    assert encoder.get_vocab() == {"<EVENT_START>", "<EVENT_END>", "<image>"}


@pytest.mark.parametrize(
    "text",
    [
        "<EVENT_START>{'type': 'keyboard'}<EVENT_END>",  # python literal, not JSON: never eval'd
        "<EVENT_START>__import__('os').getcwd()<EVENT_END>",
        "<EVENT_START>[1]<EVENT_END>",
        '<EVENT_START>{"type":"window","timestamp":1,"title":"x"}<EVENT_END>',
        '<EVENT_START>{"type":"keyboard","timestamp":"1","event_type":"press","vk":1}<EVENT_END>',
        '<EVENT_START>{"type":"keyboard","timestamp":1,"event_type":"press"}<EVENT_END>',
        '<EVENT_START>{"type":"keyboard","timestamp":1,"event_type":"press","vk":1,"color":"red"}<EVENT_END>',
        '<EVENT_START>{"type":"screen","timestamp":1,"image":"<IMG>"}<EVENT_END>',
        '{"type":"keyboard","timestamp":1,"event_type":"press","vk":1}',
    ],
)
def test_json_decode_rejects_malformed_text(text: str) -> None:
    with pytest.raises(EncodingError):
        create_encoder("json").decode(text)


def test_json_encode_rejects_invalid_payloads() -> None:
    encoder = create_encoder("json")
    with pytest.raises(EncodingError, match="vk") as info:
        encoder.encode(keyboard().model_copy(update={"message": b'{"event_type":"press"}'}))
    assert info.value.topic == "keyboard"
    with pytest.raises(EncodingError, match="extra"):
        encoder.encode(keyboard(color="red"))
    with pytest.raises(ValueError, match="image_token"):
        create_encoder("json", image_token='<"img">')


# ---------------------------------------------------------------------------------- registry and config


def test_create_encoder_validates_arguments() -> None:
    assert available_encoders()[:2] == ["hierarchical", "json"]
    assert isinstance(create_encoder("json"), JsonEncoder)
    with pytest.raises(ValueError, match=r"Invalid encoder_type \('flat'\). Supported values are 'hierarchical'"):
        create_encoder("flat")
    with pytest.raises(ValueError, match="screen_size"):
        create_encoder("json", screen_size=(1, 1))
    for token in ("", " <IMAGE>", "<press>", "<12>"):
        with pytest.raises(ValueError, match="image_token"):
            create_encoder("hierarchical", image_token=token)
    with pytest.raises(TypeError, match="HierarchicalConfig"):
        HierarchicalEncoder(EncoderConfig())  # type: ignore[arg-type]


def test_a_third_encoder_plugs_in_without_touching_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoders_base, "_REGISTRY", dict(encoders_base._REGISTRY))

    @register_encoder("upper")
    class UpperEncoder(EventEncoder):
        def _encode_action(self, topic: str, timestamp_ns: int, fields: dict) -> str:
            return f"<EVENT_START>{topic.upper()} {fields['vk']}<EVENT_END>"

        def _encode_screen(self, timestamp_ns: int, screen: ScreenCaptured) -> str:
            return f"<EVENT_START>{self.config.image_token}<EVENT_END>"

        def decode(self, text: str, images: list[ScreenCaptured] | None = None) -> McapMessage:
            raise NotImplementedError

        def get_vocab(self) -> set[str]:
            return {"<EVENT_START>", "<EVENT_END>", self.config.image_token}

    encoder = create_encoder("upper", image_token="<img>")
    assert encoder.encode(keyboard(vk=7)) == ("<EVENT_START>KEYBOARD 7<EVENT_END>", [])
    assert encoder.encode(screen())[0] == "<EVENT_START><img><EVENT_END>"
    assert "upper" in available_encoders()
    with pytest.raises(ValueError, match="already registered"):
        register_encoder("json")(UpperEncoder)


def test_encoders_pickle_with_config_and_stats() -> None:
    encoder = create_encoder("hierarchical", image_token="<image>", screen_size=(800, 600))
    encoder.encode(mouse(event_type="move", x=900, y=0))
    clone = pickle.loads(pickle.dumps(encoder))
    assert clone.config == encoder.config and clone.stats == encoder.stats
    assert clone.encode(keyboard()) == encoder.encode(keyboard())


def test_encoding_error_is_an_owadataerror() -> None:
    assert issubclass(EncodingError, OWADataError)


# --------------------------------------------------------------------------------------- real recordings


@pytest.mark.parametrize("name", ["0.3.2", "0.4.2", "0.5.1", "ztype-no-video"])
def test_real_recordings_round_trip(recordings_dir: Path, name: str) -> None:
    messages = [m for m in read_recording(recordings_dir / f"{name}.mcap") if m.topic != "screen" or name != "0.3.2"]
    messages = [m for m in messages if m.topic != "screen" or b"media_ref" in m.message]  # current-form screens only
    hier = create_encoder("hierarchical", image_token="<image>")
    js = create_encoder("json")
    decoded_times = []
    for message in messages:
        text, images = hier.encode(message)
        assert set(tokens_of(text)) <= hier.get_vocab()
        back = hier.decode(text, images)
        decoded_times.append(back.timestamp)
        assert back.topic == message.topic and back.message_type == message.message_type
        assert back.timestamp == message.timestamp % 4_000_000_000 // 10_000_000 * 10_000_000
        if message.topic == "screen":
            assert back.decoded.model_dump() == message.decoded.model_dump()
            continue
        original = orjson.loads(message.message)
        if message.topic == "mouse":  # the one lossy step: clamping to the 1920x1080 screen
            original["x"] = min(max(original["x"], 0), 1920)
            original["y"] = min(max(original["y"], 0), 1080)
        assert orjson.loads(back.message) == original
        # json: exact, byte for byte (the recorder writes compact JSON in this field order).
        json_text, json_images = js.encode(message)
        assert js.decode(json_text, json_images).model_dump() == message.model_dump()
    assert unwrap_timestamps(decoded_times, messages[0].timestamp) == [
        m.timestamp // 10_000_000 * 10_000_000 for m in messages
    ]
    mouse_events = [orjson.loads(m.message) for m in messages if m.topic == "mouse"]
    off_screen = sum(not 0 <= e["x"] < 1920 for e in mouse_events) + sum(not 0 <= e["y"] < 1080 for e in mouse_events)
    assert off_screen > 0  # real multi-monitor data reaches beyond 1920x1080
    assert hier.stats.coordinates_clamped + hier.stats.coordinates_saturated == off_screen


def test_encode_serialized_matches_encode(recordings_dir: Path) -> None:
    messages = read_recording(recordings_dir / "0.5.1.mcap")
    for encoder_type in ("hierarchical", "json"):
        encoder = create_encoder(encoder_type)
        for message in messages:
            data = message.model_dump_json().encode()
            assert encoder.encode_serialized(data, episode_path=message.source_path) == encoder.encode(message)


@pytest.mark.parametrize(
    "payload",
    [b'{"event_type":"hold","vk":65}', b'{"event_type":"press","vk":"A"}', b'{"event_type":"press","vk":true}'],
)
@pytest.mark.parametrize("encoder_type", ["hierarchical", "json"])
def test_invalid_values_are_refused_at_encode(encoder_type: str, payload: bytes) -> None:
    """Whatever encode() accepts, decode() must accept: invalid values never make it into text."""
    message = McapMessage(topic="keyboard", timestamp=1, message=payload, message_type="desktop/KeyboardEvent")
    with pytest.raises(EncodingError):
        create_encoder(encoder_type).encode(message)
