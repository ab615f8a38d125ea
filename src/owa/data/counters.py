"""Counters that survive the trip to worker processes: the one mechanism behind every ``*Stats`` class.

A :class:`Counters` subclass declares its counters as ``int`` annotations::

    class DecodeStats(Counters):
        decoded: int
        skipped: int

and gets, besides those attributes, ``errors`` (skipped errors by type name) and ``last_error`` (the message of
the latest one), :meth:`~Counters.add`, :meth:`~Counters.counts`, :meth:`~Counters.since` and
:meth:`~Counters.reset`.

How counts cross processes:

- **Shared** counters (``SHARED = True`` or ``shared=True``) live in shared memory. Processes started while
  they exist, forked or spawned (DataLoader workers; the objects travel in the pickled dataset or transform),
  add to the very numbers the parent reads.
- Every other pickled copy (``datasets.map(num_proc=...)`` workers, ``copy.copy``, saving to disk), and every
  copy of process-local counters, starts from a snapshot of the values and counts on its own. To bring such a
  worker's counts home, the worker returns ``counters.since(before)`` with its results and the parent
  :meth:`~Counters.add`\\ s them (:meth:`owa.data.EpisodeTokenizer.tokenize_event_dataset` does this).

Shared counters are for long-lived objects (a transform's or a dataset's stats); per-call and per-process ones
(``DecodeStats``, ``EncoderStats``) stay local, which costs nothing. Update shared counters with :meth:`add`
(one lock round); ``stats.name += n`` is fine on local ones.
"""

from __future__ import annotations

import ctypes
import inspect
import multiprocessing
import multiprocessing.context
import threading
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Any, ClassVar, overload

from owa.data import errors as _errors

__all__ = ["ERROR_KINDS", "Counters"]

# Error type names errors are counted under: every owa-data error, then "Exception" for anything else. An error
# counts under the first of its classes (its own, then its bases) found here.
ERROR_KINDS: tuple[str, ...] = (
    *(
        name
        for name in _errors.__all__
        if isinstance(getattr(_errors, name), type) and issubclass(getattr(_errors, name), _errors.OWADataError)
    ),
    "Exception",
)

_LAST_ERROR_BYTES = 1000
# Shared memory and its lock are made through the spawn context, so that they may also go to spawned or
# forkserver workers (macOS/Windows DataLoader defaults); forked workers inherit them either way.
_SPAWN = multiprocessing.get_context("spawn")


class _Counter:
    """The descriptor behind each declared counter: slot ``index`` of the values."""

    def __init__(self, index: int) -> None:
        self.index = index

    @overload
    def __get__(self, obj: None, owner: type) -> _Counter: ...
    @overload
    def __get__(self, obj: Counters, owner: type) -> int: ...
    def __get__(self, obj: Counters | None, owner: type) -> int | _Counter:
        return self if obj is None else obj._values[self.index]

    def __set__(self, obj: Counters, value: int) -> None:
        obj._values[self.index] = value


