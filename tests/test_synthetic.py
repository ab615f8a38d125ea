"""Synthetic episodes: realistic events, a real VFR video with readable frame markers, determinism."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcap.reader import make_reader
from typer.testing import CliRunner

from owa.data.cli import app
from owa.data.errors import MediaError
from owa.data.messages import decode_payload
from owa.data.recordings.synthetic import (
    MARKER_BITS,
    SampleConfig,
    SampleEpisode,
    episode_seed,
    read_frame_marker,
    render_frame_marker,
    write_sample_corpus,
    write_sample_episode,
)

# Tiny and fast, but long enough for VFR gaps, two keyframe intervals and state messages.
TINY = SampleConfig(
    seconds=3.0, fps=10.0, width=128, height=72, keyframe_interval_s=1.0, seed=11, stale_screen_prob=0.5, raw_mouse=True
)
CODEC_NAMES = {"hevc": "hevc", "h264": "h264"}


@dataclasses.dataclass
class Decoded:
    episode: SampleEpisode
    frames: list[np.ndarray]
    frame_pts_ms: list[int]
    keyframe_pts_ms: list[int]
    codec_name: str
    size: tuple[int, int]
    time_base: Fraction
    format_name: str
    messages: list[tuple[str, str, int, bytes]]  # (topic, schema name, log_time, data) in file order


def _decode(episode: SampleEpisode) -> Decoded:
    assert episode.video_path is not None
    with av.open(str(episode.video_path)) as container:
        stream = container.streams.video[0]
        keyframes = [p.pts for p in container.demux(stream) if p.pts is not None and p.is_keyframe]
        container.seek(0)
        frames, pts = [], []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            pts.append(frame.pts)
        info = (stream.codec_context.name, (stream.width, stream.height), stream.time_base, container.format.name)
    with open(episode.mcap_path, "rb") as f:
        messages = [
            (c.topic, s.name, m.log_time, m.data) for s, c, m in make_reader(f).iter_messages(log_time_order=False)
        ]
    return Decoded(episode, frames, pts, keyframes, *info, messages)


@pytest.fixture(scope="module", params=["hevc", "h264"])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Decoded:
    config = dataclasses.replace(TINY, codec=request.param)
    return _decode(write_sample_episode(tmp_path_factory.mktemp(request.param), "tiny", config))


# --------------------------------------------------------------------------------------------------
# The video is real
# --------------------------------------------------------------------------------------------------


def test_video_is_a_real_vfr_matroska_stream(tiny: Decoded) -> None:
    config_codec = "hevc" if tiny.codec_name == "hevc" else "h264"
    assert tiny.codec_name == CODEC_NAMES[config_codec]
    assert tiny.format_name.startswith("matroska")
    assert tiny.size == (128, 72)
    assert tiny.time_base == Fraction(1, 1000)
    assert all(frame.shape == (72, 128, 3) for frame in tiny.frames)
    # Frame count and pts match what the generator reports, in ns, and frames are in pts order (no B-frames).
    assert len(tiny.frames) == len(tiny.episode.frame_pts_ns) > 5
    assert [p * 1_000_000 for p in tiny.frame_pts_ms] == list(tiny.episode.frame_pts_ns)
    assert tiny.frame_pts_ms == sorted(set(tiny.frame_pts_ms))
    # Variable frame rate: fewer frames than ticks, irregular gaps, some far longer than 1/fps.
    gaps = np.diff(tiny.frame_pts_ms)
    assert len(tiny.frames) < 30
    assert len(set(gaps.tolist())) > 1
    assert gaps.min() >= 100 and gaps.max() >= 300
    assert all(p % 100 == 0 for p in tiny.frame_pts_ms)  # frames sit on the 10 fps sampling grid


def test_keyframe_interval_is_honoured(tiny: Decoded) -> None:
    # A keyframe on the first frame at or after every multiple of 1 s, and nowhere else.
    expected = [p for i, p in enumerate(tiny.frame_pts_ms) if i == 0 or p // 1000 != tiny.frame_pts_ms[i - 1] // 1000]
    assert tiny.keyframe_pts_ms == expected
    assert len(expected) == 3
    assert [p * 1_000_000 for p in expected] == list(tiny.episode.keyframe_pts_ns)


def test_every_frame_carries_its_index(tiny: Decoded) -> None:
    assert [read_frame_marker(frame) for frame in tiny.frames] == list(range(len(tiny.frames)))


def test_screen_messages_point_at_real_frames(tiny: Decoded) -> None:
    episode = tiny.episode
    screens = [orjson.loads(data) for topic, _, _, data in tiny.messages if topic == "screen"]
    assert len(screens) == episode.message_counts["screen"]
    assert {s["media_ref"]["uri"] for s in screens} == {"tiny.mkv"}
    assert all(s["shape"] == [128, 72] and s["source_shape"] == [1920, 1080] for s in screens)
    pts = [s["media_ref"]["pts_ns"] for s in screens]
    frame_pts = set(episode.frame_pts_ns)
    # Every frame has exactly one message with its exact pts; the others are played-at times between frames.
    assert sorted(p for p in pts if p in frame_pts) == list(episode.frame_pts_ns)
    stale = [p for p in pts if p not in frame_pts]
    assert stale, "stale_screen_prob=0.5 should give some screen messages between frames"
    for p in pts:
        index = episode.frame_index_at(p)
        assert episode.frame_pts_ns[index] <= p
        assert read_frame_marker(tiny.frames[index]) == index
    for s in screens:
        assert s["utc_ns"] == episode.start_time_ns + s["media_ref"]["pts_ns"]
    with pytest.raises(ValueError, match="first frame"):
        episode.frame_index_at(-1)


# --------------------------------------------------------------------------------------------------
# The events are realistic and well formed
# --------------------------------------------------------------------------------------------------


def test_every_payload_is_valid_current_form(tiny: Decoded) -> None:
    for topic, schema_name, _, data in tiny.messages:
        message = decode_payload(schema_name, data)
        # Byte-identical to the typed model serialized as upstream does.
        assert message.model_dump_json(exclude_none=True).encode() == data, (topic, data)
    counts: dict[str, int] = {}
    for topic, *_ in tiny.messages:
        counts[topic] = counts.get(topic, 0) + 1
    assert counts == dict(tiny.episode.message_counts)
    assert set(counts) == {"keyboard", "keyboard/state", "mouse", "mouse/raw", "mouse/state", "screen", "window"}


def test_log_times_are_ordered_and_inside_the_episode(tiny: Decoded) -> None:
    times = [t for _, _, t, _ in tiny.messages]
    assert times == sorted(times)
    start = tiny.episode.start_time_ns
    assert start <= times[0] and times[-1] < start + 3_000_000_000 + 5_000_000


def test_keys_and_clicks_come_in_pairs(tiny: Decoded) -> None:
    keys: dict[int, list[str]] = {}
    buttons: dict[str, list[bool]] = {}
    kinds: set[str] = set()
    for topic, _, _, data in tiny.messages:
        payload = orjson.loads(data)
        if topic == "keyboard":
            keys.setdefault(payload["vk"], []).append(payload["event_type"])
        elif topic == "mouse":
            kinds.add(payload["event_type"])
            if payload["event_type"] == "click":
                buttons.setdefault(payload["button"], []).append(payload["pressed"])
            if payload["event_type"] == "scroll":
                assert (payload["dx"], payload["dy"]) != (0, 0)
    assert kinds == {"move", "click", "scroll"}
    assert sum(len(v) for v in keys.values()) >= 4
    for vk, events in keys.items():
        assert events == ["press", "release"] * (len(events) // 2), vk
    assert set(buttons) <= {"left", "right", "middle"}
    for button, pressed in buttons.items():
        assert pressed == [True, False] * (len(pressed) // 2), button


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**40))
def test_presses_and_releases_alternate_for_any_seed(seed: int, tmp_path_factory: pytest.TempPathFactory) -> None:
    episode = write_sample_episode(
        tmp_path_factory.mktemp("pairs"), "p", SampleConfig(seconds=10, video=False, seed=seed)
    )
    down: dict[object, bool] = {}
    with open(episode.mcap_path, "rb") as f:
        for _, channel, message in make_reader(f).iter_messages():
            payload = orjson.loads(message.data)
            if channel.topic == "keyboard":
                key, pressed = ("key", payload["vk"]), payload["event_type"] == "press"
            elif channel.topic == "mouse" and payload["event_type"] == "click":
                key, pressed = ("button", payload["button"]), payload["pressed"]
            else:
                continue
            assert down.get(key, False) != pressed, (key, message.log_time)
            down[key] = pressed
    assert not any(down.values())  # everything pressed is released inside the episode


def test_long_episode_has_the_rarer_behaviours(tmp_path: Path) -> None:
    """Held keys, shifted keys, window switches, off-screen pointer and horizontal scrolls all occur."""
    episode = write_sample_episode(tmp_path, "long", SampleConfig(seconds=60.0, video=False, seed=2))
    with open(episode.mcap_path, "rb") as f:
        messages = [(c.topic, m.log_time, orjson.loads(m.data)) for _, c, m in make_reader(f).iter_messages()]
    pressed_at: dict[int, int] = {}
    hold_ns: list[int] = []
    for topic, t, payload in messages:
        if topic == "keyboard" and payload["event_type"] == "press":
            pressed_at[payload["vk"]] = t
        elif topic == "keyboard":
            hold_ns.append(t - pressed_at.pop(payload["vk"]))
    assert not pressed_at
    assert max(hold_ns) >= 500_000_000 and min(hold_ns) < 150_000_000
    keys = {p["vk"] for topic, _, p in messages if topic == "keyboard"}
    assert 160 in keys and len(keys) > 15  # left shift and many others
    mouse = [p for topic, _, p in messages if topic == "mouse"]
    assert any(p["x"] < 0 or p["x"] >= 1920 for p in mouse)
    assert any(p["event_type"] == "scroll" and p["dx"] != 0 for p in mouse)
    assert (
        {"left", "right"} <= {p["button"] for p in mouse if p["event_type"] == "click"} <= {"left", "right", "middle"}
    )
    assert len({p["title"] for topic, _, p in messages if topic == "window"}) >= 2
    assert episode.message_counts["keyboard/state"] == episode.message_counts["mouse/state"] == 60


def test_mouse_moves_at_the_configured_rate(tiny: Decoded) -> None:
    moves = [t for topic, _, t, data in tiny.messages if topic == "mouse" and b'"move"' in data]
    gaps_ms = np.diff(moves) / 1e6
    in_stroke = gaps_ms[gaps_ms < 50]
    assert len(in_stroke) > 50
    assert 8.0 <= float(np.median(in_stroke)) <= 12.0  # 100 Hz ± 20 % jitter
    raw = [orjson.loads(d) for topic, _, _, d in tiny.messages if topic == "mouse/raw"]
    assert len(raw) == tiny.episode.message_counts["mouse"]


def test_state_messages_agree_with_events(tiny: Decoded) -> None:
    held_keys: set[int] = set()
    held_buttons: set[str] = set()
    position = None
    states = 0
    for topic, _, _, data in tiny.messages:
        payload = orjson.loads(data)
        if topic == "keyboard":
            (held_keys.add if payload["event_type"] == "press" else held_keys.discard)(payload["vk"])
        elif topic == "mouse":
            position = (payload["x"], payload["y"])
            if payload["event_type"] == "click":
                (held_buttons.add if payload["pressed"] else held_buttons.discard)(payload["button"])
        elif topic == "keyboard/state":
            assert set(payload["buttons"]) == held_keys
            states += 1
        elif topic == "mouse/state":
            assert set(payload["buttons"]) == held_buttons
            if position is not None:
                assert (payload["x"], payload["y"]) == position
    assert states == 3  # about once a second
    windows = [orjson.loads(d) for topic, _, _, d in tiny.messages if topic == "window"]
    assert len(windows) >= 3 and all(len(w["rect"]) == 4 and w["title"] for w in windows)


# --------------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["hevc", "h264"])
def test_same_seed_same_files_other_seed_different(codec: str, tmp_path: Path) -> None:
    config = SampleConfig(seconds=1.5, fps=10.0, width=96, height=64, codec=codec, seed=3)
    a = _decode(write_sample_episode(tmp_path / "a", "ep", config))
    b = _decode(write_sample_episode(tmp_path / "b", "ep", config))
    c = _decode(write_sample_episode(tmp_path / "c", "ep", dataclasses.replace(config, seed=4)))
    assert a.episode.mcap_path.read_bytes() == b.episode.mcap_path.read_bytes()
    assert a.episode.video_path.read_bytes() == b.episode.video_path.read_bytes()
    assert len(a.frames) == len(b.frames) and all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames, strict=True))
    assert a.episode.mcap_path.read_bytes() != c.episode.mcap_path.read_bytes()
    assert a.frame_pts_ms != c.frame_pts_ms or any(
        not np.array_equal(x, y) for x, y in zip(a.frames, c.frames, strict=False)
    )


def test_mcap_does_not_depend_on_video_or_codec(tmp_path: Path) -> None:
    config = SampleConfig(seconds=1.0, fps=10.0, width=96, height=48, seed=9)
    with_video = write_sample_episode(tmp_path / "v", "ep", config)
    without = write_sample_episode(tmp_path / "n", "ep", dataclasses.replace(config, video=False))
    other_codec = write_sample_episode(tmp_path / "h", "ep", dataclasses.replace(config, codec="h264"))
    assert without.video_path is None and not (tmp_path / "n" / "ep.mkv").exists()
    assert with_video.mcap_path.read_bytes() == without.mcap_path.read_bytes() == other_codec.mcap_path.read_bytes()
    assert with_video.frame_pts_ns == without.frame_pts_ns


def test_constant_frame_rate_writes_every_tick(tmp_path: Path) -> None:
    config = SampleConfig(seconds=1.0, fps=30.0, width=96, height=48, variable_frame_rate=False, codec="h264")
    decoded = _decode(write_sample_episode(tmp_path, "cfr", config))
    assert decoded.frame_pts_ms == [round(i * 1000 / 30) for i in range(30)]
    assert [read_frame_marker(f) for f in decoded.frames] == list(range(30))


def test_corpus_is_the_same_whatever_the_workers(tmp_path: Path) -> None:
    config = SampleConfig(seconds=1.0, video=False, seed=5)
    seen: list[str] = []
    one = write_sample_corpus(tmp_path / "one", 3, config, workers=1, on_episode=lambda e: seen.append(e.name))
    two = write_sample_corpus(tmp_path / "two", 3, config, workers=2)
    assert [e.name for e in one] == [e.name for e in two] == ["episode_0000", "episode_0001", "episode_0002"]
    assert sorted(seen) == [e.name for e in one]
    for a, b in zip(one, two, strict=True):
        assert a.mcap_path.read_bytes() == b.mcap_path.read_bytes()
        assert a.message_counts == b.message_counts
    assert len({e.mcap_path.read_bytes() for e in one}) == 3  # episodes differ from each other
    assert len({episode_seed(5, i) for i in range(100)}) == 100
    assert episode_seed(5, 1) == episode_seed(5, 1) != episode_seed(6, 1)


# --------------------------------------------------------------------------------------------------
# The frame marker
# --------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    index=st.integers(0, 2**MARKER_BITS - 1),
    width=st.integers(48, 400).map(lambda w: w * 2),
    height=st.integers(24, 200).map(lambda h: h * 2),
    seed=st.integers(0, 2**32 - 1),
)
def test_marker_round_trips_through_noise(index: int, width: int, height: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    render_frame_marker(image, index)
    noisy = np.clip(image.astype(np.int16) + rng.integers(-60, 61, size=image.shape), 0, 255).astype(np.uint8)
    assert read_frame_marker(noisy) == index


def test_marker_errors() -> None:
    with pytest.raises(MediaError, match="No valid frame marker"):
        read_frame_marker(np.full((72, 128, 3), 255, np.uint8))
    image = np.zeros((72, 128, 3), np.uint8)
    render_frame_marker(image, 5)
    image[:9, 127 - 5 :] = 0  # break the closing sync block
    with pytest.raises(MediaError):
        read_frame_marker(image)
    with pytest.raises(ValueError, match="uint8"):
        read_frame_marker(np.zeros((72, 128, 3), np.float32))
    with pytest.raises(ValueError, match="Invalid frame index"):
        render_frame_marker(np.zeros((72, 128, 3), np.uint8), 2**MARKER_BITS)


# --------------------------------------------------------------------------------------------------
# Validation and the CLI
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seconds", 0),
        ("fps", -1.0),
        ("width", 95),
        ("width", 97),
        ("height", 46),
        ("codec", "vp9"),
        ("keyframe_interval_s", 0.0),
        ("seed", -1),
        ("mouse_hz", 0),
        ("stale_screen_prob", 1.5),
        ("compression", "bz2"),
        ("crf", 60),
    ],
)
def test_invalid_config_is_rejected(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"Invalid {field} \("):
        SampleConfig(**{field: value})


def test_invalid_names_and_counts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Invalid episode name"):
        write_sample_episode(tmp_path, "../escape", SampleConfig(video=False))
    with pytest.raises(ValueError, match="Invalid n_episodes"):
        write_sample_corpus(tmp_path, 0)
    with pytest.raises(ValueError, match="Invalid workers"):
        write_sample_corpus(tmp_path, 1, workers=0)


def test_cli_sample(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["sample", "--episodes", "2", "--seconds", "1", "--width", "96", "--height", "48", "--codec", "h264"]
    result = CliRunner().invoke(app, [*args, "--workers", "1", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "episode_0000.mcap",
        "episode_0000.mkv",
        "episode_0001.mcap",
        "episode_0001.mkv",
    ]
    assert "Wrote 2 episode(s) of 1 s" in result.output and "Messages: keyboard=" in result.output
    # Same options, same files; the Python API with the same config agrees.
    expected = write_sample_corpus(
        tmp_path / "api", 2, SampleConfig(seconds=1, width=96, height=48, codec="h264"), workers=1
    )
    assert (out / "episode_0001.mcap").read_bytes() == expected[1].mcap_path.read_bytes()

    refused = CliRunner().invoke(app, [*args, str(out)])
    assert refused.exit_code == 2 and "is not empty; pass --overwrite" in refused.output


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--codec", "vp9"], "Error: Invalid codec ('vp9'). Supported values are: hevc, h264"),
        (["--episodes", "0"], "Error: Invalid --episodes (0). It must be at least 1"),
        (["--width", "101"], "Error: Invalid width (101). It must be even and >= 96"),
        (["--workers", "0"], "Error: Invalid --workers (0). It must be at least 1"),
    ],
)
def test_cli_invalid_values_get_one_line(tmp_path: Path, flags: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["sample", *flags, str(tmp_path / "x")])
    assert result.exit_code == 2
    assert result.output.strip() == message
    assert not (tmp_path / "x").exists()


def test_old_import_path_names_the_same_objects() -> None:
    import owa.data.recordings.sample as compat
    import owa.data.recordings.synthetic as synthetic

    assert set(compat.__all__) <= set(synthetic.__all__)
    for name in compat.__all__:
        assert getattr(compat, name) is getattr(synthetic, name), name
