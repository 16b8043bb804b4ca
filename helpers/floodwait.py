"""FloodWait bookkeeping: every place that meets one records it here, so /metrics and
/memstats show one count, and the wait applied is decided in one place."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("floodwait")

MAX_WAIT_S = 900.0  # longer than this and the caller should give up rather than sleep


class FloodStats:
    __slots__ = ("count", "total_s", "last_at", "last_where")

    def __init__(self) -> None:
        self.count = 0
        self.total_s = 0.0
        self.last_at = 0.0
        self.last_where = ""


STATS = FloodStats()


def record(seconds: float | int | None, where: str) -> float:
    """Count a FloodWait; returns how long to wait (Telegram's value, at least 1 s)."""
    wait = max(1.0, float(seconds or 0))
    STATS.count += 1
    STATS.total_s += wait
    STATS.last_at = time.time()
    STATS.last_where = where
    log.info("FloodWait %.0f s on %s", wait, where)
    return wait


def worth_waiting(seconds: float) -> bool:
    return seconds <= MAX_WAIT_S
