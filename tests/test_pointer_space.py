"""Pointer spaces: desktop → frame mapping (hand-made timelines, a synthetic recording whose window moves, the real
0.4.2 and 0.5.1 recordings), in EpisodeTokenizer and both transforms; screen space unchanged."""

from __future__ import annotations

import pickle
from pathlib import Path

import orjson
import pytest

from owa.data import create_binned_dataset_transform, create_event_dataset_transform
from owa.data.encoders import HierarchicalConfig, create_encoder
from owa.data.episode_tokenizer import EpisodeTokenizer, EpisodeTokenizerConfig
from owa.data.errors import RecordingError
from owa.data.messages import McapMessage, MediaRef, MouseEvent, ScreenCaptured, WindowInfo
from owa.data.pointer_space import (
    CaptureArea,
    CaptureTimeline,
    FrameSpaceEncoder,
    read_capture_timeline,
    window_inset,
)
from owa.data.recordings.writer import OWAMcapWriter
from owa.data.testing import event_dataset_from_mcap, tiny_bpe_tokenizer

S = 1_000_000_000
FRAME = (800, 600)
RECT_A = (100, 50, 912, 656)  # 812x606 around an 800x600 capture: 6 px borders left/right/bottom -> origin (106, 50)
RECT_B = (300, 250, 1112, 856)  # the same window, moved -> origin (306, 250)
OTHER = (0, 0, 1280, 1392)  # another window becoming active: not the captured one
# The centre of the frame, (400, 300), is 0.5 of each side: cell 2048 = <8><0><0> per axis, interleaved.
CENTRE = "<MOUSE><move><8><8><0><0><0><0>"


def _time(timestamp_ns: int) -> str:
    q = timestamp_ns % (4 * S) // 10_000_000
    return f"<EVENT_START><TIMESTAMP><{q // 100}><{q // 10 % 10}><{q % 10}>"


def _write_moving_window(path: Path) -> list[tuple[int, MouseEvent]]:
    """A 0.5-form recording: an 800x600 window capture; the window moves at 2 s; another window is active at 2.5 s."""
    mouse = [
        (int(0.5 * S), MouseEvent(event_type="move", x=506, y=350)),  # before the first window message: rect A
        (int(1.5 * S), MouseEvent(event_type="click", x=506, y=350, button="left", pressed=True)),  # rect A
        (int(3.0 * S), MouseEvent(event_type="move", x=706, y=550)),  # rect B (latest matching; OTHER ignored)
        (int(3.5 * S), MouseEvent(event_type="move", x=50, y=40)),  # off the frame: clamped to its corner
    ]
    with OWAMcapWriter(path) as writer:
        for i in range(4):
            screen = ScreenCaptured(
                utc_ns=i * S, source_shape=FRAME, shape=FRAME, media_ref=MediaRef(uri="x.mkv", pts_ns=i * S)
            )
            writer.write_message("screen", screen, timestamp_ns=i * S + 1)
        for timestamp_ns, rect in ((1 * S, RECT_A), (2 * S, RECT_B), (int(2.5 * S), OTHER)):
            writer.write_message("window", WindowInfo(title="w", rect=rect, hWnd=1), timestamp_ns=timestamp_ns)
        for timestamp_ns, event in mouse:
            writer.write_message("mouse", event, timestamp_ns=timestamp_ns)
    return mouse


@pytest.fixture
def moving_window(tmp_path: Path) -> Path:
    path = tmp_path / "moving.mcap"
    _write_moving_window(path)
    return path


def _prepared(**options) -> EpisodeTokenizer:
    event_tokenizer = EpisodeTokenizer(image_token_length=2, **options)
    event_tokenizer.prepare_model(tokenizer=tiny_bpe_tokenizer())
    return event_tokenizer


# ------------------------------------------------------------------------------------------------ the rule


