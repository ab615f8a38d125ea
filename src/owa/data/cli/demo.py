"""``owa-data demo``: the whole pipeline on generated sample recordings (what ``make demo`` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from owa.data.cli.app import app


@app.command("demo")
def demo_command(
    output_dir: Annotated[Path, typer.Argument(help="Folder to create with every stage's output.")] = Path(
        "demo-output"
    ),
    episodes: Annotated[int, typer.Option("--episodes", min=2, help="Sample episodes to generate.")] = 3,
    seconds: Annotated[float, typer.Option("--seconds", min=1.0, help="Length of each episode.")] = 4.0,
) -> None:
    """Generate sample recordings and run stages 1-5 on them, printing what each stage made."""
    from owa.data.demo import run_demo

    result = run_demo(output_dir, episodes=episodes, seconds=seconds)
    typer.echo(result.format())
    typer.echo(f"\nEverything is under {result.output_dir}")
