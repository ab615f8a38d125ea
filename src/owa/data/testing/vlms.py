"""Tiny vision-language models with their real processors, built offline (there is no hub access here).

For each preset of :mod:`owa.data.image_layout` (``smolvlm``, ``internvl``, ``qwen2_vl``), :func:`tiny_vlm` builds
a randomly initialised transformers model from its config (2 layers, hidden size 64, a 2-layer vision tower of
width 32) and the model's real processor class with a real image processor and a real tokenizer that carries the
model's special tokens:

* ``smolvlm``: ``Idefics3ForConditionalGeneration`` (SmolVLM-256M/500M's architecture) with
  ``Idefics3Processor``, ``Idefics3ImageProcessorPil`` (64x64 px, no image splitting) and a small BPE carrying
  SmolVLM's tokens; 64 image tokens.
* ``internvl``: ``InternVLForConditionalGeneration`` with ``InternVLProcessor``, ``GotOcr2ImageProcessorPil``
  (64x64 px, ``crop_to_patches`` off) and a small BPE carrying InternVL's tokens; 256 image tokens.
* ``qwen2_vl``: ``Qwen2VLForConditionalGeneration`` with ``Qwen2VLProcessor``, ``Qwen2VLImageProcessorPil`` (real
  defaults: patch 14, merge 2, 3,136 to 1,003,520 pixels) and the real Qwen2.5 tokenizer (151,665 ids).

The token counts per image equal the presets' (64 and 256; for Qwen2-VL the count follows from the frame size as
in the real model), at tiny pixel sizes so a forward pass takes well under a second on a CPU.

transformers 5 checks the class of every processor slot, and the video-processor base class is importable only
with torchvision (not installed here), so the processors with a video slot (InternVL, Qwen2-VL) are built through
a subclass that accepts an absent video processor. Everything images go through is the real processor's code.

Building takes a few seconds per process (the Qwen tokenizer conversion), so :func:`tiny_vlm` caches what it
builds; pass ``fresh=True`` for objects a test may modify (adding tokens, resizing embeddings, training).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Literal

import numpy as np
from PIL import Image

__all__ = [
    "VLM_PRESETS",
    "TinyVLM",
    "checkpoint_image_processors",
    "random_frames",
    "tiny_vlm",
    "without_video_processor",
]

VlmPreset = Literal["smolvlm", "internvl", "qwen2_vl"]
VLM_PRESETS: tuple[VlmPreset, ...] = ("smolvlm", "internvl", "qwen2_vl")

_SEED = 0
_TEXT = {  # the language model: 2 layers, hidden 64 (head dim 16)
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
}
_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
_IMAGE_SIDE_PX = 64  # SmolVLM and InternVL: every frame is resized to 64x64
_SMOLVLM_TOKENS = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"] + [
    f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)
]
_INTERNVL_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}


@dataclasses.dataclass(frozen=True)
class TinyVLM:
    """A tiny model and its processor.

    Attributes:
        name: the preset, e.g. ``"qwen2_vl"``.
        model: the transformers model, in eval mode.
        processor: the real processor (its ``tokenizer`` and ``image_processor`` are the real classes).
        image_placeholder: what a prompt holds for one image before the processor expands it: ``"<image>"``,
            ``"<IMG_CONTEXT>"``, or ``"<|vision_start|><|image_pad|><|vision_end|>"`` (Qwen2-VL expands only the
            pad token; its chat template writes the markers).
    """

    name: str
    model: Any
    processor: Any
    image_placeholder: str

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer


def tiny_vlm(name: VlmPreset, *, fresh: bool = False) -> TinyVLM:
    """The tiny model and real processor of preset ``name``; shared per process unless ``fresh``.

    The shared objects must not be modified. With ``fresh=True`` every call builds new ones (same weights: the
    model is initialised from a fixed seed without touching the global RNG).

    Raises:
        ValueError: an unknown ``name``.
    """
    if name not in VLM_PRESETS:
        raise ValueError(f"Invalid preset ({name!r}). Supported values are {', '.join(VLM_PRESETS)}.")
    return _build(name) if fresh else _shared(name)


def random_frames(count: int, *, height: int = 72, width: int = 128, seed: int = 0) -> list[Image.Image]:
    """``count`` RGB frames of random pixels (a 16:9-ish size by default), the same for the same seed."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)) for _ in range(count)]


# ------------------------------------------------------------------------------------------------------------


@functools.cache
def _shared(name: VlmPreset) -> TinyVLM:
    return _build(name)


def _build(name: VlmPreset) -> TinyVLM:
    processor, placeholder = _PROCESSORS[name]()
    config = _CONFIGS[name](processor.tokenizer)
    model_class = _model_class(name)
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        model = model_class(config)
    return TinyVLM(name=name, model=model.eval(), processor=processor, image_placeholder=placeholder)


def _model_class(name: VlmPreset) -> type:
    import transformers

    return {
        "smolvlm": transformers.Idefics3ForConditionalGeneration,
        "internvl": transformers.InternVLForConditionalGeneration,
        "qwen2_vl": transformers.Qwen2VLForConditionalGeneration,
    }[name]


