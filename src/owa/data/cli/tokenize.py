"""``owa-data tokenize``: Event Dataset → tokenized dataset (``EpisodeTokenizer.tokenize_event_dataset``).

The tokenizer's options, and the steps shared with ``owa-data pack`` (:mod:`owa.data.cli.pack`), live here:
:func:`episode_tokenizer_from_flags` builds the EpisodeTokenizer from the flags (EpisodeTokenizerConfig's defaults for
every flag not given), :func:`tokenize_events` runs it over the Event Dataset's splits with a :class:`TokenizeRun`.
Errors and exit codes: see :mod:`owa.data.cli`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Annotated, Any

import typer

from owa.data.cli.app import app
from owa.data.errors import InvalidInputError, OnError

if TYPE_CHECKING:
    import datasets

    from owa.data.episode_tokenizer import EpisodeTokenizer
    from owa.data.metadata import DatasetMetadata

# The tokenizer's options, shared by `tokenize` and `pack`. None means "EpisodeTokenizerConfig's default".
EventsArg = Annotated[str, typer.Argument(help="Event Dataset folder or URL (owa-data events).")]
TokenizerOpt = Annotated[
    str, typer.Option("--tokenizer", help="Tokenizer folder (save_pretrained) or hub name, for AutoTokenizer.")
]
ImageTokenOpt = Annotated[
    str | None, typer.Option("--image-token", help="The token of one image slot (default <IMAGE>).")
]
ImageTokenLengthOpt = Annotated[
    int | None, typer.Option("--image-token-length", help="Image slot tokens per frame (default 64).")
]
ImageLayoutOpt = Annotated[
    str | None,
    typer.Option("--image-layout", help="A VLM's frame tokens: smolvlm, internvl, qwen2_vl or default."),
]
EncoderTypeOpt = Annotated[
    str | None, typer.Option("--encoder-type", help="Event encoder: hierarchical (default) or json.")
]
ScreenSizeOpt = Annotated[
    str | None,
    typer.Option("--screen-size", help="Desktop size WIDTHxHEIGHT the mouse is normalized by (hierarchical)."),
]
PointerSpaceOpt = Annotated[
    str | None, typer.Option("--pointer-space", help="Mouse positions in 'screen' (default) or 'frame' pixels.")
]
EpisodeRootOpt = Annotated[
    str | None,
    typer.Option("--episode-root", help="Folder relative episode_path values resolve against (default: recorded)."),
]
NumProcOpt = Annotated[int | None, typer.Option("--num-proc", help="Worker processes (default: from the size).")]
OnErrorOpt = Annotated[
    str, typer.Option("--on-error", help="raise: stop at an event the encoder rejects; skip: drop and count it.")
]
SplitOpt = Annotated[
    list[str] | None, typer.Option("--split", help="Split to process; repeatable (default: every split).")
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace --output-dir if it exists.")]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenizeRun:
    """How to run the tokenization over the splits (not what the tokens are: that is the EpisodeTokenizerConfig).

    A choice of engine belongs here, next to ``num_proc``.
    """

    episode_root: str | None = None
    num_proc: int | None = None
    on_error: OnError = "raise"
    splits: tuple[str, ...] = ()


def episode_tokenizer_from_flags(
    tokenizer_path: str,
    *,
    image_token: str | None,
    image_token_length: int | None,
    image_layout: str | None,
    encoder_type: str | None,
    screen_size: str | None,
    pointer_space: str | None,
) -> EpisodeTokenizer:
    """An EpisodeTokenizer with the given flags over EpisodeTokenizerConfig's defaults, prepared on the tokenizer.

    Raises:
        ValueError: an invalid flag value or a flag the encoder does not take.
        InvalidInputError: the tokenizer cannot be loaded.
    """
    from owa.data.episode_tokenizer import EpisodeTokenizer, EpisodeTokenizerConfig

    given: dict[str, Any] = {
        "image_token": image_token,
        "image_token_length": image_token_length,
        "image_layout": image_layout,
        "encoder_type": encoder_type,
        "pointer_space": pointer_space,
        "screen_size": _screen_size(screen_size) if screen_size is not None else None,
    }
    try:
        config = EpisodeTokenizerConfig().with_options(**{k: v for k, v in given.items() if v is not None})
    except TypeError as e:  # an option this encoder does not take, e.g. --screen-size with the json encoder
        raise ValueError(str(e)) from e
    episode_tokenizer = EpisodeTokenizer(config)
    episode_tokenizer.prepare_model(tokenizer=_load_tokenizer(tokenizer_path))
    return episode_tokenizer


def _screen_size(value: str) -> tuple[int, int]:
    width, sep, height = value.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"Invalid --screen-size {value!r}. Use WIDTHxHEIGHT in pixels, e.g. 2560x1440.")
    return int(width), int(height)


def _load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    if os.path.isdir(path):  # recorded in owa_data.json: where it was, from anywhere
        path = os.path.abspath(path)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise InvalidInputError(f"Cannot load the tokenizer ({e})", path=path) from e


def read_events(path: str, splits: tuple[str, ...]) -> tuple[dict[str, datasets.Dataset], DatasetMetadata | None]:
    """The Event Dataset's splits (``splits`` only, when given) and its ``owa_data.json`` (None for older ones).

    Raises:
        InvalidInputError: not an Event Dataset, or an unknown split.
    """
    import datasets

    from owa.data.dataset_io import quiet_datasets_progress
    from owa.data.metadata import read_metadata

    source = read_metadata(path, missing_ok=True)
    if source is not None and source.stage != "events":
        raise InvalidInputError(f"Not an Event Dataset: its owa_data.json says stage {source.stage!r}", path=path)
    try:
        with quiet_datasets_progress():
            loaded = datasets.load_from_disk(path)
    except FileNotFoundError as e:
        raise InvalidInputError("Not a dataset saved with save_to_disk (or owa-data events)", path=path) from e
    parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {str(loaded.split or "train"): loaded}
    unknown = [s for s in splits if s not in parts]
    if unknown:
        raise InvalidInputError(f"No split {unknown[0]!r}; the dataset has {list(parts)}", path=path)
    for name, part in parts.items():
        missing = [c for c in ("episode_path", "mcap_message") if c not in part.column_names]
        if missing:
            raise InvalidInputError(f"Not an Event Dataset: split {name!r} lacks {missing}", path=path)
    return {name: parts[name] for name in (splits or tuple(parts))}, source


def tokenize_events(
    events: dict[str, datasets.Dataset],
    episode_tokenizer: EpisodeTokenizer,
    run: TokenizeRun,
    source: DatasetMetadata | None,
) -> dict[str, datasets.Dataset]:
    """Tokenize every split; relative episode paths resolve against ``run.episode_root``, else the recorded root."""
    episode_root = run.episode_root or (source.recordings_root if source is not None else None)
    tokenized = {}
    for name, split in events.items():
        tokenized[name] = episode_tokenizer.tokenize_event_dataset(
            split, episode_root=episode_root, num_proc=run.num_proc, on_error=run.on_error
        )
        skipped = episode_tokenizer.last_tokenize_stats.events_skipped
        if skipped:
            typer.echo(f"{name}: skipped {skipped:,} events the encoder could not encode", err=True)
    return tokenized


def check_on_error_flag(value: str) -> OnError:
    from owa.data.errors import check_on_error

    return check_on_error(value, name="--on-error")


def source_or_empty(source: DatasetMetadata | None) -> DatasetMetadata:
    """The Event Dataset's metadata, or an empty one for Event Datasets written before owa_data.json existed."""
    from owa.data.metadata import DatasetMetadata

    return source or DatasetMetadata(stage="events", config={}, recordings_root=None, created_by="")


