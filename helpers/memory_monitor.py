"""Memory governance: one place that measures, explains and relieves memory pressure.

The bot runs on a 512 MB instance where the kernel kills the process without a traceback.
``MemoryMonitor`` is the facade the rest of the bot holds; it wires four parts, each in its
own module:

- ``memory_readings``: RSS, peak, the last 20 operations, trend and history, and the alerts
  they raise (spike, high usage, leak);
- ``memory_relief``: what it does when memory runs short (GC + malloc_trim, pressure actions);
- ``memory_budget``: the one memory budget (admission and reservations) others ask;
- ``memory_text``: the tree-formatted snapshot and the /memstats text.

It owns the periodic task and the policy between them: a reading below warn resumes
admission, a critical one starts the relief.

Log markers (stable, grep-able): ``MEMORY SNAPSHOT``, ``MEMORY SPIKE DETECTED``,
``HIGH MEMORY USAGE``, ``GC performed``, ``MEMORY LEAK SUSPECTED``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Callable, Iterable

from helpers import memory_text
from helpers.memory_budget import MemoryBudget, Reservation
from helpers.memory_readings import (MB, GaugeFn, MemoryLimits, MemoryReadings, Operation, _mb,
                                     format_operations)
from helpers.memory_relief import ActionFn, MemoryRelief
from helpers.memory_text import sparkline
from helpers.tasks import cancel_and_wait

__all__ = ["MemoryMonitor", "Operation", "Reservation", "sparkline", "MB"]

log = logging.getLogger("memory")


def _part(part: str, name: str, *, settable: bool = False) -> property:
    """The facade's name for an attribute one of its parts owns (read live, never copied)."""
    def get(self: "MemoryMonitor") -> Any:
        return getattr(getattr(self, part), name)

    def put(self: "MemoryMonitor", value: Any) -> None:
        setattr(getattr(self, part), name, value)
    return property(get, put if settable else None, doc=f"``{part}.{name}``")


