"""The one FloodWait policy: every place that meets a 420 records it here, so /metrics and
/memstats show one count, and what is waited out (and for how long) is decided in one place.

420 is a family (core.telegram.org/api/errors#420-flood): FLOOD_WAIT_X, FLOOD_PREMIUM_WAIT_X
(transfers of non-premium accounts; "must be automatically repeated after X seconds") and
SLOWMODE_WAIT_X. The client library raises them as siblings of FloodWait, not subclasses, so
`except errors.FloodWait` misses two of three: catch FAMILY instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, TypeVar

from pyrogram import errors

log = logging.getLogger("floodwait")

MAX_WAIT_S = 900.0  # longer than this and the caller should give up rather than sleep
ATTEMPTS = 3  # calls of one operation before a caller gives up on it

# Every 420 that carries "wait X seconds, then repeat"; the library's own Session.invoke only
# sleeps through FloodWait and FloodPremiumWait, and only below its sleep_threshold.
FAMILY = (errors.FloodWait, errors.FloodPremiumWait, errors.SlowmodeWait,
          errors.FloodTestPhoneWait)

T = TypeVar("T")


class FloodStats:
    __slots__ = ("count", "total_s", "last_at", "last_where")

    def __init__(self) -> None:
        self.count = 0
        self.total_s = 0.0
        self.last_at = 0.0
        self.last_where = ""


STATS = FloodStats()


def seconds_of(e: BaseException) -> float:
    """The X of a 420 (at least 1 s; 60 s when it carries none the library could read)."""
    value = getattr(e, "value", None)
    try:
        return max(1.0, float(value))
    except (TypeError, ValueError):
        return 60.0


def record(seconds: float | int | None, where: str) -> float:
    """Count a FloodWait of `seconds` (pass seconds_of(e): it knows the default for a 420
    without a number); returns how long to wait, at least 1 s."""
    try:
        wait = max(1.0, float(seconds or 0))
    except (TypeError, ValueError):
        wait = 60.0
    STATS.count += 1
    STATS.total_s += wait
    STATS.last_at = time.time()
    STATS.last_where = where
    log.info("FloodWait %.0f s on %s", wait, where)
    return wait


def worth_waiting(seconds: float) -> bool:
    return seconds <= MAX_WAIT_S


class GaveUp(Exception):
    """A 420 that was not waited out: too long, or met too often. `seconds` is its X."""

    def __init__(self, seconds: float, where: str):
        super().__init__(f"{where}: Telegram asks to wait {seconds:.0f} s")
        self.seconds = seconds
        self.where = where


async def patiently(call: Callable[[], Awaitable[T]], where: str, *,
                    attempts: int = ATTEMPTS, max_wait: float = MAX_WAIT_S) -> T:
    """Run `call()`; a 420 of the family is recorded and waited out, then the call repeated,
    up to `attempts` calls. Raises GaveUp (from the 420) when a wait is over `max_wait` or
    the last attempt floods too."""
    for attempt in range(attempts):
        try:
            return await call()
        except FAMILY as e:
            wait = record(seconds_of(e), where)
            if attempt == attempts - 1 or wait > max_wait or not worth_waiting(wait):
                raise GaveUp(wait, where) from e
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")
