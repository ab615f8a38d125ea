"""Pointer spaces: mouse coordinates in desktop pixels (``"screen"``) or in the captured frame's pixels (``"frame"``).

Recorders log mouse events in desktop pixels, but often capture one window, not the desktop. In ``"frame"`` space a
mouse position is mapped into the pixel grid of the frame the model sees:

* **Where the frame is on the desktop** (:func:`window_inset`, :class:`CaptureTimeline`). The capture is a window when
  a ``window`` rect of the recording matches the captured size: the rect is the window's outer bounds, which on
  Windows 10/11 include invisible resize borders of ``b`` px on the left, right and bottom (none on top), so a
  window capture is ``2b`` px narrower and ``b`` px shorter than its rect (``b`` = 6 or 8 px in the real
  recordings, at most :data:`MAX_BORDER_PX`; 1 px of slack on the height). The frame's top-left is then
  ``(left + b, top)``. Each event uses the latest matching rect at or before it (the window may move; the
  ``window`` topic logs the *active* window, so other windows' rects are passed over), or the first matching rect
  for events before it. Without a matching rect (no ``window`` topic, a desktop capture) the capture's whole area
  is used, from desktop origin ``(0, 0)``.
* **Scale.** The captured size is the screen message's ``source_shape``; the frame size its ``shape`` (the frame
  stored in the video), or the decoded frame's size when the recorder wrote neither (0.3.x). A scaled capture maps
  ``frame = (desktop - origin) * frame_size / captured_size``, rounded down.

Pointer positions outside the frame are left outside: the encoder clamps and counts them (``coordinates_clamped``),
as in screen space. ``docs/encoders.md`` ("Pointer spaces") lists the limits: a captured window that moves while
another is active, multiple monitors, client-area captures, DPI virtualization.

:class:`FrameSpaceEncoder` applies this to Event Dataset rows: it reads each episode's ``window`` and ``screen``
topics from its ``.mcap`` (once per episode; the Event Dataset need not keep them) and encodes mouse events with
frame pixels normalized by the frame size.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Literal, get_args

import orjson

from owa.data.encoders import EventEncoder, encoder_class
from owa.data.errors import EncodingError, OWADataError, RecordingError
from owa.data.messages import DEFAULT_MEDIA_POLICY, MediaPolicy, ScreenCaptured, WindowInfo

__all__ = [
    "MAX_BORDER_PX",
    "CaptureArea",
    "CaptureTimeline",
    "FrameSpaceEncoder",
    "PointerSpace",
    "check_pointer_space",
    "read_capture_timeline",
    "window_inset",
]

logger = logging.getLogger(__name__)

PointerSpace = Literal["screen", "frame"]
"""``"screen"``: desktop pixels normalized by the encoder's ``screen_size`` (the spec's). ``"frame"``: pixels of the
captured frame, normalized by the frame size."""

MAX_BORDER_PX = 16
"""The widest invisible window border (per side) a window rect may have around the captured frame (about 200 % DPI)."""

_DEFAULT_CACHE_EPISODES = 256


def check_pointer_space(value: object, *, name: str = "pointer_space") -> PointerSpace:
    """``value`` if it is a :data:`PointerSpace`, else ValueError naming the argument."""
    if value not in get_args(PointerSpace):
        raise ValueError(f"Invalid {name} ({value!r}). Supported values are 'screen', 'frame'.")
    return value  # type: ignore[return-value]  # checked just above


def window_inset(rect: Sequence[int], captured_size: tuple[int, int]) -> tuple[int, int] | None:
    """Where a capture of ``captured_size`` (width, height) sits inside window ``rect``, or None if it is not it.

    ``rect`` is ``[left, top, right, bottom]``. The capture matches when the rect is wider by ``2b`` and taller by
    ``b`` (within 1 px) for a border ``0 <= b <=`` :data:`MAX_BORDER_PX`; the inset is then ``(b, 0)``.

    >>> window_inset([360, 307, 1278, 891], (906, 578))  # 918x584 rect, 906x578 capture: 6 px borders
    (6, 0)
    >>> window_inset([0, 0, 1280, 1392], (906, 578)) is None
    True
    """
    left, top, right, bottom = (int(v) for v in rect)
    extra_width = right - left - captured_size[0]
    extra_height = bottom - top - captured_size[1]
    if not (0 <= extra_width <= 2 * MAX_BORDER_PX + 1 and 0 <= extra_height <= MAX_BORDER_PX + 1):
        return None
    border = extra_width // 2
    if abs(extra_height - border) > 1:
        return None
    return border, 0


@dataclasses.dataclass(frozen=True, slots=True)
class CaptureArea:
    """Where one captured frame lies on the desktop.

    Attributes:
        left, top: the desktop pixel shown at the frame's top-left corner.
        captured_width, captured_height: the desktop pixels the frame covers.
        frame_width, frame_height: the frame's own size in pixels (what the model sees).
        is_window: True when placed by a matching ``window`` rect; False for the full capture area from ``(0, 0)``.
    """

    left: int
    top: int
    captured_width: int
    captured_height: int
    frame_width: int
    frame_height: int
    is_window: bool

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.frame_width, self.frame_height

    def to_frame(self, x: int, y: int) -> tuple[int, int]:
        """Desktop pixel ``(x, y)`` in frame pixels (rounded down); outside ``[0, frame size)`` when off the frame."""
        fx = (x - self.left) * self.frame_width // self.captured_width
        fy = (y - self.top) * self.frame_height // self.captured_height
        return fx, fy


@dataclasses.dataclass(frozen=True)
class CaptureTimeline:
    """The :class:`CaptureArea` of a recording over time; build it with :meth:`from_messages`.

    Attributes:
        screen_times_ns, screen_sizes: when the capture size changed, and ``(captured size, frame size)`` from then.
        window_times_ns, window_origins: the matching window rects, in time order: when, and the frame's top-left
            on the desktop, each with the index of the screen size it matched (``window_screens``).
    """

    screen_times_ns: tuple[int, ...]
    screen_sizes: tuple[tuple[tuple[int, int], tuple[int, int]], ...]
    window_times_ns: tuple[int, ...] = ()
    window_origins: tuple[tuple[int, int], ...] = ()
    window_screens: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # The area only changes at these times: area_at is one bisect on the hot path.
        times = sorted(set(self.screen_times_ns) | set(self.window_times_ns))
        object.__setattr__(self, "_change_times_ns", times)
        object.__setattr__(self, "_areas", [self._area_at(t) for t in times])

    @classmethod
    def from_messages(
        cls,
        screens: Iterable[tuple[int, tuple[int, int], tuple[int, int]]],
        windows: Iterable[tuple[int, Sequence[int]]] = (),
    ) -> CaptureTimeline:
        """Build from ``(timestamp_ns, captured_size, frame_size)`` per screen message and
        ``(timestamp_ns, rect)`` per ``window`` message (sizes ``(width, height)``; any order).

        Raises:
            ValueError: no screen messages (a recording without frames has no frame space).
        """
        times: list[int] = []
        sizes: list[tuple[tuple[int, int], tuple[int, int]]] = []
        for timestamp_ns, captured, frame in sorted(screens, key=lambda s: s[0]):
            size = (tuple(captured), tuple(frame))
            if not sizes or sizes[-1] != size:
                times.append(timestamp_ns)
                sizes.append(size)  # type: ignore[arg-type]
        if not sizes:
            raise ValueError("No screen messages: a recording without frames has no frame space")
        timeline = cls(tuple(times), tuple(sizes))
        origins: list[tuple[int, tuple[int, int], int]] = []
        for timestamp_ns, rect in sorted(windows, key=lambda w: w[0]):
            screen = timeline._screen_index(timestamp_ns)
            inset = window_inset(rect, sizes[screen][0])
            if inset is not None:
                origins.append((timestamp_ns, (int(rect[0]) + inset[0], int(rect[1]) + inset[1]), screen))
        return dataclasses.replace(
            timeline,
            window_times_ns=tuple(o[0] for o in origins),
            window_origins=tuple(o[1] for o in origins),
            window_screens=tuple(o[2] for o in origins),
        )

    def _screen_index(self, timestamp_ns: int) -> int:
        return max(bisect.bisect_right(self.screen_times_ns, timestamp_ns) - 1, 0)

    def area_at(self, timestamp_ns: int) -> CaptureArea:
        """The capture area in effect at ``timestamp_ns``: the latest capture size and matching window rect at or
        before it (the first ones for earlier times); the full capture area from ``(0, 0)`` without a matching rect."""
        position = bisect.bisect_right(self._change_times_ns, timestamp_ns)  # type: ignore[attr-defined]
        return self._areas[max(position - 1, 0)]  # type: ignore[attr-defined]

    def _area_at(self, timestamp_ns: int) -> CaptureArea:
        screen = self._screen_index(timestamp_ns)
        (captured_width, captured_height), (frame_width, frame_height) = self.screen_sizes[screen]
        origin = None
        position = bisect.bisect_right(self.window_times_ns, timestamp_ns)
        for i in range(position - 1, -1, -1):  # latest matching rect of this capture size at or before
            if self.window_screens[i] == screen:
                origin = self.window_origins[i]
                break
        if origin is None:
            for i in range(position, len(self.window_times_ns)):  # else the first one after
                if self.window_screens[i] == screen:
                    origin = self.window_origins[i]
                    break
        left, top = origin if origin is not None else (0, 0)
        return CaptureArea(
            left, top, captured_width, captured_height, frame_width, frame_height, is_window=origin is not None
        )


def read_capture_timeline(
    mcap_path: str | os.PathLike[str], *, media_policy: MediaPolicy = DEFAULT_MEDIA_POLICY
) -> CaptureTimeline:
    """The :class:`CaptureTimeline` of a recording, from its ``screen`` and ``window`` topics.

    Screen messages without ``shape`` (recorders before 0.4) take the size of their first decoded frame.

    Raises:
        RecordingError: the file cannot be read, or it has no screen messages.
        MediaError: a frame had to be decoded for its size and could not be.
    """
    from owa.data.recordings.reader import OWAMcapReader

    path = os.fspath(mcap_path)
    screens: list[tuple[int, tuple[int, int], tuple[int, int]]] = []
    windows: list[tuple[int, tuple[int, int, int, int]]] = []
    decoded_size: tuple[int, int] | None = None
    with OWAMcapReader(path) as reader:
        for message in reader.iter_messages(("screen", "window")):
            if message.message_type == WindowInfo.message_type:
                rect = orjson.loads(message.data).get("rect")
                if isinstance(rect, list) and len(rect) == 4 and all(type(v) is int for v in rect):
                    windows.append((message.timestamp_ns, tuple(rect)))  # type: ignore[arg-type]
            elif message.message_type == ScreenCaptured.message_type:
                screen = ScreenCaptured.model_validate_json(message.data)
                frame = screen.shape
                if frame is None:
                    if decoded_size is None:
                        decoded_size = _decoded_size(screen, path, message.timestamp_ns, media_policy)
                    frame = decoded_size
                screens.append((message.timestamp_ns, tuple(screen.source_shape or frame), tuple(frame)))  # type: ignore[arg-type]
    try:
        return CaptureTimeline.from_messages(screens, windows)
    except ValueError as e:
        raise RecordingError(f"Cannot map pointers into frame space: {e}", path=path) from e


def _decoded_size(screen: ScreenCaptured, path: str, timestamp_ns: int, policy: MediaPolicy) -> tuple[int, int]:
    from owa.data.frames import decode_screen

    try:
        array = decode_screen(screen.with_base_dir(os.path.dirname(os.path.abspath(path))), policy=policy)
    except OWADataError as e:
        raise e.with_context(path=path, topic="screen", timestamp_ns=timestamp_ns) from e
    return int(array.shape[1]), int(array.shape[0])


class FrameSpaceEncoder:
    """Encodes Event Dataset rows with mouse positions in frame space (the module docstring has the rule).

    Keyboard and screen events go to ``encoder`` unchanged. A mouse event's ``x``/``y`` become frame pixels of the
    capture area at its time, and an encoder whose ``screen_size`` is the frame size encodes it (encoders without a
    ``screen_size``, such as ``json``, write the frame pixels). Every encoder used shares ``encoder.stats``, so
    pointers off the frame count in ``encoder.stats.coordinates_clamped``.

    Args:
        encoder: the event encoder (its ``screen_size``, if any, is replaced per frame size).
        media_policy: for decoding one frame of recordings whose screen messages carry no ``shape``.
        cache_episodes: how many episodes' timelines to keep.
    """

    def __init__(
        self,
        encoder: EventEncoder,
        *,
        media_policy: MediaPolicy = DEFAULT_MEDIA_POLICY,
        cache_episodes: int = _DEFAULT_CACHE_EPISODES,
    ) -> None:
        self.encoder = encoder
        self.media_policy = media_policy
        self.cache_episodes = cache_episodes
        self._timelines: collections.OrderedDict[str, CaptureTimeline] = collections.OrderedDict()
        self._sized: dict[tuple[int, int], EventEncoder] = {}
        self._scales = any(f.name == "screen_size" for f in dataclasses.fields(encoder.config))

    def timeline(self, episode_path: str | os.PathLike[str]) -> CaptureTimeline:
        """The episode's :class:`CaptureTimeline` (read once, then cached).

        Raises:
            RecordingError, MediaError: as :func:`read_capture_timeline`.
        """
        key = os.fspath(episode_path)
        timeline = self._timelines.get(key)
        if timeline is None:
            timeline = read_capture_timeline(key, media_policy=self.media_policy)
            self._timelines[key] = timeline
            if len(self._timelines) > self.cache_episodes:
                self._timelines.popitem(last=False)
        else:
            self._timelines.move_to_end(key)
        return timeline

    def for_frame_size(self, frame_size: tuple[int, int]) -> EventEncoder:
        """The encoder for frames of ``frame_size`` (width, height): ``encoder`` with that ``screen_size``. Its
        :meth:`~owa.data.encoders.EventEncoder.decode` returns frame pixels."""
        if not self._scales:
            return self.encoder
        size = (int(frame_size[0]), int(frame_size[1]))
        encoder = self._sized.get(size)
        if encoder is None:
            config = dataclasses.replace(self.encoder.config, screen_size=size)  # type: ignore[call-arg]
            encoder = encoder_class(self.encoder.name)(config)
            encoder.stats = self.encoder.stats  # one count for every frame size
            self._sized[size] = encoder
        return encoder

    def encode_serialized(
        self, mcap_message_json: bytes | str, *, episode_path: str | os.PathLike[str]
    ) -> tuple[str, list[ScreenCaptured]]:
        """Like :meth:`EventEncoder.encode_serialized`, with mouse positions in frame space.

        Raises:
            EncodingError: as the encoder's.
            RecordingError, MediaError: the episode's capture timeline cannot be read (names the file).
        """
        try:
            envelope = orjson.loads(mcap_message_json)
            topic, timestamp_ns, payload = envelope["topic"], envelope["timestamp"], envelope["message"]
            fields = orjson.loads(payload) if topic == "mouse" else None
        except (orjson.JSONDecodeError, KeyError, TypeError):
            fields = None  # malformed: the encoder raises its own error
        if not isinstance(fields, dict) or type(fields.get("x")) is not int or type(fields.get("y")) is not int:
            return self.encoder.encode_serialized(mcap_message_json, episode_path=episode_path)
        if type(timestamp_ns) is not int:
            raise EncodingError("McapMessage JSON has a non-integer timestamp", path=os.fspath(episode_path))
        area = self.timeline(episode_path).area_at(timestamp_ns)
        fields["x"], fields["y"] = area.to_frame(fields["x"], fields["y"])
        encoder = self.for_frame_size(area.frame_size)
        # The envelope is parsed already: go straight to the encoder's shared checks and format code.
        return encoder._encode_parts(
            topic, timestamp_ns, envelope.get("message_type"), orjson.dumps(fields), os.fspath(episode_path)
        )

    def __repr__(self) -> str:
        return f"FrameSpaceEncoder({self.encoder!r})"
