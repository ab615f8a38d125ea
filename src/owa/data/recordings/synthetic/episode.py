"""One synthetic episode on disk: ``<name>.mcap`` (current OWAMcap form) and ``<name>.mkv`` beside it.

The ``.mcap`` is what recorder 0.5.1+ writes: the simulated session's messages plus one ``screen``
ScreenCaptured per logged tick, with ``media_ref {"uri": "<name>.mkv", "pts_ns"}``. A screen message of
an encoded frame has exactly that frame's pts; one of a stale tick falls between frames (the frame
*played at* that time is the previous one). The same :class:`SampleConfig` (seed included) always gives
the same ``.mcap`` bytes and the same video.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import orjson

from owa.data.atomic import output_write_errors
from owa.data.messages import OWAMessage, ScreenCaptured
from owa.data.recordings.synthetic.config import SampleConfig
from owa.data.recordings.synthetic.simulation import plan_screen, simulate
from owa.data.recordings.synthetic.video import encode_video
from owa.data.recordings.writer import OWAMcapWriter, json_schema_bytes

__all__ = ["SampleEpisode", "write_sample_episode"]

_MS = 1_000_000  # ns per ms
_S = 1_000_000_000  # ns per s
_EPOCH_BASE_NS = 1_700_000_000 * _S  # 2023-11-14; episodes start within 30 days after it


@dataclasses.dataclass(frozen=True, slots=True)
class SampleEpisode:
    """What :func:`write_sample_episode` wrote.

    Attributes:
        name: The file stem.
        mcap_path: The ``.mcap`` file.
        video_path: The ``.mkv`` file, or None when the config had ``video=False``.
        message_counts: Messages written per topic.
        start_time_ns: Unix time in ns of video pts 0 (the episode's start).
        frame_pts_ns: Pts of every encoded frame in ns, in order; frame ``i`` carries marker ``i``.
        keyframe_pts_ns: Pts of the keyframes in ns.
    """

    name: str
    mcap_path: Path
    video_path: Path | None
    message_counts: Mapping[str, int]
    start_time_ns: int
    frame_pts_ns: tuple[int, ...]
    keyframe_pts_ns: tuple[int, ...]

    @property
    def message_count(self) -> int:
        """Messages written in total."""
        return sum(self.message_counts.values())

    def frame_index_at(self, pts_ns: int) -> int:
        """Index of the frame played at ``pts_ns``: the last frame whose pts is not after it.

        Raises:
            ValueError: ``pts_ns`` is before the first frame.
        """
        index = bisect.bisect_right(self.frame_pts_ns, pts_ns) - 1
        if index < 0:
            raise ValueError(f"Invalid pts_ns ({pts_ns}). The first frame is at {self.frame_pts_ns[0]} ns")
        return index


def write_sample_episode(
    out_dir: str | os.PathLike[str], name: str, config: SampleConfig | None = None
) -> SampleEpisode:
    """Write ``<out_dir>/<name>.mcap`` and (with ``config.video``) ``<out_dir>/<name>.mkv``.

    Deterministic: the same ``config`` (seed included) writes the same ``.mcap`` bytes and a video
    that decodes to the same frames. Existing files of the same name are overwritten.

    Raises:
        ValueError: ``name`` is empty or contains a path separator.
        OutputWriteError: ``out_dir`` cannot be created or written (names it and the reason).

    Example::

        episode = write_sample_episode("out", "demo", SampleConfig(seconds=3, codec="h264", seed=7))
        episode.message_counts  # {'keyboard': ..., 'mouse': ..., 'screen': ..., ...}
    """
    config = config if config is not None else SampleConfig()
    if not name or any(sep in name for sep in ("/", "\\", os.sep)) or name in (".", ".."):
        raise ValueError(f"Invalid episode name ({name!r}). Use a plain file stem such as 'episode_0001'")
    with output_write_errors(out_dir, within=out_dir):
        return _write_episode(Path(out_dir), name, config)


def _write_episode(out: Path, name: str, config: SampleConfig) -> SampleEpisode:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    start_ns = _EPOCH_BASE_NS + int(rng.integers(0, 30 * 86400)) * _S + int(rng.integers(0, _S))
    timeline = simulate(config, rng, start_ns)
    plan = plan_screen(config, timeline, rng)

    video_name = f"{name}.mkv"
    video_path = out / video_name
    if config.video:
        frame_pts, keyframe_pts = encode_video(video_path, config, timeline, plan)
    else:
        frame_pts = tuple((plan.tick_ms[plan.has_frame] * _MS).tolist())
        keyframe_pts = ()

    source_shape = [config.screen_width, config.screen_height]
    shape = [config.width, config.height]
    messages = timeline.messages
    for tick in np.flatnonzero(plan.logged).tolist():
        pts_ns = int(plan.tick_ms[tick]) * _MS
        payload = {
            "utc_ns": start_ns + pts_ns,
            "source_shape": source_shape,
            "shape": shape,
            "media_ref": {"uri": video_name, "pts_ns": pts_ns},
        }
        messages.append((pts_ns + int(plan.latency_ns[tick]), len(messages), "screen", ScreenCaptured, payload))
    messages.sort(key=lambda m: (m[0], m[1]))

    mcap_path = out / f"{name}.mcap"
    schema_data: dict[type[OWAMessage], bytes] = {}
    with OWAMcapWriter(mcap_path, compression=config.compression) as writer:
        for t_ns, _, topic, cls, payload in messages:
            data = schema_data.get(cls)
            if data is None:
                data = schema_data[cls] = json_schema_bytes(cls)
            writer.write_raw(
                topic, cls.message_type, orjson.dumps(payload), timestamp_ns=start_ns + t_ns, schema_data=data
            )
        counts = writer.message_counts
    return SampleEpisode(
        name=name,
        mcap_path=mcap_path,
        video_path=video_path if config.video else None,
        message_counts=counts,
        start_time_ns=start_ns,
        frame_pts_ns=frame_pts,
        keyframe_pts_ns=keyframe_pts,
    )
