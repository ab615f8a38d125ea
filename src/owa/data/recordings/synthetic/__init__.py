"""Seeded synthetic episodes: a simulated desktop session's events plus a real encoded screen video.

An episode is ``<name>.mcap`` (current OWAMcap form) and ``<name>.mkv`` beside it; the same
:class:`SampleConfig` (seed included) always gives the same files. One concept per module:

* :mod:`.config`: :class:`SampleConfig`, validated once (the Python API and ``owa-data sample`` share it).
* :mod:`.simulation`: the session (keyboard, mouse, windows, states) and which screen ticks are captured.
* :mod:`.marker`: the frame-index marker every frame carries, and :func:`read_frame_marker` to read it back.
* :mod:`.video`: what each frame shows, and the PyAV encoder (HEVC or H.264 in Matroska).
* :mod:`.episode`: :func:`write_sample_episode`, the ``.mcap`` and ``.mkv`` of one episode.
* :mod:`.corpus`: :func:`write_sample_corpus`, many episodes over a process pool.

Example::

    from owa.data.recordings.synthetic import SampleConfig, write_sample_corpus

    episodes = write_sample_corpus("out", 4, SampleConfig(seconds=10, codec="h264", seed=7), workers=2)
"""

from owa.data.recordings.synthetic.config import SampleConfig, VideoCodec
from owa.data.recordings.synthetic.corpus import episode_seed, write_sample_corpus
from owa.data.recordings.synthetic.episode import SampleEpisode, write_sample_episode
from owa.data.recordings.synthetic.marker import MARKER_BITS, read_frame_marker, render_frame_marker

__all__ = [
    "MARKER_BITS",
    "SampleConfig",
    "SampleEpisode",
    "VideoCodec",
    "episode_seed",
    "read_frame_marker",
    "render_frame_marker",
    "write_sample_corpus",
    "write_sample_episode",
]
