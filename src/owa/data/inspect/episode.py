"""One episode's events laid out for viewing: key spans, clicks, scrolls, the pointer path, screens and windows.

An episode comes from a recording (``.mcap``, every topic) or from a dataset (an Event Dataset's rows of one
``episode_path``, or a Binned Dataset's states and actions); either way it becomes one :class:`EpisodeTimeline`.
A dataset keeps only some topics, so the ``window`` messages (where a window capture sits on the desktop) are read
from the episode's recording when it is still there.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from owa.data.errors import InvalidInputError, MessageValidationError, OWADataError
from owa.data.messages import McapMessage, ScreenCaptured

__all__ = ["EpisodeTimeline", "KeySpan", "load_dataset_episode", "load_recording"]

logger = logging.getLogger(__name__)

_TOPICS = ("keyboard", "mouse", "mouse/state", "screen", "window")


@dataclasses.dataclass(frozen=True, slots=True)
class KeySpan:
    """Key ``vk`` held over ``[press_ns, release_ns)``; ``release_ns`` None: still held at the episode's end.
    ``press_ns`` is the episode's start for a key released without a press (held before the recording began)."""

    vk: int
    press_ns: int
    release_ns: int | None


@dataclasses.dataclass(eq=False)
class EpisodeTimeline:
    """An episode's events, times in ns since the epoch, each list in time order.

    Attributes:
        name: the recording's path (or the dataset's ``episode_path``).
        start_ns, end_ns: the first and last event's times.
        keys: key presses to releases.
        clicks: ``(timestamp_ns, button, pressed, x, y)`` of mouse click events (desktop pixels).
        scrolls: ``(timestamp_ns, dx, dy, x, y)``.
        pointer_ns, pointer_x, pointer_y: the pointer's desktop position at each ``mouse`` event and
            ``mouse/state`` sample (the state, about once a second, places the pointer before the first move).
        screens: ``(timestamp_ns, ScreenCaptured)``, media resolving against the recording's folder.
        windows: ``(timestamp_ns, rect)`` of the ``window`` topic (``[left, top, right, bottom]``).
        log: ``(timestamp_ns, topic, text)`` of every event, for event logs.
    """

    name: str
    start_ns: int
    end_ns: int
    keys: list[KeySpan]
    clicks: list[tuple[int, str, bool, int, int]]
    scrolls: list[tuple[int, int, int, int, int]]
    pointer_ns: np.ndarray
    pointer_x: np.ndarray
    pointer_y: np.ndarray
    screens: list[tuple[int, ScreenCaptured]]
    windows: list[tuple[int, list[int]]]
    log: list[tuple[int, str, str]]

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def pointer_at(self, timestamp_ns: int) -> tuple[int, int] | None:
        """The pointer's desktop position at ``timestamp_ns``: the latest mouse event at or before it, or None."""
        i = int(np.searchsorted(self.pointer_ns, timestamp_ns, side="right")) - 1
        return None if i < 0 else (int(self.pointer_x[i]), int(self.pointer_y[i]))

    def screen_at(self, timestamp_ns: int) -> int | None:
        """Index into :attr:`screens` of the screen shown at ``timestamp_ns``: the latest at or before it."""
        times = [t for t, _ in self.screens]
        i = int(np.searchsorted(times, timestamp_ns, side="right")) - 1
        return None if i < 0 else i


def load_recording(path: str | os.PathLike[str]) -> EpisodeTimeline:
    """Read a recording's keyboard, mouse, screen and window messages (salvaging a damaged file).

    Raises:
        RecordingError: the file cannot be opened or is not an MCAP file.
        InvalidInputError: it has no events on those topics.
    """
    from owa.data.recordings.reader import OWAMcapReader

    source = Path(os.path.abspath(path))
    with OWAMcapReader(source, on_damage="salvage") as reader:
        rows = [(m.topic, m.timestamp_ns, m.message_type, m.data) for m in reader.iter_messages(_TOPICS)]
    return _build(str(source), source, rows)