def test_window_inset_rule() -> None:
    assert window_inset([360, 307, 1278, 891], (906, 578)) == (6, 0)  # 0.4.2: 6 px invisible borders
    assert window_inset([819, 263, 1856, 1286], (1025, 1017)) == (6, 0)  # 0.5.1
    assert window_inset([642, 264, 1242, 1064], (584, 792)) == (8, 0)  # ztype: 8 px borders
    assert window_inset([10, 20, 810, 620], (800, 600)) == (0, 0)  # borderless: the rect is the frame
    assert window_inset([0, 0, 812, 607], (800, 600)) == (6, 0)  # 1 px of slack on the height
    assert window_inset([0, 0, 812, 630], (800, 600)) is None  # a title bar cropped off: not this rule
    assert window_inset([0, 0, 1280, 1392], (906, 578)) is None  # another window
    assert window_inset([0, 0, 790, 600], (800, 600)) is None  # smaller than the capture


def test_timeline_latest_matching_rect_first_for_earlier_and_full_area_without_one() -> None:
    screens = [(0, FRAME, FRAME)]
    timeline = CaptureTimeline.from_messages(screens, [(2 * S, RECT_B), (1 * S, RECT_A), (int(2.5 * S), OTHER)])
    assert timeline.window_origins == ((106, 50), (306, 250))  # sorted by time; OTHER does not match
    assert timeline.area_at(0) == CaptureArea(106, 50, 800, 600, 800, 600, is_window=True)  # before: the first
    assert timeline.area_at(2 * S - 1).left == 106
    assert timeline.area_at(2 * S).left == 306  # at the move
    assert timeline.area_at(3 * S).top == 250  # after OTHER became active: still the captured window's rect
    desktop = CaptureTimeline.from_messages([(0, (1920, 1080), (1920, 1080))], [(0, OTHER)])
    assert desktop.area_at(5 * S) == CaptureArea(0, 0, 1920, 1080, 1920, 1080, is_window=False)
    with pytest.raises(ValueError, match="No screen messages"):
        CaptureTimeline.from_messages([], [(0, RECT_A)])


def test_scaled_capture_maps_to_frame_pixels() -> None:
    # The recorder captured 1600x1200 desktop pixels and stored 800x600 frames: frame = (desktop - origin) / 2.
    timeline = CaptureTimeline.from_messages([(0, (1600, 1200), FRAME)], [(0, (0, 0, 1612, 1206))])
    area = timeline.area_at(0)
    assert (area.left, area.top, area.frame_size) == (6, 0, FRAME)
    assert area.to_frame(6, 0) == (0, 0)
    assert area.to_frame(1606, 1200) == (800, 600)  # the far corner
    assert area.to_frame(807, 601) == (400, 300)  # rounded down
    assert area.to_frame(0, -10) == (-3, -5)  # off the frame stays off (the encoder clamps and counts)


# ------------------------------------------------------------------------------------------ synthetic recording


def test_moving_window_tokens_exact_and_clamps_counted(moving_window: Path) -> None:
    timeline = read_capture_timeline(moving_window)
    assert timeline.window_origins == ((106, 50), (306, 250))
    dataset = event_dataset_from_mcap(moving_window, topics=("mouse",))
    event_tokenizer = _prepared(pointer_space="frame")
    texts = event_tokenizer.tokenize_event_dataset(dataset)["text"]
    assert texts == [
        "<EPISODE_START>" + _time(int(0.5 * S)) + CENTRE + "<EVENT_END>",
        _time(int(1.5 * S)) + CENTRE + "<left><press><EVENT_END>",
        _time(3 * S) + CENTRE + "<EVENT_END>",
        _time(int(3.5 * S)) + "<MOUSE><move><0><0><0><0><0><0><EVENT_END><EPISODE_END>",  # clamped to (0, 0)
    ]
    assert event_tokenizer.encoder.stats.coordinates_clamped == 2  # x and y of the last event
    assert event_tokenizer.config.pointer_space == "frame"
    assert EpisodeTokenizerConfig.from_json(event_tokenizer.config.to_json()) == event_tokenizer.config


