"""Bounded TTL + LRU cache.

Every cache in the bot must have a size cap and an expiry so memory cannot creep; the
memory monitor can also shed entries on demand with :meth:`TTLCache.trim`.
Not thread-safe: meant for use from the event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Callable, Generic, Hashable, TypeVar

__all__ = ["TTLCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
_MISSING = object()


class TTLCache(Generic[K, V]):
    """At most ``maxsize`` entries, each valid for ``ttl`` seconds after it was set.

    Reads refresh recency but not expiry, so a hot entry still gets re-fetched
    every ``ttl`` seconds and cannot go stale forever.
    """

    def __init__(self, maxsize: int, ttl: float, clock: Callable[[], float] = time.monotonic):
        if int(maxsize) < 1:
            raise ValueError("maxsize must be >= 1")
        if not ttl > 0:
            raise ValueError("ttl must be > 0")
        self.maxsize = int(maxsize)
        self.ttl = float(ttl)
        self._clock = clock
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()  # key -> (expires, value)
        self.hits = 0
        self.misses = 0
        self.evictions = 0  # dropped for room (capacity or trim), not for age
        self.expirations = 0

    def get(self, key: K, default: Any = None) -> V | Any:
        item = self._data.get(key, _MISSING)
        if item is _MISSING:
            self.misses += 1
            return default
        expires, value = item  # type: ignore[misc]
        if self._clock() >= expires:
            del self._data[key]
            self.expirations += 1
            self.misses += 1
            return default
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def set(self, key: K, value: V) -> None:
        self._data[key] = (self._clock() + self.ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)
            self.evictions += 1

    def pop(self, key: K, default: Any = None) -> V | Any:
        item = self._data.pop(key, _MISSING)
        if item is _MISSING:
            return default
        expires, value = item  # type: ignore[misc]
        if self._clock() >= expires:
            self.expirations += 1
            return default
        return value

    def __contains__(self, key: object) -> bool:
        """Membership without touching recency or hit/miss counts."""
        item = self._data.get(key, _MISSING)  # type: ignore[arg-type]
        if item is _MISSING:
            return False
        if self._clock() >= item[0]:  # type: ignore[index]
            del self._data[key]  # type: ignore[arg-type]
            self.expirations += 1
            return False
        return True

    def __len__(self) -> int:
        """Entries held, including expired ones not yet purged (what memory holds)."""
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()

    def purge_expired(self) -> int:
        """Drop every expired entry; returns how many. O(n): for periodic housekeeping."""
        now = self._clock()
        stale = [k for k, (expires, _) in self._data.items() if now >= expires]
        for key in stale:
            del self._data[key]
        self.expirations += len(stale)
        return len(stale)

    def trim(self, n: int) -> int:
        """Drop the ``n`` least recently used entries (memory pressure); returns how many."""
        dropped = 0
        while dropped < n and self._data:
            self._data.popitem(last=False)
            dropped += 1
        self.evictions += dropped
        return dropped

    @property
    def stats(self) -> dict[str, int]:
        return {"size": len(self._data), "maxsize": self.maxsize, "hits": self.hits,
                "misses": self.misses, "evictions": self.evictions,
                "expirations": self.expirations}

    def __repr__(self) -> str:
        return f"TTLCache(maxsize={self.maxsize}, ttl={self.ttl}, size={len(self._data)})"
