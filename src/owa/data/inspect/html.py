"""``owa-data view --html``: one self-contained page with the sampled frames and the event log, synchronized.

A playhead (a slider, and a play button) runs over ``[start, end)`` seconds after the episode's first event. At
each position the page shows the frame sampled at or before it (:mod:`owa.data.inspect.frames_sample`: the screen
shown at that time, decoded by the frame engine), the pointer from the latest mouse event placed on it in frame
space, and highlights the latest event row at or before it, scrolled into view. Clicking a row moves the playhead
there. Frames are embedded as JPEG ``data:`` URIs and the script is inline: the file works offline, alone.

The event rows are written into the page (escaped), so they read without running the script; the script only
moves the highlight, the frame and the pointer.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import os
from pathlib import Path

from owa.data.inspect.episode import EpisodeTimeline
from owa.data.inspect.frames_sample import DEFAULT_MAX_FRAMES, SampledFrame, sample_frames, sample_times_ns

__all__ = ["DEFAULT_MAX_EVENTS", "HtmlView", "write_view_html"]

DEFAULT_MAX_EVENTS = 20_000
"""Event rows written at most (the first ones in the range); the page says when some were left out."""


@dataclasses.dataclass(frozen=True)
class HtmlView:
    """What :func:`write_view_html` wrote: the page, its event rows and frames, and the range in seconds."""

    path: Path
    events: int
    events_left_out: int
    frames: int
    start_s: float
    end_s: float


def write_view_html(
    timeline: EpisodeTimeline,
    out: str | os.PathLike[str],
    *,
    start_s: float = 0.0,
    end_s: float | None = None,
    every_s: float = 1.0,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_events: int = DEFAULT_MAX_EVENTS,
    frame_width: int = 720,
) -> HtmlView:
    """Write the page for ``timeline`` between ``start_s`` and ``end_s`` (seconds after its first event) to ``out``.

    Raises:
        ValueError: an invalid time range, ``every_s``, ``max_events`` or ``frame_width``.
    """
    if max_events < 1 or frame_width < 32:
        raise ValueError(f"Invalid max_events ({max_events}) or frame_width ({frame_width}).")
    end_s = timeline.duration_s + 0.001 if end_s is None else end_s
    samples = sample_frames(timeline, sample_times_ns(timeline, start_s, end_s, every_s, max_frames))
    t0 = timeline.start_ns
    lo, hi = t0 + round(start_s * 1e9), t0 + round(end_s * 1e9)
    in_range = [row for row in timeline.log if lo <= row[0] < hi]
    shown = in_range[:max_events]
    rows = "\n".join(
        f'<tr class="event" data-t="{(t - t0) / 1e9:.6f}" data-topic="{html.escape(topic)}">'
        f"<td>{(t - t0) / 1e9:.3f}</td><td>{html.escape(topic)}</td><td>{html.escape(text)}</td></tr>"
        for t, topic, text in shown
    )
    frames = [_frame_json(sample, t0, frame_width) for sample in samples]
    pointer = [
        [round((int(t) - t0) / 1e9, 6), int(x), int(y)]
        for t, x, y in zip(timeline.pointer_ns, timeline.pointer_x, timeline.pointer_y, strict=True)
        if int(t) < hi
    ]
    data = {"start": start_s, "end": end_s, "frames": frames, "pointer": pointer}
    # "</" inside a script element would end it early; JSON allows "\/" for "/".
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    left_out = len(in_range) - len(shown)
    note = f"<p class='note'>{left_out:,} later events not listed (max {max_events:,}).</p>" if left_out else ""
    page = _PAGE.format(
        title=html.escape(f"owa-data view: {timeline.name}"),
        name=html.escape(timeline.name),
        start=f"{start_s:.3f}",
        end=f"{end_s:.3f}",
        rows=rows,
        note=note,
        data=payload,
        script=_SCRIPT,
        style=_STYLE,
        events=len(shown),
        frames=len(samples),
        every=f"{every_s:g}",
    )
    path = Path(out)
    path.write_text(page, encoding="utf-8")
    return HtmlView(path, len(shown), left_out, len(samples), start_s, end_s)


def _frame_json(sample: SampledFrame, t0: int, frame_width: int) -> dict[str, object]:
    from PIL import Image

    t = round((sample.time_ns - t0) / 1e9, 6)
    label = f"t={t:.2f}s"
    if sample.screen_ns is not None:
        label += f", frame of the screen message at {(sample.screen_ns - t0) / 1e9:.3f}s"
    if sample.image is None or sample.mapping is None:
        return {"t": t, "src": None, "label": f"{label}: {sample.error or 'no frame'}", "map": None}
    image = Image.fromarray(sample.image)
    if image.width > frame_width:
        image = image.resize((frame_width, round(image.height * frame_width / image.width)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=82)
    mapping = sample.mapping
    return {
        "t": t,
        "src": "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"),
        "label": label + (" (window capture)" if mapping.is_window else ""),
        "map": {
            "ox": mapping.left,
            "oy": mapping.top,
            "cw": mapping.captured_width,
            "ch": mapping.captured_height,
            "fw": mapping.frame_width,
            "fh": mapping.frame_height,
        },
    }


_STYLE = """
[hidden] { display: none !important; }
body { font: 13px system-ui, sans-serif; margin: 0; color: #222; }
header { padding: 8px 12px; border-bottom: 1px solid #ccc; position: sticky; top: 0; background: #fff; }
h1 { font-size: 14px; margin: 0 0 6px; word-break: break-all; }
#controls { display: flex; gap: 10px; align-items: center; }
#playhead { flex: 1; }
main { display: flex; gap: 12px; padding: 12px; align-items: flex-start; }
#screen { flex: 3; }
#stage { position: relative; display: inline-block; max-width: 100%; background: #ddd; min-height: 60px; }
#frame { display: block; max-width: 100%; }
#pointer { position: absolute; width: 18px; height: 18px; margin: -9px 0 0 -9px; pointer-events: none;
  background: linear-gradient(#f0f, #f0f) center / 3px 100% no-repeat,
    linear-gradient(#f0f, #f0f) center / 100% 3px no-repeat;
  filter: drop-shadow(0 0 1px #000); }
#log { flex: 2; max-height: 80vh; overflow-y: auto; border: 1px solid #ccc; }
table { border-collapse: collapse; width: 100%; font: 12px ui-monospace, monospace; }
th { position: sticky; top: 0; background: #f4f4f4; text-align: left; }
td, th { padding: 1px 6px; white-space: nowrap; }
tr.event { cursor: pointer; }
tr.current { background: #ffe08a; }
tr[data-topic="keyboard"] td:nth-child(2) { color: #1f77b4; }
tr[data-topic="mouse"] td:nth-child(2) { color: #d62728; }
tr[data-topic="screen"] td:nth-child(2) { color: #7f7f7f; }
.note { color: #a00; }
"""

_SCRIPT = """
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("view-data").textContent);
  const rows = Array.from(document.querySelectorAll("#events tr.event"));
  const rowTimes = rows.map((row) => Number(row.dataset.t));
  const frameTimes = data.frames.map((frame) => frame.t);
  const pointerTimes = data.pointer.map((p) => p[0]);
  const slider = document.getElementById("playhead");
  const timeLabel = document.getElementById("time");
  const image = document.getElementById("frame");
  const frameLabel = document.getElementById("frame-label");
  const marker = document.getElementById("pointer");
  const button = document.getElementById("play");
  let currentRow = -1;
  let shownFrame = -2;
  let playing = false;
  let lastTick = null;

  // Index of the last value at or before t in ascending values, or -1.
  function lastAtOrBefore(values, t) {
    let lo = 0;
    let hi = values.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (values[mid] <= t) { lo = mid + 1; } else { hi = mid; }
    }
    return lo - 1;
  }

  function placePointer(t, frame) {
    const p = lastAtOrBefore(pointerTimes, t);
    if (p < 0 || !frame || !frame.map) { marker.hidden = true; return; }
    const m = frame.map;
    const fx = (data.pointer[p][1] - m.ox) * m.fw / m.cw;
    const fy = (data.pointer[p][2] - m.oy) * m.fh / m.ch;
    if (fx < 0 || fy < 0 || fx >= m.fw || fy >= m.fh) { marker.hidden = true; return; }
    marker.hidden = false;
    marker.style.left = (100 * (Math.floor(fx) + 0.5) / m.fw) + "%";
    marker.style.top = (100 * (Math.floor(fy) + 0.5) / m.fh) + "%";
  }

  function show(t) {
    timeLabel.textContent = t.toFixed(2) + " s";
    const f = lastAtOrBefore(frameTimes, t);
    const frame = f >= 0 ? data.frames[f] : null;
    if (f !== shownFrame) {
      shownFrame = f;
      if (frame && frame.src) { image.src = frame.src; image.hidden = false; } else { image.hidden = true; }
      frameLabel.textContent = frame ? frame.label : "no frame sampled yet";
    }
    placePointer(t, frame);
    const r = lastAtOrBefore(rowTimes, t);
    if (r !== currentRow) {
      if (currentRow >= 0) { rows[currentRow].classList.remove("current"); }
      currentRow = r;
      if (r >= 0) {
        rows[r].classList.add("current");
        rows[r].scrollIntoView({ block: "nearest" });
      }
    }
    document.body.dataset.currentRow = String(r);
    document.body.dataset.shownFrame = String(f);
  }

  function tick(now) {
    if (!playing) { return; }
    if (lastTick !== null) {
      const t = Math.min(Number(slider.value) + (now - lastTick) / 1000, data.end);
      slider.value = String(t);
      show(t);
      if (t >= data.end) { playing = false; button.textContent = "Play"; }
    }
    lastTick = now;
    if (playing) { window.requestAnimationFrame(tick); }
  }

  slider.addEventListener("input", () => show(Number(slider.value)));
  button.addEventListener("click", () => {
    playing = !playing;
    button.textContent = playing ? "Pause" : "Play";
    if (playing && Number(slider.value) >= data.end) { slider.value = String(data.start); }
    lastTick = null;
    if (playing) { window.requestAnimationFrame(tick); }
  });
  rows.forEach((row, i) => row.addEventListener("click", () => {
    slider.value = String(rowTimes[i]);
    show(rowTimes[i]);
  }));
  show(Number(slider.value));
  document.body.dataset.ready = "true";
})();
"""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<header>
<h1>{name}</h1>
<div id="controls">
<button id="play" type="button">Play</button>
<input id="playhead" type="range" min="{start}" max="{end}" step="0.001" value="{start}" aria-label="playhead">
<span id="time">{start} s</span>
<span>{events} events, {frames} frames (every {every} s)</span>
</div>
</header>
<main>
<section id="screen">
<div id="stage"><img id="frame" alt="the frame shown at the playhead"><div id="pointer" hidden></div></div>
<p id="frame-label"></p>
</section>
<section id="log">
{note}
<table id="events">
<thead><tr><th>t (s)</th><th>topic</th><th>event</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
</section>
</main>
<script id="view-data" type="application/json">{data}</script>
<script>{script}</script>
</body>
</html>
"""