def load_dataset_episode(
    dataset_path: str | os.PathLike[str],
    episode: str | None,
    *,
    episode_root: str | os.PathLike[str] | None = None,
) -> EpisodeTimeline:
    """One episode of an Event or Binned Dataset (every split is searched).

    Args:
        dataset_path: the dataset folder.
        episode: the ``episode_path`` as stored, or a path naming the same file; None when the dataset holds one
            episode.
        episode_root: the folder relative ``episode_path`` values resolve against (default: the current folder).

    Raises:
        InvalidInputError: not an Event or Binned Dataset, or no such episode (the message lists some).
    """
    from owa.data.episode_paths import resolve_episode_path
    from owa.data.inspect.detect import detect_dataset_kind
    from owa.data.inspect.saved import read_saved_dataset

    dataset = read_saved_dataset(dataset_path)
    kind = detect_dataset_kind(dataset)
    if kind not in ("event", "binned"):
        raise InvalidInputError(
            f"Cannot view a {kind} dataset: its rows hold tokens, not events. View the Event Dataset it was made from",
            path=dataset.path,
        )
    stored = pa.concat_arrays([pc.unique(t.column("episode_path")) for t in dataset.splits.values()])
    names = list(dict.fromkeys(stored.to_pylist()))
    chosen = _choose_episode(names, episode, episode_root, dataset.path)
    recording = Path(resolve_episode_path(chosen, episode_root))
    messages: list[bytes] = []
    for table in dataset.splits.values():
        rows = table.filter(pc.equal(table.column("episode_path"), chosen))
        if kind == "event":
            messages += rows.column("mcap_message").to_pylist()
        else:
            for column in ("state", "actions"):
                messages += pc.list_flatten(rows.column(column).combine_chunks()).to_pylist()
    parsed = []
    seen: set[bytes] = set()
    for blob in messages:
        if blob in seen:  # a Binned Dataset repeats a screen as the state of every bin until the next
            continue
        seen.add(blob)
        item = orjson.loads(blob)
        parsed.append((item["topic"], item["timestamp"], item["message_type"], item["message"].encode()))
    if not any(topic == "window" for topic, *_ in parsed) and recording.is_file():
        parsed += _windows_of(recording)
    parsed.sort(key=lambda row: row[1])
    return _build(chosen, recording, parsed)


def _choose_episode(
    names: list[str], episode: str | None, episode_root: str | os.PathLike[str] | None, dataset: Path
) -> str:
    from owa.data.episode_paths import resolve_episode_path

    if episode is None:
        if len(names) == 1:
            return names[0]
        raise InvalidInputError(
            f"The dataset holds {len(names)} episodes; name one with --episode, e.g. {_examples(names)}", path=dataset
        )
    if episode in names:
        return episode
    wanted = os.path.abspath(episode)
    for name in names:
        if resolve_episode_path(name, episode_root) == wanted:
            return name
    raise InvalidInputError(f"No episode {episode!r} in the dataset; it holds {_examples(names)}", path=dataset)


