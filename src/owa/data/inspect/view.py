"""``owa-data view``: one PNG of an episode, drawn with matplotlib, to check that events line up with frames.

Top, on one time axis (seconds after the episode's first event, ``[start, end)``): a key timeline (one row per key,
a bar from press to release), click and scroll markers, the pointer's desktop x and y, and a tick per screen
message (the sampled ones highlighted). Below, a contact sheet of the frames sampled every ``every_s`` seconds
(:mod:`owa.data.inspect.frames_sample`), with the pointer drawn where the events place it in frame space: a
magenta cross (:data:`POINTER_RGB`) centred on the pointer's pixel. If the cross sits on the recorded cursor, events
and frames agree.

The sheet is placed pixel for pixel (``figimage``, no resampling), so :class:`ViewResult` can say exactly where each
frame and pointer landed in the PNG.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from owa.data.encoders.vk_names import vk_label
from owa.data.inspect.episode import EpisodeTimeline
from owa.data.inspect.frames_sample import DEFAULT_MAX_FRAMES, SampledFrame, sample_frames, sample_times_ns

__all__ = ["POINTER_RGB", "Box", "ViewResult", "render_view", "require_matplotlib"]

POINTER_RGB = (255, 0, 255)
"""The colour of the pointer cross on the contact sheet (outlined in black)."""

Box = tuple[int, int, int, int]
"""A pixel box in the PNG, ``(left, top, right, bottom)``, half-open, origin at the top-left."""

_DPI = 100
_WIDTH_PX = 1600
_MARGIN_LEFT, _MARGIN_RIGHT = 110, 30
_GAP = 10
_LABEL_PX = 20
_BUTTON_COLORS = {"left": "tab:blue", "right": "tab:red", "middle": "tab:green", "x1": "tab:purple", "x2": "tab:brown"}


@dataclasses.dataclass(frozen=True)
class PlacedFrame:
    """Where a sampled frame landed in the PNG.

    Attributes:
        sample: the frame, its times, pointer and mapping.
        box: the frame's pixels in the PNG (None when it had no image).
        scale: PNG pixels per frame pixel.
        pointer_png: the centre of the pointer cross in the PNG, or None when none was drawn (no pointer, or
            outside the frame).
    """

    sample: SampledFrame
    box: Box | None
    scale: float
    pointer_png: tuple[int, int] | None


@dataclasses.dataclass(frozen=True)
class ViewResult:
    """What :func:`render_view` drew: the PNG's size, each panel's box and each frame's placement."""

    path: Path
    size: tuple[int, int]
    panels: dict[str, Box]
    frames: list[PlacedFrame]
    start_s: float
    end_s: float


def require_matplotlib() -> Any:
    """``matplotlib`` with the Agg backend, or an ImportError naming the install command."""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("owa-data view needs matplotlib. Install it with: pip install 'owa-data[view]'") from e
    return matplotlib


