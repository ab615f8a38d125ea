"""Token ids by direct lookup for texts made only of our ``<...>`` added tokens, and the proof that it is exact.

The hierarchical encoder's texts are concatenations of added tokens (``<EVENT_START><TIMESTAMP><2>...``). For such
a text ``tokenizer.encode`` splits on the added tokens and looks each one up, so a regex split and a dict give the
same ids several times faster. :func:`lookup_is_exact` decides, once per tokenizer, whether that is provably what
the tokenizer does; :class:`TokenLookup` uses the lookup where it applies and the tokenizer (in one batch call)
everywhere else, so its ids always equal ``tokenizer.encode(text, add_special_tokens=False)``.
"""

from __future__ import annotations

import itertools
import logging
import re
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["TokenLookup", "lookup_is_exact", "occurs_in_concatenation"]

logger = logging.getLogger(__name__)

_PIECE = re.compile(r"<[^<>]*>")


class TokenLookup:
    """Token ids of texts, equal to ``tokenizer.encode(text, add_special_tokens=False)``, fast for our tokens.

    Args:
        tokenizer: the Hugging Face tokenizer the tokens were added to.
        token_to_id: our tokens and their ids in ``tokenizer``.

    Attributes:
        is_exact: whether the per-token lookup is on (see :func:`lookup_is_exact`); otherwise every text goes
            through the tokenizer.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, token_to_id: dict[str, int]) -> None:
        self.tokenizer = tokenizer
        self.token_to_id = dict(token_to_id)
        self._open_to_id = {t[:-1]: i for t, i in self.token_to_id.items()}  # "<TOKEN" (no '>') -> id
        self.is_exact = lookup_is_exact(tokenizer, self.token_to_id)
        if not self.is_exact:
            logger.info("Token lookup fast path off for this tokenizer; texts go through the tokenizer in batches")

    def ids(self, texts: list[str]) -> list[list[int]]:
        """The token ids of each text."""
        results: list[list[int] | None] = [None] * len(texts)
        pending: list[int] = []
        lookup = self.token_to_id
        for i, text in enumerate(texts):
            if self.is_exact:
                pieces = _PIECE.findall(text)
                if sum(map(len, pieces)) == len(text):
                    try:
                        results[i] = [lookup[p] for p in pieces]
                        continue
                    except KeyError:
                        pass
            pending.append(i)
        if pending:
            encoded = self.tokenizer([texts[i] for i in pending], add_special_tokens=False)["input_ids"]
            for i, ids in zip(pending, encoded, strict=True):
                results[i] = list(ids)
        return results  # type: ignore[return-value]

    def ids_flat(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The ids of all ``texts`` concatenated (int32) and the token count of each text (int64)."""
        if self.is_exact and all(text.endswith(">") for text in texts if text):
            # Texts of our ``<...>`` tokens only: split the whole batch at every '>' in one call. As every text ends
            # with '>', no piece spans two texts; a piece that is not one of our tokens falls back below.
            pieces = "".join(texts).split(">")
            pieces.pop()  # what follows the last '>': empty
            try:
                values = np.fromiter(map(self._open_to_id.__getitem__, pieces), dtype=np.int32, count=len(pieces))
            except KeyError:
                pass
            else:
                counts = np.fromiter((text.count(">") for text in texts), dtype=np.int64, count=len(texts))
                return values, counts
        ids = self.ids(texts)
        counts = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        values = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(counts.sum()))
        return values, counts


def lookup_is_exact(tokenizer: PreTrainedTokenizerBase, token_to_id: dict[str, int]) -> bool:
    """Whether per-token lookup equals ``tokenizer.encode`` on every concatenation of our tokens.

    True when (1) each of our tokens has the form ``<...>`` with no inner angle bracket, so in a concatenation the
    tokenizer's added-token matcher can only match each piece whole, (2) no other added token of the tokenizer can
    occur anywhere inside such a concatenation, and (3) a probe text of every token agrees with the tokenizer.
    """
    tokens = list(token_to_id)
    if not all(re.fullmatch(r"<[^<>]+>", t) for t in tokens):
        return False
    ours = set(tokens)
    for other in tokenizer.get_added_vocab():
        if other not in ours and occurs_in_concatenation(other, ours):
            logger.debug("Added token %r can occur inside event texts; lookup disabled", other)
            return False
    probe = "".join(tokens) + "".join(reversed(tokens))
    expected = [token_to_id[t] for t in tokens] + [token_to_id[t] for t in reversed(tokens)]
    return list(tokenizer.encode(probe, add_special_tokens=False)) == expected


def occurs_in_concatenation(text: str, tokens: set[str]) -> bool:
    """Whether ``text`` is a substring of some concatenation of ``tokens`` (each of the form ``<...>``)."""
    if not text:
        return False
    inners = [t[1:-1] for t in tokens]
    first_open = text.find("<")
    if first_open < 0:
        if ">" not in text:
            return any(text in inner for inner in inners)
        # '>' ends a token and only '<' can follow it, so text must end there: a suffix of one token.
        return text.endswith(">") and text.count(">") == 1 and any(t.endswith(text) for t in tokens)
    head, rest = text[:first_open], text[first_open:]
    if head and not any(t.endswith(head) for t in tokens if len(t) > len(head)):
        return False
    while rest:
        close = rest.find(">")
        if close < 0:  # a proper prefix of some token
            return any(t.startswith(rest) for t in tokens)
        piece, rest = rest[: close + 1], rest[close + 1 :]
        if piece not in tokens:
            return False
        if rest and not rest.startswith("<"):
            return False
    return True