def test_frame_space_decodes_frame_pixels(moving_window: Path) -> None:
    event_tokenizer = _prepared(pointer_space="frame")
    message = McapMessage(
        topic="mouse",
        timestamp=int(1.5 * S),
        message=MouseEvent(event_type="click", x=507, y=351, button="left", pressed=True).model_dump_json(),
        message_type=MouseEvent.message_type,
    ).with_source(moving_window)
    tokenized = event_tokenizer.tokenize(message)
    [back] = event_tokenizer.decode(tokenized["token_ids"], frame_size=FRAME)
    assert orjson.loads(back.message) == {"event_type": "click", "x": 401, "y": 301, "button": "left", "pressed": True}
    screen = ScreenCaptured(shape=FRAME)
    assert event_tokenizer.decode(tokenized["token_ids"], images=[screen])[0].message == back.message
    with pytest.raises(ValueError, match="frame_size"):
        event_tokenizer.decode(tokenized["token_ids"])
    with pytest.raises(ValueError, match="with_source"):
        event_tokenizer.tokenize(message.with_source(None))


def test_transforms_take_pointer_space_and_encoder_config(moving_window: Path) -> None:
    rows = event_dataset_from_mcap(moving_window, topics=("mouse",)).to_dict()
    frame = create_event_dataset_transform(load_images=False, pointer_space="frame")
    frame = pickle.loads(pickle.dumps(frame))  # as a DataLoader worker gets it
    encoded = frame(rows)["encoded_event"]
    assert encoded[0] == _time(int(0.5 * S)) + CENTRE + "<EVENT_END>"
    assert encoded[2] == _time(3 * S) + CENTRE + "<EVENT_END>"
    assert frame.stats.coordinates_clamped == 2

    binned = create_binned_dataset_transform(load_images=False, pointer_space="frame")
    row = {"episode_path": [rows["episode_path"][0]], "state": [[]], "actions": [rows["mcap_message"][2:3]]}
    assert binned(row)["encoded_events"] == [[_time(3 * S) + CENTRE + "<EVENT_END>"]]

    # Screen size through one typed encoder config: (1280, 720) is the middle of 2560x1440.
    wide = create_event_dataset_transform(
        load_images=False, encoder_config=HierarchicalConfig(screen_size=(2560, 1440))
    )
    message = McapMessage(
        topic="mouse", timestamp=0, message=b'{"event_type":"move","x":1280,"y":720}', message_type="desktop/MouseEvent"
    )
    single = {"episode_path": "e.mcap", "mcap_message": message.model_dump_json().encode()}
    assert wide(single)["encoded_event"] == _time(0) + CENTRE + "<EVENT_END>"
    with pytest.raises(ValueError, match="not both"):
        create_event_dataset_transform(encoder=create_encoder("json"), encoder_config=HierarchicalConfig())
    with pytest.raises(TypeError, match="HierarchicalConfig"):
        create_binned_dataset_transform(encoder_config=create_encoder("json").config)
    with pytest.raises(ValueError, match="pointer_space"):
        create_event_dataset_transform(pointer_space="window")  # type: ignore[arg-type]


def test_json_encoder_writes_frame_pixels(moving_window: Path) -> None:
    transform = create_event_dataset_transform(encoder_type="json", load_images=False, pointer_space="frame")
    rows = event_dataset_from_mcap(moving_window, topics=("mouse",)).to_dict()
    first = transform(rows)["encoded_event"][0]
    assert '"x":400,"y":300' in first


def test_recording_without_screens_has_no_frame_space(tmp_path: Path) -> None:
    path = tmp_path / "no-screen.mcap"
    with OWAMcapWriter(path) as writer:
        writer.write_message("mouse", MouseEvent(event_type="move", x=1, y=2), timestamp_ns=S)
    encoder = FrameSpaceEncoder(create_encoder("hierarchical"))
    data = event_dataset_from_mcap(path)["mcap_message"][0]
    with pytest.raises(RecordingError, match=r"no-screen\.mcap"):
        encoder.encode_serialized(data, episode_path=path)


# ------------------------------------------------------------------------------------------- real recordings


