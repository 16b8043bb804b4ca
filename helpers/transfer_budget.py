"""What one account may have in flight: Telegram-like budgets shared by all its transfers.

Telegram throttles an account, not a file: too many upload.getFile / saveFilePart requests in
flight and it answers FLOOD_WAIT or closes connections (tgsim/file_limits.py models it at 16;
tdl keeps 4 parts x 2 files). So every transfer of one account draws from one `Window` of
requests in flight, whatever each file asks for, and at most `big_files` files over 10 MB of
one account run at once per DC. Different accounts are independent.

The window is AIMD: a 420 or a dropped connection halves it (once per episode, not once per
part that met it), and successes grow it back by one at a time, slowly, up to the setting. Each
change is logged once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque

log = logging.getLogger("transfer")

KB = 1024
MIB = 1024 * 1024
UPLOAD_PART = 512 * KB  # the largest part upload.save*FilePart accepts (core.telegram.org/api/files)
DOWNLOAD_PART = MIB  # the largest upload.getFile limit (core.telegram.org/api/files)
BIG_FILE = 10 * MIB  # above this Telegram wants saveBigFilePart (and no md5)
REQUESTS_PER_CONNECTION = 4  # in flight on one connection before another is opened
# An upload part is half a download part: one connection at 150 ms and 80 Mbit/s (10 MB/s) is
# full with what covers the round trip (1.5 MB) plus the part being transmitted (0.5 MB) and
# the server's time; four parts of 512 KiB are exactly that, so any jitter left the link idle
# (measured: 85 % of the connection). Five keep it full.
UPLOAD_REQUESTS_PER_CONNECTION = 5


def plan(parts: int, max_inflight: int, max_connections: int,
         per_connection: int = REQUESTS_PER_CONNECTION) -> tuple[int, int]:
    """K parts in flight over P connections: a small file needs one of each. Four requests
    of 1 MiB (five of 512 KiB) keep one connection busy over a 150 ms round trip at
    80 Mbit/s; more on one connection only queue behind each other."""
    k = max(1, min(max_inflight, parts))
    p = max(1, min(max_connections, math.ceil(k / per_connection)))
    return k, p


def account_of(client) -> int:
    """The account a client signs in as (its user id), which is what Telegram counts."""
    me = getattr(client, "me", None)
    uid = getattr(me, "id", None)
    return uid if isinstance(uid, int) else -id(client)


class Window:
    """Requests in flight for one account, AIMD between `floor` and `cap`. FIFO, so no file
    starves another; a cancelled waiter hands its slot on."""

    HOLD_S = 2.0  # one decrease per this long: every part in flight meets the same flood
    GROW_EVERY_S = 3.0  # at most one increase per this long ...
    # ... and only after a window's worth of requests came back fine since the last change

    def __init__(self, cap: int, *, floor: int = 2, name: str = ""):
        self.cap = cap
        self.limit = cap
        self.floor = min(floor, cap)
        self.name = name
        self.inflight = 0
        self.peak = 0
        self.lowest = cap  # the smallest the window has been (for metrics and tests)
        self.changes = 0
        self._ok = 0
        self._changed_at = 0.0
        self._waiters: deque[asyncio.Future] = deque()

    async def acquire(self) -> None:
        if self.inflight < self.limit and not self._waiters:
            self._take()
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(ok=False)  # granted as we were cancelled: pass it on
            else:
                try:
                    self._waiters.remove(fut)
                except ValueError:
                    pass
            raise

    def release(self, ok: bool = True) -> None:
        self.inflight -= 1
        if ok and self.limit < self.cap:
            self._ok += 1
            now = time.monotonic()
            if self._ok >= self.limit and now - self._changed_at >= self.GROW_EVERY_S:
                self._set(self.limit + 1, "requests come back fine", now)
        self._wake()

    def backoff(self, reason: str) -> None:
        """A 420 or a closed connection: halve the window, once per HOLD_S."""
        now = time.monotonic()
        if now - self._changed_at < self.HOLD_S and self.changes:
            return
        new = max(self.floor, self.limit // 2)
        if new < self.limit:
            self._set(new, reason, now)
        else:
            self._changed_at = now  # at the floor: still hold off growing

    def _set(self, limit: int, reason: str, now: float) -> None:
        log.info("transfer window of account %s: %d -> %d requests in flight (%s)",
                 self.name, self.limit, limit, reason)
        self.limit = limit
        self.lowest = min(self.lowest, limit)
        self.changes += 1
        self._changed_at = now
        self._ok = 0
        self._wake()

    def _take(self) -> None:
        self.inflight += 1
        if self.inflight > self.peak:
            self.peak = self.inflight

    def _wake(self) -> None:
        while self._waiters and self.inflight < self.limit:
            fut = self._waiters.popleft()
            if not fut.done():
                self._take()
                fut.set_result(None)

    @property
    def idle(self) -> bool:
        return self.inflight == 0 and not self._waiters


class Budgets:
    """Every account's window and big-file slots, made on first use, pruned when idle."""

    MAX_IDLE = 256  # idle accounts' state kept (their reduced window is remembered) at most

    def __init__(self, account_inflight: int = 16, big_files: int = 2):
        if account_inflight < 1 or big_files < 1:
            raise ValueError("account_inflight and big_files must be >= 1")
        self.account_inflight = account_inflight
        self.big_files = big_files
        self._windows: dict[int, Window] = {}
        self._big: dict[tuple[int, int], Window] = {}

    def window(self, client) -> Window:
        account = account_of(client)
        w = self._windows.get(account)
        if w is None:
            if len(self._windows) >= self.MAX_IDLE:
                self._prune()
            w = self._windows[account] = Window(self.account_inflight, name=str(account))
        return w

    def big_file(self, client, dc_id: int) -> Window:
        """Held for the whole of a transfer over BIG_FILE, per account and DC (never shrinks)."""
        key = (account_of(client), dc_id)
        slots = self._big.get(key)
        if slots is None:
            if len(self._big) >= self.MAX_IDLE:
                for k in [k for k, s in self._big.items() if s.idle][: self.MAX_IDLE // 2]:
                    del self._big[k]
            slots = self._big[key] = Window(self.big_files, name=f"{key[0]} DC{dc_id}")
        return slots

    def _prune(self) -> None:
        for k in [k for k, w in self._windows.items() if w.idle][: self.MAX_IDLE // 2]:
            del self._windows[k]
