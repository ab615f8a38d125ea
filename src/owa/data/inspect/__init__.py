"""Looking at data: ``owa-data stats`` (what a folder of recordings or a dataset holds) and ``owa-data view``
(one episode's events and frames on one time axis, as a PNG or an HTML page).

Modules: :mod:`.detect` (what a path is), :mod:`.saved` (saved datasets as Arrow tables), :mod:`.event_stats`
(the Arrow-compute counts), :mod:`.recording_stats`, :mod:`.video_info`, :mod:`.stats` (:func:`collect_stats`),
:mod:`.stats_table` (rich tables), :mod:`.keys` (virtual-key names), :mod:`.episode` (an episode's timeline),
:mod:`.pointer` (desktop -> frame pixels), :mod:`.frames_sample` (frames sampled over time), :mod:`.view` (the PNG,
matplotlib) and :mod:`.html` (the page). matplotlib is optional: ``pip install 'owa-data[view]'``.
"""

from owa.data.inspect.detect import PathKind, detect_dataset_kind, detect_kind
from owa.data.inspect.episode import EpisodeTimeline, load_dataset_episode, load_recording
from owa.data.inspect.stats import collect_stats

__all__ = [
    "EpisodeTimeline",
    "PathKind",
    "collect_stats",
    "detect_dataset_kind",
    "detect_kind",
    "load_dataset_episode",
    "load_recording",
]
