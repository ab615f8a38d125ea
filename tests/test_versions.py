"""owa.data.recordings.versions: every recorder version's schema names and payloads → the current form.

The tables are the facts of ``OWAMCAP-FORMATS.md``, written out by hand; the real recordings (0.3.2, 0.4.2,
0.5.1) are read with the bare ``mcap`` package and normalized here, independently of the reader.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from mcap.reader import make_reader

from owa.data.messages import ScreenCaptured, decode_payload
from owa.data.recordings.reader import OWAMcapReader
from owa.data.recordings.versions import normalize_message_type, payload_normalizer

# (writer version, schema name as written) -> current message type
SCHEMA_NAMES = [
    ("0.1.x-0.2.x", "owa_env_desktop.msg.KeyboardEvent", "desktop/KeyboardEvent"),
    ("0.1.x-0.2.x", "owa_env_desktop.msg.MouseEvent", "desktop/MouseEvent"),
    ("0.1.x-0.2.x", "owa_env_desktop.msg.KeyboardState", "desktop/KeyboardState"),
    ("0.1.x-0.2.x", "owa_env_gst.msg.ScreenEmitted", "desktop/ScreenCaptured"),
    ("0.3.x", "owa.env.desktop.msg.KeyboardEvent", "desktop/KeyboardEvent"),
    ("0.3.x", "owa.env.desktop.msg.MouseEvent", "desktop/MouseEvent"),
    ("0.3.x", "owa.env.desktop.msg.WindowInfo", "desktop/WindowInfo"),
    ("0.3.x", "owa.env.desktop.msg.KeyboardState", "desktop/KeyboardState"),
    ("0.3.x", "owa.env.desktop.msg.MouseState", "desktop/MouseState"),
    ("0.3.x", "owa.env.gst.msg.ScreenEmitted", "desktop/ScreenCaptured"),
    ("0.4.x+", "desktop/KeyboardEvent", "desktop/KeyboardEvent"),
    ("0.4.x+", "desktop/ScreenCaptured", "desktop/ScreenCaptured"),
    ("0.5.5+", "desktop/RawMouseEvent", "desktop/RawMouseEvent"),
    # Other message families are not ours to rename.
    ("other", "std/String", "std/String"),
    ("other", "owa.env.custom.msg.Thing", "owa.env.custom.msg.Thing"),
    ("other", "owa.env.desktop.msg.", "owa.env.desktop.msg."),
]


@pytest.mark.parametrize(("version", "schema_name", "expected"), SCHEMA_NAMES)
def test_schema_names(version: str, schema_name: str, expected: str) -> None:
    assert normalize_message_type(schema_name) == expected


# (writer version, message type, payload as written) -> payload in current form (exact bytes)
PAYLOADS = [
    (
        "0.1.x-0.3.x screen",
        "desktop/ScreenCaptured",
        b'{"path":"x.mkv","pts":10000000,"utc_ns":1750427723476384500}',
        b'{"utc_ns":1750427723476384500,"media_ref":{"uri":"x.mkv","pts_ns":10000000}}',
    ),
    (
        "0.1.x-0.3.x screen without pts (a still image)",
        "desktop/ScreenCaptured",
        b'{"path":"x.png","utc_ns":5}',
        b'{"utc_ns":5,"media_ref":{"uri":"x.png"}}',
    ),
    (
        "0.4.x screen",
        "desktop/ScreenCaptured",
        b'{"utc_ns":7,"original_shape":[906,578],"shape":[453,289],"path":"0.4.2.mkv","pts":20000000}',
        b'{"utc_ns":7,"source_shape":[906,578],"shape":[453,289],"media_ref":{"uri":"0.4.2.mkv","pts_ns":20000000}}',
    ),
    (
        "0.5.0 external_video",
        "desktop/ScreenCaptured",
        b'{"utc_ns":7,"media_ref":{"type":"external_video","path":"v.mkv","pts_ns":33}}',
        b'{"utc_ns":7,"media_ref":{"uri":"v.mkv","pts_ns":33}}',
    ),
    (
        "0.5.0 external_image",
        "desktop/ScreenCaptured",
        b'{"utc_ns":7,"media_ref":{"type":"external_image","path":"/abs/i.png"}}',
        b'{"utc_ns":7,"media_ref":{"uri":"/abs/i.png"}}',
    ),
    (
        "0.5.0 embedded",
        "desktop/ScreenCaptured",
        b'{"utc_ns":7,"media_ref":{"type":"embedded","format":"jpeg","data":"AAAA"}}',
        b'{"utc_ns":7,"media_ref":{"uri":"data:image/jpeg;base64,AAAA"}}',
    ),
    (
        "before 0.3.2 keyboard/state",
        "desktop/KeyboardState",
        b'{"pressed_vk_list":[16,65]}',
        b'{"buttons":[16,65]}',
    ),
    (
        "before 0.5.5 raw mouse",
        "desktop/RawMouseEvent",
        b'{"dx":3,"dy":-2,"us_flags":0,"button_flags":1,"button_data":0}',
        b'{"last_x":3,"last_y":-2,"us_flags":0,"button_flags":1,"button_data":0}',
    ),
]


@pytest.mark.parametrize(("version", "message_type", "old", "expected"), PAYLOADS, ids=[p[0] for p in PAYLOADS])
def test_old_payloads_become_current(version: str, message_type: str, old: bytes, expected: bytes) -> None:
    normalize = payload_normalizer(message_type)
    assert normalize is not None
    assert normalize(old) == expected
    decode_payload(message_type, expected)  # the current form validates as the typed model


CURRENT = [
    (
        "desktop/ScreenCaptured",
        b'{"utc_ns":1,"source_shape":[2,2],"shape":[2,2],"media_ref":{"uri":"a.mkv","pts_ns":0}}',
    ),
    ("desktop/ScreenCaptured", b'{"media_ref": {"pts_ns": 0, "uri": "a.mkv"}}'),  # other spacing and key order
    ("desktop/KeyboardState", b'{"buttons":[179]}'),
    ("desktop/RawMouseEvent", b'{"last_x":1,"last_y":2,"us_flags":0,"button_flags":0,"button_data":0}'),
]


@pytest.mark.parametrize(("message_type", "data"), CURRENT)
def test_current_payloads_come_back_as_the_same_object(message_type: str, data: bytes) -> None:
    normalize = payload_normalizer(message_type)
    assert normalize is not None and normalize(data) is data


@pytest.mark.parametrize(
    "message_type", ["desktop/KeyboardEvent", "desktop/MouseEvent", "desktop/WindowInfo", "desktop/MouseState"]
)
def test_types_without_old_forms_have_no_normalizer(message_type: str) -> None:
    assert payload_normalizer(message_type) is None


def test_unknown_tagged_media_ref_is_refused() -> None:
    normalize = payload_normalizer("desktop/ScreenCaptured")
    assert normalize is not None
    with pytest.raises(ValueError, match=r"Unknown media_ref type 'stream'; known: external_video"):
        normalize(b'{"media_ref":{"type":"stream","path":"x"}}')


# --------------------------------------------------------------------------------------------------
# The real recordings
# --------------------------------------------------------------------------------------------------

# version -> (schema names as written, screen fields as written)
REAL = {
    "0.3.2": (
        {
            "owa.env.desktop.msg.KeyboardEvent",
            "owa.env.desktop.msg.MouseEvent",
            "owa.env.desktop.msg.WindowInfo",
            "owa.env.desktop.msg.KeyboardState",
            "owa.env.desktop.msg.MouseState",
            "owa.env.gst.msg.ScreenEmitted",
        },
        {"path", "pts", "utc_ns"},
    ),
    "0.4.2": (
        {
            "desktop/KeyboardEvent",
            "desktop/MouseEvent",
            "desktop/WindowInfo",
            "desktop/KeyboardState",
            "desktop/MouseState",
            "desktop/ScreenCaptured",
        },
        {"utc_ns", "original_shape", "shape", "path", "pts"},
    ),
    "0.5.1": (
        {
            "desktop/KeyboardEvent",
            "desktop/MouseEvent",
            "desktop/WindowInfo",
            "desktop/KeyboardState",
            "desktop/MouseState",
            "desktop/ScreenCaptured",
        },
        {"utc_ns", "source_shape", "shape", "media_ref"},
    ),
}


def _raw(path: Path) -> list[tuple[str, str, int, bytes]]:
    with open(path, "rb") as f:
        return [(c.topic, s.name, m.log_time, m.data) for s, c, m in make_reader(f).iter_messages(log_time_order=True)]


@pytest.mark.parametrize("version", sorted(REAL))
def test_real_recording(recordings_dir: Path, version: str) -> None:
    path = recordings_dir / f"{version}.mcap"
    raw = _raw(path)
    schema_names, screen_fields = REAL[version]
    assert {name for _, name, _, _ in raw} == schema_names

    normalized = []
    for topic, schema_name, log_time, data in raw:
        message_type = normalize_message_type(schema_name)
        assert message_type.startswith("desktop/"), schema_name
        normalize = payload_normalizer(message_type)
        current = data if normalize is None else normalize(data)
        decode_payload(message_type, current, path=path, topic=topic, timestamp_ns=log_time)
        if message_type == ScreenCaptured.message_type:
            before, after = orjson.loads(data), orjson.loads(current)
            assert set(before) == screen_fields
            assert after["media_ref"]["uri"] == f"{version}.mkv"
            assert after["media_ref"]["pts_ns"] == before.get("pts", before.get("media_ref", {}).get("pts_ns"))
            assert after["utc_ns"] == before["utc_ns"]
            if "original_shape" in before or "source_shape" in before:
                assert after["source_shape"] == before.get("source_shape", before.get("original_shape"))
                assert after["shape"] == before["shape"]
        if version == "0.5.1":
            assert current is data  # already current: never re-serialized
        normalized.append((topic, log_time, message_type, current))

    # The reader applies exactly these rules.
    with OWAMcapReader(path) as reader:
        assert [tuple(m) for m in reader.iter_messages()] == normalized
