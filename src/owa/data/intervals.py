"""Which stretches of a recording stage 1 keeps: span sets (:class:`Spans`) and the selectors that choose them.

Real recordings are full of idle time. A selector looks at a recording's :class:`Timeline` (its screen frames,
its inputs, its key presses) and returns the :class:`Spans` to keep; stage 1 (:mod:`owa.data.events`) keeps the
events inside them and numbers the spans in the ``interval`` column. ``docs/intervals.md`` has worked examples.

The rules, in one place:

* **Closed spans.** A span ``[start_ns, end_ns]`` holds both ends: the event at a span's end is kept. Times are
  integer nanoseconds, so ``A - B`` leaves ``[..., b_start - 1]`` and ``[b_end + 1, ...]``, and spans that touch
  (``end + 1 == next start``) are one span.
* **all** (:class:`All`): the whole recording, first to last event.
* **inactivity** (:class:`Inactivity`): where consecutive screen frames are at most ``screen_gap_s`` apart *and*
  consecutive inputs (keyboard, mouse and raw mouse events) at most ``input_gap_s`` apart. The idle stretch
  between two inputs further apart is dropped whole: a span ends at its last input and the next starts at the
  next input. Spans lie between the first and last screen frame; a run of one frame or one input (no duration) is
  no span.
* **hotkey** (:class:`Hotkey`): a press of the toggle key (default F9) starts a span, the next press ends it (a
  span still open at the end runs to the recording's last event). Auto-repeat presses (no release between) do not
  toggle. The toggle key's own events are not data: they are dropped everywhere.
* **file** (:class:`SpanFile`): a user's list of ``[start, end]`` spans per recording, in seconds after the
  recording's first event, from JSON or CSV.
* **Composition.** Selectors combine with ``&`` (both), ``|`` (either) and ``-`` (the left but not the right).
"""

from __future__ import annotations

import abc
import csv
import dataclasses
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from owa.data.errors import InvalidInputError

__all__ = [
    "DEFAULT_HOTKEY_VK",
    "All",
    "Hotkey",
    "Inactivity",
    "IntervalSelector",
    "SpanFile",
    "Spans",
    "Timeline",
    "parse_hotkey",
    "parse_interval",
]

DEFAULT_HOTKEY_VK = 0x78  # F9
_NS_PER_S = 1_000_000_000


# --------------------------------------------------------------------------------------------------
# Span sets
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, init=False)
class Spans:
    """A set of integer nanoseconds as sorted, disjoint, closed spans ``[start_ns, end_ns]``.

    Built from any pairs (overlapping, touching or unsorted ones are merged). ``&``, ``|`` and ``-`` are the set
    operations on the nanoseconds the spans hold.

    >>> (Spans([(0, 10)]) - Spans([(3, 4)])).pairs
    ((0, 2), (5, 10))
    """

    pairs: tuple[tuple[int, int], ...]

    def __init__(self, pairs: Iterable[tuple[int, int]] = ()) -> None:
        merged: list[list[int]] = []
        for start, end in sorted((int(s), int(e)) for s, e in pairs):
            if start > end:
                raise ValueError(f"Invalid span [{start}, {end}]: its start is after its end")
            if merged and start <= merged[-1][1] + 1:  # overlapping or touching integers: one span
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        object.__setattr__(self, "pairs", tuple((s, e) for s, e in merged))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def __repr__(self) -> str:
        return f"Spans({list(self.pairs)!r})"

    def __or__(self, other: Spans) -> Spans:
        return Spans(self.pairs + other.pairs)

    def __and__(self, other: Spans) -> Spans:
        out: list[tuple[int, int]] = []
        i = j = 0
        a, b = self.pairs, other.pairs
        while i < len(a) and j < len(b):
            start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
            if start <= end:
                out.append((start, end))
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
        return Spans(out)

    def __sub__(self, other: Spans) -> Spans:
        out: list[tuple[int, int]] = []
        cut = other.pairs
        j = 0
        for start, end in self.pairs:
            while j < len(cut) and cut[j][1] < start:
                j += 1
            k = j
            while k < len(cut) and cut[k][0] <= end:
                if cut[k][0] > start:
                    out.append((start, cut[k][0] - 1))
                start = max(start, cut[k][1] + 1)
                k += 1
            if start <= end:
                out.append((start, end))
        return Spans(out)

    @property
    def duration_ns(self) -> int:
        """The time the spans cover: the sum of ``end - start`` (a span of one instant lasts 0 ns)."""
        return sum(end - start for start, end in self.pairs)

    def longer_than_zero(self) -> Spans:
        """The spans that last longer than one instant."""
        return Spans((s, e) for s, e in self.pairs if e > s)

    def index_of(self, times_ns: np.ndarray) -> np.ndarray:
        """The index of the span holding each time (ends included), or -1 for times outside every span."""
        times_ns = np.asarray(times_ns, dtype=np.int64)
        if not self.pairs:
            return np.full(len(times_ns), -1, dtype=np.int64)
        starts = np.fromiter((s for s, _ in self.pairs), dtype=np.int64, count=len(self.pairs))
        ends = np.fromiter((e for _, e in self.pairs), dtype=np.int64, count=len(self.pairs))
        index = np.searchsorted(starts, times_ns, side="right") - 1
        inside = (index >= 0) & (times_ns <= ends[np.maximum(index, 0)])
        return np.where(inside, index, -1)


