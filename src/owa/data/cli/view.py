"""``owa-data view``: an episode's events and frames on one time axis (PNG), or as a page (HTML).

Errors and exit codes: see :mod:`owa.data.cli`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from owa.data.cli.app import app
from owa.data.inspect.frames_sample import DEFAULT_MAX_FRAMES


@app.command("view")
def view_command(
    episode: Annotated[Path, typer.Argument(help="A recording (.mcap), or an Event or Binned Dataset folder.")],
    out: Annotated[Path | None, typer.Option("--out", help="The PNG to write.")] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write one self-contained HTML page instead of the PNG.")
    ] = None,
    episode_path: Annotated[
        str | None,
        typer.Option("--episode", help="With a dataset: the episode_path to show (optional with one episode)."),
    ] = None,
    episode_root: Annotated[
        Path | None, typer.Option("--episode-root", help="Folder relative episode_path values resolve against.")
    ] = None,
    start: Annotated[float, typer.Option("--start", help="Seconds after the first event.")] = 0.0,
    end: Annotated[
        float | None, typer.Option("--end", help="Seconds after the first event (default: the last).")
    ] = None,
    every: Annotated[float, typer.Option("--every", help="Seconds between sampled frames.")] = 1.0,
    max_frames: Annotated[int, typer.Option("--max-frames", help="Refuse to sample more frames.")] = DEFAULT_MAX_FRAMES,
) -> None:
    """Draw EPISODE's key timeline, clicks, scrolls, pointer and frames (with the pointer drawn on each frame)."""
    from owa.data.errors import InvalidInputError
    from owa.data.inspect.episode import load_dataset_episode, load_recording

    if (out is None) == (html is None):
        raise ValueError("Invalid output. Give exactly one of --out FILE.png or --html FILE.html.")
    if not episode.exists():
        raise InvalidInputError("Path does not exist", path=episode)
    if episode.is_file():
        if episode_path is not None:
            raise ValueError("Invalid --episode: it names an episode of a dataset, and EPISODE is a recording.")
        timeline = load_recording(episode)
    else:
        timeline = load_dataset_episode(episode, episode_path, episode_root=episode_root)
    if html is not None:
        from owa.data.inspect.html import write_view_html

        write_view_html(timeline, html, start_s=start, end_s=end, every_s=every, max_frames=max_frames)
        typer.echo(f"Wrote {html}")
        return
    from owa.data.inspect.view import render_view

    assert out is not None
    result = render_view(timeline, out, start_s=start, end_s=end, every_s=every, max_frames=max_frames)
    typer.echo(f"Wrote {out} ({result.size[0]}x{result.size[1]}, {len(result.frames)} frames)")
