"""``owa-data pack``: Event Dataset → packed dataset (tokenized, with its packing plan), ready for
``FSLDataset.load``. Errors and exit codes: see :mod:`owa.data.cli`.

It tokenizes as ``owa-data tokenize`` does (the same flags, :mod:`owa.data.cli.tokenize`), packs each split as
``FSLDataset(tokenized, pad_token_id=tokenizer.pad_token_id, max_sequence_length=N).prepare()`` does, and saves
both (:func:`owa.data.packed.save_packed_dataset`).
"""

from __future__ import annotations

from typing import Annotated

import typer

from owa.data.cli.app import app
from owa.data.cli.tokenize import (
    EncoderTypeOpt,
    EpisodeRootOpt,
    EventsArg,
    ImageLayoutOpt,
    ImageTokenLengthOpt,
    ImageTokenOpt,
    NumProcOpt,
    OnErrorOpt,
    OverwriteOpt,
    PointerSpaceOpt,
    ScreenSizeOpt,
    SplitOpt,
    TokenizerOpt,
    TokenizeRun,
    check_on_error_flag,
    check_output,
    episode_tokenizer_from_flags,
    read_events,
    source_or_empty,
    tokenize_events,
)


@app.command("pack")
def pack_command(
    events: EventsArg,
    tokenizer: TokenizerOpt,
    max_sequence_length: Annotated[
        int, typer.Option("--max-sequence-length", help="Tokens per sample, padding included (e.g. 1024).")
    ],
    output_dir: Annotated[str, typer.Option("--output-dir", help="Packed dataset folder or URL to create.")],
    episode_aware: Annotated[
        bool, typer.Option("--episode-aware", help="Never let a sample span two episodes.")
    ] = False,
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
    """Tokenize an Event Dataset and pack it into fixed-length samples, saved for FSLDataset.load."""
    from owa.data.fsl_dataset import FSLDataset, FSLDatasetConfig
    from owa.data.packed import save_packed_dataset

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
    # Checked before tokenizing: a tokenizer without a pad token, or a bad length, fails at once.
    config = FSLDatasetConfig(
        pad_token_id=episode_tokenizer.tokenizer.pad_token_id,
        max_sequence_length=max_sequence_length,
        episode_aware=episode_aware,
    )
    parts, source = read_events(events, run.splits)
    tokenized = tokenize_events(parts, episode_tokenizer, run, source)
    packed = {name: FSLDataset(part, config).prepare() for name, part in tokenized.items()}
    save_packed_dataset(
        packed,
        output_dir,
        episode_tokenizer=episode_tokenizer,
        source=source_or_empty(source),
        created_by="owa-data pack",
        overwrite=overwrite,
    )
    summary = ", ".join(f"{name}: {len(fsl):,} samples" for name, fsl in packed.items())
    typer.echo(f"Saved packed dataset to {output_dir} ({summary} of {max_sequence_length} tokens)")
