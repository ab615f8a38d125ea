"""Train a vision-language model on an Event Dataset with this project's loader, and watch the loss fall.

    make demo                                   # writes demo-output/event-dataset (stage 1 of the sample run)
    .venv/bin/python examples/train_vlm.py      # a tiny random SmolVLM-style model, on the CPU, in about a minute
    .venv/bin/python examples/train_vlm.py --model /models/SmolVLM-256M-Instruct --steps 200 --lr 2e-5

The path is the one docs/fsl.md describes ("Training a VLM"):

1. the model and its processor: by default a tiny, randomly initialized Idefics3 (SmolVLM's architecture) built
   from a transformers config, with a real ``Idefics3Processor`` around the small offline BPE tokenizer of
   ``owa.data.testing`` (nothing is downloaded); with ``--model PATH``, a local checkpoint loaded with
   ``AutoProcessor`` and ``AutoModelForImageTextToText`` (SmolVLM/Idefics3, InternVL, Qwen2-VL; image splitting is
   turned off, since a frame must always take the same tokens);
2. ``EpisodeTokenizer.from_processor(processor)``: each frame becomes the tokens the processor inserts for one image;
   ``prepare_model`` adds the event tokens to the tokenizer and the model's embeddings;
3. the Event Dataset's ``train`` split is tokenized and packed by ``FSLDataset``, which decodes every frame straight
   to the model's size (``image_layout.image_size``);
4. ``DataLoader`` (2 workers, ``DistributedFSLSampler``) with ``FSLCollator.for_tokenizer``, whose batches the
   model's forward takes as they are (``pixel_values``; labels -100 on padding and on every frame token);
5. AdamW; the loss is printed every ``--log-every`` steps as ``step N  loss X``.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_EVENTS = Path("demo-output") / "event-dataset"
TINY_IMAGE_PX = 32  # the tiny model's frames: 32x32 px, patch 4, pixel shuffle 2 -> 16 image tokens per frame
TINY_LR, CHECKPOINT_LR = 1e-3, 2e-5


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--events", type=Path, default=DEFAULT_EVENTS, help="an Event Dataset folder (stage 1); its train split"
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="a local checkpoint folder (default: a tiny random SmolVLM-style model)",
    )
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps")
    parser.add_argument("--max-sequence-length", type=int, default=512, help="tokens per packed sample")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--lr", type=float, default=None, help=f"default {TINY_LR:g} (tiny), {CHECKPOINT_LR:g} (--model)"
    )
    parser.add_argument("--log-every", type=int, default=5, help="print the loss every N steps")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    args = parser.parse_args(argv)
    for name in ("steps", "max_sequence_length", "batch_size", "log_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if args.lr is None:
        args.lr = TINY_LR if args.model is None else CHECKPOINT_LR
    if args.model is not None and not args.model.is_dir():
        parser.error(f"--model {args.model}: not a folder. Pass a local checkpoint (config.json, weights, processor).")
    if not args.events.is_dir():
        parser.error(f"--events {args.events}: not a folder. Run `make demo` first, or pass a stage-1 output folder.")
    return args


def tiny_smolvlm(seed: int = 0) -> tuple[Any, Any]:
    """A randomly initialized Idefics3 model (2 text layers of width 64, a 2-layer vision tower of width 32) and a
    real ``Idefics3Processor`` (32x32 frames, no image splitting, 16 tokens per frame) with a small offline BPE."""
    import torch
    import transformers

    from owa.data.testing import tiny_bpe_tokenizer

    tokenizer = tiny_bpe_tokenizer()
    tokenizer.add_special_tokens(
        {
            "additional_special_tokens": ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"]
            + [f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)]
        }
    )
    image_processor_class = getattr(transformers, "Idefics3ImageProcessorPil", transformers.Idefics3ImageProcessor)
    image_processor = image_processor_class(
        do_image_splitting=False,
        size={"longest_edge": TINY_IMAGE_PX},
        max_image_size={"longest_edge": TINY_IMAGE_PX},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = transformers.Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=16)
    config = transformers.Idefics3Config(
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": TINY_IMAGE_PX,
            "patch_size": 4,
        },
        text_config={
            "model_type": "llama",
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "vocab_size": len(tokenizer),
        },
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return transformers.Idefics3ForConditionalGeneration(config), processor


def load_checkpoint(path: Path) -> tuple[Any, Any]:
    """A local checkpoint's model and processor, with image splitting off (one frame, one fixed set of tokens)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    image_processor = processor.image_processor
    if getattr(image_processor, "do_image_splitting", False):  # SmolVLM / Idefics3
        image_processor.do_image_splitting = False
    if getattr(image_processor, "crop_to_patches", False):  # InternVL
        image_processor.crop_to_patches = False
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True, dtype=dtype)
    return model, processor