# --------------------------------------------------------------------------------------------------
# What a selector sees
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Timeline:
    """A recording's events as a selector sees them: every valid event read, before any thinning.

    Attributes:
        path: the recording as read (a path or URL).
        start_ns, end_ns: its first and last event (any topic read).
        screen_ns: times of its screen frames, sorted.
        input_ns: times of its inputs (keyboard, mouse and raw mouse events), sorted.
        key_ns, key_vk, key_press: its keyboard events in time order: time, virtual-key code, and True for a
            press (False for a release).
    """

    path: str
    start_ns: int
    end_ns: int
    screen_ns: np.ndarray
    input_ns: np.ndarray
    key_ns: np.ndarray
    key_vk: np.ndarray
    key_press: np.ndarray

    @property
    def whole(self) -> Spans:
        """The whole recording, ``[start_ns, end_ns]``."""
        return Spans([(self.start_ns, self.end_ns)])


# --------------------------------------------------------------------------------------------------
# Selectors
# --------------------------------------------------------------------------------------------------


class IntervalSelector(abc.ABC):
    """Chooses the spans of a recording to keep. Combine with ``&``, ``|`` and ``-``."""

    @abc.abstractmethod
    def select(self, timeline: Timeline) -> Spans:
        """The spans of ``timeline`` to keep (within ``[timeline.start_ns, timeline.end_ns]``)."""

    def hidden_keys(self) -> frozenset[int]:
        """Virtual-key codes whose events are controls, not data: stage 1 drops them everywhere."""
        return frozenset()

    @abc.abstractmethod
    def to_json(self) -> Any:
        """A JSON-ready description (what ``conversion_report.json`` saves under ``config.interval``)."""

    def __and__(self, other: IntervalSelector) -> IntervalSelector:
        return _Combined("&", self, _selector(other))

    def __or__(self, other: IntervalSelector) -> IntervalSelector:
        return _Combined("|", self, _selector(other))

    def __sub__(self, other: IntervalSelector) -> IntervalSelector:
        return _Combined("-", self, _selector(other))


def _selector(value: Any) -> IntervalSelector:
    if not isinstance(value, IntervalSelector):
        raise TypeError(f"Invalid selector ({type(value).__name__}). Combine IntervalSelector objects only.")
    return value


@dataclasses.dataclass(frozen=True)
class All(IntervalSelector):
    """The whole recording (the default): stage 1 then adds no ``interval`` column."""

    def select(self, timeline: Timeline) -> Spans:
        return timeline.whole

    def to_json(self) -> Any:
        return "all"


@dataclasses.dataclass(frozen=True)
class Inactivity(IntervalSelector):
    """Where the screen and the inputs are both active (the module docstring has the rule).

    Args:
        screen_gap_s: consecutive screen frames at most this far apart are one activity run (default 1.0).
        input_gap_s: consecutive inputs at most this far apart are one activity run (default 5.0).
    """

    screen_gap_s: float = 1.0
    input_gap_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("screen_gap_s", "input_gap_s"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (value >= 0 and math.isfinite(value))
            ):
                raise ValueError(f"Invalid {name} ({value!r}). Use a finite number of seconds >= 0, e.g. 1.0.")

    def select(self, timeline: Timeline) -> Spans:
        screen = _runs(timeline.screen_ns, round(self.screen_gap_s * _NS_PER_S))
        inputs = _runs(timeline.input_ns, round(self.input_gap_s * _NS_PER_S))
        return (screen & inputs).longer_than_zero()

    def to_json(self) -> Any:
        return {"inactivity": {"screen_gap_s": self.screen_gap_s, "input_gap_s": self.input_gap_s}}


