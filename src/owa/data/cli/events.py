"""``owa-data events``: recordings → Event Dataset (stage 1). Errors and exit codes: see :mod:`owa.data.cli`.

``scripts/01_raw_events_to_event_dataset.py`` runs this same command function, with the spec's flags.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from owa.data.cli.app import app
from owa.data.cli.engine_options import EngineOption, RayAddressOption
from owa.data.events import DEFAULT_KEEP_TOPICS, EventDatasetConfig, FileResult, parse_rates
from owa.data.intervals import Inactivity, parse_interval

_DEFAULTS = EventDatasetConfig(train_dir=Path("."))
_INACTIVITY = Inactivity()

INTERVAL_HELP = (
    "Which spans of each recording to keep: all (default), inactivity (where screen frames are at most "
    "--screen-gap-s and inputs at most --input-gap-s apart), hotkey (between presses of --hotkey; its own events "
    "dropped) or file:PATH (a JSON or CSV list of [start_s, end_s] per recording). Adds an interval column. "
    "See docs/intervals.md."
)

RATE_HELP = (
    "Maximum rate of continuous samples on a topic, as topic=Hz; repeatable (defaults: mouse=60, screen=20). "
    "Only mouse moves, screen frames and raw mouse motion are thinned; key presses/releases, clicks and "
    "scrolls are never dropped. Samples in the same nanosecond as the last kept one count as one instant. "
    "topic=inf disables thinning."
)
STORAGE_HELP = (
    "Options of the URLs' fsspec filesystem as a JSON object, e.g. "
    '{"endpoint_url": "http://minio:9000", "profile": "training"} (s3fs.S3FileSystem arguments). '
    "Without it, fsspec's defaults and the AWS credential chain apply (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...)."
)
STORAGE_OPTION_HELP = (
    "One storage option as key=value; repeatable, applied over --storage-options. A value that parses as JSON "
    "(true, 3, {...}) is that value, else a string: --storage-option endpoint_url=http://minio:9000."
)


def parse_storage_options(options_json: str | None, pairs: list[str]) -> dict[str, Any] | None:
    """``--storage-options`` JSON, then each ``--storage-option key=value`` over it; None when neither is given.

    Raises:
        ValueError: not a JSON object, or a pair without ``=``.
    """
    if options_json is None and not pairs:
        return None
    options: dict[str, Any] = {}
    if options_json is not None:
        try:
            options = json.loads(options_json)
        except ValueError as e:
            raise ValueError(f"Invalid --storage-options ({options_json!r}): not JSON ({e})") from None
        if not isinstance(options, dict):
            raise ValueError(f"Invalid --storage-options ({options_json!r}). Give a JSON object: '{{\"key\": ...}}'")
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"Invalid --storage-option ({pair!r}). Use key=value, e.g. endpoint_url=http://host:9000")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


@app.command("events")
def events_command(
    train_dir: Annotated[
        str, typer.Option("--train-dir", help="Folder or URL prefix (s3://bucket/dir) searched recursively for *.mcap.")
    ],
    output_dir: Annotated[
        str, typer.Option("--output-dir", help="Event Dataset folder or URL prefix (s3://bucket/dir) to create.")
    ],
    test_dir: Annotated[
        str | None,
        typer.Option("--test-dir", help="Recordings (folder or URL) for the test split (else a seeded fraction)."),
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
        int,
        typer.Option(
            "--num-workers",
            "--num_workers",
            help="Worker processes (0: one per core); with --engine ray, Ray tasks at once (0: the cluster's CPUs).",
        ),
    ] = _DEFAULTS.num_workers,
    engine: EngineOption = _DEFAULTS.engine,
    ray_address: RayAddressOption = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Fail on the first bad recording, message or video instead of skipping, salvaging or listing it.",
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --output-dir if it exists.")] = False,
    relative_to: Annotated[
        str | None,
        typer.Option(
            "--relative-to",
            help="Store episode_path relative to this folder or URL prefix (default: absolute paths or full URLs).",
        ),
    ] = None,
    check_media: Annotated[
        bool,
        typer.Option(
            "--check-media/--no-check-media",
            help="Open each video the screen messages point to (its index, no decoding) and list missing or "
            "unreadable videos and screen messages outside their video (default: on; fatal with --strict).",
        ),
    ] = _DEFAULTS.check_media,
    interval: Annotated[str, typer.Option("--interval", help=INTERVAL_HELP)] = "all",
    screen_gap_s: Annotated[
        float,
        typer.Option("--screen-gap-s", help="inactivity: most seconds between screen frames of one span."),
    ] = _INACTIVITY.screen_gap_s,
    input_gap_s: Annotated[
        float, typer.Option("--input-gap-s", help="inactivity: most seconds between inputs of one span.")
    ] = _INACTIVITY.input_gap_s,
    hotkey: Annotated[
        str, typer.Option("--hotkey", help="hotkey: the toggle key, a name (F9) or a virtual-key code (0x78).")
    ] = "F9",
    storage_options: Annotated[str | None, typer.Option("--storage-options", help=STORAGE_HELP)] = None,
    storage_option: Annotated[list[str] | None, typer.Option("--storage-option", help=STORAGE_OPTION_HELP)] = None,
    incremental: Annotated[
        bool,
        typer.Option(
            "--incremental",
            help="Convert only new or changed recordings and reuse the rest from --output-dir (its manifest.json); "
            "resumes an interrupted run. Splits become a hash of each episode_path (stable as files come and go).",
        ),
    ] = _DEFAULTS.incremental,
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
        interval=parse_interval(interval, screen_gap_s=screen_gap_s, input_gap_s=input_gap_s, hotkey=hotkey),
        storage_options=parse_storage_options(storage_options, storage_option or []),
        incremental=incremental,
        engine=engine,  # type: ignore[arg-type]  # checked by the config
        ray_address=ray_address,
    )
    # No tqdm monitor thread: stage 1 forks its worker pool only while no other thread runs (owa.data.executors).
    tqdm.monitor_interval = 0
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
