"""OWAMcapWriter: round trips through the bare ``mcap`` reader, exact payload bytes, channels, compression."""

from __future__ import annotations

from pathlib import Path

import mcap
import orjson
import pytest
from mcap.reader import make_reader

from owa.data import (
    KeyboardEvent,
    KeyboardState,
    McapMessage,
    MediaRef,
    MouseEvent,
    MouseState,
    RawMouseEvent,
    ScreenCaptured,
    WindowInfo,
)
from owa.data.recordings.reader import read_messages
from owa.data.recordings.writer import OWAMcapWriter, default_library_string, json_schema_bytes

T0 = 1_700_000_000_000_000_000

# (topic, message, exact payload bytes upstream's recorder writes for it)
CASES = [
    ("keyboard", KeyboardEvent(event_type="press", vk=65), b'{"event_type":"press","vk":65}'),
    (
        "keyboard",
        KeyboardEvent(event_type="release", vk=65, timestamp=5),
        b'{"event_type":"release","vk":65,"timestamp":5}',
    ),
    ("mouse", MouseEvent(event_type="move", x=-3, y=1200), b'{"event_type":"move","x":-3,"y":1200}'),
    (
        "mouse",
        MouseEvent(event_type="click", x=1, y=2, button="left", pressed=False),
        b'{"event_type":"click","x":1,"y":2,"button":"left","pressed":false}',
    ),
    (
        "mouse",
        MouseEvent(event_type="scroll", x=1, y=2, dx=0, dy=-1),
        b'{"event_type":"scroll","x":1,"y":2,"dx":0,"dy":-1}',
    ),
    (
        "mouse/raw",
        RawMouseEvent(last_x=3, last_y=-2, button_flags=1),
        b'{"last_x":3,"last_y":-2,"us_flags":0,"button_flags":1,"button_data":0}',
    ),
    (
        "window",
        WindowInfo(title="*test.txt - 메모장", rect=(819, 263, 1856, 1286), hWnd=2822264),
        '{"title":"*test.txt - 메모장","rect":[819,263,1856,1286],"hWnd":2822264}'.encode(),
    ),
    ("keyboard/state", KeyboardState(buttons={179}), b'{"buttons":[179]}'),
    ("mouse/state", MouseState(x=1378, y=559, buttons=set()), b'{"x":1378,"y":559,"buttons":[]}'),
    (
        "screen",
        ScreenCaptured(
            utc_ns=T0, source_shape=(1025, 1017), shape=(1025, 1017), media_ref=MediaRef(uri="x.mkv", pts_ns=20_000_000)
        ),
        b'{"utc_ns":1700000000000000000,"source_shape":[1025,1017],"shape":[1025,1017],'
        b'"media_ref":{"uri":"x.mkv","pts_ns":20000000}}',
    ),
]


def _read_all(path: Path):
    with open(path, "rb") as f:
        reader = make_reader(f)
        header = reader.get_header()
        summary = reader.get_summary()
        messages = list(reader.iter_messages(log_time_order=False))
    return header, summary, messages


def test_round_trip_through_bare_mcap(tmp_path: Path) -> None:
    path = tmp_path / "typed.mcap"
    with OWAMcapWriter(path) as writer:
        for i, (topic, message, _) in enumerate(CASES):
            writer.write_message(topic, message, timestamp_ns=T0 + i * 1000, publish_time_ns=T0 + i * 1000 - 7)
        assert writer.message_counts == {
            "keyboard": 2,
            "mouse": 3,
            "mouse/raw": 1,
            "window": 1,
            "keyboard/state": 1,
            "mouse/state": 1,
            "screen": 1,
        }

    header, summary, messages = _read_all(path)
    assert header.profile == "owa"
    assert header.library == f"owa-data 0.1.0; mcap {mcap.__version__}" == default_library_string()
    assert [m.data for _, _, m in messages] == [expected for _, _, expected in CASES]
    assert [m.log_time for _, _, m in messages] == [T0 + i * 1000 for i in range(len(CASES))]
    assert [m.publish_time for _, _, m in messages] == [T0 + i * 1000 - 7 for i in range(len(CASES))]
    for (schema, channel, _), (topic, message, _) in zip(messages, CASES, strict=True):
        assert channel.topic == topic
        assert channel.message_encoding == "json"
        assert schema.encoding == "jsonschema"
        assert schema.name == type(message).message_type
        assert orjson.loads(schema.data) == type(message).model_json_schema()
    # One schema per message type, one channel per (topic, type).
    assert sorted(s.name for s in summary.schemas.values()) == sorted({type(m).message_type for _, m, _ in CASES})
    assert len(summary.channels) == 7
    assert summary.statistics.message_count == len(CASES)
    assert summary.statistics.message_start_time == T0
    by_topic = {summary.channels[cid].topic: n for cid, n in summary.statistics.channel_message_counts.items()}
    assert by_topic == {
        "keyboard": 2,
        "mouse": 3,
        "mouse/raw": 1,
        "window": 1,
        "keyboard/state": 1,
        "mouse/state": 1,
        "screen": 1,
    }


def test_our_reader_reads_written_file(tmp_path: Path) -> None:
    path = tmp_path / "typed.mcap"
    with OWAMcapWriter(path) as writer:
        for i, (topic, message, _) in enumerate(reversed(CASES)):
            writer.write_message(topic, message, timestamp_ns=T0 + i)
    read = list(read_messages(path))
    assert [(m.topic, m.timestamp_ns, m.message_type, m.data) for m in read] == [
        (topic, T0 + i, type(message).message_type, data) for i, (topic, message, data) in enumerate(reversed(CASES))
    ]


