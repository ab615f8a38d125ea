"""Interop with upstream ``mcap-owa-support`` (a test extra): its reader reads our recordings, and its
``McapMessage`` JSON and ours are the same layout in both directions."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import pytest
from mcap.reader import make_reader
from mcap_owa.highlevel import McapMessage as UpstreamMcapMessage
from mcap_owa.highlevel import OWAMcapReader as UpstreamReader

from owa.data import McapMessage
from owa.data.messages import dump_mcap_message_json
from owa.data.recordings.synthetic import SampleConfig, SampleEpisode, write_sample_episode


@pytest.fixture(scope="module")
def episode(tmp_path_factory: pytest.TempPathFactory) -> SampleEpisode:
    config = SampleConfig(seconds=2.0, fps=10.0, width=96, height=48, codec="h264", seed=21, raw_mouse=True)
    return write_sample_episode(tmp_path_factory.mktemp("interop"), "interop", config)


def _bare(path: Path) -> list[tuple[str, int, str, bytes]]:
    with open(path, "rb") as f:
        return [(c.topic, m.log_time, s.name, m.data) for s, c, m in make_reader(f).iter_messages()]


def test_upstream_reader_reads_a_generated_recording(episode: SampleEpisode) -> None:
    expected = _bare(episode.mcap_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no version-compatibility warning for our files
        reader = UpstreamReader(str(episode.mcap_path), decode_args={"return_dict": True})
    with reader:
        assert set(reader.topics) == set(episode.message_counts)
        assert reader.message_count == episode.message_count == len(expected)
        assert reader.start_time == expected[0][1] and reader.end_time == expected[-1][1]
        messages = list(reader.iter_messages())
        assert [(m.topic, m.timestamp, m.message_type, m.message) for m in messages] == expected
        assert Counter(m.topic for m in messages) == Counter(episode.message_counts)
        screen = next(m for m in messages if m.topic == "screen")
        assert screen.decoded["media_ref"] == {"uri": "interop.mkv", "pts_ns": 0}
        keyboard = [m.decoded for m in reader.iter_messages(topics=["keyboard"])]
        assert keyboard and all(k["event_type"] in ("press", "release") for k in keyboard)


PAYLOADS = [
    ("keyboard", 1_700_000_000_000_000_000, "desktop/KeyboardEvent", b'{"event_type":"press","vk":65}'),
    (
        "window",
        1_700_000_000_000_000_001,
        "desktop/WindowInfo",
        '{"title":"*test.txt - 메모장 \\"quoted\\" \\\\ tab\\t","rect":[0,0,1,1],"hWnd":7}'.encode(),
    ),
    ("screen", 5, "desktop/ScreenCaptured", b'{"media_ref":{"uri":"a b.mkv","pts_ns":0}}'),
]


@pytest.mark.parametrize(("topic", "timestamp", "message_type", "payload"), PAYLOADS)
def test_mcap_message_json_is_upstreams_layout(topic: str, timestamp: int, message_type: str, payload: bytes) -> None:
    ours = McapMessage(topic=topic, timestamp=timestamp, message=payload, message_type=message_type)
    upstream = UpstreamMcapMessage(topic=topic, timestamp=timestamp, message=payload, message_type=message_type)
    # Ours -> upstream.
    parsed = UpstreamMcapMessage.model_validate_json(ours.model_dump_json())
    assert (parsed.topic, parsed.timestamp, parsed.message, parsed.message_type) == (
        topic,
        timestamp,
        payload,
        message_type,
    )
    # Upstream -> ours.
    assert McapMessage.model_validate_json(upstream.model_dump_json()) == ours
    assert McapMessage.model_validate_json(upstream.model_dump_json().encode()) == ours
    # Byte-identical JSON, also from the stage-1 fast path.
    assert ours.model_dump_json() == upstream.model_dump_json()
    assert dump_mcap_message_json(topic, timestamp, message_type, payload) == upstream.model_dump_json().encode()


def test_generated_messages_round_trip_through_upstream(episode: SampleEpisode) -> None:
    for topic, timestamp, message_type, payload in _bare(episode.mcap_path):
        ours = McapMessage(topic=topic, timestamp=timestamp, message=payload, message_type=message_type)
        back = UpstreamMcapMessage.model_validate_json(ours.model_dump_json())
        assert McapMessage.model_validate_json(back.model_dump_json()) == ours
