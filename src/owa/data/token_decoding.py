"""Token ids back to events: the work behind :meth:`EpisodeTokenizer.decode
<owa.data.episode_tokenizer.EpisodeTokenizer.decode>`, and :class:`DecodedEvents`, what it returns.

The ids are cut into ``<EVENT_START>...<EVENT_END>`` spans; each span's text (with every whole frame collapsed back
to the encoder's image token) goes to the event encoder's ``decode``; wrapped times are then unwrapped from a known
start. Malformed spans are raised or counted (``on_error``), never turned into events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from owa.data.encoders.base import EVENT_END, EVENT_START, _snippet
from owa.data.errors import EncodingError, OnError
from owa.data.image_layout import ImageLayout
from owa.data.messages import McapMessage, ScreenCaptured

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["DecodedEvents", "TokenDecoder"]

logger = logging.getLogger(__name__)

_FRAME = "\x00"  # stands for one collapsed frame while decoding; never part of a token's text


class DecodedEvents(list[McapMessage]):
    """What :meth:`EpisodeTokenizer.decode` returns: the decoded events (this list, in order), and what was left.

    Attributes:
        tail: the token ids of the event still open at the end (from its ``<EVENT_START>``), ``[]`` when none: a
            generation that stopped mid-event. Decode ``tail + continuation`` again when the model has gone on.
        skipped: how many malformed events (or runs of stray event tokens) ``on_error="skip"`` dropped.
    """

    def __init__(self, events: Sequence[McapMessage] = (), *, tail: Sequence[int] = (), skipped: int = 0) -> None:
        super().__init__(events)
        self.tail = list(tail)
        self.skipped = skipped

    @property
    def events(self) -> list[McapMessage]:
        """The events as a plain list."""
        return list(self)

    def __repr__(self) -> str:
        return f"DecodedEvents({list.__repr__(self)}, tail={self.tail!r}, skipped={self.skipped})"


class EventTextDecoder(Protocol):
    """What decodes one event's text: an event encoder (or its frame-space adapter)."""

    def decode(self, text: str, images: list[ScreenCaptured] | None = None) -> McapMessage: ...


