"""``owa-data bin``: Event Dataset folder → Binned Dataset folder (stage 2).

``scripts/02_event_dataset_to_binned_dataset.py`` runs this same command function. Errors and exit codes: see
:mod:`owa.data.cli`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from owa.data.binning import BinningConfig
from owa.data.cli.app import app
from owa.data.cli.engine_options import EngineOption, RayAddressOption

_DEFAULTS = BinningConfig()


@app.command("bin")
def bin_command(
    input_dir: Annotated[Path, typer.Option("--input-dir", help="Event Dataset folder (saved with save_to_disk).")],
    output_dir: Annotated[Path, typer.Option("--output-dir", help="Binned Dataset folder to create.")],
    fps: Annotated[float, typer.Option("--fps", help="Bins per second; a bin is 1e9/fps ns wide.")] = _DEFAULTS.fps,
    filter_empty_actions: Annotated[
        bool,
        typer.Option(
            "--filter-empty-actions/--no-filter-empty-actions",
            help="Drop bins that hold no keyboard/mouse action (default: keep every bin).",
        ),
    ] = _DEFAULTS.filter_empty_actions,
    action_topic: Annotated[
        list[str] | None,
        typer.Option(
            "--action-topic",
            help="A topic whose events are actions; repeat for several (default: keyboard, mouse).",
        ),
    ] = None,
    numeric_actions: Annotated[
        bool,
        typer.Option(
            "--numeric-actions/--no-numeric-actions",
            help="Also add numeric per-bin columns: keys held, mouse position/motion, clicks, scroll.",
        ),
    ] = _DEFAULTS.numeric_actions,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --output-dir if it exists.")] = False,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
) -> None:
    """Group an Event Dataset into fixed-rate bins: the latest screen as state, keyboard/mouse as actions."""
    from owa.data.binning import build_binned_dataset

    config = BinningConfig(
        fps=fps,
        filter_empty_actions=filter_empty_actions,
        action_topics=tuple(action_topic) if action_topic else _DEFAULTS.action_topics,
        numeric_actions=numeric_actions,
    )
    result = build_binned_dataset(
        input_dir,
        config,
        output_dir=output_dir,
        overwrite=overwrite,
        engine=engine,  # type: ignore[arg-type]  # checked there
        ray_address=ray_address,
    )
    parts = result.items() if hasattr(result, "items") else [("dataset", result)]
    summary = ", ".join(f"{name}: {len(part):,} bins" for name, part in parts)
    typer.echo(f"Saved binned dataset to {output_dir} ({summary})")