@app.command("tokenize")
def tokenize_command(
    events: EventsArg,
    tokenizer: TokenizerOpt,
    output_dir: Annotated[str, typer.Option("--output-dir", help="Tokenized dataset folder or URL to create.")],
    image_token: ImageTokenOpt = None,
    image_token_length: ImageTokenLengthOpt = None,
    image_layout: ImageLayoutOpt = None,
    encoder_type: EncoderTypeOpt = None,
    screen_size: ScreenSizeOpt = None,
    pointer_space: PointerSpaceOpt = None,
    episode_root: EpisodeRootOpt = None,
    num_proc: NumProcOpt = None,
    on_error: OnErrorOpt = "raise",
    split: SplitOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Tokenize an Event Dataset's events for a language model (episode tokens, image tokens, ids)."""
    from owa.data.dataset_io import publish_dataset
    from owa.data.metadata import TokenizerInfo

    run = TokenizeRun(
        episode_root=episode_root, num_proc=num_proc, on_error=check_on_error_flag(on_error), splits=tuple(split or ())
    )
    check_output(output_dir, overwrite)
    episode_tokenizer = episode_tokenizer_from_flags(
        tokenizer,
        image_token=image_token,
        image_token_length=image_token_length,
        image_layout=image_layout,
        encoder_type=encoder_type,
        screen_size=screen_size,
        pointer_space=pointer_space,
    )
    parts, source = read_events(events, run.splits)
    tokenized = tokenize_events(parts, episode_tokenizer, run, source)
    import datasets

    metadata = source_or_empty(source).derive(
        "tokenized",
        name="tokenizer",
        config=episode_tokenizer.config.to_json(),
        created_by="owa-data tokenize",
        tokenizer=TokenizerInfo.of(episode_tokenizer.tokenizer),
    )
    publish_dataset(datasets.DatasetDict(tokenized), output_dir, metadata=metadata, overwrite=overwrite)
    summary = ", ".join(f"{name}: {len(part):,} events, {_tokens(part):,} tokens" for name, part in tokenized.items())
    typer.echo(f"Saved tokenized dataset to {output_dir} ({summary})")


def _tokens(part: datasets.Dataset) -> int:
    import pyarrow.compute as pc

    return int(pc.sum(part.with_format("arrow")[:].column("total_token_count")).as_py() or 0)


def check_output(output_dir: str, overwrite: bool) -> None:
    """Refuse an existing output before any work (publishing checks again)."""
    from owa.data import storage
    from owa.data.errors import OutputExistsError

    if not overwrite and storage.exists(output_dir):
        raise OutputExistsError("Output already exists; pass --overwrite to replace it", path=os.fspath(output_dir))