def test_write_raw_keeps_legacy_names_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "legacy.mcap"
    legacy = b'{"path":"0.3.2.mkv","pts":33000000,"utc_ns":1700000000000000000}'
    with OWAMcapWriter(path, library="mcap-owa-support 0.3.2; mcap 1.1.0") as writer:
        writer.write_raw("screen", "owa.env.gst.msg.ScreenEmitted", legacy, timestamp_ns=T0, schema_data=b'{"x":1}')
        writer.write_raw(
            "keyboard/state", "owa_env_desktop.msg.KeyboardState", b'{"pressed_vk_list":[65]}', timestamp_ns=T0 + 1
        )
        writer.write_raw("bad", "desktop/KeyboardEvent", b"not json", timestamp_ns=T0 + 2)
    header, _, messages = _read_all(path)
    assert header.library == "mcap-owa-support 0.3.2; mcap 1.1.0"
    assert [(s.name, s.data, c.topic, m.data) for s, c, m in messages] == [
        ("owa.env.gst.msg.ScreenEmitted", b'{"x":1}', "screen", legacy),
        ("owa_env_desktop.msg.KeyboardState", b"{}", "keyboard/state", b'{"pressed_vk_list":[65]}'),
        ("desktop/KeyboardEvent", b"{}", "bad", b"not json"),
    ]
    assert all(s.encoding == "jsonschema" and c.message_encoding == "json" for s, c, _ in messages)


def test_channels_per_topic_and_type(tmp_path: Path) -> None:
    path = tmp_path / "channels.mcap"
    with OWAMcapWriter(path) as writer:
        writer.write_message("mouse", MouseEvent(event_type="move", x=1, y=2), timestamp_ns=T0)
        writer.write_message("mouse", MouseEvent(event_type="move", x=3, y=4), timestamp_ns=T0 + 1)
        writer.write_raw("mouse", "desktop/RawMouseEvent", b'{"last_x":1,"last_y":1}', timestamp_ns=T0 + 2)
        writer.write_message("cursor", MouseEvent(event_type="move", x=5, y=6), timestamp_ns=T0 + 3)
    _, summary, messages = _read_all(path)
    assert sorted((c.topic, summary.schemas[c.schema_id].name) for c in summary.channels.values()) == [
        ("cursor", "desktop/MouseEvent"),
        ("mouse", "desktop/MouseEvent"),
        ("mouse", "desktop/RawMouseEvent"),
    ]
    assert len(summary.schemas) == 2
    assert [c.id for _, c, _ in messages][:2] == [messages[0][1].id] * 2


@pytest.mark.parametrize("compression", ["zstd", "lz4", "none"])
def test_compression_and_chunking(tmp_path: Path, compression: str) -> None:
    path = tmp_path / f"{compression}.mcap"
    with OWAMcapWriter(path, compression=compression, chunk_size=512) as writer:
        for i in range(200):
            writer.write_message("mouse", MouseEvent(event_type="move", x=i, y=-i), timestamp_ns=T0 + i * 10_000_000)
    _, summary, messages = _read_all(path)
    assert len(summary.chunk_indexes) > 5
    assert {c.compression for c in summary.chunk_indexes} == {"" if compression == "none" else compression}
    assert [m.data for _, _, m in messages] == [
        f'{{"event_type":"move","x":{i},"y":{-i}}}'.encode() for i in range(200)
    ]


def test_write_mcap_message(tmp_path: Path) -> None:
    path = tmp_path / "envelope.mcap"
    known = McapMessage(
        topic="keyboard", timestamp=T0, message=b'{"event_type":"press","vk":13}', message_type="desktop/KeyboardEvent"
    )
    unknown = McapMessage(topic="custom", timestamp=T0 + 5, message=b'{"a":1}', message_type="my/Custom")
    with OWAMcapWriter(path) as writer:
        writer.write_mcap_message(known)
        writer.write_mcap_message(unknown)
    _, _, messages = _read_all(path)
    back = [
        McapMessage(topic=c.topic, timestamp=m.log_time, message=m.data, message_type=s.name) for s, c, m in messages
    ]
    assert back == [known, unknown]
    assert messages[0][0].data == json_schema_bytes(KeyboardEvent)
    assert messages[1][0].data == b"{}"


def test_file_is_complete_after_an_error_inside_the_block(tmp_path: Path) -> None:
    path = tmp_path / "error.mcap"
    with pytest.raises(RuntimeError, match="boom"), OWAMcapWriter(path) as writer:
        writer.write_message("keyboard", KeyboardEvent(event_type="press", vk=1), timestamp_ns=T0)
        raise RuntimeError("boom")
    _, summary, messages = _read_all(path)
    assert summary is not None and summary.statistics.message_count == 1
    assert len(messages) == 1


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"Invalid compression \('bz2'\)\. Supported values are: zstd, lz4, none"):
        OWAMcapWriter(tmp_path / "a.mcap", compression="bz2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk_size"):
        OWAMcapWriter(tmp_path / "b.mcap", chunk_size=0)
    writer = OWAMcapWriter(tmp_path / "c.mcap")
    with pytest.raises(TypeError, match="Expected a typed OWAMessage"):
        writer.write_message("keyboard", {"event_type": "press", "vk": 1}, timestamp_ns=T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Invalid timestamp_ns"):
        writer.write_raw("keyboard", "desktop/KeyboardEvent", b"{}", timestamp_ns=-1)
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.write_raw("keyboard", "desktop/KeyboardEvent", b"{}", timestamp_ns=T0)
    with pytest.raises(OSError):
        OWAMcapWriter(tmp_path / "missing-dir" / "d.mcap")