def render_view(
    timeline: EpisodeTimeline,
    out: str | os.PathLike[str],
    *,
    start_s: float = 0.0,
    end_s: float | None = None,
    every_s: float = 1.0,
    max_frames: int = DEFAULT_MAX_FRAMES,
    cell_width: int = 300,
) -> ViewResult:
    """Draw ``timeline`` between ``start_s`` and ``end_s`` (seconds after its first event) into the PNG ``out``.

    Args:
        end_s: default: the episode's last event (plus a millisecond, so it is inside ``[start, end)``).
        every_s: seconds between sampled frames.
        max_frames: refuse to sample more frames than this.
        cell_width: width in pixels of each frame on the contact sheet.

    Raises:
        ImportError: matplotlib is not installed (names the install command).
        ValueError: an invalid time range, ``every_s`` or ``cell_width``.
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if cell_width < 32:
        raise ValueError(f"Invalid cell_width ({cell_width}). Use at least 32 pixels.")
    end_s = timeline.duration_s + 0.001 if end_s is None else end_s
    times = sample_times_ns(timeline, start_s, end_s, every_s, max_frames)
    samples = sample_frames(timeline, times)
    t0 = timeline.start_ns

    def sec(t_ns: int | float) -> float:
        return (t_ns - t0) / 1e9

    lo, hi = t0 + round(start_s * 1e9), t0 + round(end_s * 1e9)
    keys = [k for k in timeline.keys if k.press_ns < hi and (k.release_ns is None or k.release_ns >= lo)]
    key_rows = sorted({k.vk for k in keys})

    # ---- layout (pixels from the top) ----
    heights = {
        "keys": max(70, 16 * len(key_rows) + 20),
        "mouse": 80,
        "pointer": 150,
        "screens": 50,
    }
    sheet, placed_cells, sheet_height = _contact_sheet(samples, cell_width, _WIDTH_PX - _MARGIN_LEFT - _MARGIN_RIGHT)
    top = 46
    boxes: dict[str, Box] = {}
    y = top
    for name, h in heights.items():
        boxes[name] = (_MARGIN_LEFT, y, _WIDTH_PX - _MARGIN_RIGHT, y + h)
        y += h + 12
    y += 34  # the time axis' labels
    sheet_top = y + 26
    height_px = sheet_top + sheet_height + 10
    fig = Figure(figsize=(_WIDTH_PX / _DPI, height_px / _DPI), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    fig.text(
        _MARGIN_LEFT / _WIDTH_PX,
        1 - 14 / height_px,
        f"{timeline.name}   [{start_s:.2f} s, {end_s:.2f} s)",
        fontsize=11,
        va="top",
    )

    axes = {}
    shared = None
    for name, (left, top_px, right, bottom) in boxes.items():
        rect = (left / _WIDTH_PX, 1 - bottom / height_px, (right - left) / _WIDTH_PX, (bottom - top_px) / height_px)
        ax = fig.add_axes(rect, sharex=shared)
        shared = shared or ax
        axes[name] = ax
    for name, ax in axes.items():
        ax.set_xlim(start_s, end_s)
        ax.grid(axis="x", color="0.9")
        if name != "screens":
            ax.tick_params(labelbottom=False)

    # keys: one row per key, a bar from press to release
    ax = axes["keys"]
    colors = _cycle_colors(len(key_rows))
    for row, vk in enumerate(key_rows):
        spans = [
            (
                sec(max(k.press_ns, lo)),
                sec(min(k.release_ns if k.release_ns is not None else hi, hi)) - sec(max(k.press_ns, lo)),
            )
            for k in keys
            if k.vk == vk
        ]
        ax.broken_barh(spans, (row - 0.38, 0.76), facecolors=colors[row])
    ax.set_yticks(range(len(key_rows)), [vk_label(vk) for vk in key_rows], fontsize=7)
    ax.set_ylim(len(key_rows) - 0.5 if key_rows else 0.5, -0.5)
    ax.set_ylabel("keys", fontsize=9)
    if not key_rows:
        ax.text(0.5, 0.5, "no key events", transform=ax.transAxes, ha="center", va="center", color="0.5")

    # clicks (press ▼, release ▲) and scrolls (● up / down by dy)
    ax = axes["mouse"]
    lanes = ["left", "right", "middle", "x1", "x2", "unknown", "scroll"]
    used = sorted({c[1] for c in timeline.clicks if lo <= c[0] < hi}, key=lanes.index) if timeline.clicks else []
    scrolls = [s for s in timeline.scrolls if lo <= s[0] < hi]
    rows = [*used, "scroll"] if scrolls else used
    for button in used:
        for pressed in (True, False):
            ts = [sec(c[0]) for c in timeline.clicks if c[1] == button and c[2] is pressed and lo <= c[0] < hi]
            ax.scatter(ts, [rows.index(button)] * len(ts), marker="v" if pressed else "^", s=36,
                       color=_BUTTON_COLORS.get(button, "0.3"), zorder=3)  # fmt: skip
    if scrolls:
        ax.scatter([sec(s[0]) for s in scrolls], [rows.index("scroll")] * len(scrolls), marker="o", s=20,
                   c=["tab:orange" if s[2] > 0 else "tab:cyan" for s in scrolls], zorder=3)  # fmt: skip
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_ylim(len(rows) - 0.5 if rows else 0.5, -0.5)
    ax.set_ylabel("clicks\nscrolls", fontsize=9)
    if not rows:
        ax.text(0.5, 0.5, "no clicks or scrolls", transform=ax.transAxes, ha="center", va="center", color="0.5")

    # pointer x and y (desktop pixels), held between events
    ax = axes["pointer"]
    mask = (timeline.pointer_ns >= lo) & (timeline.pointer_ns < hi)
    before = np.flatnonzero(timeline.pointer_ns < lo)
    idx = np.concatenate([before[-1:], np.flatnonzero(mask)])
    if len(idx):
        ts = np.array([max(sec(t), start_s) for t in timeline.pointer_ns[idx]])
        ts = np.append(ts, end_s)
        for values, label, color in ((timeline.pointer_x, "x", "tab:blue"), (timeline.pointer_y, "y", "tab:orange")):
            v = values[idx]
            ax.step(ts, np.append(v, v[-1]), where="post", label=label, color=color, linewidth=1.2)
        ax.legend(loc="upper right", fontsize=7, ncols=2)
    else:
        ax.text(0.5, 0.5, "no pointer events", transform=ax.transAxes, ha="center", va="center", color="0.5")
    ax.set_ylabel("pointer\n(desktop px)", fontsize=9)
    ax.tick_params(labelsize=7)

    # a tick per screen message; the ones shown on the contact sheet in red
    ax = axes["screens"]
    screen_ts = [sec(t) for t, _ in timeline.screens if lo <= t < hi]
    ax.vlines(screen_ts, 0, 1, color="0.45", linewidth=0.8)
    shown = sorted({sec(s.screen_ns) for s in samples if s.screen_ns is not None and lo <= s.screen_ns < hi})
    ax.vlines(shown, 0, 1, color="tab:red", linewidth=1.6)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_ylabel("screens", fontsize=9)
    ax.set_xlabel("seconds since the first event", fontsize=9)
    ax.tick_params(labelsize=8)

    # ---- contact sheet, pixel for pixel ----
    fig.text(
        _MARGIN_LEFT / _WIDTH_PX,
        1 - (sheet_top - 6) / height_px,
        f"frames every {every_s:g} s (the screen shown at each time; magenta cross: the pointer from the events)",
        fontsize=9,
        va="bottom",
    )
    fig.figimage(sheet, xo=_MARGIN_LEFT, yo=height_px - sheet_top - sheet.shape[0], origin="upper")
    placed = []
    for sample, cell in zip(samples, placed_cells, strict=True):
        label_x, label_y, box, scale, pointer = cell
        shift = (_MARGIN_LEFT, sheet_top)
        fig.text((shift[0] + label_x) / _WIDTH_PX, 1 - (shift[1] + label_y) / height_px, _label(sample, t0),
                 fontsize=7.5, va="bottom")  # fmt: skip
        moved = None if box is None else (box[0] + shift[0], box[1] + shift[1], box[2] + shift[0], box[3] + shift[1])
        dot = None if pointer is None else (pointer[0] + shift[0], pointer[1] + shift[1])
        placed.append(PlacedFrame(sample, moved, scale, dot))
    boxes["sheet"] = (_MARGIN_LEFT, sheet_top, _MARGIN_LEFT + sheet.shape[1], sheet_top + sheet.shape[0])

    path = Path(out)
    fig.savefig(path, dpi=_DPI, facecolor="white")
    return ViewResult(path, (_WIDTH_PX, height_px), boxes, placed, start_s, end_s)


def _label(sample: SampledFrame, t0: int) -> str:
    text = f"t={(sample.time_ns - t0) / 1e9:.2f}s"
    if sample.screen_ns is not None:
        text += f"  frame@{(sample.screen_ns - t0) / 1e9:.2f}s"
    if sample.error:
        return f"{text}  {sample.error}"[:90]
    if sample.pointer_desktop is None:
        text += "  no pointer yet"
    elif sample.pointer_pixel is None:
        text += "  pointer off-frame"
    if sample.mapping is not None and sample.mapping.is_window:
        text += "  (window)"
    return text


def _contact_sheet(
    samples: list[SampledFrame], cell_width: int, width: int
) -> tuple[np.ndarray, list[tuple[int, int, Box | None, float, tuple[int, int] | None]], int]:
    """The sheet image and, per sample, its label position, frame box, scale and pointer centre (sheet pixels)."""
    from PIL import Image

    columns = max(1, (width + _GAP) // (cell_width + _GAP))
    cell_width = (width + _GAP) // columns - _GAP  # widen the cells to fill the row
    sizes = [s.image.shape[:2] for s in samples if s.image is not None]
    cell_height = max((round(h * cell_width / w) for h, w in sizes), default=cell_width // 2)
    rows = max(1, math.ceil(len(samples) / columns))
    row_height = _LABEL_PX + cell_height + _GAP
    sheet = np.full((rows * row_height, columns * (cell_width + _GAP) - _GAP, 3), 255, dtype=np.uint8)
    cells = []
    for n, sample in enumerate(samples):
        x0 = (n % columns) * (cell_width + _GAP)
        y0 = (n // columns) * row_height + _LABEL_PX
        if sample.image is None:
            sheet[y0 : y0 + cell_height, x0 : x0 + cell_width] = 225
            cells.append((x0, y0 - 3, None, 0.0, None))
            continue
        h, w = sample.image.shape[:2]
        scale = cell_width / w
        new_h = round(h * scale)
        resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BILINEAR
        resized = np.asarray(Image.fromarray(sample.image).resize((cell_width, new_h), resample))
        sheet[y0 : y0 + new_h, x0 : x0 + cell_width] = resized
        box = (x0, y0, x0 + cell_width, y0 + new_h)
        pointer = None
        if sample.pointer_pixel is not None:
            px, py = sample.pointer_pixel
            pointer = (x0 + int((px + 0.5) * scale), y0 + int((py + 0.5) * scale))
            _draw_cross(sheet, pointer, box)
        cells.append((x0, y0 - 3, box, scale, pointer))
    return sheet, cells, sheet.shape[0]


def _draw_cross(sheet: np.ndarray, center: tuple[int, int], box: Box, arm: int = 8) -> None:
    """A magenta cross of 3 px lines, outlined in black, centred on ``center`` and clipped to ``box``."""
    cx, cy = center
    for half, color in ((2, (0, 0, 0)), (1, POINTER_RGB)):
        reach = arm + (half - 1)
        x0, x1 = max(box[0], cx - reach), min(box[2], cx + reach + 1)
        y0, y1 = max(box[1], cy - reach), min(box[3], cy + reach + 1)
        sheet[max(box[1], cy - half) : min(box[3], cy + half + 1), x0:x1] = color
        sheet[y0:y1, max(box[0], cx - half) : min(box[2], cx + half + 1)] = color


def _cycle_colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return [cmap(i % 20) for i in range(n)]
