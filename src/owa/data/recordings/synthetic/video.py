"""The synthetic screen video: what each frame shows (with its index marker) and the PyAV encoder.

The video is Matroska, time base 1/1000 (pts in ms), no B-frames, HEVC (libx265) or H.264 (libx264),
with a keyframe on the first frame at or after every multiple of ``keyframe_interval_s``. Frame ``i``
carries marker ``i`` (:mod:`owa.data.recordings.synthetic.marker`). The container is written
bit-exact, so the same plan gives the same bytes.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from owa.data.recordings.synthetic.config import SampleConfig, VideoCodec
from owa.data.recordings.synthetic.marker import render_frame_marker
from owa.data.recordings.synthetic.simulation import CARET_BLINK_NS, ScreenPlan, Timeline

__all__ = ["encode_video"]

_MS = 1_000_000  # ns per ms
_ENCODERS: dict[VideoCodec, str] = {"hevc": "libx265", "h264": "libx264"}


class _Renderer:
    """Draws the synthetic screen at a time: desktop, active window with typed text and caret, the
    mark of the last click, a drag selection, and the frame marker."""

    def __init__(self, config: SampleConfig, timeline: Timeline) -> None:
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
                elif (t_ns // CARET_BLINK_NS) % 2 == 0:  # the caret after the last glyph, blinking
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


def encode_video(
    path: Path, config: SampleConfig, timeline: Timeline, plan: ScreenPlan
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Encode one frame of ``timeline``'s screen per planned frame tick into ``path``.

    Returns:
        The pts of every frame and of the keyframes, in ns.
    """
    import av
    from av.video.frame import PictureType

    renderer = _Renderer(config, timeline)

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