def main(argv: Sequence[str] | None = None) -> list[float]:
    """Train and return the printed losses."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import torch
    import transformers
    from datasets import load_from_disk
    from torch.utils.data import DataLoader

    from owa.data.episode_tokenizer import EpisodeTokenizer
    from owa.data.fsl_dataset import FSLDataset
    from owa.data.pixels import pixel_spec
    from owa.data.training import DistributedFSLSampler, FSLCollator

    transformers.logging.set_verbosity_error()  # resize_token_embeddings' notice about its initialization
    torch.manual_seed(args.seed)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, processor = tiny_smolvlm(args.seed) if args.model is None else load_checkpoint(args.model)

    episode_tokenizer = EpisodeTokenizer.from_processor(processor)
    episode_tokenizer.prepare_model(tokenizer=processor.tokenizer, model=model, init="semantic")
    layout = episode_tokenizer.image_layout

    events = load_from_disk(str(args.events))["train"]
    tokenized = episode_tokenizer.tokenize_event_dataset(events)
    fsl = FSLDataset(
        tokenized,
        pad_token_id=processor.tokenizer.pad_token_id,
        max_sequence_length=args.max_sequence_length,
        image_size=layout.image_size,
        image_resample=pixel_spec(processor).resample,
        log_every=None,
    ).prepare()
    sampler = DistributedFSLSampler(len(fsl), num_replicas=1, rank=0, seed=args.seed)
    collator = FSLCollator.for_tokenizer(episode_tokenizer, processor, normalize=device.type == "cpu")
    loader = DataLoader(
        fsl,
        batch_size=args.batch_size,
        sampler=sampler,
        num_workers=args.num_workers,
        collate_fn=collator,
        drop_last=len(fsl) >= args.batch_size,
        persistent_workers=args.num_workers > 0,  # a small corpus is many short epochs: keep the workers
    )
    print(
        f"{len(events):,} events -> {len(fsl):,} samples of {args.max_sequence_length} tokens; a frame is "
        f"{len(layout.tokens())} tokens at {layout.image_size[0]}x{layout.image_size[1]} px; "
        f"{sum(p.numel() for p in model.parameters()):,} parameters on {device}",
        flush=True,
    )

    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    losses: list[float] = []
    step, epoch, start = 0, 0, time.perf_counter()
    while step < args.steps:
        sampler.set_epoch(epoch)
        for batch in loader:
            inputs = FSLCollator.model_inputs(collator.to_device(batch, device, dtype=model.dtype))
            loss = model(**inputs).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step % args.log_every == 0 or step == 1:
                losses.append(loss.item())
                print(f"step {step:4d}  loss {losses[-1]:.4f}  ({time.perf_counter() - start:.1f} s)", flush=True)
            if step == args.steps:
                break
        epoch += 1
    stats = collator.stats
    print(f"done: {stats.images:,} frames ({stats.blank_images} skipped) in {stats.batches:,} batches", flush=True)
    return losses


if __name__ == "__main__":
    main()
