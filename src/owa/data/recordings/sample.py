"""Seeded synthetic episodes: realistic desktop input events plus a real encoded screen video.

An episode is ``<name>.mcap`` (current OWAMcap form, as recorder 0.5.1+ writes it) and ``<name>.mkv``
beside it. The same :class:`SampleConfig` (seed included) always gives the same ``.mcap`` bytes and
the same decoded video frames.

What is in an episode of ``seconds`` seconds:

* ``keyboard``: typing bursts of press/release pairs (some with a held shift) and some long holds of
  movement keys (WASD/arrows). Every press has its release inside the episode; no auto-repeat.
* ``mouse``: strokes of ``move`` events at about ``mouse_hz`` (±20 % jitter) separated by idle pauses;
  ``click`` press/release pairs (left, right, middle; some drags), ``scroll`` bursts (``dx``/``dy``).
  A few strokes go off the primary screen, as on multi-monitor set-ups.
* ``mouse/raw`` (only with ``raw_mouse=True``): a RawMouseEvent per mouse event.
* ``window``: the active window about once a second and at every switch between 2-4 windows.
* ``keyboard/state`` and ``mouse/state``: about once a second.
* ``screen``: ScreenCaptured with ``media_ref {"uri": "<name>.mkv", "pts_ns"}``. The screen is sampled
  at ``fps``; with ``variable_frame_rate`` a frame is only encoded when the synthetic screen changed
  (a typed key, a click, a scroll, a window switch, a drag, the caret blinking every 500 ms; the
  pointer itself is not captured), so gaps between frames are irregular, at most about 500 ms. Each encoded
  frame gets a screen message whose ``pts_ns`` is exactly the frame's pts; a fraction
  ``stale_screen_prob`` of unchanged ticks also get one, whose ``pts_ns`` falls between frames (the
  frame *played at* that time is the previous one).

The video is Matroska, time base 1/1000 (pts in ms), no B-frames, HEVC (libx265) or H.264 (libx264),
with a keyframe on the first frame at or after every multiple of ``keyframe_interval_s``. Every
frame carries its index in a band of black/white blocks at the top, which survives lossy coding;
:func:`read_frame_marker` reads it back from a decoded RGB frame.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import multiprocessing
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import orjson

from owa.data.errors import MediaError
from owa.data.messages import (
    KeyboardEvent,
    KeyboardState,
    MouseEvent,
    MouseState,
    OWAMessage,
    RawMouseEvent,
    ScreenCaptured,
    WindowInfo,
)
from owa.data.recordings.writer import Compression, OWAMcapWriter, json_schema_bytes

__all__ = [
    "MARKER_BITS",
    "SampleConfig",
    "SampleEpisode",
    "episode_seed",
    "read_frame_marker",
    "render_frame_marker",
    "write_sample_corpus",
    "write_sample_episode",
]

VideoCodec = Literal["hevc", "h264"]
_ENCODERS: dict[str, str] = {"hevc": "libx265", "h264": "libx264"}

MARKER_BITS = 20
"""Bits of frame index in the marker: indices 0 .. 2**20 - 1."""
# Marker blocks, left to right: white, black (sync), MARKER_BITS index bits (MSB first, white = 1),
# an even-parity bit, white (sync).
_MARKER_BLOCKS = MARKER_BITS + 4

_MS = 1_000_000  # ns per ms
_S = 1_000_000_000  # ns per s
_EPOCH_BASE_NS = 1_700_000_000 * _S  # 2023-11-14; episodes start within 30 days after it


@dataclasses.dataclass(frozen=True, slots=True)
class SampleConfig:
    """How to synthesize an episode. One source of truth for the Python API and ``owa-data sample``.

    Attributes:
        seconds: Episode length in seconds (events and video lie in ``[0, seconds)``).
        fps: Screen sampling rate in frames per second (the video's maximum frame rate).
        width: Video width in pixels (even, at least 96).
        height: Video height in pixels (even, at least 48).
        codec: ``"hevc"`` (libx265, as the recorder) or ``"h264"`` (libx264).
        keyframe_interval_s: A keyframe on the first frame at or after each multiple of this many seconds.
        variable_frame_rate: Encode a frame only when the screen changed (True, as the recorder) or at
            every tick of ``fps`` (False, constant frame rate).
        video: Encode the ``.mkv``. False writes only the ``.mcap`` (fast; screen messages still point at
            ``<name>.mkv``, which is then missing, like a recording whose video was lost).
        seed: Seed of every random choice; the same config gives the same files.
        mouse_hz: Rate of ``move`` events while the mouse moves, in Hz (real mice: 60-125).
        screen_width: Width of the recorded desktop in pixels (mouse coordinates and ``source_shape``).
        screen_height: Height of the recorded desktop in pixels.
        raw_mouse: Also write ``mouse/raw`` RawMouseEvents (recorder 0.5.5+).
        stale_screen_prob: Probability that a tick without screen change still logs a screen message.
        offscreen_prob: Probability that a mouse stroke heads off the primary screen (second monitor).
        compression: MCAP chunk compression.
        crf: Encoder constant rate factor (lower is better quality and bigger files).
    """

    seconds: float = 5.0
    fps: float = 20.0
    width: int = 160
    height: int = 120
    codec: VideoCodec = "hevc"
    keyframe_interval_s: float = 2.0
    variable_frame_rate: bool = True
    video: bool = True
    seed: int = 0
    mouse_hz: float = 100.0
    screen_width: int = 1920
    screen_height: int = 1080
    raw_mouse: bool = False
    stale_screen_prob: float = 0.1
    offscreen_prob: float = 0.03
    compression: Compression = "zstd"
    crf: int = 28

    def __post_init__(self) -> None:
        def check(ok: bool, name: str, hint: str) -> None:
            if not ok:
                raise ValueError(f"Invalid {name} ({getattr(self, name)!r}). {hint}")

        check(_finite(self.seconds) and 0 < self.seconds <= 24 * 3600, "seconds", "It must be in (0, 86400]")
        check(_finite(self.fps) and 0 < self.fps <= 240, "fps", "It must be in (0, 240]")
        check(_is_int(self.width) and self.width >= 96 and self.width % 2 == 0, "width", "It must be even and >= 96")
        check(
            _is_int(self.height) and self.height >= 48 and self.height % 2 == 0, "height", "It must be even and >= 48"
        )
        check(self.codec in _ENCODERS, "codec", f"Supported values are: {', '.join(get_args(VideoCodec))}")
        check(
            _finite(self.keyframe_interval_s) and self.keyframe_interval_s >= 0.001,
            "keyframe_interval_s",
            "It must be at least 0.001 seconds",
        )
        check(_is_int(self.seed) and self.seed >= 0, "seed", "It must be a non-negative integer")
        check(_finite(self.mouse_hz) and 1 <= self.mouse_hz <= 1000, "mouse_hz", "It must be in [1, 1000]")
        check(_is_int(self.screen_width) and self.screen_width >= 1, "screen_width", "It must be a positive integer")
        check(_is_int(self.screen_height) and self.screen_height >= 1, "screen_height", "It must be a positive integer")
        check(0 <= self.stale_screen_prob <= 1, "stale_screen_prob", "It must be in [0, 1]")
        check(0 <= self.offscreen_prob <= 1, "offscreen_prob", "It must be in [0, 1]")
        check(self.compression in get_args(Compression), "compression", f"Supported: {get_args(Compression)}")
        check(_is_int(self.crf) and 0 <= self.crf <= 51, "crf", "It must be an integer in [0, 51]")
        if self.seconds * self.fps >= 2**MARKER_BITS:
            raise ValueError(
                f"Invalid seconds*fps ({self.seconds}*{self.fps}). At most {2**MARKER_BITS - 1} frames fit the marker"
            )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True, slots=True)
class SampleEpisode:
    """What :func:`write_sample_episode` wrote.

    Attributes:
        name: The file stem.
        mcap_path: The ``.mcap`` file.
        video_path: The ``.mkv`` file, or None when the config had ``video=False``.
        message_counts: Messages written per topic.
        start_time_ns: Unix time in ns of video pts 0 (the episode's start).
        frame_pts_ns: Pts of every encoded frame in ns, in order; frame ``i`` carries marker ``i``.
        keyframe_pts_ns: Pts of the keyframes in ns.
    """

    name: str
    mcap_path: Path
    video_path: Path | None
    message_counts: Mapping[str, int]
    start_time_ns: int
    frame_pts_ns: tuple[int, ...]
    keyframe_pts_ns: tuple[int, ...]

    @property
    def message_count(self) -> int:
        """Messages written in total."""
        return sum(self.message_counts.values())

    def frame_index_at(self, pts_ns: int) -> int:
        """Index of the frame played at ``pts_ns``: the last frame whose pts is not after it.

        Raises:
            ValueError: ``pts_ns`` is before the first frame.
        """
        index = bisect.bisect_right(self.frame_pts_ns, pts_ns) - 1
        if index < 0:
            raise ValueError(f"Invalid pts_ns ({pts_ns}). The first frame is at {self.frame_pts_ns[0]} ns")
        return index


def episode_seed(seed: int, index: int) -> int:
    """The seed of episode ``index`` of a corpus generated with ``seed`` (a 63-bit integer)."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


# --------------------------------------------------------------------------------------------------
# Frame marker
# --------------------------------------------------------------------------------------------------


def _marker_geometry(width: int, height: int) -> tuple[int, list[int]]:
    band_height = height // 8
    edges = [round(b * width / _MARKER_BLOCKS) for b in range(_MARKER_BLOCKS + 1)]
    return band_height, edges


def _marker_levels(index: int) -> list[int]:
    bits = [(index >> (MARKER_BITS - 1 - b)) & 1 for b in range(MARKER_BITS)]
    return [1, 0, *bits, sum(bits) & 1, 1]


def render_frame_marker(rgb: np.ndarray, index: int) -> None:
    """Draw the marker of frame ``index`` into the top band (``height // 8`` rows) of ``rgb`` in place.

    Raises:
        ValueError: ``index`` does not fit :data:`MARKER_BITS` bits, or ``rgb`` is not ``(H, W, 3)`` uint8.
    """
    _check_rgb(rgb)
    if not 0 <= index < 2**MARKER_BITS:
        raise ValueError(f"Invalid frame index ({index}). It must be in [0, {2**MARKER_BITS})")
    band_height, edges = _marker_geometry(rgb.shape[1], rgb.shape[0])
    for level, x0, x1 in zip(_marker_levels(index), edges, edges[1:], strict=False):
        rgb[:band_height, x0:x1] = 255 * level


def read_frame_marker(rgb: np.ndarray) -> int:
    """Read the frame index from a decoded ``(H, W, 3)`` uint8 RGB frame of a sample video.

    Each block is sampled in its central half and thresholded at mid-grey, so coding noise and
    moderate rescaling do not matter.

    Raises:
        ValueError: ``rgb`` is not an ``(H, W, 3)`` uint8 array.
        MediaError: the frame carries no valid marker (sync or parity mismatch).
    """
    _check_rgb(rgb)
    band_height, edges = _marker_geometry(rgb.shape[1], rgb.shape[0])
    y0, y1 = band_height // 4, max(band_height // 4 + 1, (3 * band_height) // 4)
    levels = []
    for x0, x1 in itertools.pairwise(edges):
        quarter = (x1 - x0) // 4
        block = rgb[y0:y1, x0 + quarter : max(x0 + quarter + 1, x1 - quarter)]
        levels.append(1 if float(block.mean()) >= 128.0 else 0)
    bits = levels[2 : 2 + MARKER_BITS]
    if levels[:2] != [1, 0] or levels[-1] != 1 or (sum(bits) & 1) != levels[-2]:
        raise MediaError(f"No valid frame marker in this {rgb.shape[1]}x{rgb.shape[0]} image (blocks read: {levels})")
    index = 0
    for bit in bits:
        index = (index << 1) | bit
    return index


def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        raise ValueError(f"Invalid frame ({type(rgb).__name__} {shape}). Expected an (H, W, 3) uint8 RGB array")
    if rgb.shape[0] < 8 or rgb.shape[1] < _MARKER_BLOCKS:
        raise ValueError(f"Invalid frame size {rgb.shape[1]}x{rgb.shape[0]}. The marker needs at least 24x8 pixels")


# --------------------------------------------------------------------------------------------------
# Event simulation
# --------------------------------------------------------------------------------------------------

_WINDOW_TITLES = (
    "Untitled - Notepad",
    "*notes.txt - 메모장",
    "ZType – Typing Game - Type to Shoot - Chromium",
    "Windows PowerShell",
    "main.py - Visual Studio Code",
    "Minecraft 1.20.1 - Singleplayer",
    "File Explorer",
    "Spreadsheet.xlsx - Excel",
)
_TYPING_VKS = np.array([*range(65, 91), 32, 32, 32, 13, 8, 190, 188], dtype=np.int64)  # A-Z, space, enter, ...
_HOLD_VKS = np.array([87, 65, 83, 68, 37, 38, 39, 40], dtype=np.int64)  # WASD and arrows
_VK_LSHIFT = 160
_BUTTONS = ("left", "right", "middle")
_BUTTON_P = (0.8, 0.15, 0.05)
# RAWMOUSE usButtonFlags: (down, up) per button, and the wheel flags.
_RAW_BUTTON_FLAGS = {"left": (0x0001, 0x0002), "right": (0x0004, 0x0008), "middle": (0x0010, 0x0020)}
_RI_MOUSE_WHEEL, _RI_MOUSE_HWHEEL, _WHEEL_DELTA = 0x0400, 0x0800, 120


@dataclasses.dataclass(slots=True)
class _Timeline:
    """Everything simulated for one episode, with times in ns from the episode start."""

    duration_ns: int
    # Messages: (t_ns, order, topic, message class, payload dict).
    messages: list[tuple[int, int, str, type[OWAMessage], dict[str, Any]]]
    move_t: np.ndarray  # mouse moves (t, x, y), sorted
    move_x: np.ndarray
    move_y: np.ndarray
    press_t: np.ndarray  # key presses: (t, vk), sorted
    press_vk: np.ndarray
    scroll_t: np.ndarray  # scroll events and cumulative dy after each
    scroll_cum: np.ndarray
    button_spans: list[tuple[int, int, str]]  # mouse button (press_t, release_t, button)
    key_spans: list[tuple[int, int, int]]  # key (press_t, release_t, vk)
    window_t: np.ndarray  # active window index from each switch time on
    window_idx: np.ndarray
    windows: list[dict[str, Any]]
    window_colors: np.ndarray  # (n_windows, 2, 3) uint8: desktop background and window panel
    start_pos: tuple[int, int]  # pointer position before the first move
    change_t: np.ndarray  # every time the screen content changes, sorted


def _simulate(config: SampleConfig, rng: np.random.Generator, start_ns: int) -> _Timeline:
    duration_ns = round(config.seconds * _S)
    sw, sh = config.screen_width, config.screen_height
    messages: list[tuple[int, int, str, type[OWAMessage], dict[str, Any]]] = []

    def emit(t_ns: int, topic: str, cls: type[OWAMessage], payload: dict[str, Any]) -> None:
        messages.append((int(t_ns), len(messages), topic, cls, payload))

    # ---- windows: 2-4 of them, switching every few seconds ----
    n_windows = int(rng.integers(2, 5))
    titles = rng.choice(len(_WINDOW_TITLES), size=n_windows, replace=False)
    windows = []
    for title_index in titles:
        w, h = int(rng.integers(sw // 4, sw + 1)), int(rng.integers(sh // 4, sh + 1))
        left, top = int(rng.integers(0, sw - w + 1)), int(rng.integers(0, sh - h + 1))
        windows.append(
            {
                "title": _WINDOW_TITLES[title_index],
                "rect": [left, top, left + w, top + h],
                "hWnd": int(rng.integers(1 << 16, 1 << 24)),
            }
        )
    switch_t, switch_idx = [0], [0]
    t = int(rng.exponential(4.0) * _S)
    while t < duration_ns:
        switch_t.append(t)
        switch_idx.append(int((switch_idx[-1] + rng.integers(1, n_windows)) % n_windows))
        t += int((1.0 + rng.exponential(3.0)) * _S)
    window_t, window_idx = np.array(switch_t, dtype=np.int64), np.array(switch_idx, dtype=np.int64)
    window_colors = rng.integers(40, 216, size=(n_windows, 2, 3)).astype(np.uint8)
    for t_switch, idx in zip(switch_t[1:], switch_idx[1:], strict=True):
        emit(t_switch, "window", WindowInfo, windows[idx])

    # ---- mouse: strokes of moves, then maybe a click or a scroll burst ----
    x, y = float(rng.integers(0, sw)), float(rng.integers(0, sh))
    start_x, start_y = int(x), int(y)  # the pointer before the first move
    move_chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    button_spans: list[tuple[int, int, str]] = []
    scroll_events: list[tuple[int, int, int]] = []
    period_ns = _S / config.mouse_hz
    t = int(rng.uniform(0.0, 0.3) * _S)
    while True:
        t += int((0.1 + rng.exponential(0.3)) * _S)  # idle pause, longer than a drag press lead
        stroke_ns = int(rng.uniform(0.15, 0.9) * _S)
        if t + stroke_ns + 400 * _MS >= duration_ns:
            break
        if rng.random() < config.offscreen_prob:
            tx = float(rng.choice([rng.uniform(-1280, 0), rng.uniform(sw, sw + 1280)]))
            ty = float(rng.uniform(-200, sh + 200))
        else:
            tx, ty = float(rng.uniform(0, sw)), float(rng.uniform(0, sh))
        n = max(2, int(stroke_ns / period_ns))
        times = t + np.cumsum(rng.uniform(0.8, 1.2, n) * period_ns).astype(np.int64)
        progress = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))  # ease in and out
        xs = np.rint(x + (tx - x) * progress + rng.normal(0.0, 1.5, n)).astype(np.int64)
        ys = np.rint(y + (ty - y) * progress + rng.normal(0.0, 1.5, n)).astype(np.int64)
        drag = rng.random() < 0.08
        if drag:
            button_spans.append(
                (t - int(rng.uniform(20, 80) * _MS), int(times[-1]) + int(rng.uniform(10, 60) * _MS), "left")
            )
        move_chunks.append((times, xs, ys))
        x, y = float(xs[-1]), float(ys[-1])
        t = int(times[-1])
        r = rng.random()
        if not drag and r < 0.35:
            press = t + int(rng.uniform(30, 200) * _MS)
            button = _BUTTONS[int(rng.choice(3, p=_BUTTON_P))]
            button_spans.append((press, press + int(rng.uniform(60, 160) * _MS), button))
            t = button_spans[-1][1]
        elif r < 0.47:
            for _ in range(int(rng.integers(2, 8))):
                t += int(rng.uniform(30, 90) * _MS)
                sign = 1 if rng.random() < 0.5 else -1
                if rng.random() < 0.1:
                    scroll_events.append((t, sign, 0))
                else:
                    scroll_events.append((t, 0, sign * int(rng.choice([1, 1, 1, 2, 3]))))

    if move_chunks:
        move_t = np.concatenate([c[0] for c in move_chunks])
        move_x = np.concatenate([c[1] for c in move_chunks])
        move_y = np.concatenate([c[2] for c in move_chunks])
    else:
        move_t = move_x = move_y = np.zeros(0, dtype=np.int64)

    def position_at(t_ns: int) -> tuple[int, int]:
        i = int(np.searchsorted(move_t, t_ns, side="right")) - 1
        return (start_x, start_y) if i < 0 else (int(move_x[i]), int(move_y[i]))

    previous = None
    for t_move, mx, my in zip(move_t.tolist(), move_x.tolist(), move_y.tolist(), strict=True):
        emit(t_move, "mouse", MouseEvent, {"event_type": "move", "x": mx, "y": my})
        if config.raw_mouse:
            dx, dy = (0, 0) if previous is None else (mx - previous[0], my - previous[1])
            emit(t_move, "mouse/raw", RawMouseEvent, _raw(dx, dy, 0, 0, start_ns + t_move))
        previous = (mx, my)
    for press, release, button in button_spans:
        for t_click, pressed in ((press, True), (release, False)):
            cx, cy = position_at(t_click)
            emit(
                t_click,
                "mouse",
                MouseEvent,
                {"event_type": "click", "x": cx, "y": cy, "button": button, "pressed": pressed},
            )
            if config.raw_mouse:
                emit(
                    t_click,
                    "mouse/raw",
                    RawMouseEvent,
                    _raw(0, 0, _RAW_BUTTON_FLAGS[button][0 if pressed else 1], 0, start_ns + t_click),
                )
    for t_scroll, dx, dy in scroll_events:
        cx, cy = position_at(t_scroll)
        emit(t_scroll, "mouse", MouseEvent, {"event_type": "scroll", "x": cx, "y": cy, "dx": dx, "dy": dy})
        if config.raw_mouse:
            flags, data = (_RI_MOUSE_HWHEEL, dx * _WHEEL_DELTA) if dx else (_RI_MOUSE_WHEEL, dy * _WHEEL_DELTA)
            emit(t_scroll, "mouse/raw", RawMouseEvent, _raw(0, 0, flags, data, start_ns + t_scroll))

    # ---- keyboard: typing bursts and long holds, every press paired with its release ----
    key_spans: list[tuple[int, int, int]] = []
    shift_span: int | None = None  # index in key_spans of the latest shift hold
    t = int(rng.uniform(0.1, 1.0) * _S)
    while t < duration_ns:
        if rng.random() < 0.15:
            release = t + int(rng.uniform(0.5, 2.0) * _S)
            if release < duration_ns:
                key_spans.append((t, release, int(rng.choice(_HOLD_VKS))))
            t = release
        else:
            last_vk, last_release = -1, 0
            for _ in range(int(rng.integers(3, 13))):
                vk = int(rng.choice(_TYPING_VKS))
                if vk == last_vk:
                    t = max(t, last_release + 10 * _MS)
                release = t + int(rng.uniform(40, 130) * _MS)
                if rng.random() < 0.1:  # a shifted key: shift wraps it
                    shift_press = t - int(rng.uniform(20, 60) * _MS)
                    shift_release = release + int(rng.uniform(10, 40) * _MS)
                    if shift_release < duration_ns:
                        if shift_span is not None and key_spans[shift_span][1] >= shift_press:
                            # Shift is still down from the previous shifted key: keep holding it.
                            key_spans[shift_span] = (key_spans[shift_span][0], shift_release, _VK_LSHIFT)
                        else:
                            shift_span = len(key_spans)
                            key_spans.append((shift_press, shift_release, _VK_LSHIFT))
                        key_spans.append((t, release, vk))
                elif release < duration_ns:
                    key_spans.append((t, release, vk))
                last_vk, last_release = vk, release
                t += int(rng.uniform(80, 250) * _MS)
        t += int(rng.exponential(1.0) * _S)
    for press, release, vk in key_spans:
        emit(press, "keyboard", KeyboardEvent, {"event_type": "press", "vk": vk})
        emit(release, "keyboard", KeyboardEvent, {"event_type": "release", "vk": vk})

    # ---- states and the active window, about once a second ----
    for second in range(math.ceil(duration_ns / _S)):
        base = second * _S + int(rng.integers(0, 2 * _MS))
        if base + 2 * _MS >= duration_ns:
            break
        idx = int(window_idx[np.searchsorted(window_t, base, side="right") - 1])
        emit(base, "window", WindowInfo, windows[idx])
        held = sorted({vk for p, r, vk in key_spans if p <= base + _MS < r})
        emit(base + _MS, "keyboard/state", KeyboardState, {"buttons": held})
        mx, my = position_at(base + 2 * _MS)
        buttons = sorted({b for p, r, b in button_spans if p <= base + 2 * _MS < r})
        emit(base + 2 * _MS, "mouse/state", MouseState, {"x": mx, "y": my, "buttons": buttons})

    key_spans.sort()
    presses = sorted((p, vk) for p, _, vk in key_spans if vk != _VK_LSHIFT)
    scroll_events.sort()
    # What changes the captured screen: typed keys, clicks, scrolls, window switches, the pointer only
    # while it drags a selection (the hardware pointer itself is not captured), and the caret's blink.
    dragging = np.zeros(len(move_t), dtype=bool)
    for press, release, _ in button_spans:
        dragging |= (move_t >= press) & (move_t < release)
    change_t = np.sort(
        np.concatenate(
            [
                np.array([p for p, _ in presses], dtype=np.int64),
                np.array([s[0] for s in button_spans], dtype=np.int64),
                np.array([s[0] for s in scroll_events], dtype=np.int64),
                window_t[1:],
                move_t[dragging],
                np.arange(1, duration_ns // _CARET_BLINK_NS + 1, dtype=np.int64) * _CARET_BLINK_NS,
            ]
        )
    )
    return _Timeline(
        duration_ns=duration_ns,
        messages=messages,
        move_t=move_t,
        move_x=move_x,
        move_y=move_y,
        press_t=np.array([p[0] for p in presses], dtype=np.int64),
        press_vk=np.array([p[1] for p in presses], dtype=np.int64),
        scroll_t=np.array([s[0] for s in scroll_events], dtype=np.int64),
        scroll_cum=np.cumsum(np.array([s[2] for s in scroll_events], dtype=np.int64)),
        button_spans=button_spans,
        key_spans=key_spans,
        window_t=window_t,
        window_idx=window_idx,
        windows=windows,
        window_colors=window_colors,
        start_pos=(start_x, start_y),
        change_t=change_t,
    )


def _raw(dx: int, dy: int, button_flags: int, button_data: int, t_ns: int) -> dict[str, Any]:
    return {
        "last_x": dx,
        "last_y": dy,
        "us_flags": 0,
        "button_flags": button_flags,
        "button_data": button_data,
        "device_handle": 65537,
        "timestamp": t_ns,
    }


# --------------------------------------------------------------------------------------------------
# Screen: which ticks get a frame, what a frame shows, and the encoder
# --------------------------------------------------------------------------------------------------

_CARET_BLINK_NS = 500 * _MS  # the text caret toggles this often, so an idle screen still changes now and then


@dataclasses.dataclass(slots=True)
class _ScreenPlan:
    tick_ms: np.ndarray  # every sampling tick, pts in ms
    has_frame: np.ndarray  # bool per tick: a frame is encoded
    logged: np.ndarray  # bool per tick: a screen message is logged
    latency_ns: np.ndarray  # per tick: log time minus capture time


def _plan_screen(config: SampleConfig, timeline: _Timeline, rng: np.random.Generator) -> _ScreenPlan:
    duration_ms = timeline.duration_ns // _MS
    tick_ms = np.unique(np.rint(np.arange(math.ceil(config.seconds * config.fps) + 1) * (1000.0 / config.fps)))
    tick_ms = tick_ms[tick_ms < max(duration_ms, 1)].astype(np.int64)
    n = len(tick_ms)
    bounds = np.searchsorted(timeline.change_t, tick_ms * _MS, side="right")
    changed = np.diff(bounds, prepend=0) > 0
    # Draw every random number whatever the flags, so .mcap content does not depend on `video`.
    stale = rng.random(n) < config.stale_screen_prob
    latency_ns = rng.integers(200_000, 3 * _MS, size=n)
    has_frame = changed if config.variable_frame_rate else np.ones(n, dtype=bool)
    # Like the real recorder, a frame opens and closes the video, so the stream covers every logged tick.
    has_frame[0] = has_frame[-1] = True
    return _ScreenPlan(
        tick_ms=tick_ms,
        has_frame=has_frame,
        logged=has_frame | stale,
        latency_ns=latency_ns,
    )


class _Renderer:
    """Draws the synthetic screen at a time: desktop, active window with typed text and caret, the
    mark of the last click, a drag selection, and the frame marker."""

    def __init__(self, config: SampleConfig, timeline: _Timeline) -> None:
        self.config, self.tl = config, timeline
        self.sx, self.sy = config.width / config.screen_width, config.height / config.screen_height
        self.band = config.height // 8
        self.cell_w, self.cell_h = max(2, config.width // 48), max(3, config.height // 30)
        self.mark = max(3, config.width // 48)
        self.glyph_colors = np.array(
            [[(vk * 37) % 160, (vk * 91) % 160, (vk * 53) % 160] for vk in range(256)], np.uint8
        )
        self.presses = np.array([p for p, _, _ in timeline.button_spans], dtype=np.int64)

    def render(self, t_ns: int, frame_index: int) -> np.ndarray:
        cfg, tl = self.config, self.tl
        window = int(tl.window_idx[np.searchsorted(tl.window_t, t_ns, side="right") - 1])
        background, panel = tl.window_colors[window]
        img = np.empty((cfg.height, cfg.width, 3), dtype=np.uint8)
        img[:] = background
        left, top, right, bottom = tl.windows[window]["rect"]
        x0, x1 = int(left * self.sx), int(right * self.sx)
        y0, y1 = max(self.band, int(top * self.sy)), int(bottom * self.sy)
        img[y0:y1, x0:x1] = panel
        self._draw_text(img, t_ns, x0, y0, x1, y1)
        self._draw_clicks(img, t_ns)
        render_frame_marker(img, frame_index)
        return img

    def _draw_text(self, img: np.ndarray, t_ns: int, x0: int, y0: int, x1: int, y1: int) -> None:
        tl, cw, ch = self.tl, self.cell_w, self.cell_h
        cols, rows = (x1 - x0 - cw) // (cw + 1), (y1 - y0 - ch) // (ch + 1)
        if cols <= 0 or rows <= 0:
            return
        typed = int(np.searchsorted(tl.press_t, t_ns, side="right"))
        i = int(np.searchsorted(tl.scroll_t, t_ns, side="right")) - 1
        scroll = int(tl.scroll_cum[i]) if i >= 0 else 0
        # Only the last screenful is drawn; scrolling up (dy > 0) moves the text down.
        first_row = max(0, typed // cols - rows + 1)
        for j in range(first_row * cols, typed + 1):
            row = j // cols - first_row + scroll
            if 0 <= row < rows:
                gx, gy = x0 + cw + (j % cols) * (cw + 1), y0 + ch + row * (ch + 1)
                if j < typed:
                    img[gy : gy + ch, gx : gx + cw] = self.glyph_colors[int(tl.press_vk[j]) & 255]
                elif (t_ns // _CARET_BLINK_NS) % 2 == 0:  # the caret after the last glyph, blinking
                    img[gy : gy + ch, gx : gx + 1] = 0

    def _draw_clicks(self, img: np.ndarray, t_ns: int) -> None:
        tl, c = self.tl, self.mark
        i = int(np.searchsorted(self.presses, t_ns, side="right")) - 1
        if i < 0:
            return
        press, release, button = tl.button_spans[i]
        px, py = self._position_at(press)
        if t_ns < release:  # held: a drag selection from the press to the pointer
            qx, qy = self._position_at(t_ns)
            xa, xb = sorted((px, qx))
            ya, yb = sorted((max(py, self.band), max(qy, self.band)))
            img[ya : yb + 1, max(xa, 0) : max(xb + 1, 0)] //= 2
        color = {"left": (255, 255, 255), "right": (255, 40, 40), "middle": (40, 40, 255)}[button]
        if 0 <= px < img.shape[1] and self.band <= py < img.shape[0]:
            img[py : py + c, px : px + c] = color

    def _position_at(self, t_ns: int) -> tuple[int, int]:
        tl = self.tl
        i = int(np.searchsorted(tl.move_t, t_ns, side="right")) - 1
        x, y = tl.start_pos if i < 0 else (int(tl.move_x[i]), int(tl.move_y[i]))
        return int(x * self.sx), int(y * self.sy)


def _encoder_options(config: SampleConfig, keyint: int) -> dict[str, str]:
    # Keyframes are forced exactly where we want them (pict_type I + forced-idr); the encoder's own
    # GOP logic and scene-cut detection are switched off. No B-frames, like the recorder's streams.
    common = {"preset": "ultrafast", "crf": str(config.crf), "forced-idr": "1"}
    if config.codec == "hevc":
        # log-level=none keeps x265 from writing its banner to stderr.
        params = f"log-level=none:info=0:bframes=0:scenecut=0:keyint={keyint}:min-keyint=1"
        return {**common, "x265-params": params}
    return {**common, "x264-params": f"bframes=0:scenecut=0:keyint={keyint}:min-keyint=1"}


def _encode_video(
    path: Path, config: SampleConfig, renderer: _Renderer, plan: _ScreenPlan
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Encode one frame per planned frame tick; return the frame and keyframe pts in ns."""
    import av
    from av.video.frame import PictureType

    frame_ticks = np.flatnonzero(plan.has_frame)
    interval_ms = max(1, round(config.keyframe_interval_s * 1000))
    buckets = plan.tick_ms[frame_ticks] // interval_ms
    is_key = np.ones(len(frame_ticks), dtype=bool)
    is_key[1:] = buckets[1:] != buckets[:-1]
    keyint = 1 << 20
    time_base = Fraction(1, 1000)
    # bitexact: no random segment UID or encoder version strings, so the same config gives the same bytes.
    with av.open(str(path), mode="w", format="matroska", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(_ENCODERS[config.codec], options=_encoder_options(config, keyint))
        stream.width, stream.height, stream.pix_fmt = config.width, config.height, "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        stream.codec_context.gop_size = keyint
        # Tiny frames encode faster on one thread; big ones use the encoder's own threading.
        stream.codec_context.thread_count = 1 if config.width * config.height <= 320 * 240 else 0
        for index, tick in enumerate(frame_ticks.tolist()):
            t_ms = int(plan.tick_ms[tick])
            frame = av.VideoFrame.from_ndarray(renderer.render(t_ms * _MS, index), "rgb24")
            frame.pts, frame.time_base = t_ms, time_base
            frame.pict_type = PictureType.I if is_key[index] else PictureType.NONE
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    frame_pts = plan.tick_ms[frame_ticks] * _MS
    return tuple(frame_pts.tolist()), tuple(frame_pts[is_key].tolist())


# --------------------------------------------------------------------------------------------------
# Episodes and corpora
# --------------------------------------------------------------------------------------------------


def write_sample_episode(
    out_dir: str | os.PathLike[str], name: str, config: SampleConfig | None = None
) -> SampleEpisode:
    """Write ``<out_dir>/<name>.mcap`` and (with ``config.video``) ``<out_dir>/<name>.mkv``.

    Deterministic: the same ``config`` (seed included) writes the same ``.mcap`` bytes and a video
    that decodes to the same frames. Existing files of the same name are overwritten.

    Raises:
        ValueError: ``name`` is empty or contains a path separator.
        OSError: ``out_dir`` cannot be created or written.

    Example::

        episode = write_sample_episode("out", "demo", SampleConfig(seconds=3, codec="h264", seed=7))
        episode.message_counts  # {'keyboard': ..., 'mouse': ..., 'screen': ..., ...}
    """
    config = config if config is not None else SampleConfig()
    if not name or any(sep in name for sep in ("/", "\\", os.sep)) or name in (".", ".."):
        raise ValueError(f"Invalid episode name ({name!r}). Use a plain file stem such as 'episode_0001'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    start_ns = _EPOCH_BASE_NS + int(rng.integers(0, 30 * 86400)) * _S + int(rng.integers(0, _S))
    timeline = _simulate(config, rng, start_ns)
    plan = _plan_screen(config, timeline, rng)

    video_name = f"{name}.mkv"
    video_path = out / video_name
    if config.video:
        frame_pts, keyframe_pts = _encode_video(video_path, config, _Renderer(config, timeline), plan)
    else:
        frame_pts = tuple((plan.tick_ms[plan.has_frame] * _MS).tolist())
        keyframe_pts = ()

    source_shape = [config.screen_width, config.screen_height]
    shape = [config.width, config.height]
    messages = timeline.messages
    for tick in np.flatnonzero(plan.logged).tolist():
        pts_ns = int(plan.tick_ms[tick]) * _MS
        payload = {
            "utc_ns": start_ns + pts_ns,
            "source_shape": source_shape,
            "shape": shape,
            "media_ref": {"uri": video_name, "pts_ns": pts_ns},
        }
        messages.append((pts_ns + int(plan.latency_ns[tick]), len(messages), "screen", ScreenCaptured, payload))
    messages.sort(key=lambda m: (m[0], m[1]))

    mcap_path = out / f"{name}.mcap"
    schema_data: dict[type[OWAMessage], bytes] = {}
    with OWAMcapWriter(mcap_path, compression=config.compression) as writer:
        for t_ns, _, topic, cls, payload in messages:
            data = schema_data.get(cls)
            if data is None:
                data = schema_data[cls] = json_schema_bytes(cls)
            writer.write_raw(
                topic, cls.message_type, orjson.dumps(payload), timestamp_ns=start_ns + t_ns, schema_data=data
            )
        counts = writer.message_counts
    return SampleEpisode(
        name=name,
        mcap_path=mcap_path,
        video_path=video_path if config.video else None,
        message_counts=counts,
        start_time_ns=start_ns,
        frame_pts_ns=frame_pts,
        keyframe_pts_ns=keyframe_pts,
    )


def write_sample_corpus(
    out_dir: str | os.PathLike[str],
    n_episodes: int,
    config: SampleConfig | None = None,
    *,
    workers: int = 1,
    on_episode: Callable[[SampleEpisode], None] | None = None,
) -> list[SampleEpisode]:
    """Write ``n_episodes`` episodes ``episode_0000`` ... into ``out_dir``.

    Episode ``i`` uses ``config`` with ``seed=episode_seed(config.seed, i)``, so a corpus is the same
    whatever ``workers`` is. With ``workers > 1`` episodes are written by a pool of processes.

    Args:
        out_dir: Folder to write into (created if needed).
        n_episodes: How many episodes, at least 1.
        config: Settings shared by all episodes; ``config.seed`` seeds the corpus.
        workers: Processes to use; 1 writes in this process.
        on_episode: Called in this process after each episode is written (in completion order),
            e.g. to advance a progress bar.

    Returns:
        The episodes, in index order.

    Raises:
        ValueError: ``n_episodes`` or ``workers`` is not a positive integer.
    """
    config = config if config is not None else SampleConfig()
    if not _is_int(n_episodes) or n_episodes < 1:
        raise ValueError(f"Invalid n_episodes ({n_episodes!r}). It must be a positive integer")
    if not _is_int(workers) or workers < 1:
        raise ValueError(f"Invalid workers ({workers!r}). It must be a positive integer")
    digits = max(4, len(str(n_episodes - 1)))
    jobs = [
        (os.fspath(out_dir), f"episode_{i:0{digits}d}", dataclasses.replace(config, seed=episode_seed(config.seed, i)))
        for i in range(n_episodes)
    ]
    results: list[SampleEpisode | None] = [None] * n_episodes
    if workers == 1 or n_episodes == 1:
        for i, job in enumerate(jobs):
            results[i] = write_sample_episode(*job)
            if on_episode is not None:
                on_episode(results[i])
    else:
        # spawn: workers start clean (no inherited encoder threads or locks from this process).
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, n_episodes), mp_context=context) as pool:
            futures = {pool.submit(write_sample_episode, *job): i for i, job in enumerate(jobs)}
            try:
                for future in as_completed(futures):
                    episode = future.result()
                    results[futures[future]] = episode
                    if on_episode is not None:
                        on_episode(episode)
            except BaseException:  # a failed episode or an interrupt: do not wait for the queued ones
                pool.shutdown(cancel_futures=True)
                raise
    return [episode for episode in results if episode is not None]
