"""Decoding token ids back into events: packed samples spanning episodes (FSLDataset.decode), generated
continuations with an unfinished tail, and malformed generations (skipped and counted, or raised)."""

from __future__ import annotations

import datasets
import orjson
import pytest

from owa.data.episode_tokenizer import DecodedEvents, EpisodeTokenizer
from owa.data.errors import DatasetError, EncodingError
from owa.data.fsl_dataset import FSLDataset
from owa.data.image_layout import ImageLayout
from owa.data.messages import McapMessage, MediaRef, ScreenCaptured, dump_mcap_message_json
from owa.data.schema import event_features
from owa.data.testing import event_dataset_from_mcap, tiny_bpe_tokenizer

EPISODE_A_NS = 1_750_000_000_120_000_000  # absolute starts far apart, in different 4 s periods
EPISODE_B_NS = 1_760_000_003_370_000_000


def key(timestamp_ns: int, vk: int, event_type: str = "press") -> tuple[str, int, str, bytes]:
    return "keyboard", timestamp_ns, "desktop/KeyboardEvent", orjson.dumps({"event_type": event_type, "vk": vk})


def move(timestamp_ns: int, x: int, y: int) -> tuple[str, int, str, bytes]:
    return "mouse", timestamp_ns, "desktop/MouseEvent", orjson.dumps({"event_type": "move", "x": x, "y": y})


def screen(timestamp_ns: int, pts_ms: int) -> tuple[str, int, str, bytes]:
    payload = ScreenCaptured(utc_ns=timestamp_ns, shape=(8, 6), media_ref=MediaRef(uri="v.mkv", pts_ns=pts_ms * 10**6))
    return "screen", timestamp_ns, "desktop/ScreenCaptured", payload.model_dump_json(exclude_none=True).encode()


def episode(start_ns: int) -> list[tuple[str, int, str, bytes]]:
    """Events 10 ms multiples apart (so the hierarchical format's 10 ms cells hold them exactly), with gaps up to
    3.9 s, crossing 4 s period boundaries."""
    times = [start_ns + ms * 10**6 for ms in (0, 10, 50, 1_990, 2_000, 5_900, 6_000, 9_870, 9_880, 13_000)]
    return [
        key(times[0], 65),
        screen(times[1], 0),
        move(times[2], 960, 540),
        key(times[3], 65, "release"),
        screen(times[4], 50),
        move(times[5], 1919, 0),
        key(times[6], 160),
        screen(times[7], 100),
        move(times[8], 0, 1079),
        key(times[9], 13),
    ]


def event_dataset(episodes: dict[str, list[tuple[str, int, str, bytes]]]) -> datasets.Dataset:
    rows: dict[str, list] = {k: [] for k in ("episode_path", "topic", "timestamp_ns", "message_type", "mcap_message")}
    for path, events in episodes.items():
        for topic, timestamp_ns, message_type, payload in events:
            rows["episode_path"].append(path)
            rows["topic"].append(topic)
            rows["timestamp_ns"].append(timestamp_ns)
            rows["message_type"].append(message_type)
            rows["mcap_message"].append(dump_mcap_message_json(topic, timestamp_ns, message_type, payload))
    return datasets.Dataset.from_dict(rows, features=event_features())


def as_tuple(message: McapMessage, *, images: bool = True) -> tuple[str, int, str, dict]:
    """The message's fields; ``images=False``: a screen's payload left out (decoded without images, it is empty)."""
    payload = orjson.loads(message.message) if images or message.topic != "screen" else {}
    return message.topic, message.timestamp, message.message_type, payload


@pytest.fixture(scope="module")
def prepared() -> EpisodeTokenizer:
    event_tokenizer = EpisodeTokenizer(
        image_layout=ImageLayout(prefix="<boi>", token="<slot>", count=4, suffix="<eoi>")
    )
    event_tokenizer.prepare_model(tokenizer=tiny_bpe_tokenizer())
    return event_tokenizer


