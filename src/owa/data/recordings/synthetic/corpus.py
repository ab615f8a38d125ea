"""A corpus of synthetic episodes ``episode_0000`` ... written in parallel, the same whatever the worker count."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import numpy as np

from owa.data.atomic import output_write_errors
from owa.data.recordings.synthetic.config import SampleConfig
from owa.data.recordings.synthetic.episode import SampleEpisode, write_sample_episode

__all__ = ["episode_seed", "write_sample_corpus"]


def episode_seed(seed: int, index: int) -> int:
    """The seed of episode ``index`` of a corpus generated with ``seed`` (a 63-bit integer)."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def write_sample_corpus(
    out_dir: str | os.PathLike[str],
    n_episodes: int,
    config: SampleConfig | None = None,
    *,
    workers: int = 1,
    on_episode: Callable[[SampleEpisode], None] | None = None,
) -> list[SampleEpisode]:
    """Write ``n_episodes`` episodes ``episode_0000`` ... into ``out_dir``.

    Episode ``i`` uses ``config`` with ``seed=episode_seed(config.seed, i)``, so a corpus is the same
    whatever ``workers`` is. With ``workers > 1`` episodes are written by a pool of processes.

    Args:
        out_dir: Folder to write into (created if needed).
        n_episodes: How many episodes, at least 1.
        config: Settings shared by all episodes; ``config.seed`` seeds the corpus.
        workers: Processes to use; 1 writes in this process.
        on_episode: Called in this process after each episode is written (in completion order),
            e.g. to advance a progress bar.

    Returns:
        The episodes, in index order.

    Raises:
        ValueError: ``n_episodes`` or ``workers`` is not a positive integer.
        OutputWriteError: ``out_dir`` cannot be created or written (names it and the reason).
    """
    config = config if config is not None else SampleConfig()
    if not _is_int(n_episodes) or n_episodes < 1:
        raise ValueError(f"Invalid n_episodes ({n_episodes!r}). It must be a positive integer")
    if not _is_int(workers) or workers < 1:
        raise ValueError(f"Invalid workers ({workers!r}). It must be a positive integer")
    digits = max(4, len(str(n_episodes - 1)))
    jobs = [
        (os.fspath(out_dir), f"episode_{i:0{digits}d}", dataclasses.replace(config, seed=episode_seed(config.seed, i)))
        for i in range(n_episodes)
    ]
    with output_write_errors(out_dir, within=out_dir):
        return _write_corpus(jobs, workers, on_episode)


def _write_corpus(
    jobs: list[tuple[str, str, SampleConfig]], workers: int, on_episode: Callable[[SampleEpisode], None] | None
) -> list[SampleEpisode]:
    n_episodes = len(jobs)
    results: list[SampleEpisode | None] = [None] * n_episodes
    if workers == 1 or n_episodes == 1:
        for i, job in enumerate(jobs):
            results[i] = write_sample_episode(*job)
            if on_episode is not None:
                on_episode(results[i])
    else:
        # spawn: workers start clean (no inherited encoder threads or locks from this process).
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, n_episodes), mp_context=context) as pool:
            futures = {pool.submit(write_sample_episode, *job): i for i, job in enumerate(jobs)}
            try:
                for future in as_completed(futures):
                    episode = future.result()
                    results[futures[future]] = episode
                    if on_episode is not None:
                        on_episode(episode)
            except BaseException:  # a failed episode or an interrupt: do not wait for the queued ones
                pool.shutdown(cancel_futures=True)
                raise
    return [episode for episode in results if episode is not None]