@pytest.mark.parametrize(
    ("name", "rect", "frame_size", "event_type"),
    [
        ("0.4.2", (360, 307, 1278, 891), (906, 578), "click"),
        ("0.5.1", (819, 263, 1856, 1286), (1025, 1017), "move"),  # its clicks are outside the captured window
    ],
)
def test_real_pointer_inside_the_window_lands_inside_the_frame(
    recordings_dir: Path, name: str, rect: tuple[int, int, int, int], frame_size: tuple[int, int], event_type: str
) -> None:
    path = recordings_dir / f"{name}.mcap"
    inset = window_inset(rect, frame_size)
    assert inset == (6, 0)  # the recorder's rect includes 6 px invisible borders left, right and bottom
    origin = (rect[0] + inset[0], rect[1] + inset[1])
    event_tokenizer = _prepared(pointer_space="frame")
    dataset = event_dataset_from_mcap(path, topics=("keyboard", "mouse"))
    tokenized = event_tokenizer.tokenize_event_dataset(dataset)
    inside = []
    for i, data in enumerate(dataset["mcap_message"]):
        envelope = orjson.loads(data)
        payload = orjson.loads(envelope["message"])
        x, y = payload.get("x", -1), payload.get("y", -1)
        in_frame = 0 <= x - origin[0] < frame_size[0] and 0 <= y - origin[1] < frame_size[1]
        if payload.get("event_type") == event_type and in_frame:
            inside.append((i, x, y))
    assert inside, f"the recording has a {event_type} inside its captured window"
    for i, x, y in inside:
        row = tokenized[i]
        [back] = event_tokenizer.decode(row["token_ids"], frame_size=frame_size)
        decoded = orjson.loads(back.message)
        assert (decoded["x"], decoded["y"]) == (x - origin[0], y - origin[1])  # frame pixel = desktop - origin
        digits = [int(token.strip("<")) for token in row["text"].split("<move>")[1].split(">")[:6]]
        normalized_x = (digits[0] * 256 + digits[2] * 16 + digits[4]) / 4096
        normalized_y = (digits[1] * 256 + digits[3] * 16 + digits[5]) / 4096
        assert 0 <= normalized_x < 1 and 0 <= normalized_y < 1
        assert normalized_x == pytest.approx((x - origin[0]) / frame_size[0], abs=1 / 4096)
        assert normalized_y == pytest.approx((y - origin[1]) / frame_size[1], abs=1 / 4096)


def test_screen_space_default_is_unchanged(recordings_dir: Path) -> None:
    dataset = event_dataset_from_mcap(recordings_dir / "0.5.1.mcap")
    default = _prepared().tokenize_event_dataset(dataset)["text"]
    explicit = _prepared(pointer_space="screen").tokenize_event_dataset(dataset)["text"]
    assert default == explicit
    # The spec's token string of a move at (1280, 720) on the default 1920x1080 screen: 2/3 = cell 2730.
    message = McapMessage(
        topic="mouse", timestamp=0, message=b'{"event_type":"move","x":1280,"y":720}', message_type="desktop/MouseEvent"
    )
    assert _prepared().tokenize(message)["text"] == _time(0) + "<MOUSE><move><10><10><10><10><10><10><EVENT_END>"
    assert EpisodeTokenizerConfig().pointer_space == "screen"
    with pytest.raises(ValueError, match="pointer_space"):
        EpisodeTokenizer(pointer_space="desktop")


def test_real_frame_space_counts_pointers_off_the_frame(recordings_dir: Path) -> None:
    # 0.4.2's mouse leaves the captured notepad window (to x = 1987): those positions clamp to the frame's edge.
    path = recordings_dir / "0.4.2.mcap"
    dataset = event_dataset_from_mcap(path, topics=("mouse",))
    origin, size = (366, 307), (906, 578)
    expected = 0
    for data in dataset["mcap_message"]:
        payload = orjson.loads(orjson.loads(data)["message"])
        expected += not 0 <= payload["x"] - origin[0] <= size[0]
        expected += not 0 <= payload["y"] - origin[1] <= size[1]
    event_tokenizer = _prepared(pointer_space="frame")
    event_tokenizer.tokenize_event_dataset(dataset)
    assert event_tokenizer.encoder.stats.coordinates_clamped == expected == 474
