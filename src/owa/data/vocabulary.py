"""The identity of a tokenizer's vocabulary: one fingerprint, recorded by tokenized and packed datasets.

Two tokenizers with the same fingerprint turn the same text into the same ids: the fingerprint hashes the
tokenizer's whole definition (its vocabulary and added tokens with their ids, merges, normalizer, pre-tokenizer),
not its name. A tokenized dataset's ids only mean something with the tokenizer that made them, so datasets record
it (:mod:`owa.data.metadata`) and loading checks it (:func:`owa.data.load`).

>>> vocabulary_fingerprint(tokenizer)  # doctest: +SKIP
'sha256:4f1c...'
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["vocabulary_fingerprint"]

# A fast tokenizer's JSON (Rust serde, fields in a fixed order) starts with its version, then the truncation and
# padding settings, which calling the tokenizer with truncation=/padding= changes; they do not change which ids a
# text gets, so the fingerprint starts at the added tokens.
_FROM = ',"added_tokens":'


def vocabulary_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """``"sha256:<hex>"`` of what decides ``tokenizer``'s ids (its definition, not its name or padding settings).

    A fast tokenizer hashes its serialized definition (``backend_tokenizer.to_str()``) from its added tokens on;
    another tokenizer hashes its sorted ``get_vocab()`` items. Compute it after
    :meth:`EpisodeTokenizer.prepare_model <owa.data.episode_tokenizer.EpisodeTokenizer.prepare_model>` to identify
    the vocabulary that tokenized ids index (the added event tokens included). About 0.3 s for a 150,000-token
    vocabulary.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        text = backend.to_str()
        start = text.find(_FROM)
        definition = text[start:] if start >= 0 else text
    else:
        definition = repr(sorted(tokenizer.get_vocab().items()))
    return "sha256:" + hashlib.sha256(definition.encode()).hexdigest()
