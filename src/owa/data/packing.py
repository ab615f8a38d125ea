"""The packing plan: which events go into which fixed-length sample. Pure numpy, computed once.

Events keep their dataset order and are never split. A sample takes events greedily and a new sample
starts when the next event does not fit in ``max_sequence_length`` tokens (or, with episode-aware
packing, when the next event belongs to another episode). Every event lands in exactly one sample.

Because events stay in order and whole, sample ``k``'s real tokens are one contiguous range of the
concatenated token stream: ``[token_offsets[event_offsets[k]], token_offsets[event_offsets[k + 1]])``.
That is what makes :meth:`owa.data.fsl_dataset.FSLDataset.__getitem__` a pure slice.

Example::

    >>> plan = plan_packing(np.array([3, 2, 4, 1]), max_sequence_length=5)
    >>> plan.event_offsets.tolist(), plan.token_counts.tolist()
    ([0, 2, 4], [5, 5])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from owa.data.errors import PackingError

__all__ = ["PackingPlan", "plan_packing"]


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class PackingPlan:
    """The result of :func:`plan_packing`. All ranges are half-open ``[start, end)``.

    Attributes:
        max_sequence_length: tokens per sample, padding included.
        token_offsets: ``int64[n_events + 1]``; event ``i`` owns tokens ``[token_offsets[i], token_offsets[i + 1])``
            of the concatenated stream.
        event_offsets: ``int64[n_samples + 1]``; sample ``k`` holds events ``[event_offsets[k], event_offsets[k + 1])``.
        token_counts: ``int64[n_samples]``; real (unpadded) tokens of each sample.
    """

    max_sequence_length: int
    token_offsets: np.ndarray
    event_offsets: np.ndarray
    token_counts: np.ndarray

    def __len__(self) -> int:
        return len(self.token_counts)

    @property
    def num_events(self) -> int:
        return len(self.token_offsets) - 1

    def token_range(self, sample: int) -> tuple[int, int]:
        """The half-open range of the concatenated token stream that sample ``sample`` holds."""
        start, end = self.event_offsets[sample], self.event_offsets[sample + 1]
        return int(self.token_offsets[start]), int(self.token_offsets[end])

    def event_range(self, sample: int) -> tuple[int, int]:
        """The half-open range of event indices that sample ``sample`` holds."""
        return int(self.event_offsets[sample]), int(self.event_offsets[sample + 1])


def plan_packing(
    token_counts: np.ndarray,
    *,
    max_sequence_length: int,
    episode_start: np.ndarray | None = None,
    event_name: Callable[[int], str | None] | None = None,
) -> PackingPlan:
    """Pack events, in order and whole, into samples of at most ``max_sequence_length`` tokens.

    Args:
        token_counts: tokens of each event (``total_token_count``), in dataset order.
        max_sequence_length: the sample length in tokens; must be positive.
        episode_start: optional boolean mask, True where an event starts a new episode; when given, a sample
            never spans two episodes (episode-aware packing).
        event_name: optional ``row -> name`` (e.g. the event's episode path), used in error messages.

    Returns:
        The :class:`PackingPlan`.

    Raises:
        ValueError: ``max_sequence_length`` is not positive, or inputs have mismatched lengths.
        PackingError: an event has more tokens than ``max_sequence_length`` (names the first such event row),
            or a negative token count.
    """
    if max_sequence_length <= 0:
        raise ValueError(f"Invalid max_sequence_length ({max_sequence_length}). It must be a positive integer.")
    lengths = np.asarray(token_counts, dtype=np.int64)
    if lengths.ndim != 1:
        raise ValueError(f"token_counts must be 1-D, got shape {lengths.shape}")
    n = len(lengths)
    if episode_start is not None and len(episode_start) != n:
        raise ValueError(f"episode_start has {len(episode_start)} entries for {n} events")

    bad = np.flatnonzero((lengths > max_sequence_length) | (lengths < 0))
    if len(bad):
        row = int(bad[0])
        name = event_name(row) if event_name is not None else None
        reason = (
            f"Event has {lengths[row]} tokens, more than max_sequence_length={max_sequence_length}; "
            "raise max_sequence_length or shorten the event (e.g. a smaller image_token_length)"
            if lengths[row] > 0
            else f"Event has a negative token count ({lengths[row]})"
        )
        raise PackingError(reason, path=name, row=row, events_too_long=len(bad))

    token_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=token_offsets[1:])

    # next_start[i]: the first event that does not fit in a sample starting at event i. Vectorized over all
    # events at once; the greedy plan then follows this chain from event 0, one step per sample.
    next_start = np.searchsorted(token_offsets, token_offsets[:-1] + max_sequence_length, side="right") - 1
    if episode_start is not None and n:
        # The first event of the next episode, for every event: a reverse running minimum of episode starts.
        start_index = np.where(np.asarray(episode_start, dtype=bool), np.arange(n, dtype=np.int64), n)
        start_index[0] = n  # event 0 starts its own sample anyway; only later starts cut
        following = np.minimum.accumulate(start_index[::-1])[::-1]
        following = np.append(following[1:], n)  # first episode start strictly after i
        next_start = np.minimum(next_start, following)

    chain = next_start.tolist()
    boundaries = [0]
    position = 0
    while position < n:
        position = chain[position]
        boundaries.append(position)
    event_offsets = np.asarray(boundaries, dtype=np.int64)
    sample_tokens = token_offsets[event_offsets[1:]] - token_offsets[event_offsets[:-1]]
    return PackingPlan(
        max_sequence_length=max_sequence_length,
        token_offsets=token_offsets,
        event_offsets=event_offsets,
        token_counts=sample_tokens,
    )
