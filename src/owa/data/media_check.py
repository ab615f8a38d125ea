"""Stage 1's media check: the videos a recording's screen messages point to exist, open, and cover their times.

Training finds a bad video only when it decodes a frame, hours into a run. Stage 1 applies the same rules up
front, per recording, without decoding: each screen message's ``media_ref.uri`` is resolved by the media
policy (:class:`~owa.data.media.MediaPolicy`: relative URIs stay inside the recording's folder), each distinct
video is opened once and its packet index read (:func:`owa.data.frames._pyav.read_index`, as the frame engine
builds it), and each ``pts_ns`` is checked against the played-at rule with the engine's tolerance
(:meth:`~owa.data.frames.index.VideoIndex.played_at`): a time the engine would refuse with
:class:`~owa.data.errors.FrameOutOfRangeError` is out of range here too.

A recording stored at a URL (``s3://bucket/rec/ep.mcap``) is checked the same way: its relative URIs resolve
inside its prefix, and each video object is looked up and its index read through :mod:`owa.data.storage` with
the recording's ``storage_options`` (reading the index reads the whole object once).

Three kinds of :class:`MediaProblem` come out: a ``missing`` video, one that cannot be opened
(``unreadable``: not a media file, no video stream, no packets, or a URI the policy refuses), and
``out_of_range`` screen messages, counted per video. Still images (a ``media_ref`` without ``pts_ns``) are
only checked to exist.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from owa.data import storage
from owa.data.episode_paths import episode_base_dir
from owa.data.errors import FrameOutOfRangeError, MediaError, OWADataError, VideoNotFoundError
from owa.data.frames.index import DEFAULT_TOLERANCE_NS, VideoIndex
from owa.data.media import DEFAULT_MEDIA_POLICY, MediaPolicy

__all__ = ["MediaProblem", "MediaProblemKind", "check_media"]

logger = logging.getLogger(__name__)

MediaProblemKind = Literal["missing", "unreadable", "out_of_range"]


@dataclasses.dataclass(frozen=True, slots=True)
class MediaProblem:
    """One video of a recording that training could not read frames from, or not all of them.

    Attributes:
        kind: ``missing``, ``unreadable`` (cannot be opened) or ``out_of_range`` (some ``pts_ns`` lie outside
            the video, more than the engine's tolerance before its first frame or after its end).
        uri: the ``media_ref.uri`` as the recording writes it.
        screen_messages: the screen messages affected: all that point to the video, or (``out_of_range``)
            those outside it.
        error: the typed error training would raise for the first of them; it names the recording, the video
            and the count. ``--strict`` raises it.
    """

    kind: MediaProblemKind
    uri: str
    screen_messages: int
    error: OWADataError  # a MediaError

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "uri": self.uri,
            "video": self.error.path,
            "screen_messages": self.screen_messages,
            "reason": self.error.reason,
            "summary": self.describe(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MediaProblem:
        """The problem :meth:`to_json` saved (an incremental run reuses it); its error is a plain :class:`MediaError`
        with the saved reason and video."""
        error = MediaError(data["reason"], path=data["video"])
        return cls(data["kind"], data["uri"], data["screen_messages"], error)

    def describe(self) -> str:
        """One line for the end-of-run summary."""
        if self.kind == "missing":
            return f"video missing: {self.uri} ({self.screen_messages} screen messages)"
        if self.kind == "unreadable":
            return f"video cannot be opened: {self.uri}: {self.error.reason} ({self.screen_messages} screen messages)"
        return f"{self.screen_messages} screen message(s) outside video {self.uri}: {self.error.reason}"


def check_media(
    recording: str | os.PathLike[str],
    refs: Mapping[str, Sequence[int | None]],
    *,
    policy: MediaPolicy = DEFAULT_MEDIA_POLICY,
    tolerance_ns: int = DEFAULT_TOLERANCE_NS,
    storage_options: storage.StorageOptions | None = None,
) -> list[MediaProblem]:
    """The media problems of one recording, in order of first reference; ``[]`` when every frame can be read.

    Args:
        recording: the recording's path; relative URIs resolve against its folder, as at training time.
        refs: each ``media_ref.uri`` → the ``pts_ns`` of the screen messages pointing to it (None: a still image).
        policy: which URIs may be opened (training's default unless told otherwise).
        tolerance_ns: how far outside a video a time may lie (the frame engine's default).
        storage_options: for a recording at a URL, the options its videos are read with.

    Each distinct file is opened once, however many URIs name it. Nothing is decoded.

    Raises:
        StorageAccessError: a video object of a URL recording cannot be read for lack of access (not a problem
            of the recording: every other video would fail the same way).
    """
    base_dir = episode_base_dir(recording)
    by_location: dict[str, list[tuple[str, Sequence[int | None]]]] = {}
    problems: list[MediaProblem] = []
    for uri, times in refs.items():
        try:
            media = policy.resolve(uri, base_dir)
        except MediaError as e:
            problems.append(MediaProblem("unreadable", uri, len(times), e.with_context(recording=str(recording))))
            continue
        in_prefix = media.kind == "remote" and storage.is_url(base_dir) and not storage.is_url(uri)
        if media.kind != "file" and not in_prefix:  # remote or inline: allowed by a custom policy, not checked
            continue
        by_location.setdefault(media.location, []).append((uri, times))
    for location, named in by_location.items():
        problems.extend(_check_file(str(recording), location, named, tolerance_ns, storage_options))
    for problem in problems:
        logger.warning("Media problem in %s: %s", recording, problem.describe())
    return problems


def _check_file(
    recording: str,
    location: str,
    named: list[tuple[str, Sequence[int | None]]],
    tolerance_ns: int,
    storage_options: storage.StorageOptions | None,
) -> list[MediaProblem]:
    uri = named[0][0]
    count = sum(len(times) for _, times in named)
    try:
        storage.stat(location, storage_options)  # a local path: os.stat
    except (FileNotFoundError, NotADirectoryError):
        # No traceback is kept in a problem: it would hold the caller's frames (a whole recording's rows) alive.
        error = VideoNotFoundError("Video file not found", path=location, recording=recording, uri=uri)
        return [MediaProblem("missing", uri, count, error)]
    except OSError as e:
        error = VideoNotFoundError(f"Video file cannot be read: {e.strerror}", path=location, recording=recording)
        return [MediaProblem("unreadable", uri, count, error)]
    times = [t for _, ts in named for t in ts if t is not None]
    if not times:  # still images only: their existence is what stage 1 checks
        return []
    # PyAV (and FFmpeg's libraries) load on the first video: a run without videos or the check never pays it.
    from owa.data.frames._pyav import read_index

    try:
        index = read_index(location, storage_options)
    except MediaError as e:
        return [MediaProblem("unreadable", uri, count, e.with_context(recording=recording, uri=uri))]
    return _check_times(recording, uri, index, times, tolerance_ns)


def _check_times(
    recording: str, uri: str, index: VideoIndex, times: list[int], tolerance_ns: int
) -> list[MediaProblem]:
    """Out-of-range screen messages of one video, counted; ``[]`` when all are inside it."""
    # The range rule is monotone (too early, or too late), so checking the extremes decides for all.
    try:
        index.played_at(min(times), tolerance_ns)
        index.played_at(max(times), tolerance_ns)
        return []
    except FrameOutOfRangeError:
        pass
    first: FrameOutOfRangeError | None = None
    outside = 0
    for pts_ns in times:
        try:
            index.played_at(pts_ns, tolerance_ns)
        except FrameOutOfRangeError as e:
            outside += 1
            first = first or e
    assert first is not None
    error = first.with_context(recording=recording, screen_messages=outside)
    return [MediaProblem("out_of_range", uri, outside, error)]
