"""The packing plan on hand-written lengths (exact offsets) and hypothesis-checked invariants."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owa.data.errors import PackingError
from owa.data.packing import plan_packing


def test_greedy_packing_exact_offsets() -> None:
    plan = plan_packing(np.array([3, 2, 4, 1]), max_sequence_length=5)
    assert plan.event_offsets.tolist() == [0, 2, 4]
    assert plan.token_counts.tolist() == [5, 5]
    assert plan.token_offsets.tolist() == [0, 3, 5, 9, 10]
    assert len(plan) == 2
    assert plan.num_events == 4
    assert plan.token_range(1) == (5, 10)
    assert plan.event_range(0) == (0, 2)


def test_final_partial_sample_is_counted() -> None:
    plan = plan_packing(np.ones(10, dtype=np.int64), max_sequence_length=3)
    assert plan.event_offsets.tolist() == [0, 3, 6, 9, 10]
    assert plan.token_counts.tolist() == [3, 3, 3, 1]


def test_exact_fit_and_next_event_not_fitting() -> None:
    plan = plan_packing(np.array([5, 5, 1, 4, 2]), max_sequence_length=5)
    # 5 | 5 | 1+4 | 2: the 2 does not fit after 1+4, so a new sample starts.
    assert plan.event_offsets.tolist() == [0, 1, 2, 4, 5]
    assert plan.token_counts.tolist() == [5, 5, 5, 2]


def test_a_later_small_event_does_not_jump_the_queue() -> None:
    # 4 then 3 does not fit in 5; the 1 after it must not be pulled forward (order is kept).
    plan = plan_packing(np.array([4, 3, 1]), max_sequence_length=5)
    assert plan.event_offsets.tolist() == [0, 1, 3]
    assert plan.token_counts.tolist() == [4, 4]


def test_episode_aware_packing_cuts_at_episode_starts() -> None:
    starts = np.array([True, False, True, False, False])  # episodes a, a, b, b, b
    lengths = np.array([2, 2, 2, 2, 2])
    assert plan_packing(lengths, max_sequence_length=10).event_offsets.tolist() == [0, 5]
    aware = plan_packing(lengths, max_sequence_length=10, episode_start=starts)
    assert aware.event_offsets.tolist() == [0, 2, 5]
    assert aware.token_counts.tolist() == [4, 6]
    # Length limits still apply inside an episode.
    aware = plan_packing(lengths, max_sequence_length=4, episode_start=starts)
    assert aware.event_offsets.tolist() == [0, 2, 4, 5]


def test_empty_input_has_no_samples() -> None:
    plan = plan_packing(np.array([], dtype=np.int64), max_sequence_length=8)
    assert len(plan) == 0
    assert plan.event_offsets.tolist() == [0]


def test_event_longer_than_max_sequence_length_is_named() -> None:
    names = ["ep0.mcap", "ep0.mcap", "ep1.mcap", "ep1.mcap"]
    with pytest.raises(PackingError) as info:
        plan_packing(np.array([2, 3, 9, 12]), max_sequence_length=8, event_name=names.__getitem__)
    error = info.value
    assert error.row == 2
    assert error.path == "ep1.mcap"
    assert error.context["events_too_long"] == 2
    assert "9 tokens" in str(error) and "max_sequence_length=8" in str(error)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="max_sequence_length"):
        plan_packing(np.array([1]), max_sequence_length=0)
    with pytest.raises(ValueError, match="episode_start"):
        plan_packing(np.array([1, 2]), max_sequence_length=4, episode_start=np.array([True]))
    with pytest.raises(PackingError, match="negative"):
        plan_packing(np.array([1, -2]), max_sequence_length=4)


def _reference(lengths: list[int], limit: int, episodes: list[int] | None) -> list[int]:
    """The obvious loop: a new sample when the next event does not fit (or starts another episode)."""
    offsets = [0]
    used = 0
    for i, length in enumerate(lengths):
        new_episode = episodes is not None and i > 0 and episodes[i] != episodes[i - 1]
        if i > offsets[-1] and (used + length > limit or new_episode):
            offsets.append(i)
            used = 0
        used += length
    if lengths:
        offsets.append(len(lengths))
    return offsets


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(1, 40),
    data=st.data(),
    episode_aware=st.booleans(),
)
def test_packing_invariants(limit: int, data: st.DataObject, episode_aware: bool) -> None:
    lengths = data.draw(st.lists(st.integers(0, limit), max_size=60))
    episodes = data.draw(st.lists(st.integers(0, 3), min_size=len(lengths), max_size=len(lengths)))
    episodes = np.cumsum(np.array(episodes, dtype=np.int64) == 0).tolist() if episodes else []  # contiguous runs
    starts = np.array([i == 0 or episodes[i] != episodes[i - 1] for i in range(len(episodes))], dtype=bool)
    starts = starts if episode_aware else None
    plan = plan_packing(np.array(lengths, dtype=np.int64), max_sequence_length=limit, episode_start=starts)

    offsets = plan.event_offsets.tolist()
    assert offsets == _reference(lengths, limit, episodes if episode_aware else None)
    # Every event exactly once, in order: offsets strictly increase from 0 to n.
    assert offsets[0] == 0 and offsets[-1] == len(lengths)
    assert all(a < b for a, b in itertools.pairwise(offsets))
    # Each sample fits; tokens are conserved.
    assert all(0 <= count <= limit for count in plan.token_counts.tolist())
    assert int(plan.token_counts.sum()) == sum(lengths)
    for k in range(len(plan)):
        a, b = plan.event_range(k)
        assert plan.token_counts[k] == sum(lengths[a:b])
        assert plan.token_range(k) == (sum(lengths[:a]), sum(lengths[:b]))
        if episode_aware:
            assert len(set(episodes[a:b])) == 1
        # Greedy: the next event did not fit (or began another episode).
        if b < len(lengths):
            other_episode = episode_aware and episodes[b] != episodes[b - 1]
            assert other_episode or plan.token_counts[k] + lengths[b] > limit