@functools.cache
def without_video_processor(processor_class: type) -> type:
    """``processor_class`` accepting ``video_processor=None`` without torchvision (see the module docstring)."""

    def check_argument_for_proper_class(self: Any, argument_name: str, argument: Any) -> Any:
        if argument_name == "video_processor" and argument is None:
            return None
        return processor_class.check_argument_for_proper_class(self, argument_name, argument)

    return type(
        processor_class.__name__,
        (processor_class,),
        {"check_argument_for_proper_class": check_argument_for_proper_class, "__module__": __name__},
    )


def _tiny_bpe(**kwargs: Any) -> Any:
    from transformers import PreTrainedTokenizerFast

    from owa.data.testing.tokenizers import tiny_bpe_tokenizer

    base = tiny_bpe_tokenizer()
    return PreTrainedTokenizerFast(
        tokenizer_object=base.backend_tokenizer,
        pad_token="<pad>",
        eos_token="<eos>",
        clean_up_tokenization_spaces=False,
        **kwargs,
    )


# --- processors ----------------------------------------------------------------------------------------------


def _smolvlm_processor() -> tuple[Any, str]:
    from transformers import Idefics3ImageProcessorPil, Idefics3Processor

    tokenizer = _tiny_bpe()
    tokenizer.add_special_tokens({"additional_special_tokens": _SMOLVLM_TOKENS})
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": _IMAGE_SIDE_PX},
        max_image_size={"longest_edge": _IMAGE_SIDE_PX},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=64), "<image>"


def _internvl_processor() -> tuple[Any, str]:
    from transformers import GotOcr2ImageProcessorPil, InternVLProcessor

    tokenizer = _tiny_bpe(extra_special_tokens=_INTERNVL_TOKENS)
    image_processor = GotOcr2ImageProcessorPil(
        size={"height": _IMAGE_SIDE_PX, "width": _IMAGE_SIDE_PX},
        crop_to_patches=False,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    processor = without_video_processor(InternVLProcessor)(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=None, image_seq_length=256
    )
    # InternVLProcessor passes crop_to_patches=True to its image processor unless told otherwise, per call or here.
    processor.images_kwargs = {**processor.images_kwargs, "crop_to_patches": False}
    return processor, "<IMG_CONTEXT>"


def _qwen2_vl_processor() -> tuple[Any, str]:
    from transformers import Qwen2VLImageProcessorPil, Qwen2VLProcessor

    from owa.data.testing.tokenizers import qwen25_tokenizer

    processor = without_video_processor(Qwen2VLProcessor)(
        image_processor=Qwen2VLImageProcessorPil(), tokenizer=qwen25_tokenizer(), video_processor=None
    )
    return processor, "<|vision_start|><|image_pad|><|vision_end|>"


_PROCESSORS = {"smolvlm": _smolvlm_processor, "internvl": _internvl_processor, "qwen2_vl": _qwen2_vl_processor}


# --- model configs -------------------------------------------------------------------------------------------


def _smolvlm_config(tokenizer: Any) -> Any:
    from transformers import Idefics3Config

    # 64 px / patch 4 = 16x16 patches; pixel shuffle by scale_factor 2 -> 64 tokens per image.
    return Idefics3Config(
        vision_config={**_VISION, "image_size": _IMAGE_SIDE_PX, "patch_size": 4},
        text_config={"model_type": "llama", **_TEXT, "vocab_size": len(tokenizer)},
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
    )


def _internvl_config(tokenizer: Any) -> Any:
    from transformers import InternVLConfig

    # 64 px / patch 2 = 32x32 patches; downsample_ratio 0.5 -> 256 tokens per image.
    return InternVLConfig(
        vision_config={**_VISION, "image_size": _IMAGE_SIDE_PX, "patch_size": 2},
        text_config={"model_type": "qwen2", **_TEXT, "vocab_size": len(tokenizer)},
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=256,
        downsample_ratio=0.5,
    )


def _qwen2_vl_config(tokenizer: Any) -> Any:
    from transformers import Qwen2VLConfig

    ids = tokenizer.convert_tokens_to_ids
    return Qwen2VLConfig(
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": _TEXT["hidden_size"],
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        text_config={
            **_TEXT,
            "vocab_size": len(tokenizer),
            # 3D rotary sections (time, height, width) must sum to head_dim / 2 = 8.
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
            "bos_token_id": None,
            "eos_token_id": ids("<|endoftext|>"),
        },
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


_CONFIGS = {"smolvlm": _smolvlm_config, "internvl": _internvl_config, "qwen2_vl": _qwen2_vl_config}


def checkpoint_image_processors() -> dict[str, Any]:
    """The image processors of real SmolVLM (512 px) and InternVL (448 px) checkpoints, built offline from their
    settings, with image splitting / patch cropping off (one frame, one image): what the fast pixel path is
    compared with in tests and ``benchmarks/bench_pixels.py``."""
    import transformers

    return {
        "smolvlm": transformers.Idefics3ImageProcessorPil(
            do_image_splitting=False,
            size={"longest_edge": 4 * 512},
            max_image_size={"longest_edge": 512},
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
        ),
        "internvl": transformers.GotOcr2ImageProcessorPil(
            size={"height": 448, "width": 448},
            crop_to_patches=False,
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
        ),
    }
