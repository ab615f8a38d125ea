"""``owa-data events``: recordings → Event Dataset (stage 1). Errors and exit codes: see :mod:`owa.data.cli`.

``scripts/01_raw_events_to_event_dataset.py`` runs this same command function, with the spec's flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from owa.data.cli.app import app
from owa.data.events import DEFAULT_KEEP_TOPICS, EventDatasetConfig, FileResult, parse_rates

_DEFAULTS = EventDatasetConfig(train_dir=Path("."))

RATE_HELP = (
    "Maximum rate of continuous samples on a topic, as topic=Hz; repeatable (defaults: mouse=60, screen=20). "
    "Only mouse moves, screen frames and raw mouse motion are thinned; key presses/releases, clicks and "
    "scrolls are never dropped. Samples in the same nanosecond as the last kept one count as one instant. "
    "topic=inf disables thinning."
)


@app.command("events")
def events_command(
    train_dir: Annotated[Path, typer.Option("--train-dir", help="Folder searched recursively for *.mcap.")],
    output_dir: Annotated[Path, typer.Option("--output-dir", help="Event Dataset folder to create.")],
    test_dir: Annotated[
        Path | None, typer.Option("--test-dir", help="Recordings for the test split (else a seeded fraction).")
    ] = None,
    rate: Annotated[list[str] | None, typer.Option("--rate", help=RATE_HELP)] = None,
    keep_topic: Annotated[
        list[str] | None,
        typer.Option(
            "--keep_topic", "--keep-topic", help="Topic to keep; repeatable (default: screen, keyboard, mouse)."
        ),
    ] = None,
    test_percent: Annotated[
        float,
        typer.Option("--test_percent", "--test-percent", help="Fraction of episodes for test when no --test-dir."),
    ] = _DEFAULTS.test_percent,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the train/test episode split.")] = _DEFAULTS.seed,
    num_workers: Annotated[
        int, typer.Option("--num-workers", "--num_workers", help="Worker processes (0: one per core).")
    ] = _DEFAULTS.num_workers,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Fail on the first bad recording, message or video instead of skipping, salvaging or listing it.",
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --output-dir if it exists.")] = False,
    relative_to: Annotated[
        Path | None,
        typer.Option("--relative-to", help="Store episode_path relative to this folder (default: absolute paths)."),
    ] = None,
    check_media: Annotated[
        bool,
        typer.Option(
            "--check-media/--no-check-media",
            help="Open each video the screen messages point to (its index, no decoding) and list missing or "
            "unreadable videos and screen messages outside their video (default: on; fatal with --strict).",
        ),
    ] = _DEFAULTS.check_media,
) -> None:
    """Convert OWAMcap recordings into an Event Dataset (train/test), one row per kept event."""
    from tqdm import tqdm

    from owa.data.events import write_event_dataset

    config = EventDatasetConfig(
        train_dir=train_dir,
        test_dir=test_dir,
        output_dir=output_dir,
        rates_hz=parse_rates(rate or []),
        keep_topics=tuple(keep_topic) if keep_topic else DEFAULT_KEEP_TOPICS,
        test_percent=test_percent,
        seed=seed,
        num_workers=num_workers,
        strict=strict,
        overwrite=overwrite,
        relative_to=relative_to,
        check_media=check_media,
    )
    bar = tqdm(unit="file", desc="recordings", dynamic_ncols=True)
    events = 0

    def on_file(result: FileResult) -> None:
        nonlocal events
        events += sum(result.events_read.values())
        bar.update(1)
        elapsed = bar.format_dict["elapsed"] or 1e-9
        bar.set_postfix_str(f"{events / elapsed:,.0f} events/s", refresh=False)

    try:
        report = write_event_dataset(config, on_file=on_file)
    finally:
        bar.close()
    typer.echo(report.format_table())
    typer.echo(f"Saved event dataset to {output_dir}")