class TokenDecoder:
    """Decodes token ids with one bound vocabulary (what :meth:`EpisodeTokenizer.prepare_model` added).

    Args:
        tokenizer: the Hugging Face tokenizer, for ids that are not ours (text inside json events).
        token_to_id: our tokens (event, frame and episode tokens) and their ids.
        layout: the tokens of one frame.
        episode_tokens: the episode start and end tokens (allowed between events).
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        token_to_id: Mapping[str, int],
        layout: ImageLayout,
        episode_tokens: Sequence[str],
    ) -> None:
        self.tokenizer = tokenizer
        self.token_to_id = token_to_id
        self.id_to_token = {i: t for t, i in token_to_id.items()}
        self.layout = layout
        self.outside_ok = {token_to_id[token] for token in episode_tokens}

    def decode(
        self,
        token_ids: Sequence[int] | np.ndarray,
        *,
        decoder: EventTextDecoder,
        unwrap: Callable[[list[int], int], list[int]] | None,
        start_timestamp_ns: int | None,
        last_timestamp_ns: int | None,
        images: Sequence[ScreenCaptured] | None,
        on_error: OnError,
        action_offset_ns: int = 0,
        action_topics: Collection[str] = (),
    ) -> DecodedEvents:
        """The events of ``token_ids``, as :meth:`EpisodeTokenizer.decode` documents (its arguments are checked).

        Args:
            decoder: decodes one event's text.
            unwrap: the encoder's ``unwrap_timestamps`` (wrapped times, start time -> absolute), None when its
                times are absolute.
            action_offset_ns: the action offset; taken off the (unwrapped) times of ``action_topics`` events.
        """
        event_start, event_end = self.token_to_id[EVENT_START], self.token_to_id[EVENT_END]
        outside_ok = self.outside_ok
        ours = self.id_to_token
        ids = np.asarray(token_ids, dtype=np.int64).tolist()
        image_queue = list(images) if images is not None else None
        messages: list[McapMessage] = []
        skipped = 0

        def malformed(error: EncodingError, position: int) -> None:
            nonlocal skipped
            if on_error == "raise":
                raise EncodingError(error.reason, position=position, **error.context) from error
            skipped += 1

        def fragment_error(reason: str, start: int, stop: int) -> EncodingError:
            return EncodingError(reason, snippet=_snippet(self.ids_to_text(ids[start:stop])))

        open_at: int | None = None  # the position of the open event's <EVENT_START>
        stray = False  # inside a run of event tokens outside any event
        for position, token_id in enumerate(ids):
            if token_id == event_start:
                if open_at is not None:
                    reason = "Incomplete event in token ids (an <EVENT_START> before its <EVENT_END>)"
                    malformed(fragment_error(reason, open_at, position), open_at)
                open_at, stray = position, False
            elif token_id == event_end and open_at is not None:
                start, open_at = open_at, None
                try:
                    text, frames = self.collapse_frames(self.ids_to_text(ids[start : position + 1]))
                    event_images = None
                    if image_queue is not None and frames:
                        event_images, image_queue = image_queue[:frames], image_queue[frames:]
                    messages.append(decoder.decode(text, images=event_images))
                except EncodingError as e:
                    malformed(e, start)
            elif open_at is None and token_id in ours and token_id not in outside_ok:
                if not stray:  # one count per run of stray tokens
                    reason = f"Event tokens outside {EVENT_START}...{EVENT_END}"
                    end = next((p for p in range(position, len(ids)) if ids[p] == event_start), len(ids))
                    malformed(fragment_error(reason, position, end), position)
                stray = True
            else:
                stray = False
        tail: list[int] = []
        if open_at is not None:
            tail = ids[open_at:]
            if last_timestamp_ns is None:
                malformed(fragment_error("Incomplete event in token ids (no <EVENT_END>)", open_at, len(ids)), open_at)
        if skipped:
            logger.warning("decode skipped %d malformed or incomplete event(s)", skipped)
        if unwrap is not None and messages:
            start_ns = last_timestamp_ns if last_timestamp_ns is not None else start_timestamp_ns or 0
            times = unwrap([m.timestamp for m in messages], start_ns)
            messages = [m.model_copy(update={"timestamp": t}) for m, t in zip(messages, times, strict=True)]
        if action_offset_ns:  # back from the sequence's clock to the recorded times
            messages = [
                m.model_copy(update={"timestamp": m.timestamp - action_offset_ns}) if m.topic in action_topics else m
                for m in messages
            ]
        return DecodedEvents(messages, tail=tail, skipped=skipped)

    def collapse_frames(self, text: str) -> tuple[str, int]:
        """``text`` with each whole frame replaced by the encoder's image token, and the number of frames.

        Raises:
            EncodingError: image tokens that are not whole frames (a wrong count, a missing prefix or suffix).
        """
        layout = self.layout
        collapsed = text.replace(layout.text(), _FRAME)
        if any(piece in collapsed for piece in layout.new_tokens()):
            raise EncodingError(
                f"Image tokens that do not form whole frames ({layout.prefix!r} + {layout.token!r} x {layout.count} "
                f"+ {layout.suffix!r})",
                snippet=_snippet(text),
            )
        return collapsed.replace(_FRAME, layout.token), collapsed.count(_FRAME)

    def ids_to_text(self, token_ids: Sequence[int] | np.ndarray) -> str:
        """The text of ``token_ids``: our tokens as they are, runs of other ids through the tokenizer."""
        tokenizer = self.tokenizer
        parts: list[str] = []
        other: list[int] = []
        for token_id in np.asarray(token_ids, dtype=np.int64).tolist():
            token = self.id_to_token.get(token_id)
            if token is None:
                other.append(token_id)
                continue
            if other:
                parts.append(tokenizer.decode(other, skip_special_tokens=False))
                other = []
            parts.append(token)
        if other:
            parts.append(tokenizer.decode(other, skip_special_tokens=False))
        return "".join(parts)
