"""The whole pipeline on a built-in sample recording: what ``make demo`` and ``owa-data demo`` run.

Every stage writes into one folder, so a new user can look at each artifact:

1. ``recordings/``: seeded sample episodes (``.mcap`` plus an HEVC ``.mkv``), made by the generator;
2. ``event-dataset/``: stage 1;
3. ``binned-dataset/``: stage 2;
4. transforms on both datasets, with frames decoded from the videos;
5. ``EpisodeTokenizer`` with a small BPE tokenizer trained here (no hub access needed), then
   ``FSLDataset`` packing and one training batch through the collate function when torch is installed.

:func:`run_demo` returns what it made; the CLI prints it. No network, no data of the user's own.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

__all__ = ["DemoResult", "run_demo", "train_small_bpe"]


@dataclasses.dataclass
class DemoResult:
    """Paths and a few facts of each stage, as ``(title, lines)`` sections in pipeline order."""

    output_dir: Path
    sections: list[tuple[str, list[str]]] = dataclasses.field(default_factory=list)

    def add(self, title: str, *lines: str) -> None:
        self.sections.append((title, list(lines)))

    def format(self) -> str:
        out = []
        for title, lines in self.sections:
            out.append(f"== {title}")
            out.extend(f"   {line}" for line in lines)
        return "\n".join(out)


def train_small_bpe(texts: list[str], *, vocab_size: int = 512) -> Any:
    """A small byte-level BPE trained offline on ``texts``, with ``<pad>`` (id 0) and ``<eos>`` (id 1).

    Stands in for a hub tokenizer where none can be downloaded (the demo, tests). Returns a
    ``transformers.PreTrainedTokenizerFast``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts or ["desktop events"], trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", clean_up_tokenization_spaces=False
    )


def run_demo(output_dir: str | os.PathLike[str], *, episodes: int = 3, seconds: float = 4.0) -> DemoResult:
    """Run every stage on freshly generated sample recordings under ``output_dir`` (created, must not exist).

    Raises:
        OutputExistsError: ``output_dir`` exists.
        OutputWriteError: ``output_dir`` cannot be created or written.
    """
    from owa.data.atomic import output_write_errors
    from owa.data.errors import OutputExistsError

    out = Path(os.path.abspath(output_dir))
    with output_write_errors(out, within=out):
        if out.exists():  # a name too long fails here
            raise OutputExistsError("Demo output folder already exists; remove it or pick another", path=out)
        return _run_demo(out, episodes, seconds)


def _run_demo(out: Path, episodes: int, seconds: float) -> DemoResult:
    from datasets import load_from_disk

    from owa.data.binning import BinningConfig, build_binned_dataset
    from owa.data.episode_tokenizer import EpisodeTokenizer
    from owa.data.events import EventDatasetConfig, build_event_dataset
    from owa.data.fsl_dataset import FSLDataset
    from owa.data.recordings.synthetic import SampleConfig, write_sample_corpus
    from owa.data.transforms import create_binned_dataset_transform, create_event_dataset_transform

    result = DemoResult(out)
    recordings = out / "recordings"
    sample = SampleConfig(seconds=seconds, width=320, height=180, codec="hevc", seed=0)
    made = write_sample_corpus(recordings, episodes, sample, workers=1)
    result.add(
        "1. sample recordings",
        str(recordings),
        f"{len(made)} episodes of {seconds:g}s, HEVC {sample.width}x{sample.height}, "
        f"{sum(sum(e.message_counts.values()) for e in made):,} messages",
    )

    event_dir = out / "event-dataset"
    events = build_event_dataset(
        EventDatasetConfig(train_dir=recordings, output_dir=event_dir, test_percent=1 / episodes, num_workers=1)
    )
    result.add(
        "2. event dataset (stage 1)",
        str(event_dir),
        *(f"{split}: {len(ds):,} events" for split, ds in events.items()),
        *events.report.format_table().splitlines()[:-1],
    )

    binned_dir = out / "binned-dataset"
    binned = build_binned_dataset(event_dir, BinningConfig(fps=10), output_dir=binned_dir)
    result.add(
        "3. binned dataset (stage 2, 10 fps)", str(binned_dir), *(f"{s}: {len(d):,} bins" for s, d in binned.items())
    )

    event_view = load_from_disk(str(event_dir))["train"]
    event_view.set_transform(create_event_dataset_transform())
    rows = event_view[:60]
    screen = next(i for i, image in enumerate(rows["image"]) if image is not None)
    action = next(i for i, image in enumerate(rows["image"]) if image is None)
    binned_view = load_from_disk(str(binned_dir))["train"]
    binned_view.set_transform(create_binned_dataset_transform())
    bin_row = next(row for row in binned_view if row["images"] and row["encoded_events"])
    result.add(
        "4. transforms",
        f"action row: {rows['encoded_event'][action]}",
        f"screen row: {rows['encoded_event'][screen]} with image {rows['image'][screen].size}",
        f"binned row: {len(bin_row['images'])} image(s), {len(bin_row['encoded_events'])} encoded action(s), "
        f"instruction {bin_row['instruction']!r}",
    )

    episode_tokenizer = EpisodeTokenizer(image_token="<image>", image_token_length=16)
    texts = [episode_tokenizer.encoder.encode_serialized(m)[0] for m in events["train"]["mcap_message"][:500]]
    tokenizer = train_small_bpe(texts)
    added = episode_tokenizer.prepare_model(tokenizer=tokenizer)
    tokenized = episode_tokenizer.tokenize_event_dataset(events["train"])
    fsl = FSLDataset(tokenized, pad_token_id=tokenizer.pad_token_id, max_sequence_length=512, log_every=None)
    fsl.prepare()
    sample0 = fsl[0]
    lines = [
        f"tokenizer: demo BPE with {added} event tokens added ({len(tokenizer):,} ids)",
        f"tokenized: {len(tokenized):,} events, {sum(tokenized['total_token_count']):,} tokens",
        f"packed: {len(fsl):,} samples of 512 tokens; sample 0 has {sample0['total_token_count']} real tokens "
        f"and {len(sample0['images'])} image(s)",
    ]
    try:
        import torch  # noqa: F401 - only to know whether the DataLoader step can run
    except ImportError:
        lines.append("torch is not installed: skipped the DataLoader batch (pip install 'owa-data[torch]')")
    else:
        from torch.utils.data import DataLoader

        from owa.data.training import FSLCollator

        loader = DataLoader(fsl, batch_size=2, collate_fn=FSLCollator(image_token_id=episode_tokenizer.image_token_id))
        batch = next(iter(loader))
        lines.append(
            "DataLoader batch: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in batch.items() if hasattr(v, "shape"))
        )
    result.add("5. tokenize and pack (EpisodeTokenizer + FSLDataset)", *lines)
    return result
