"""Per-user message rate limit: a token bucket per user, in a capped cache.

The user is told once when they hit the limit; further messages in the same burst are
dropped without a reply, so a flooding user cannot make the bot flood Telegram in turn.
"""

from __future__ import annotations

import time
from typing import Callable

from helpers.cache import TTLCache


class _Bucket:
    __slots__ = ("tokens", "stamp", "warned")

    def __init__(self, tokens: float, stamp: float):
        self.tokens, self.stamp, self.warned = tokens, stamp, False


class RateLimiter:
    def __init__(self, per_minute: int, burst: int | None = None, max_users: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.rate = per_minute / 60.0
        self.burst = float(burst or per_minute)
        self._clock = clock
        self._buckets: TTLCache[int, _Bucket] = TTLCache(max_users, ttl=600, clock=clock)

    def hit(self, user_id: int) -> tuple[bool, float | None]:
        """(allowed, seconds to wait if this is the first refusal of a burst, else None)."""
        now = self._clock()
        b = self._buckets.get(user_id)
        if b is None:
            b = _Bucket(self.burst, now)
            self._buckets.set(user_id, b)
        b.tokens = min(self.burst, b.tokens + (now - b.stamp) * self.rate)
        b.stamp = now
        if b.tokens >= 1:
            b.tokens -= 1
            b.warned = False
            return True, None
        if b.warned:
            return False, None
        b.warned = True
        return False, (1 - b.tokens) / self.rate if self.rate else 60.0

    def __len__(self) -> int:
        return len(self._buckets)
