"""The OWAMcap reader: real recordings of every recorder version, legacy forms, filters and damage."""

from __future__ import annotations

import collections
import contextlib
import random
import shutil
import struct
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcap.reader import make_reader
from mcap.writer import CompressionType, Writer

from mcap_helpers import write_mcap
from owa.data.errors import CorruptRecordingError, MessageValidationError, RecordingError
from owa.data.recordings.reader import OWAMcapReader, RecordedMessage, read_messages

ALL_RECORDINGS = ["0.3.2", "0.4.2", "0.5.1", "ztype-no-video"]


def bare_messages(path: Path) -> list[tuple[str, str, int, bytes]]:
    with open(path, "rb") as f:
        return [(ch.topic, s.name, m.log_time, m.data) for s, ch, m in make_reader(f).iter_messages()]


@pytest.mark.parametrize("name", ALL_RECORDINGS)
def test_topic_counts_match_mcap(recordings_dir: Path, name: str) -> None:
    path = recordings_dir / f"{name}.mcap"
    expected = collections.Counter(topic for topic, *_ in bare_messages(path))
    with OWAMcapReader(path) as reader:
        messages = list(reader.iter_messages())
        assert reader.report.messages_read == len(messages)
        assert not reader.report.damaged
        assert reader.topic_counts() == dict(expected)
    assert collections.Counter(m.topic for m in messages) == expected
    assert [m.timestamp_ns for m in messages] == sorted(m.timestamp_ns for m in messages)


@pytest.mark.parametrize("name", ALL_RECORDINGS)
def test_every_version_is_normalized(recordings_dir: Path, name: str) -> None:
    messages = list(read_messages(recordings_dir / f"{name}.mcap"))
    assert {m.message_type for m in messages} <= {
        "desktop/ScreenCaptured",
        "desktop/KeyboardEvent",
        "desktop/MouseEvent",
        "desktop/WindowInfo",
        "desktop/KeyboardState",
        "desktop/MouseState",
    }
    screens = [orjson.loads(m.data) for m in messages if m.topic == "screen"]
    assert screens
    for screen in screens:
        assert set(screen["media_ref"]) == {"uri", "pts_ns"}
        assert screen["media_ref"]["uri"].endswith(".mkv")
        assert not {"path", "pts", "original_shape"} & screen.keys()
    # every payload still validates as its typed model
    for message in messages:
        message.to_mcap_message().decoded  # noqa: B018 - raises on an invalid payload


def test_legacy_screen_fields_are_mapped(recordings_dir: Path) -> None:
    raw = [d for t, _, _, d in bare_messages(recordings_dir / "0.4.2.mcap") if t == "screen"]
    ours = [m.data for m in read_messages(recordings_dir / "0.4.2.mcap", "screen")]
    for before, after in zip(raw, ours, strict=True):
        old, new = orjson.loads(before), orjson.loads(after)
        assert new == {
            "utc_ns": old["utc_ns"],
            "source_shape": old["original_shape"],
            "shape": old["shape"],
            "media_ref": {"uri": old["path"], "pts_ns": old["pts"]},
        }


def test_current_payloads_pass_through_byte_for_byte(recordings_dir: Path) -> None:
    path = recordings_dir / "0.5.1.mcap"
    raw = bare_messages(path)
    ours = list(read_messages(path))
    assert [(t, ts, d) for t, _, ts, d in raw] == [(m.topic, m.timestamp_ns, m.data) for m in ours]