# ------------------------------------------------------------------------------------------------------------
# Packed samples
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoder_type", ["hierarchical", "json"])
def test_a_sample_spanning_two_episodes_decodes_to_exactly_the_source_events(encoder_type: str, tmp_path) -> None:
    sources = {str(tmp_path / "a.mcap"): episode(EPISODE_A_NS), str(tmp_path / "b.mcap"): episode(EPISODE_B_NS)}
    events = event_dataset(sources)
    event_tokenizer = EpisodeTokenizer(encoder_type=encoder_type, image_layout="smolvlm")
    event_tokenizer.prepare_model(tokenizer=tiny_bpe_tokenizer())
    tokenized = event_tokenizer.tokenize_event_dataset(events)
    limit = sum(tokenized["total_token_count"][:15])  # sample 0: all of episode a and half of b
    fsl = FSLDataset(tokenized, pad_token_id=0, max_sequence_length=limit, load_images=False, log_every=None)
    fsl.prepare()
    assert fsl.segments(0) == [(str(tmp_path / "a.mcap"), range(0, 10)), (str(tmp_path / "b.mcap"), range(10, 15))]
    assert fsl.segments(1) == [(str(tmp_path / "b.mcap"), range(15, 20))]

    decoded = [fsl.decode(index, event_tokenizer, events) for index in range(len(fsl))]
    expected_rows = [[range(0, 10), range(10, 15)], [range(15, 20)]]
    for sample, row_ranges in zip(decoded, expected_rows, strict=True):
        assert [path for path, _ in sample] == [events[r.start]["episode_path"] for r in row_ranges]
        for (_, messages), rows in zip(sample, row_ranges, strict=True):
            assert isinstance(messages, DecodedEvents) and messages.skipped == 0 and messages.tail == []
            expected = [as_tuple(McapMessage.model_validate_json(events[row]["mcap_message"])) for row in rows]
            assert [as_tuple(m) for m in messages] == expected  # exact absolute timestamps and payloads


def test_a_real_sample_across_the_episode_boundary_has_every_timestamp_right(recordings_dir) -> None:
    events = datasets.concatenate_datasets(
        [
            event_dataset_from_mcap(recordings_dir / "0.5.1.mcap"),
            event_dataset_from_mcap(recordings_dir / "0.5.1.mcap", episode_path=str(recordings_dir / "again.mcap")),
        ]
    )
    event_tokenizer = EpisodeTokenizer(image_token_length=8)
    event_tokenizer.prepare_model(tokenizer=tiny_bpe_tokenizer())
    tokenized = event_tokenizer.tokenize_event_dataset(events)
    fsl = FSLDataset(tokenized, pad_token_id=0, max_sequence_length=512, load_images=False, log_every=None).prepare()
    spanning = [index for index in range(len(fsl)) if len(fsl.segments(index)) == 2]
    assert len(spanning) == 1
    timestamps = events["timestamp_ns"]
    for path, messages in fsl.decode(spanning[0], event_tokenizer, events):
        rows = next(rows for p, rows in fsl.segments(spanning[0]) if p == path)
        assert len(messages) == len(rows)
        assert [m.timestamp for m in messages] == [timestamps[row] - timestamps[row] % 10_000_000 for row in rows]
        assert [m.topic for m in messages] == [events[row]["topic"] for row in rows]


def test_fsl_decode_needs_the_tokenized_event_dataset(tmp_path, prepared) -> None:
    events = event_dataset({str(tmp_path / "a.mcap"): episode(EPISODE_A_NS)})
    tokenized = prepared.tokenize_event_dataset(events)
    fsl = FSLDataset(tokenized, pad_token_id=0, max_sequence_length=4096, load_images=False, log_every=None).prepare()
    with pytest.raises(DatasetError, match="timestamp_ns"):
        fsl.decode(0, prepared, events.remove_columns(["timestamp_ns"]))
    with pytest.raises(DatasetError, match="1 rows"):
        fsl.decode(0, prepared, events.select([0]))
    other = events.map(lambda row: {"episode_path": "elsewhere.mcap"})
    with pytest.raises(DatasetError, match=r"elsewhere\.mcap"):
        fsl.decode(0, prepared, other)
    with pytest.raises(IndexError):
        fsl.decode(1, prepared, events)


# ------------------------------------------------------------------------------------------------------------
# Generated continuations
# ------------------------------------------------------------------------------------------------------------


