"""Decoder lifetime: a bounded, thread-safe, fork-safe LRU of open video decoders.

Opening a video is expensive (the container is parsed and its packet index built), so each process
keeps a few decoders open between calls. The cache owns them: a decoder pushed out of the LRU is
closed, and :meth:`DecoderCache.close_all` closes the rest.

Fork safety. A decoder opened in a parent process holds FFmpeg state and, with frame threading,
worker threads that do not exist in a forked child (a DataLoader worker). The child must never use,
close or even free such a decoder: freeing a codec context joins threads that are not there. So
after a fork the cache forgets the parent's decoders (keeping them referenced, untouched, for the
life of the child) and the child opens its own. The change is detected twice over: by an
``os.register_at_fork`` hook and by comparing the process id on every access.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

__all__ = ["BoundedLRU", "Closeable", "DecoderCache"]

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Closeable(Protocol):
    def close(self) -> None: ...


D = TypeVar("D", bound=Closeable)


class BoundedLRU(Generic[K, V]):
    """A small thread-safe LRU mapping for plain data (e.g. packet indexes). Evicted values are dropped.

    Unlike :class:`DecoderCache` its values hold no OS resources, so they stay valid after a fork.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"Invalid max_entries ({max_entries}). It must be at least 1.")
        self.max_entries = max_entries
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        _register_for_fork(self)

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _after_fork_in_child(self) -> None:
        # Another thread may have held the lock at fork time; in the child it would stay locked forever.
        self._lock = threading.Lock()


class DecoderCache(Generic[K, D]):
    """A bounded LRU of open decoders, one per key (usually the video's path), owned by one process.

    Args:
        max_open: how many decoders may be open at once; opening one more closes the least recently used.

    Decoders must have ``close()``; it is called on eviction and by :meth:`close_all`, and must wait for
    a decode in progress on another thread (the backends hold their own lock while decoding).
    """

    def __init__(self, max_open: int = 8) -> None:
        if max_open < 1:
            raise ValueError(f"Invalid max_open ({max_open}). It must be at least 1.")
        self.max_open = max_open
        self._entries: OrderedDict[K, D] = OrderedDict()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        # Decoders inherited from a parent process: referenced forever, never used or closed here.
        self._abandoned: list[D] = []
        _register_for_fork(self)

    @property
    def pid(self) -> int:
        """The process that owns the open decoders."""
        return self._pid

    def get_or_open(self, key: K, opener: Callable[[], D]) -> D:
        """Return the open decoder for ``key``, calling ``opener()`` to open it if needed.

        The opener runs outside the cache lock, so a slow open does not block other threads; if two
        threads open the same key at once, one decoder wins and the other is closed. Errors raised by
        ``opener`` propagate unchanged and leave the cache as it was.
        """
        self._check_pid()
        with self._lock:
            decoder = self._entries.get(key)
            if decoder is not None:
                self._entries.move_to_end(key)
                return decoder
        decoder = opener()
        evicted: list[D] = []
        with self._lock:
            existing = self._entries.get(key)
            if existing is not None:
                evicted.append(decoder)
                decoder = existing
                self._entries.move_to_end(key)
            else:
                self._entries[key] = decoder
                while len(self._entries) > self.max_open:
                    _, old = self._entries.popitem(last=False)
                    evicted.append(old)
        for old in evicted:  # closed outside the lock: close() may wait for a decode on another thread
            _close_quietly(old)
        return decoder

    def evict(self, key: K) -> bool:
        """Close and forget the decoder for ``key``; return whether there was one."""
        self._check_pid()
        with self._lock:
            decoder = self._entries.pop(key, None)
        if decoder is None:
            return False
        _close_quietly(decoder)
        return True

    def close_all(self) -> None:
        """Close every decoder this process opened."""
        self._check_pid()
        with self._lock:
            decoders = list(self._entries.values())
            self._entries.clear()
        for decoder in decoders:
            _close_quietly(decoder)

    def keys(self) -> list[K]:
        """Keys of the open decoders, least recently used first."""
        self._check_pid()
        with self._lock:
            return list(self._entries)

    def __contains__(self, key: object) -> bool:
        self._check_pid()
        return key in self._entries

    def __len__(self) -> int:
        self._check_pid()
        return len(self._entries)

    def _check_pid(self) -> None:
        if os.getpid() != self._pid:
            self._after_fork_in_child()

    def _after_fork_in_child(self) -> None:
        pid = os.getpid()
        if pid == self._pid:
            return
        self._lock = threading.Lock()
        self._abandoned.extend(self._entries.values())
        self._entries = OrderedDict()
        logger.debug("Process %d forked from %d: %d inherited decoders set aside", pid, self._pid, len(self._abandoned))
        self._pid = pid


def _close_quietly(decoder: Closeable) -> None:
    # Closing releases file handles and codec memory; a failure here must not hide the caller's result.
    try:
        decoder.close()
    except Exception:  # logged: nothing else can be done with a decoder being dropped
        logger.warning("Closing decoder %r failed", decoder, exc_info=True)


_FORK_AWARE: weakref.WeakSet[BoundedLRU | DecoderCache] = weakref.WeakSet()


def _register_for_fork(obj: BoundedLRU | DecoderCache) -> None:
    _FORK_AWARE.add(obj)


def _reset_after_fork() -> None:
    for obj in list(_FORK_AWARE):
        obj._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
