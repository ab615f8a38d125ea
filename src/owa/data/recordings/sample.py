"""Kept for compatibility: the synthetic-episode generator now lives in :mod:`owa.data.recordings.synthetic`."""

from owa.data.recordings.synthetic import (
    MARKER_BITS,
    SampleConfig,
    SampleEpisode,
    episode_seed,
    read_frame_marker,
    render_frame_marker,
    write_sample_corpus,
    write_sample_episode,
)

__all__ = [
    "MARKER_BITS",
    "SampleConfig",
    "SampleEpisode",
    "episode_seed",
    "read_frame_marker",
    "render_frame_marker",
    "write_sample_corpus",
    "write_sample_episode",
]
