"""Stage 1 keeps only rows the encoders can read: typed validation, unknown types, strict mouse fields.

Bad recordings are real MCAP files written with the real ``mcap`` writer (``mcap_helpers.write_mcap``).
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mcap_helpers import write_mcap
from owa.data.encoders import create_encoder
from owa.data.errors import MessageValidationError
from owa.data.events import REPORT_FILENAME, EventDatasetConfig, build_event_dataset
from owa.data.messages import MESSAGE_TYPES, MouseEvent, RawMouseEvent, decode_payload
from owa.data.recordings.reader import OWAMcapReader
from owa.data.validation import FAST_CHECKS

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
CLICK = b'{"event_type":"click","x":1,"y":2,"button":"left","pressed":true}'
GOOD = [
    ("keyboard", "desktop/KeyboardEvent", T0, b'{"event_type":"press","vk":65}'),
    ("mouse", "desktop/MouseEvent", T0 + 100 * MS, b'{"event_type":"move","x":1,"y":2}'),
    ("mouse", "desktop/MouseEvent", T0 + 101 * MS, CLICK),
    ("keyboard", "desktop/KeyboardEvent", T0 + 102 * MS, b'{"event_type":"release","vk":65,"timestamp":5}'),
    ("mouse", "desktop/MouseEvent", T0 + 103 * MS, b'{"event_type":"scroll","x":1,"y":2,"dx":0,"dy":-1}'),
]
# Each row is JSON-object-shaped, so the old check let it in, and then tokenization failed at it.
BAD = [
    ("keyboard", "desktop/KeyboardEvent", b'{"event_type":"press"}', "vk"),
    ("keyboard", "desktop/KeyboardEvent", b'{"event_type":"press","vk":"65"}', "vk"),
    ("keyboard", "desktop/KeyboardEvent", b'{"event_type":"hold","vk":65}', "event_type"),
    ("mouse", "desktop/MouseEvent", b'{"event_type":"move","x":true,"y":2}', "x"),
    ("mouse", "desktop/MouseEvent", b'{"event_type":"move","x":"100","y":2}', "x"),
    ("mouse", "desktop/MouseEvent", b'{"event_type":"click","x":1,"y":2,"button":"left","pressed":"yes"}', "pressed"),
    ("mouse", "desktop/MouseEvent", b'{"event_type":"move","x":1,"y":2,"z":3}', "z"),
    ("screen", "desktop/ScreenCaptured", b'{"utc_ns":1,"media_ref":{"pts_ns":0}}', "uri"),
]


def _folder_with(tmp_path: Path, rows: list[tuple[str, str, int, bytes]], name: str = "rec.mcap") -> Path:
    folder = tmp_path / "recs"
    folder.mkdir(exist_ok=True)
    write_mcap(folder / name, sorted(rows, key=lambda r: r[2]))
    return folder


def _unlimited(folder: Path, **kwargs: object) -> EventDatasetConfig:
    return EventDatasetConfig(
        train_dir=folder, test_percent=0, rates_hz={"mouse": float("inf"), "screen": float("inf")}, **kwargs
    )


@pytest.mark.parametrize(("topic", "message_type", "payload", "field"), BAD)
def test_a_row_the_encoders_reject_never_enters_the_dataset(
    tmp_path: Path, topic: str, message_type: str, payload: bytes, field: str
) -> None:
    bad_ts = T0 + 50 * MS
    folder = _folder_with(tmp_path, [*GOOD, (topic, message_type, bad_ts, payload)])
    dataset = build_event_dataset(_unlimited(folder))
    rows = dataset["train"]
    assert len(rows) == len(GOOD) and bad_ts not in rows["timestamp_ns"]
    encoder = create_encoder("hierarchical")
    for row in rows:  # what tokenize_event_dataset does with every row: it must not raise
        encoder.encode_serialized(row["mcap_message"], episode_path=row["episode_path"])
    (problem,) = dataset.report.problems
    assert problem["action"] == "salvaged" and "1 bad message" in problem["reason"]
    assert problem["bad_messages"] == 1
    (example,) = problem["bad_message_examples"]
    assert (example["topic"], example["timestamp_ns"], example["message_type"]) == (topic, bad_ts, message_type)
    assert field in example["reason"]
    assert dataset.report.events_invalid == {topic: 1}
    assert "1 bad message" in dataset.report.format_table()

    with pytest.raises(MessageValidationError) as info:
        build_event_dataset(_unlimited(folder, strict=True))
    error = info.value
    assert (error.path, error.topic, error.timestamp_ns) == (str(folder / "rec.mcap"), topic, bad_ts)


def test_bad_rows_are_counted_exactly_and_examples_capped(tmp_path: Path) -> None:
    bad_press = b'{"event_type":"press","vk":true}'
    bad = [("keyboard", "desktop/KeyboardEvent", T0 + (200 + i) * MS, bad_press) for i in range(12)]
    out = tmp_path / "out"
    folder = _folder_with(tmp_path, [*GOOD, *bad])
    dataset = build_event_dataset(_unlimited(folder, output_dir=out))
    assert len(dataset["train"]) == len(GOOD)
    saved = json.loads((out / REPORT_FILENAME).read_text())["report"]
    (problem,) = saved["problems"]
    assert problem["bad_messages"] == 12 and "12 bad message" in problem["reason"]
    assert [e["timestamp_ns"] for e in problem["bad_message_examples"]] == [t for _, _, t, _ in bad[:5]]
    assert saved["events_invalid"] == {"keyboard": 12}
    assert saved["events_read"]["keyboard"] == 14 and saved["events_kept"]["keyboard"] == 2
    assert saved["dropped_by_rate"]["keyboard"] == 0  # invalid rows are not counted as thinned


def test_unknown_message_types_on_a_kept_topic_are_counted_by_type_and_topic(tmp_path: Path) -> None:
    unknown = [
        ("mouse", "desktop/MouseEventV9", T0 + 10 * MS, b'{"event_type":"move","x":1,"y":2}'),
        ("mouse", "desktop/MouseEventV9", T0 + 11 * MS, b'{"event_type":"move","x":1,"y":3}'),
        ("keyboard", "custom/Macro", T0 + 12 * MS, b'{"keys":[1,2]}'),
        ("window", "custom/Ignored", T0 + 13 * MS, b"{}"),  # not a kept topic: never read
    ]
    out = tmp_path / "out"
    folder = _folder_with(tmp_path, [*GOOD, *unknown])
    dataset = build_event_dataset(_unlimited(folder, output_dir=out))
    assert set(dataset["train"]["message_type"]) == {"desktop/KeyboardEvent", "desktop/MouseEvent"}
    assert len(dataset["train"]) == len(GOOD)
    (problem,) = json.loads((out / REPORT_FILENAME).read_text())["report"]["problems"]
    assert problem["unknown_types"] == [
        {"message_type": "custom/Macro", "topic": "keyboard", "count": 1},
        {"message_type": "desktop/MouseEventV9", "topic": "mouse", "count": 2},
    ]
    assert "3 message(s) of unknown type" in problem["reason"] and "bad_messages" not in problem
    assert dataset.report.events_invalid == {"mouse": 2, "keyboard": 1}
    with pytest.raises(MessageValidationError, match="Unknown message type") as info:
        build_event_dataset(_unlimited(folder, strict=True))
    assert (info.value.topic, info.value.timestamp_ns) == ("mouse", T0 + 10 * MS)


def test_every_kept_topic_type_is_validated_not_only_the_encoders_three(tmp_path: Path) -> None:
    rows = [
        *GOOD,
        ("window", "desktop/WindowInfo", T0 + 1 * MS, b'{"title":"a","rect":[0,0,1,1],"hWnd":7}'),
        ("window", "desktop/WindowInfo", T0 + 2 * MS, b'{"title":"a","rect":[0,0,1],"hWnd":7}'),
        ("mouse/raw", "desktop/RawMouseEvent", T0 + 3 * MS, b'{"last_x":1,"last_y":-2,"button_flags":1}'),
        ("mouse/raw", "desktop/RawMouseEvent", T0 + 4 * MS, b'{"last_x":true,"last_y":-2}'),
        ("mouse/raw", "desktop/RawMouseEvent", T0 + 5 * MS, b'{"last_x":1,"last_y":-2,"device_handle":"7"}'),
    ]
    folder = _folder_with(tmp_path, rows)
    config = _unlimited(folder, keep_topics=("window", "mouse/raw"))
    dataset = build_event_dataset(config)
    assert sorted(dataset["train"]["timestamp_ns"]) == [T0 + 1 * MS, T0 + 3 * MS]
    assert dataset.report.events_invalid == {"window": 1, "mouse/raw": 2}


@pytest.mark.parametrize(
    ("model", "payload"),
    [
        (MouseEvent, b'{"event_type":"move","x":true,"y":2}'),
        (MouseEvent, b'{"event_type":"move","x":"100","y":2}'),
        (MouseEvent, b'{"event_type":"move","x":100.5,"y":2}'),
        (MouseEvent, b'{"event_type":"click","x":1,"y":2,"button":"left","pressed":"yes"}'),
        (MouseEvent, b'{"event_type":"click","x":1,"y":2,"button":"left","pressed":1}'),
        (MouseEvent, b'{"event_type":"scroll","x":1,"y":2,"dy":"1"}'),
        (RawMouseEvent, b'{"last_x":false,"last_y":2}'),
        (RawMouseEvent, b'{"last_x":1,"last_y":2,"button_flags":"1"}'),
        (RawMouseEvent, b'{"last_x":1,"last_y":2.5}'),
        (RawMouseEvent, b'{"last_x":1,"last_y":2,"timestamp":true}'),
    ],
)
def test_mouse_fields_are_strict(model: type[MouseEvent] | type[RawMouseEvent], payload: bytes) -> None:
    with pytest.raises(ValidationError):
        model.model_validate_json(payload)


def test_every_real_recording_decodes_under_the_strict_models(recordings_dir: Path) -> None:
    checked = 0
    for path in sorted(recordings_dir.glob("*.mcap")):
        with OWAMcapReader(path) as reader:
            for topic, timestamp_ns, message_type, data in reader.iter_messages():
                decode_payload(message_type, data, path=path, topic=topic, timestamp_ns=timestamp_ns)
                checked += 1
    assert checked > 2000


def test_a_whole_float_pixel_is_still_an_int() -> None:
    # Kept from before strictness (tests/test_encoders.py relies on it); real recordings write plain ints.
    assert MouseEvent.model_validate_json(b'{"event_type":"move","x":852.0,"y":2}').x == 852
    assert RawMouseEvent.model_validate_json(b'{"last_x":-3.0,"last_y":2}').last_x == -3
    schema = MouseEvent.model_json_schema()["properties"]
    assert schema["x"] == {"title": "X", "type": "integer"}


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["press", "release", "move", "click", "scroll", "left", "x2", "100", ""]),
    st.lists(st.integers(-5, 5) | st.booleans(), max_size=3),
    st.fixed_dictionaries({"uri": st.sampled_from(["a.mkv", 5])}, optional={"pts_ns": st.none() | st.integers()}),
)
# A valid payload per fast-checked type; the test deletes some keys and sets others to arbitrary values.
_VALID = {
    "desktop/KeyboardEvent": {"event_type": "press", "vk": 65},
    "desktop/MouseEvent": {"event_type": "click", "x": 1, "y": 2},
    "desktop/RawMouseEvent": {"last_x": 1, "last_y": 2},
    "desktop/ScreenCaptured": {"utc_ns": 1, "shape": [4, 3], "media_ref": {"uri": "a.mkv", "pts_ns": 0}},
}


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[str, dict]:
    message_type = draw(st.sampled_from(sorted(_VALID)))
    payload = dict(_VALID[message_type])
    for key in draw(st.sets(st.sampled_from(sorted(payload)))):
        del payload[key]
    keys = [*MESSAGE_TYPES[message_type].model_fields, "z"]
    payload.update(draw(st.dictionaries(st.sampled_from(keys), _VALUES, max_size=3)))
    return message_type, payload


@settings(max_examples=600, deadline=None)
@given(case=_mutated())
def test_the_fast_check_never_accepts_what_the_model_rejects(case: tuple[str, dict]) -> None:
    message_type, payload = case
    if FAST_CHECKS[message_type](payload):
        MESSAGE_TYPES[message_type].model_validate_json(orjson.dumps(payload))