def _runs(times_ns: np.ndarray, gap_ns: int) -> Spans:
    """Runs of sorted times whose neighbours are at most ``gap_ns`` apart, as spans; single-time runs are left out."""
    times_ns = np.asarray(times_ns, dtype=np.int64)
    if len(times_ns) < 2:
        return Spans()
    breaks = np.flatnonzero(np.diff(times_ns) > gap_ns)
    starts = np.concatenate(([times_ns[0]], times_ns[breaks + 1]))
    ends = np.concatenate((times_ns[breaks], [times_ns[-1]]))
    return Spans((int(s), int(e)) for s, e in zip(starts, ends, strict=True) if e > s)


@dataclasses.dataclass(frozen=True)
class Hotkey(IntervalSelector):
    """Spans between presses of a toggle key; its own events are dropped (see :meth:`hidden_keys`).

    Args:
        vk: the toggle key's virtual-key code (default F9, ``0x78``); :func:`parse_hotkey` reads names.
    """

    vk: int = DEFAULT_HOTKEY_VK

    def __post_init__(self) -> None:
        if isinstance(self.vk, bool) or not isinstance(self.vk, int) or not 0 < self.vk < 256:
            raise ValueError(f"Invalid hotkey vk ({self.vk!r}). Use a virtual-key code in 1..255, e.g. 0x78 (F9).")

    def select(self, timeline: Timeline) -> Spans:
        pairs: list[tuple[int, int]] = []
        start: int | None = None
        down = False
        mine = np.flatnonzero(timeline.key_vk == self.vk)
        for t, press in zip(timeline.key_ns[mine].tolist(), timeline.key_press[mine].tolist(), strict=True):
            if press and not down:  # a fresh press toggles; auto-repeat presses do not
                if start is None:
                    start = t
                else:
                    pairs.append((start, t))
                    start = None
            down = press
        if start is not None:
            pairs.append((start, max(start, timeline.end_ns)))
        return Spans(pairs)

    def hidden_keys(self) -> frozenset[int]:
        return frozenset({self.vk})

    def to_json(self) -> Any:
        return {"hotkey": {"vk": self.vk}}


@dataclasses.dataclass(frozen=True, init=False, eq=False)
class SpanFile(IntervalSelector):
    """A user's spans per recording, read (and checked) once from a JSON or CSV file.

    Times are seconds after the recording's first event (:attr:`Timeline.start_ns`), ends included.

    * JSON: ``{"recording": [[start_s, end_s], ...], ...}``
    * CSV: a header ``path,start_s,end_s``, then one span per line.

    A recording is named by its path: absolute, or a trailing part of it (``alice/day1.mcap``, ``day1.mcap``); the
    ``.mcap`` suffix may be left out. A recording no name matches keeps nothing; one that two names match is an
    error (:class:`~owa.data.errors.InvalidInputError` naming both).

    Raises:
        InvalidInputError: the file is missing, of another kind, or malformed (names the file and line or entry).
    """

    path: Path
    spans_s: Mapping[str, tuple[tuple[float, float], ...]]

    def __init__(self, path: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "path", Path(path))
        object.__setattr__(self, "spans_s", _read_span_file(Path(path)))

    def select(self, timeline: Timeline) -> Spans:
        target = _comparable(timeline.path)
        keys = [key for key in self.spans_s if _names(key, target)]
        if len(keys) > 1:
            raise InvalidInputError(
                f"Several entries of the span file name this recording: {', '.join(map(repr, keys))}; keep one",
                path=timeline.path,
                span_file=str(self.path),
            )
        if not keys:
            return Spans()
        start = timeline.start_ns
        return (
            Spans((start + round(s * _NS_PER_S), start + round(e * _NS_PER_S)) for s, e in self.spans_s[keys[0]])
            & timeline.whole
        )

    def to_json(self) -> Any:
        return {"file": str(self.path)}


def _comparable(path: str) -> str:
    """A recording path as span-file names are compared with it: absolute, ``/``-separated, without ``.mcap``."""
    if "://" not in path:
        path = os.path.abspath(path)
    return path.replace(os.sep, "/").removesuffix(".mcap")


def _names(key: str, target: str) -> bool:
    name = key.replace(os.sep, "/").removesuffix(".mcap")
    if "://" not in name and os.path.isabs(name):
        return _comparable(name) == target
    return target == name or target.endswith("/" + name.removeprefix("./"))


