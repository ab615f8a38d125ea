"""``owa-data stats``: what a folder of recordings or a dataset holds.

Errors and exit codes: see :mod:`owa.data.cli`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from owa.data.cli.app import app
from owa.data.inspect.stats import DEFAULT_MAX_VIDEOS


@app.command("stats")
def stats_command(
    path: Annotated[Path, typer.Argument(help="A folder of recordings, a .mcap file, or a dataset folder.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout (and nothing else there).")
    ] = False,
    max_sequence_length: Annotated[
        int | None,
        typer.Option(
            "--max-sequence-length", help="For a tokenized dataset: compute packing efficiency at this length."
        ),
    ] = None,
    episode_aware: Annotated[
        bool, typer.Option("--episode-aware", help="Pack so that no sample spans two episodes (as FSLDataset).")
    ] = False,
    episode_root: Annotated[
        Path | None, typer.Option("--episode-root", help="Folder relative episode_path values resolve against.")
    ] = None,
    max_videos: Annotated[
        int, typer.Option("--max-videos", help="Videos opened for codec, fps and keyframe interval (0: none).")
    ] = DEFAULT_MAX_VIDEOS,
) -> None:
    """Show what PATH holds: episodes, duration, events per topic, keys, clicks, screens, videos, tokens, problems."""
    from owa.data.inspect.stats import collect_stats

    stats = collect_stats(
        path,
        max_sequence_length=max_sequence_length,
        episode_aware=episode_aware,
        episode_root=episode_root,
        max_videos=max_videos,
    )
    if as_json:
        typer.echo(json.dumps(stats, ensure_ascii=False))
        return
    from rich.console import Console

    from owa.data.inspect.stats_table import stats_renderable

    Console(soft_wrap=True).print(stats_renderable(stats))