class Counters:
    """Named ``int64`` counters, plus skipped errors by type and the last error message.

    Args:
        shared: keep the values in shared memory (see the module docs); default: the class's ``SHARED``.
        errors: initial error counts by type name (names from :data:`ERROR_KINDS`).
        last_error: initial last error message.
        **counts: initial values of counters.

    Attributes:
        COUNTERS: the counter names, in declaration order (base classes first).
        SHARED: whether instances are shared by default.
        TRACKS_ERRORS: whether :meth:`as_dict` includes ``errors`` and ``last_error``.
    """

    COUNTERS: ClassVar[tuple[str, ...]] = ()
    SHARED: ClassVar[bool] = False
    TRACKS_ERRORS: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = [name for name, annotation in inspect.get_annotations(cls).items() if "ClassVar" not in str(annotation)]
        cls.COUNTERS = (*cls.COUNTERS, *own)
        for index, name in enumerate(cls.COUNTERS):
            setattr(cls, name, _Counter(index))

    def __init__(
        self,
        *,
        shared: bool | None = None,
        errors: Mapping[str, int] | None = None,
        last_error: str | None = None,
        **counts: int,
    ) -> None:
        self._allocate(self.SHARED if shared is None else shared)
        self.add(error_counts=errors, last_error=last_error, **counts)

    def _allocate(self, shared: bool) -> None:
        size = len(self.COUNTERS) + len(ERROR_KINDS)
        self._shared = shared
        self._values: Any
        self._text: Any
        if shared:
            self._values = _SPAWN.RawArray(ctypes.c_int64, size)
            self._text = _SPAWN.RawArray(ctypes.c_char, _LAST_ERROR_BYTES + 1)
            self._lock: Any = _SPAWN.Lock()
        else:
            self._values = [0] * size
            self._text = None  # the message itself (a str), or None
            self._lock = threading.Lock()

    # ---------------------------------------------------------------------------------------------- reading

    @property
    def shared(self) -> bool:
        return self._shared

    @property
    def errors(self) -> MutableMapping[str, int]:
        """Skipped errors by type name: a live view (assigning to it changes the counts)."""
        return _ErrorCounts(self)

    @property
    def last_error(self) -> str | None:
        """The message of the latest counted error (at most 1000 bytes), or None."""
        if not self._shared:
            return self._text
        return self._text.value.decode("utf-8", errors="replace") or None

    @last_error.setter
    def last_error(self, message: str | None) -> None:
        data = (message or "").encode("utf-8")[:_LAST_ERROR_BYTES]
        if self._shared:
            self._text.value = data
        else:
            self._text = data.decode("utf-8", errors="ignore") or None

    def counts(self) -> dict[str, int]:
        """The counters by name (without the errors)."""
        return dict(zip(self.COUNTERS, self._values[: len(self.COUNTERS)], strict=True))

    def since(self, before: Mapping[str, int]) -> dict[str, int]:
        """What each counter gained since ``before`` (an earlier :meth:`counts`)."""
        return {name: value - before.get(name, 0) for name, value in self.counts().items()}

    def as_dict(self) -> dict[str, Any]:
        """The counters, plus ``errors`` (a dict) and ``last_error`` when the class tracks errors."""
        if not self.TRACKS_ERRORS:
            return self.counts()
        return {**self.counts(), "errors": dict(self.errors), "last_error": self.last_error}

    # ---------------------------------------------------------------------------------------------- writing

    def add(
        self,
        errors: Sequence[BaseException] = (),
        *,
        error_counts: Mapping[str, int] | None = None,
        last_error: str | None = None,
        **counts: int,
    ) -> None:
        """Add to the counters in one lock round (call it once per batch).

        Args:
            errors: exceptions to count by type (the last one becomes :attr:`last_error`).
            error_counts: error counts by type name, e.g. another instance's :attr:`errors`.
            last_error: a message for :attr:`last_error` (when ``errors`` is empty).
            **counts: amounts to add, by counter name.

        Raises:
            KeyError: an unknown counter or error type name.
        """
        with self._lock:
            values = self._values
            for name, value in counts.items():
                if value:
                    values[self._index(name)] += value
            for error in errors:
                values[_error_slot(self, _kind(type(error)))] += 1
            for name, count in (error_counts or {}).items():
                values[_error_slot(self, name)] += count
            if errors:
                last_error = str(errors[-1])
            if last_error:
                self.last_error = last_error

    def reset(self) -> None:
        """Set every counter and error count to 0 and forget the last error."""
        with self._lock:
            self._values[:] = [0] * len(self._values)
            self.last_error = None

    def _index(self, name: str) -> int:
        try:
            return self.COUNTERS.index(name)
        except ValueError:
            raise KeyError(f"{type(self).__name__} has no counter {name!r} (counters: {self.COUNTERS})") from None

    # ---------------------------------------------------------------------------------------------- pickling

    def __getstate__(self) -> dict[str, Any]:
        if self._shared and multiprocessing.context.get_spawning_popen() is not None:
            return {"shared": (self._values, self._text, self._lock)}  # a worker being started: keep sharing
        return {"is_shared": self._shared, "values": list(self._values[:]), "last_error": self.last_error}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "shared" in state:
            self._shared = True
            self._values, self._text, self._lock = state["shared"]
            return
        self._allocate(state["is_shared"])
        self._values[:] = state["values"]
        self.last_error = state["last_error"]

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Counters)
        return self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.as_dict()})"


def _kind(error_type: type[BaseException]) -> str:
    for cls in error_type.__mro__:
        if cls.__name__ in ERROR_KINDS:
            return cls.__name__
    return ERROR_KINDS[-1]


def _error_slot(counters: Counters, name: str) -> int:
    try:
        return len(counters.COUNTERS) + ERROR_KINDS.index(name)
    except ValueError:
        raise KeyError(f"Unknown error type {name!r}; errors are counted under {ERROR_KINDS}") from None


class _ErrorCounts(MutableMapping[str, int]):
    """A live view of a :class:`Counters`' error counts; only nonzero counts are listed."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters

    def _nonzero(self) -> dict[str, int]:
        offset = len(self._counters.COUNTERS)
        counts = self._counters._values[offset:]
        return {name: count for name, count in zip(ERROR_KINDS, counts, strict=True) if count}

    def __getitem__(self, name: str) -> int:
        return self._nonzero()[name]

    def __setitem__(self, name: str, count: int) -> None:
        self._counters._values[_error_slot(self._counters, name)] = count

    def __delitem__(self, name: str) -> None:
        if name not in self._nonzero():
            raise KeyError(name)
        self[name] = 0

    def __iter__(self) -> Iterator[str]:
        return iter(self._nonzero())

    def __len__(self) -> int:
        return len(self._nonzero())

    def __repr__(self) -> str:
        return repr(self._nonzero())