def _read_span_file(path: Path) -> dict[str, tuple[tuple[float, float], ...]]:
    suffix = path.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise InvalidInputError(
            f"Invalid span file suffix ({path.suffix or 'none'!r}). Supported: .json, .csv", path=path
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"Cannot read span file: {e}", path=path) from e
    pairs: dict[str, list[tuple[float, float]]] = {}
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidInputError(f"Span file is not JSON: {e.msg}", path=path, line=e.lineno) from e
        if not isinstance(data, dict):
            raise InvalidInputError(
                'Span file must hold a JSON object: {"recording": [[start_s, end_s], ...]}', path=path
            )
        for key, spans in data.items():
            if not isinstance(spans, list):
                raise InvalidInputError(f"Entry {key!r} must be a list of [start_s, end_s] pairs", path=path)
            for i, span in enumerate(spans):
                where = {"entry": key, "item": i}
                if not isinstance(span, list) or len(span) != 2:
                    raise InvalidInputError(f"Invalid span {span!r}. Use [start_s, end_s]", path=path, **where)
                pairs.setdefault(key, []).append(_checked_span(span[0], span[1], path, where))
    else:
        rows = list(csv.reader(text.splitlines()))
        header = [c.strip() for c in rows[0]] if rows else []
        if header != ["path", "start_s", "end_s"]:
            raise InvalidInputError(
                f"Invalid span file header ({','.join(header) or 'empty'!r}). "
                "The first line must be path,start_s,end_s",
                path=path,
                line=1,
            )
        for number, row in enumerate(rows[1:], start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 3:
                raise InvalidInputError(
                    f"Invalid line ({','.join(row)!r}). Use path,start_s,end_s", path=path, line=number
                )
            key, start, end = (c.strip() for c in row)
            where = {"line": number}
            if not key:
                raise InvalidInputError("Empty recording path", path=path, **where)
            pairs.setdefault(key, []).append(
                _checked_span(_number(start, path, where), _number(end, path, where), path, where)
            )
    return {key: tuple(spans) for key, spans in pairs.items()}


def _number(text: str, path: Path, where: dict[str, Any]) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidInputError(f"Invalid time ({text!r}). Use seconds, e.g. 12.5", path=path, **where) from None


def _checked_span(start: Any, end: Any, path: Path, where: dict[str, Any]) -> tuple[float, float]:
    for value in (start, end):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidInputError(f"Invalid time ({value!r}). Use a finite number of seconds", path=path, **where)
    if start > end:
        raise InvalidInputError(f"Invalid span [{start}, {end}]: its start is after its end", path=path, **where)
    return float(start), float(end)


@dataclasses.dataclass(frozen=True)
class _Combined(IntervalSelector):
    """Two selectors combined: ``&`` both, ``|`` either, ``-`` the left but not the right."""

    op: str
    left: IntervalSelector
    right: IntervalSelector

    def select(self, timeline: Timeline) -> Spans:
        left, right = self.left.select(timeline), self.right.select(timeline)
        return left & right if self.op == "&" else left | right if self.op == "|" else left - right

    def hidden_keys(self) -> frozenset[int]:
        return self.left.hidden_keys() | self.right.hidden_keys()

    def to_json(self) -> Any:
        return {self.op: [self.left.to_json(), self.right.to_json()]}


# --------------------------------------------------------------------------------------------------
# Parsing (the CLI)
# --------------------------------------------------------------------------------------------------


def parse_hotkey(value: str | int) -> int:
    """A virtual-key code from ``F9``, ``0x78``, ``120`` or a key name (``"scroll lock"``, ``SCROLL_LOCK``).

    Raises:
        ValueError: no key of that name or code.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return Hotkey(value).vk
    text = str(value).strip()
    try:
        return Hotkey(int(text, 0)).vk
    except ValueError:
        pass
    from owa.data.encoders.vk_names import VK_NAMES, vk_label

    wanted = text.upper().replace(" ", "_")
    for vk, name in VK_NAMES.items():
        if wanted in (name.upper().replace(" ", "_"), vk_label(vk)):
            return vk
    raise ValueError(f"Invalid hotkey ({value!r}). Use a key name such as F9 or a virtual-key code such as 0x78.")


def parse_interval(
    text: str, *, screen_gap_s: float = 1.0, input_gap_s: float = 5.0, hotkey: str | int = DEFAULT_HOTKEY_VK
) -> IntervalSelector:
    """The selector a ``--interval`` value names: ``all``, ``inactivity``, ``hotkey`` or ``file:PATH``.

    The thresholds and the hotkey apply to the selector that uses them. Composition is Python-only.

    Raises:
        ValueError: an unknown name or a bad threshold or hotkey.
        InvalidInputError: ``file:PATH`` names a missing or malformed span file.
    """
    name, _, argument = text.strip().partition(":")
    if name == "all" and not argument:
        return All()
    if name == "inactivity" and not argument:
        return Inactivity(screen_gap_s=screen_gap_s, input_gap_s=input_gap_s)
    if name == "hotkey" and not argument:
        return Hotkey(parse_hotkey(hotkey))
    if name == "file" and argument:
        return SpanFile(argument)
    raise ValueError(f"Invalid --interval ({text!r}). Supported values are all, inactivity, hotkey, file:PATH.")