def test_topic_and_time_filters(recordings_dir: Path) -> None:
    path = recordings_dir / "0.4.2.mcap"
    everything = list(read_messages(path))
    start = everything[len(everything) // 3].timestamp_ns
    end = everything[2 * len(everything) // 3].timestamp_ns
    filtered = list(read_messages(path, ["keyboard", "screen"], start_time_ns=start, end_time_ns=end))
    expected = [m for m in everything if m.topic in ("keyboard", "screen") and start <= m.timestamp_ns < end]
    assert filtered == expected
    assert list(read_messages(path, "keyboard")) == [m for m in everything if m.topic == "keyboard"]


def test_legacy_names_and_payloads_from_old_recorders(tmp_path: Path) -> None:
    screen, raw_mouse = "desktop/ScreenCaptured", "desktop/RawMouseEvent"
    path = write_mcap(
        tmp_path / "legacy.mcap",
        [
            ("keyboard/state", "owa_env_desktop.msg.KeyboardState", 1, b'{"pressed_vk_list":[65,16]}'),
            ("screen", "owa_env_gst.msg.ScreenEmitted", 2, b'{"path":"v.mkv","pts":5,"utc_ns":7}'),
            ("keyboard", "owa_env_desktop.msg.KeyboardEvent", 3, b'{"event_type":"press","vk":65}'),
            (
                "screen",
                "desktop/ScreenCaptured",
                4,
                b'{"media_ref":{"type":"external_video","path":"v.mkv","pts_ns":9}}',
            ),
            ("screen", screen, 5, b'{"media_ref":{"type":"external_image","path":"a.png"}}'),
            ("screen", screen, 6, b'{"media_ref":{"type":"embedded","format":"png","data":"QUJD"}}'),
            (
                "mouse/raw",
                raw_mouse,
                7,
                b'{"dx":3,"dy":-2,"us_flags":0,"button_flags":0,"button_data":0}',
            ),
            ("custom", "my/Thing", 8, b'{"anything": true}'),
        ],
    )
    messages = list(read_messages(path))
    assert [(m.message_type, orjson.loads(m.data)) for m in messages] == [
        ("desktop/KeyboardState", {"buttons": [65, 16]}),
        ("desktop/ScreenCaptured", {"utc_ns": 7, "media_ref": {"uri": "v.mkv", "pts_ns": 5}}),
        ("desktop/KeyboardEvent", {"event_type": "press", "vk": 65}),
        ("desktop/ScreenCaptured", {"media_ref": {"uri": "v.mkv", "pts_ns": 9}}),
        ("desktop/ScreenCaptured", {"media_ref": {"uri": "a.png"}}),
        ("desktop/ScreenCaptured", {"media_ref": {"uri": "data:image/png;base64,QUJD"}}),
        (
            "desktop/RawMouseEvent",
            {"last_x": 3, "last_y": -2, "us_flags": 0, "button_flags": 0, "button_data": 0},
        ),
        ("my/Thing", {"anything": True}),
    ]


def test_out_of_order_and_overlapping_chunks_come_out_sorted(tmp_path: Path) -> None:
    times = [50, 10, 40, 20, 30, 25, 5, 60, 55, 1]
    messages = [
        ("keyboard", "desktop/KeyboardEvent", t, b'{"event_type":"press","vk":%d}' % i) for i, t in enumerate(times)
    ]
    path = write_mcap(tmp_path / "unordered.mcap", messages, chunk_size=64)
    got = list(read_messages(path))
    assert [m.timestamp_ns for m in got] == sorted(times)
    assert collections.Counter(m.data for m in got) == collections.Counter(d for *_, d in messages)


def _multi_chunk_copy(recordings_dir: Path, tmp_path: Path) -> tuple[Path, list[RecordedMessage]]:
    source = recordings_dir / "0.5.1.mcap"
    path = write_mcap(tmp_path / "multi.mcap", bare_messages(source), chunk_size=2048)
    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
        assert summary is not None and len(summary.chunk_indexes) > 5
    return path, list(read_messages(path))


def test_truncated_recording_yields_messages_before_the_cut_then_raises(recordings_dir: Path, tmp_path: Path) -> None:
    path, full = _multi_chunk_copy(recordings_dir, tmp_path)
    data = path.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) // 2])

    got: list[RecordedMessage] = []
    with pytest.raises(CorruptRecordingError) as info:
        got.extend(read_messages(cut))
    assert 0 < len(got) < len(full)
    assert got == full[: len(got)]
    assert info.value.path == str(cut)
    assert 0 < info.value.offset <= len(data) // 2
    assert info.value.messages_read == len(got)
    assert "cut.mcap" in str(info.value) and "offset=" in str(info.value)

    with OWAMcapReader(cut, on_damage="salvage") as reader:
        salvaged = list(reader.iter_messages())
        assert salvaged == got
        assert reader.report.damaged and not reader.report.had_summary
        assert reader.report.offset == info.value.offset
        assert reader.report.messages_read == len(got)


def test_corrupt_chunk_is_reported_with_offset_or_skipped(recordings_dir: Path, tmp_path: Path) -> None:
    path, full = _multi_chunk_copy(recordings_dir, tmp_path)
    with open(path, "rb") as f:
        chunks = sorted(make_reader(f).get_summary().chunk_indexes, key=lambda c: c.chunk_start_offset)
    victim = chunks[len(chunks) // 2]
    data = bytearray(path.read_bytes())
    middle = victim.chunk_start_offset + victim.chunk_length // 2
    data[middle : middle + 16] = b"\xff" * 16
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(bytes(data))

    with pytest.raises(CorruptRecordingError) as info:
        list(read_messages(bad))
    assert info.value.offset == victim.chunk_start_offset

    with OWAMcapReader(bad, on_damage="salvage") as reader:
        salvaged = list(reader.iter_messages())
        assert reader.report.chunks_skipped == 1
    lost = [m for m in full if victim.message_start_time <= m.timestamp_ns <= victim.message_end_time]
    assert 0 < len(full) - len(salvaged) <= len(lost)
    assert all(m in full for m in salvaged)


def test_bad_payload_names_file_topic_and_timestamp(tmp_path: Path) -> None:
    path = write_mcap(
        tmp_path / "badjson.mcap",
        [
            ("keyboard", "desktop/KeyboardEvent", 1, b'{"event_type":"press","vk":1}'),
            ("screen", "desktop/ScreenCaptured", 2, b"{not json"),
            ("keyboard", "desktop/KeyboardEvent", 3, b'{"event_type":"release","vk":1}'),
        ],
    )
    with pytest.raises(MessageValidationError) as info:
        list(read_messages(path))
    assert (info.value.path, info.value.topic, info.value.timestamp_ns) == (str(path), "screen", 2)
    with OWAMcapReader(path, on_damage="salvage") as reader:
        assert [m.timestamp_ns for m in reader.iter_messages()] == [1, 3]
        assert reader.report.bad_messages == 1


@pytest.mark.parametrize("content", [b"", b"not an mcap file at all", b"\x89MCAP0\r\n"])
def test_not_a_recording(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.mcap"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=r"junk\.mcap"):
        OWAMcapReader(path)


def test_missing_file() -> None:
    with pytest.raises(RecordingError, match=r"nope\.mcap"):
        OWAMcapReader("/definitely/not/here/nope.mcap")


def test_lz4_and_uncompressed_chunks(recordings_dir: Path, tmp_path: Path) -> None:
    source = bare_messages(recordings_dir / "0.4.2.mcap")
    expected = list(read_messages(recordings_dir / "0.4.2.mcap"))
    for compression in (CompressionType.LZ4, CompressionType.NONE):
        path = write_mcap(tmp_path / f"{compression.name}.mcap", source, chunk_size=4096, compression=compression)
        assert list(read_messages(path)) == expected


def test_recording_without_summary_is_read_fully(recordings_dir: Path, tmp_path: Path) -> None:
    path, full = _multi_chunk_copy(recordings_dir, tmp_path)
    # Drop the summary section and footer, as a crashed recorder would, but keep every chunk whole.
    data = path.read_bytes()
    with open(path, "rb") as f:
        last_chunk = max(make_reader(f).get_summary().chunk_indexes, key=lambda c: c.chunk_start_offset)
    crashed = tmp_path / "crashed.mcap"
    crashed.write_bytes(data[: last_chunk.chunk_start_offset + last_chunk.chunk_length])
    with OWAMcapReader(crashed, on_damage="salvage") as reader:
        assert list(reader.iter_messages()) == full
        assert not reader.report.had_summary


def test_recorded_message_to_mcap_message_anchors_media(recordings_dir: Path) -> None:
    path = recordings_dir / "0.5.1.mcap"
    screen = next(read_messages(path, "screen")).to_mcap_message(path).decoded
    # Absolute, with symlinks kept: ../shared is often a symlink, and the path stays the one the caller gave.
    assert screen.base_dir == str(recordings_dir)
    assert screen.resolve_media().location == str(recordings_dir / "0.5.1.mkv")


def test_reader_does_not_modify_recordings(recordings_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.mcap"
    shutil.copy(recordings_dir / "0.3.2.mcap", copy)
    before = copy.read_bytes()
    list(read_messages(copy))
    assert copy.read_bytes() == before


def test_public_api_resolves() -> None:
    import owa.data

    for name in owa.data.__all__:
        assert getattr(owa.data, name) is not None, name


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=st.lists(
        st.tuples(st.sampled_from(["keyboard", "window", "mouse"]), st.integers(0, 50)), min_size=1, max_size=40
    ),
    chunk_size=st.integers(1, 400),
    topics=st.sets(st.sampled_from(["keyboard", "window", "mouse"]), min_size=1),
)
def test_filtered_reads_stay_in_log_time_order(
    tmp_path: Path, events: list[tuple[str, int]], chunk_size: int, topics: set[str]
) -> None:
    messages = [
        (topic, "desktop/KeyboardEvent", t, b'{"event_type":"press","vk":%d}' % i)
        for i, (topic, t) in enumerate(events)
    ]
    path = write_mcap(tmp_path / f"order-{chunk_size}.mcap", messages, chunk_size=chunk_size)
    everything = list(read_messages(path))
    assert [m.timestamp_ns for m in everything] == sorted(t for _, t in events)
    filtered = list(read_messages(path, topics))
    assert filtered == [m for m in everything if m.topic in topics]


def test_random_corruption_gives_typed_errors_or_counted_salvage(recordings_dir: Path, tmp_path: Path) -> None:
    path, full = _multi_chunk_copy(recordings_dir, tmp_path)
    data = path.read_bytes()
    rng = random.Random(1234)
    for trial in range(120):
        broken = bytearray(data)
        if trial % 3 == 0:
            broken = broken[: rng.randrange(8, len(data))]
        for _ in range(rng.randint(1, 4)):
            where = rng.randrange(len(broken))
            broken[where] = rng.randrange(256)
        victim = tmp_path / f"fuzz-{trial}.mcap"
        victim.write_bytes(bytes(broken))
        try:
            with OWAMcapReader(victim, on_damage="salvage") as reader:
                salvaged = list(reader.iter_messages(["keyboard", "screen"]))
        except RecordingError:
            continue  # header or magic destroyed: the file is rejected with a typed error
        assert len(salvaged) <= len(full)
        assert [m.timestamp_ns for m in salvaged] == sorted(m.timestamp_ns for m in salvaged)
        with contextlib.suppress(RecordingError, MessageValidationError):
            list(read_messages(victim))


def test_absurd_header_length_is_a_typed_error(recordings_dir: Path, tmp_path: Path) -> None:
    data = bytearray((recordings_dir / "0.5.1.mcap").read_bytes())
    data[9:17] = (2**62).to_bytes(8, "little")  # the header record's length, right after magic and opcode
    path = tmp_path / "header.mcap"
    path.write_bytes(bytes(data))
    with pytest.raises(RecordingError, match="header"):
        OWAMcapReader(path)


def test_malformed_schema_record_is_damage_with_offset(tmp_path: Path) -> None:
    path = tmp_path / "unchunked.mcap"
    with open(path, "wb") as f:
        writer = Writer(f, use_chunking=False)
        writer.start(profile="owa", library="test")
        schema = writer.register_schema("desktop/KeyboardEvent", "jsonschema", b"{}")
        channel = writer.register_channel("keyboard", "json", schema)
        writer.add_message(channel, 1, b'{"event_type":"press","vk":65}', 1)
        writer.finish()
    data = bytearray(path.read_bytes())
    at = data.index(b"desktop/KeyboardEvent")
    data[at] = 0xFF  # not UTF-8
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptRecordingError) as info:
        list(read_messages(path))
    assert info.value.offset is not None and info.value.offset < at
    with OWAMcapReader(path, on_damage="salvage") as reader:
        assert list(reader.iter_messages()) == []
        assert reader.report.damaged


# -- crashed recordings and untrustworthy indexes, built with the project's own writer ----------------


def _three_hundred(tmp_path: Path) -> tuple[Path, list[RecordedMessage], list]:
    """300 key events, 1 ms apart, over ~30 small zstd chunks; returns the file, its messages, its chunk indexes."""
    from owa.data.messages import KeyboardEvent
    from owa.data.recordings.writer import OWAMcapWriter

    path = tmp_path / "three-hundred.mcap"
    with OWAMcapWriter(path, chunk_size=512) as writer:
        for i in range(300):
            event = KeyboardEvent(event_type="press" if i % 2 else "release", vk=i % 200)
            writer.write_message("keyboard", event, timestamp_ns=1_000_000 * (i + 1))
    with open(path, "rb") as f:
        chunks = sorted(make_reader(f).get_summary().chunk_indexes, key=lambda c: c.chunk_start_offset)
    assert len(chunks) >= 10
    full = list(read_messages(path))
    assert len(full) == 300
    return path, full, chunks


def _summary_start(data: bytes) -> int:
    """Where the summary section starts, from the footer (opcode, length, summary_start, ...; then magic)."""
    footer = len(data) - 8 - (1 + 8 + 20)
    assert data[footer] == 0x02
    return int.from_bytes(data[footer + 9 : footer + 17], "little")


def test_recording_cut_at_a_chunk_boundary_is_reported_truncated(tmp_path: Path) -> None:
    path, full, chunks = _three_hundred(tmp_path)
    boundary = chunks[3].chunk_start_offset + chunks[3].chunk_length  # no message index, DataEnd or footer
    cut = tmp_path / "cut-at-boundary.mcap"
    cut.write_bytes(path.read_bytes()[:boundary])
    before_cut = [m for m in full if m.timestamp_ns <= chunks[3].message_end_time]

    got: list[RecordedMessage] = []
    with pytest.raises(CorruptRecordingError, match="DataEnd") as info:
        got.extend(read_messages(cut))
    assert got == before_cut
    assert info.value.offset == boundary and info.value.messages_read == len(before_cut)

    with OWAMcapReader(cut, on_damage="salvage") as reader:
        assert list(reader.iter_messages()) == before_cut
        assert reader.report.damaged and reader.report.offset == boundary and not reader.report.had_summary
        assert reader.report.chunks_skipped == 0


def test_unchunked_recording_without_data_end_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "loose.mcap"
    with open(path, "wb") as f:
        writer = Writer(f, use_chunking=False)
        writer.start(profile="owa", library="test")
        channel = writer.register_channel("keyboard", "json", writer.register_schema("desktop/KeyboardEvent", "", b""))
        for t in (1, 2, 3):
            writer.add_message(channel, t, b'{"event_type":"press","vk":65}', t)
        f.flush()
        cut_at = f.tell()  # after the last message record, before DataEnd
        writer.finish()
    path.write_bytes(path.read_bytes()[:cut_at])
    with OWAMcapReader(path, on_damage="salvage") as reader:
        assert [m.timestamp_ns for m in reader.iter_messages()] == [1, 2, 3]
        assert reader.report.damaged and reader.report.offset == cut_at


def _corrupt_middle_chunk(path: Path, chunks: list) -> tuple[bytearray, object]:
    victim = chunks[len(chunks) // 3]
    data = bytearray(path.read_bytes())
    middle = victim.chunk_start_offset + victim.chunk_length // 2
    data[middle : middle + 8] = b"\xff" * 8
    return data, victim


@pytest.mark.parametrize("keep_data_end", [True, False])
def test_salvage_without_summary_goes_on_after_a_corrupt_chunk(tmp_path: Path, keep_data_end: bool) -> None:
    path, full, chunks = _three_hundred(tmp_path)
    data, victim = _corrupt_middle_chunk(path, chunks)
    with_summary = tmp_path / "with-summary.mcap"
    with_summary.write_bytes(bytes(data))
    with OWAMcapReader(with_summary, on_damage="salvage") as reader:
        indexed = list(reader.iter_messages())
        assert reader.report.had_summary and reader.report.chunks_skipped == 1

    # Without the summary (and, for a crashed recorder, without DataEnd): the scan must resynchronize.
    end = _summary_start(bytes(data)) if keep_data_end else chunks[-1].chunk_start_offset + chunks[-1].chunk_length
    without = tmp_path / "without-summary.mcap"
    without.write_bytes(bytes(data[:end]))
    with OWAMcapReader(without, on_damage="salvage") as reader:
        scanned = list(reader.iter_messages())
        assert not reader.report.had_summary
        assert reader.report.damaged and reader.report.offset == victim.chunk_start_offset
        assert reader.report.chunks_skipped == 1
    lost = [m for m in full if victim.message_start_time <= m.timestamp_ns <= victim.message_end_time]
    assert scanned == indexed == [m for m in full if m not in lost]
    assert len(scanned) > 250

    with pytest.raises(CorruptRecordingError) as info:
        list(read_messages(without))
    assert info.value.offset == victim.chunk_start_offset


def test_salvage_without_summary_survives_a_destroyed_record_length(tmp_path: Path) -> None:
    path, full, chunks = _three_hundred(tmp_path)
    victim = chunks[5]
    data = bytearray(path.read_bytes()[: _summary_start(path.read_bytes())])
    data[victim.chunk_start_offset + 1 : victim.chunk_start_offset + 9] = (2**40).to_bytes(8, "little")
    bad = tmp_path / "bad-length.mcap"
    bad.write_bytes(bytes(data))
    with OWAMcapReader(bad, on_damage="salvage") as reader:
        got = list(reader.iter_messages())
        assert reader.report.offset == victim.chunk_start_offset and reader.report.chunks_skipped == 1
    assert got == [m for m in full if not victim.message_start_time <= m.timestamp_ns <= victim.message_end_time]


def _lie_about_chunk_bounds(path: Path, chunk, start_ns: int, end_ns: int) -> Path:
    """Rewrite one chunk's declared log-time bounds, in its header and in its summary index record."""
    data = bytearray(path.read_bytes())
    honest = struct.pack("<QQ", chunk.message_start_time, chunk.message_end_time)
    lie = struct.pack("<QQ", start_ns, end_ns)
    header = chunk.chunk_start_offset + 9
    assert data[header : header + 16] == honest
    data[header : header + 16] = lie
    index_record = honest + struct.pack("<Q", chunk.chunk_start_offset)
    at = data.index(index_record, _summary_start(bytes(data)))
    data[at : at + 16] = lie
    data[-8 - 12 : -8 - 8] = b"\0\0\0\0"  # summary CRC: 0 means "not computed"
    liar = path.with_name(f"liar-{start_ns}-{end_ns}.mcap")
    liar.write_bytes(bytes(data))
    with open(liar, "rb") as f:
        assert any(c.message_start_time == start_ns for c in make_reader(f).get_summary().chunk_indexes)
    return liar


@pytest.mark.parametrize("lie", ["start-too-late", "end-too-early", "far-in-the-future", "far-in-the-past"])
def test_messages_outside_their_chunks_declared_bounds_come_out_in_order(tmp_path: Path, lie: str) -> None:
    path, full, chunks = _three_hundred(tmp_path)
    victim, last = chunks[4], chunks[-1]
    mid = (victim.message_start_time + victim.message_end_time) // 2
    bounds = {
        "start-too-late": (mid, victim.message_end_time),
        "end-too-early": (victim.message_start_time, mid),
        "far-in-the-future": (last.message_end_time + 1, last.message_end_time + 2),
        "far-in-the-past": (0, 1),
    }[lie]
    liar = _lie_about_chunk_bounds(path, victim, *bounds)
    with OWAMcapReader(liar) as reader:
        assert reader.report.had_summary
        assert list(reader.iter_messages()) == full
        assert list(reader.iter_messages("keyboard")) == full