class MemoryMonitor:
    """Measures RSS, explains growth, relieves pressure and hands out the memory budget.

    Other parts plug in through ``register_gauge`` (figures shown in snapshots) and
    ``register_action`` (things to shed under pressure, called in registration order).
    """

    OPS_KEPT = MemoryReadings.OPS_KEPT
    IN_FLIGHT_KEPT = MemoryReadings.IN_FLIGHT_KEPT
    TREND_KEPT = MemoryReadings.TREND_KEPT
    HISTORY_KEPT = MemoryReadings.HISTORY_KEPT
    HISTORY_SPAN_S = MemoryReadings.HISTORY_SPAN_S
    HIGH_LOG_EVERY_S = MemoryReadings.HIGH_LOG_EVERY_S
    RELIEF_EVERY_S = MemoryRelief.RELIEF_EVERY_S
    ACTION_TIMEOUT_S = MemoryRelief.ACTION_TIMEOUT_S
    RESERVE_POLL_S = MemoryBudget.RESERVE_POLL_S
    MAX_RESERVATIONS = MemoryBudget.MAX_RESERVATIONS
    FAST_CHECK_MAX_S = 15.0
    MEMSTATS_MAX_CHARS = 4000

    # Thresholds live in the shared MemoryLimits, so every part sees a change at once.
    limit_mb = _part("limits", "limit_mb", settable=True)
    warn_mb = _part("limits", "warn_mb", settable=True)
    spike_mb = _part("limits", "spike_mb", settable=True)
    critical_ratio = _part("limits", "critical_ratio", settable=True)
    trend_window_s = _part("limits", "trend_window_s", settable=True)
    leak_mb_per_min = _part("limits", "leak_mb_per_min", settable=True)
    _rss_reader = _part("readings", "rss_reader", settable=True)  # tests swap the reader
    spikes = _part("readings", "spikes")
    gc_runs = _part("relief", "gc_runs")
    relief_runs = _part("relief", "relief_runs")
    admission_paused = _part("budget", "paused", settable=True)
    reserved_mb = _part("budget", "reserved_mb")

    def __init__(
        self,
        limit_mb: float,
        warn_mb: float,
        spike_mb: float = 50,
        check_interval: float = 300,
        critical_ratio: float = 0.9,
        trend_window_s: float = 600,
        leak_mb_per_min: float = 2.0,
        rss_reader: Callable[[], int] | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if limit_mb <= 0 or warn_mb <= 0:
            raise ValueError("limit_mb and warn_mb must be positive")
        self.limits = MemoryLimits(float(limit_mb), float(warn_mb), float(spike_mb),
                                   float(critical_ratio), float(trend_window_s),
                                   float(leak_mb_per_min))
        self.check_interval = float(check_interval)
        self._clock = clock or time.time
        self.readings = MemoryReadings(self.limits, rss_reader, clock=self._clock,
                                       on_reading=self._evaluate)
        self.budget = MemoryBudget(self.limits, lambda: self.rss_mb, clock=self._clock,
                                   recheck=self.check)
        self.relief = MemoryRelief(self.limits, self.rss_bytes, self.budget, clock=self._clock)
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------------ readings

    def rss_bytes(self) -> int:
        """Current RSS in bytes; also feeds the peak so no reading is wasted."""
        return self.readings.rss_bytes()

    @property
    def rss_mb(self) -> float:
        return _mb(self.rss_bytes())

    @property
    def peak_mb(self) -> float:
        return _mb(self.readings.peak_bytes)

    @property
    def budget_mb(self) -> float:
        """Ceiling for rss + reservations; above it the relief already kicks in."""
        return self.limits.budget_mb

    # ------------------------------------------------------------------ registration

    def register_gauge(self, name: str, fn: GaugeFn) -> None:
        """Figures owned elsewhere (sessions, queue...) shown next to RSS; same name replaces."""
        self.readings.register_gauge(name, fn)

    def unregister_gauge(self, name: str) -> None:
        self.readings.unregister_gauge(name)

    def register_action(self, name: str, fn: ActionFn) -> None:
        """Pressure actions run in registration order; re-registering keeps the original slot."""
        self.relief.register_action(name, fn)

    def gauges(self) -> dict[str, float | int | str]:
        return self.readings.gauges()

    # ------------------------------------------------------------------ operations

    def track(self, name: str,
              context: dict | None = None) -> contextlib.AbstractAsyncContextManager[dict]:
        """Record one operation (async context manager); yields a dict the caller may enrich
        (e.g. bytes done). Its end is a reading: a spike shows the last operations."""
        return self.readings.track(name, context)

    def tracked(self, name: str) -> Callable:
        """Decorator form of ``track`` for coroutine functions."""
        return self.readings.tracked(name)

    def operations(self) -> list[Operation]:
        """Last finished operations, oldest first."""
        return self.readings.operations()

    def format_operations(self, ops: Iterable[Operation] | None = None) -> str:
        return format_operations(self.operations() if ops is None else ops)

    # ------------------------------------------------------------------ checks

    def check(self) -> None:
        """Cheap reading: spike, threshold, critical relief, trend. Safe from sync code."""
        try:
            rss = self.rss_bytes()
        except Exception:
            log.debug("RSS reading failed", exc_info=True)
            return
        self._evaluate(rss)

    def _evaluate(self, rss: int) -> None:
        now = self._clock()
        self.readings.alert(now, rss)
        rss_mb = _mb(rss)
        if rss_mb < self.warn_mb and self.budget.resume():
            log.info("admission resumed: RSS %.1f MB below warn %.0f MB", rss_mb, self.warn_mb)
        if rss_mb >= self.critical_ratio * self.limit_mb and self.relief.due(now):
            self.relief.start(f"critical: {rss_mb:.1f} MB >= "
                              f"{self.critical_ratio * self.limit_mb:.0f} MB")
        self.readings.check_trend(now)

    def trend_mb_per_min(self) -> float:
        """Least-squares RSS slope over the trend window (0.0 with fewer than two readings)."""
        return self.readings.trend_mb_per_min()

    def history(self, seconds: float = 3600) -> list[tuple[float, float]]:
        """(timestamp, rss_mb) for charts, oldest first, one point per ~5 s at most."""
        return self.readings.history(seconds)

    # ------------------------------------------------------------------ relief

    async def relieve(self, reason: str = "manual") -> dict:
        """Shed memory in order (GC+trim, then registered actions) until below warn."""
        return await self.relief.relieve(reason)

    async def force_gc(self) -> str:
        """For "/memstats gc": one GC + trim, answered in words."""
        return self.relief.gc_step()["text"]

    # ------------------------------------------------------------------ admission budget

    async def admit(self) -> bool:
        """Whether a new job may start; a paused monitor re-reads so resumption is prompt."""
        return await self.budget.admit()

    def reservations(self) -> list[Reservation]:
        return self.budget.reservations()

    def try_reserve(self, name: str, mb: float) -> Reservation | None:
        """Hold ``mb`` against the budget, or None when rss + held + mb would exceed it."""
        return self.budget.try_reserve(name, mb)

    reserve = try_reserve

    def release(self, reservation: Reservation) -> None:
        """Idempotent; wakes any ``reserve_wait`` callers."""
        self.budget.release(reservation)

    async def reserve_wait(self, name: str, mb: float, timeout: float) -> Reservation | None:
        """Wait up to ``timeout`` s for room; polls too, since RSS can fall without a release."""
        return await self.budget.reserve_wait(name, mb, timeout)

    # ------------------------------------------------------------------ text

    def snapshot(self, operation: str, context: dict | None = None) -> str:
        """Log (one record) and return the tree view of where memory stands right now."""
        text = memory_text.snapshot_text(self.readings, self.budget, self.relief, operation,
                                         context)
        log.info(text)
        return text

    sparkline = staticmethod(sparkline)

    def memstats_text(self) -> str:
        """Body of /memstats; clipped to fit one Telegram message."""
        return memory_text.memstats_text(self.readings, self.budget, self.relief,
                                         self.MEMSTATS_MAX_CHARS)

    # ------------------------------------------------------------------ periodic task

    def start(self) -> None:
        """Start the periodic task on the running loop (idempotent)."""
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="memory-monitor")

    async def stop(self) -> None:
        tasks = (self._task, self.relief.task)
        self._task = self.relief.task = None
        for task in tasks:
            if task is not None and not task.done():
                await cancel_and_wait(task)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        tick = max(0.01, min(self.check_interval, self.FAST_CHECK_MAX_S))
        next_full = loop.time() + self.check_interval
        self.check()
        while True:
            await asyncio.sleep(tick)
            try:
                self.check()
                if loop.time() >= next_full:
                    next_full = loop.time() + self.check_interval
                    self.snapshot("periodic")
                    self.relief.gc_step()
            except Exception:
                log.exception("memory monitor tick failed")
