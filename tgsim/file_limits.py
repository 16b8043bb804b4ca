"""Per-account limits Telegram puts on file traffic and on exported authorizations.

Telegram throttles an account that keeps too many file requests in flight (tdl's maintainers
see connections closed, exporters see throttling from about 8 connections; Telegram publishes
no number). tgsim models it as a cap on upload.getFile / upload.saveFilePart /
upload.saveBigFilePart requests in flight per account, above which it answers FLOOD_WAIT_X
with a small X, the 420 "wait X seconds, then repeat" of core.telegram.org/api/errors.

auth.exportAuthorization is meant to be called once per DC a client needs, and the result
kept (core.telegram.org/api/datacenter#authorization-transfer); a client that exports far
more often than once per DC every few minutes is answered FLOOD_WAIT_X.
"""

from __future__ import annotations

import collections
import time

FILE_METHODS = frozenset({"upload.GetFile", "upload.SaveFilePart", "upload.SaveBigFilePart"})
DEFAULT_MAX_FILE_REQUESTS = 16
FLOOD_WAIT_S = 1  # what an account over the file cap is told to wait


class FileRequestLimit:
    """File requests in flight per account. `enter` returns None (not counted: not a file
    method, or no account yet), True (counted: call `leave`) or False (over the cap)."""

    def __init__(self, cap: int = DEFAULT_MAX_FILE_REQUESTS, wait_s: int = FLOOD_WAIT_S):
        self.cap = cap  # 0 = no cap
        self.wait_s = wait_s
        self.inflight: collections.Counter[int] = collections.Counter()
        self.peak: collections.Counter[int] = collections.Counter()  # highest seen, per account
        self.refused: collections.Counter[int] = collections.Counter()

    def enter(self, method: str, user_id: int | None) -> bool | None:
        if method not in FILE_METHODS or user_id is None:
            return None
        if self.cap and self.inflight[user_id] >= self.cap:
            self.refused[user_id] += 1
            return False
        self.inflight[user_id] += 1
        if self.inflight[user_id] > self.peak[user_id]:
            self.peak[user_id] = self.inflight[user_id]
        return True

    def leave(self, user_id: int) -> None:
        self.inflight[user_id] -= 1
        if self.inflight[user_id] <= 0:
            del self.inflight[user_id]


class ExportLimit:
    """auth.exportAuthorization per account and DC: more than `burst` in `window_s` seconds
    floods until the oldest of them leaves the window. `exports` counts every export, per
    (account, DC), for tests."""

    def __init__(self, burst: int = 4, window_s: float = 300.0, clock=time.monotonic):
        self.burst = burst
        self.window_s = window_s
        self.clock = clock
        self.exports: collections.Counter[tuple[int, int]] = collections.Counter()
        self.floods = 0
        self._recent: dict[tuple[int, int], collections.deque] = {}

    def check(self, user_id: int, dc_id: int) -> int | None:
        """Record one export; the FLOOD_WAIT seconds to answer instead, if over the limit."""
        key = (user_id, dc_id)
        now = self.clock()
        recent = self._recent.setdefault(key, collections.deque(maxlen=self.burst))
        while recent and now - recent[0] >= self.window_s:
            recent.popleft()
        if len(recent) >= self.burst:
            self.floods += 1
            return max(1, int(self.window_s - (now - recent[0]) + 0.999))
        recent.append(now)
        self.exports[key] += 1
        if len(self._recent) > 10_000:  # bounded: forget the quietest keys
            for stale in [k for k, d in self._recent.items() if not d][:5_000]:
                del self._recent[stale]
        return None
