"""``owa-data sample``: write seeded synthetic episodes (``.mcap`` + ``.mkv``) for demos, tests and benchmarks."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from owa.data.atomic import output_write_errors
from owa.data.cli.app import app
from owa.data.recordings.synthetic import SampleConfig, write_sample_corpus

# The defaults come from SampleConfig itself, so the CLI and the Python API cannot drift apart.
_DEFAULT = SampleConfig()


def _fail(message: str) -> NoReturn:
    raise ValueError(message)  # a configuration error: exit code 2 (see owa.data.cli)


@app.command("sample")
def sample(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write episode_0000.mcap/.mkv ... into.")],
    episodes: int = typer.Option(1, "--episodes", "-n", help="Number of episodes."),
    seconds: float = typer.Option(_DEFAULT.seconds, "--seconds", help="Length of each episode in seconds."),
    fps: float = typer.Option(_DEFAULT.fps, "--fps", help="Screen sampling rate (maximum video frame rate)."),
    width: int = typer.Option(_DEFAULT.width, "--width", help="Video width in pixels (even, >= 96)."),
    height: int = typer.Option(_DEFAULT.height, "--height", help="Video height in pixels (even, >= 48)."),
    codec: str = typer.Option(_DEFAULT.codec, "--codec", help="Video codec: hevc or h264."),
    keyframe_interval: float = typer.Option(
        _DEFAULT.keyframe_interval_s, "--keyframe-interval", help="Seconds between keyframes."
    ),
    variable_frame_rate: bool = typer.Option(
        _DEFAULT.variable_frame_rate,
        "--vfr/--cfr",
        help="Encode frames only when the screen changes (vfr, as the recorder) or at every tick (cfr).",
    ),
    video: bool = typer.Option(_DEFAULT.video, "--video/--no-video", help="Encode the .mkv videos."),
    raw_mouse: bool = typer.Option(_DEFAULT.raw_mouse, "--raw-mouse", help="Also write mouse/raw events."),
    seed: int = typer.Option(_DEFAULT.seed, "--seed", help="Corpus seed; episode i uses a seed derived from it."),
    workers: int = typer.Option(
        min(4, os.cpu_count() or 1), "--workers", "-w", help="Processes writing episodes in parallel."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty OUT_DIR, replacing same names."),
) -> None:
    """Write seeded synthetic recordings: input events plus a real HEVC/H.264 screen video.

    The same options always produce the same files, whatever --workers is. Example:
    owa-data sample --episodes 400 --seconds 60 out/
    """
    if episodes < 1:
        _fail(f"Invalid --episodes ({episodes}). It must be at least 1")
    if workers < 1:
        _fail(f"Invalid --workers ({workers}). It must be at least 1")
    config = SampleConfig(
        seconds=seconds,
        fps=fps,
        width=width,
        height=height,
        codec=codec,  # type: ignore[arg-type] - validated by SampleConfig
        keyframe_interval_s=keyframe_interval,
        variable_frame_rate=variable_frame_rate,
        video=video,
        raw_mouse=raw_mouse,
        seed=seed,
    )
    with output_write_errors(out_dir):  # a name too long, a folder that cannot be listed
        if out_dir.exists() and not out_dir.is_dir():
            _fail(f"OUT_DIR {out_dir} exists and is not a folder")
        if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
            _fail(f"OUT_DIR {out_dir} is not empty; pass --overwrite to write into it anyway")

    from tqdm import tqdm

    start = time.perf_counter()
    with tqdm(total=episodes, unit="episode", desc="sample", disable=episodes == 1) as bar:
        written = write_sample_corpus(out_dir, episodes, config, workers=workers, on_episode=lambda _: bar.update())
    elapsed = time.perf_counter() - start

    totals: dict[str, int] = {}
    for episode in written:
        for topic, count in episode.message_counts.items():
            totals[topic] = totals.get(topic, 0) + count
    frames = sum(len(episode.frame_pts_ns) for episode in written)
    size_bytes = sum(
        path.stat().st_size for episode in written for path in (episode.mcap_path, episode.video_path) if path
    )
    video_note = f"{config.width}x{config.height} {config.codec}, {frames} frames" if video else "no video"
    typer.echo(
        f"Wrote {len(written)} episode(s) of {config.seconds:g} s to {out_dir} in {elapsed:.1f} s "
        f"({video_note}, {size_bytes / 1e6:.1f} MB)"
    )
    typer.echo("Messages: " + ", ".join(f"{topic}={count}" for topic, count in sorted(totals.items())))
