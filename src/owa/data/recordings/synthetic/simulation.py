"""The simulated desktop session: input events, windows and states on a timeline, and the screen-capture plan.

Everything here is drawn from one ``numpy`` Generator in a fixed order, so a seed gives the same session.
Times are ns from the episode start. What a session of ``seconds`` seconds holds:

* ``keyboard``: typing bursts of press/release pairs (some with a held shift) and some long holds of
  movement keys (WASD/arrows). Every press has its release inside the episode; no auto-repeat.
* ``mouse``: strokes of ``move`` events at about ``mouse_hz`` (±20 % jitter) separated by idle pauses;
  ``click`` press/release pairs (left, right, middle; some drags), ``scroll`` bursts (``dx``/``dy``).
  A few strokes go off the primary screen, as on multi-monitor set-ups.
* ``mouse/raw`` (only with ``raw_mouse=True``): a RawMouseEvent per mouse event.
* ``window``: the active window about once a second and at every switch between 2-4 windows.
* ``keyboard/state`` and ``mouse/state``: about once a second.
* the screen plan: the screen is sampled at ``fps``; with ``variable_frame_rate`` a frame is only encoded
  when the synthetic screen changed (a typed key, a click, a scroll, a window switch, a drag, the caret
  blinking every 500 ms; the pointer itself is not captured), so gaps between frames are irregular, at
  most about 500 ms. Every encoded frame is logged; a fraction ``stale_screen_prob`` of unchanged ticks
  is logged too.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from owa.data.messages import (
    KeyboardEvent,
    KeyboardState,
    MouseEvent,
    MouseState,
    OWAMessage,
    RawMouseEvent,
    WindowInfo,
)
from owa.data.recordings.synthetic.config import SampleConfig

__all__ = ["CARET_BLINK_NS", "ScreenPlan", "Timeline", "plan_screen", "simulate"]

_MS = 1_000_000  # ns per ms
_S = 1_000_000_000  # ns per s
CARET_BLINK_NS = 500 * _MS  # the text caret toggles this often, so an idle screen still changes now and then

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
class Timeline:
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


def simulate(config: SampleConfig, rng: np.random.Generator, start_ns: int) -> Timeline:
    """Simulate one session of ``config.seconds``; ``start_ns`` (Unix ns) only stamps raw mouse events."""
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
                np.arange(1, duration_ns // CARET_BLINK_NS + 1, dtype=np.int64) * CARET_BLINK_NS,
            ]
        )
    )
    return Timeline(
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


@dataclasses.dataclass(slots=True)
class ScreenPlan:
    """Which sampling ticks of the screen get an encoded frame and which get a screen message."""

    tick_ms: np.ndarray  # every sampling tick, pts in ms
    has_frame: np.ndarray  # bool per tick: a frame is encoded
    logged: np.ndarray  # bool per tick: a screen message is logged
    latency_ns: np.ndarray  # per tick: log time minus capture time


def plan_screen(config: SampleConfig, timeline: Timeline, rng: np.random.Generator) -> ScreenPlan:
    """Plan the screen capture of ``timeline``; draws from ``rng`` after :func:`simulate` did."""
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
    return ScreenPlan(
        tick_ms=tick_ms,
        has_frame=has_frame,
        logged=has_frame | stale,
        latency_ns=latency_ns,
    )