def _examples(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _windows_of(recording: Path) -> list[tuple[str, int, str, bytes]]:
    from owa.data.recordings.reader import OWAMcapReader

    try:
        with OWAMcapReader(recording, on_damage="salvage") as reader:
            return [(m.topic, m.timestamp_ns, m.message_type, m.data) for m in reader.iter_messages("window")]
    except OWADataError as e:  # the view still works, with the pointer placed on the whole desktop
        logger.warning("Window messages of %s not read: %s", recording, e)
        return []


def _build(name: str, source: Path, rows: Iterable[tuple[str, int, str, bytes]]) -> EpisodeTimeline:
    keys: list[KeySpan] = []
    held: dict[int, int] = {}
    released_early: list[tuple[int, int]] = []
    clicks: list[tuple[int, str, bool, int, int]] = []
    scrolls: list[tuple[int, int, int, int, int]] = []
    pointer: list[tuple[int, int, int]] = []
    states: list[tuple[int, int, int]] = []
    screens: list[tuple[int, ScreenCaptured]] = []
    windows: list[tuple[int, list[int]]] = []
    log: list[tuple[int, str, str]] = []
    times: list[int] = []
    for topic, t, message_type, data in rows:
        times.append(t)
        try:
            payload: Any = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.append((t, topic, "(unreadable payload)"))
            continue
        if not isinstance(payload, dict):
            continue
        log.append((t, topic, _describe(topic, payload)))
        if topic == "keyboard" and isinstance(payload.get("vk"), int):
            vk = payload["vk"]
            if payload.get("event_type") == "press":
                held.setdefault(vk, t)  # auto-repeat presses extend the span opened by the first
            elif payload.get("event_type") == "release":
                if vk in held:
                    keys.append(KeySpan(vk, held.pop(vk), t))
                else:
                    released_early.append((vk, t))
        elif topic == "mouse" and _has_xy(payload):
            x, y = int(payload["x"]), int(payload["y"])
            pointer.append((t, x, y))
            if payload.get("event_type") == "click":
                clicks.append((t, str(payload.get("button") or "unknown"), bool(payload.get("pressed")), x, y))
            elif payload.get("event_type") == "scroll":
                scrolls.append((t, int(payload.get("dx") or 0), int(payload.get("dy") or 0), x, y))
        elif topic == "mouse/state" and _has_xy(payload):
            states.append((t, int(payload["x"]), int(payload["y"])))
        elif topic == "screen":
            try:
                screen = McapMessage(topic=topic, timestamp=t, message=data, message_type=message_type)
                decoded = screen.with_source(source).decoded
            except MessageValidationError as e:
                logger.warning("Screen message at %d ns of %s skipped: %s", t, name, e)
                continue
            if isinstance(decoded, ScreenCaptured):
                screens.append((t, decoded))
        elif topic == "window" and isinstance(payload.get("rect"), list) and len(payload["rect"]) == 4:
            windows.append((t, [int(v) for v in payload["rect"]]))
    if not times:
        raise InvalidInputError(f"No events on the topics {', '.join(_TOPICS)}", path=name)
    start_ns, end_ns = min(times), max(times)
    keys += [KeySpan(vk, start_ns, t) for vk, t in released_early]
    keys += [KeySpan(vk, t, None) for vk, t in held.items()]
    keys.sort(key=lambda span: (span.press_ns, span.vk))
    path = sorted(pointer + states, key=lambda p: p[0])
    return EpisodeTimeline(
        name=name,
        start_ns=start_ns,
        end_ns=end_ns,
        keys=keys,
        clicks=clicks,
        scrolls=scrolls,
        pointer_ns=np.array([p[0] for p in path], dtype=np.int64),
        pointer_x=np.array([p[1] for p in path], dtype=np.int64),
        pointer_y=np.array([p[2] for p in path], dtype=np.int64),
        screens=screens,
        windows=windows,
        log=log,
    )


def _has_xy(payload: dict[str, Any]) -> bool:
    return all(isinstance(payload.get(k), int | float) and not isinstance(payload.get(k), bool) for k in ("x", "y"))


def _describe(topic: str, payload: dict[str, Any]) -> str:
    from owa.data.encoders.vk_names import vk_label

    if topic == "keyboard":
        vk = payload.get("vk")
        name = vk_label(vk) if isinstance(vk, int) else "?"
        return f"{payload.get('event_type')} {name} (vk {vk})"
    if topic == "mouse":
        kind = payload.get("event_type")
        where = f"({payload.get('x')}, {payload.get('y')})"
        if kind == "click":
            return f"{payload.get('button')} {'down' if payload.get('pressed') else 'up'} at {where}"
        if kind == "scroll":
            return f"scroll dx={payload.get('dx')} dy={payload.get('dy')} at {where}"
        return f"{kind} {where}"
    if topic == "screen":
        media = payload.get("media_ref") or {}
        return f"frame {media.get('uri', '')} @ {(media.get('pts_ns') or 0) / 1e9:.3f}s"
    if topic == "mouse/state":
        return f"at ({payload.get('x')}, {payload.get('y')}), buttons {sorted(payload.get('buttons') or [])}"
    if topic == "keyboard/state":
        return f"held {[vk_label(vk) for vk in sorted(payload.get('buttons') or []) if isinstance(vk, int)]}"
    if topic == "window":
        return f"{payload.get('title', '')} {payload.get('rect')}"
    return orjson.dumps(payload).decode()[:120]
