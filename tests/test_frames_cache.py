"""The decoder cache: a bounded LRU that closes what it evicts (thread and fork use: test_frames_engine)."""

from __future__ import annotations

import pytest

from owa.data.frames.cache import DecoderCache


class Resource:
    """A real closeable object that records its closing."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def close(self) -> None:
        self.log.append(self.name)


def test_decoder_cache_is_a_bounded_lru_that_closes_on_eviction() -> None:
    log: list[str] = []
    cache: DecoderCache[str, Resource] = DecoderCache(max_open=2)
    a = cache.get_or_open("a", lambda: Resource("a", log))
    cache.get_or_open("b", lambda: Resource("b", log))
    assert cache.get_or_open("a", lambda: pytest.fail("a is open")) is a  # now b is least recent
    cache.get_or_open("c", lambda: Resource("c", log))
    assert log == ["b"] and cache.keys() == ["a", "c"]
    assert cache.evict("a") and not cache.evict("a")
    assert log == ["b", "a"]
    cache.close_all()
    assert log == ["b", "a", "c"] and len(cache) == 0
    with pytest.raises(ValueError, match="at least 1"):
        DecoderCache(max_open=0)
    with pytest.raises(RuntimeError):  # a failing opener leaves the cache as it was
        cache.get_or_open("d", lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert len(cache) == 0