def encoded(event_tokenizer: EpisodeTokenizer, source: tuple[str, int, str, bytes]) -> list[int]:
    topic, timestamp_ns, message_type, payload = source
    message = McapMessage(topic=topic, timestamp=timestamp_ns, message_type=message_type, message=payload)
    return event_tokenizer.tokenize(message)["token_ids"]


def test_a_truncated_continuation_returns_the_tail(prepared) -> None:
    events = episode(EPISODE_A_NS)
    last_known = events[0][1]  # the prompt ended with events[0]
    generated = [encoded(prepared, e) for e in events[1:4]]
    cut = generated[0] + generated[1] + generated[2][:6]
    first = prepared.decode(cut, last_timestamp_ns=last_known)
    assert [as_tuple(m) for m in first] == [as_tuple(McapMessage(**_fields(e)), images=False) for e in events[1:3]]
    assert first.tail == generated[2][:6] and first.skipped == 0
    # The model goes on; the tail plus the rest decodes to the third event, after the last decoded one.
    second = prepared.decode(first.tail + generated[2][6:], last_timestamp_ns=first[-1].timestamp)
    assert [as_tuple(m) for m in second] == [as_tuple(McapMessage(**_fields(events[3])))] and second.tail == []
    # A whole sequence treats the cut event as malformed instead.
    with pytest.raises(EncodingError, match="Incomplete"):
        prepared.decode(cut, start_timestamp_ns=events[1][1])
    with pytest.raises(ValueError, match="not both"):
        prepared.decode(cut, start_timestamp_ns=1, last_timestamp_ns=1)


def _fields(source: tuple[str, int, str, bytes]) -> dict:
    topic, timestamp_ns, message_type, payload = source
    return {"topic": topic, "timestamp": timestamp_ns, "message_type": message_type, "message": payload}


def test_malformed_tokens_in_the_middle_are_skipped_and_counted_or_raise(prepared) -> None:
    events = episode(EPISODE_A_NS)
    first, screen_ids, last = (encoded(prepared, e) for e in (events[0], events[1], events[2]))
    token = prepared.token_id
    bad_event = [token("<EVENT_START>"), token("<TIMESTAMP>"), token("<1>"), token("<KEYBOARD>"), token("<EVENT_END>")]
    cut_off = first[:5]  # an <EVENT_START> whose event never ends before the next one starts
    stray = [token("<3>"), token("<press>")]  # event tokens outside any event
    slot = token("<slot>")
    short_frame = [t for i, t in enumerate(screen_ids) if not (t == slot and i == screen_ids.index(slot))]
    expected = [as_tuple(McapMessage(**_fields(e))) for e in (events[0], events[2])]
    for garbage in (bad_event, cut_off, stray, short_frame):
        ids = first + garbage + last
        with pytest.raises(EncodingError) as info:
            prepared.decode(ids, last_timestamp_ns=events[0][1] - 1)
        assert info.value.context["position"] == len(first)  # where the malformed part starts
        decoded = prepared.decode(ids, last_timestamp_ns=events[0][1] - 1, on_error="skip")
        assert [as_tuple(m) for m in decoded] == expected and decoded.skipped == 1 and decoded.tail == []
    # Episode tokens and tokens that are not ours (end of text, padding) between events are not errors.
    fine = [token("<EPISODE_START>"), *first, 0, 0, *screen_ids, token("<EPISODE_END>"), 0]
    decoded = prepared.decode(fine, start_timestamp_ns=events[0][1])
    assert [m.topic for m in decoded] == ["keyboard", "screen"] and decoded.skipped == 0


def test_decoded_screens_get_their_images_in_order(prepared) -> None:
    events = episode(EPISODE_A_NS)
    ids = [t for e in events for t in encoded(prepared, e)]
    refs = [ScreenCaptured(media_ref=MediaRef(uri=f"{i}.mkv")) for i in range(3)]
    decoded = prepared.decode(ids, start_timestamp_ns=events[0][1], images=refs)
    screens = [orjson.loads(m.message)["media_ref"]["uri"] for m in decoded if m.topic == "screen"]
    assert screens == ["0.mkv", "1.mkv", "2.mkv"]
