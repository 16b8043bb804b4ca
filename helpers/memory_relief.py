"""What the bot does when memory runs short, in order: gc.collect + malloc_trim(0), then the
registered pressure actions (trim caches, evict idle sessions...) until RSS is below warn,
then pause admission. Each step is logged with what it freed.

Log marker (stable, grep-able): ``GC performed``.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
from typing import Awaitable, Callable

from helpers.allocator import trim as _malloc_trim
from helpers.memory_budget import MemoryBudget
from helpers.memory_readings import MemoryLimits, _mb, _short

log = logging.getLogger("memory")

ActionFn = Callable[[], "Awaitable[str] | str"]

class MemoryRelief:
    """Runs the relief (at most one at a time) and the forced GC; pauses the budget when the
    relief could not bring RSS below warn."""

    RELIEF_EVERY_S = 30.0
    ACTION_TIMEOUT_S = 30.0

    def __init__(self, limits: MemoryLimits, rss_bytes: Callable[[], int], budget: MemoryBudget,
                 *, clock: Callable[[], float]) -> None:
        self.limits = limits
        self._rss_bytes = rss_bytes
        self._budget = budget
        self._clock = clock
        self._actions: list[tuple[str, ActionFn]] = []
        self.gc_runs = 0
        self.relief_runs = 0
        self._last_relief = float("-inf")
        self.task: asyncio.Task | None = None
        self._lock: asyncio.Lock | None = None

    def register_action(self, name: str, fn: ActionFn) -> None:
        """Pressure actions run in registration order; re-registering keeps the original slot."""
        for i, (existing, _) in enumerate(self._actions):
            if existing == name:
                self._actions[i] = (name, fn)
                return
        self._actions.append((name, fn))

    def due(self, now: float) -> bool:
        """Whether a critical reading may start a relief (at most one per RELIEF_EVERY_S)."""
        return now - self._last_relief >= self.RELIEF_EVERY_S

    def start(self, reason: str) -> None:
        """Run the relief in the background; without a loop, only the safe local step."""
        if self.task is not None and not self.task.done():
            return
        self._last_relief = self._clock()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # No loop here: actions may belong to another loop, so only the safe local step.
            self.relief_runs += 1
            self.gc_step()
            if _mb(self._rss_bytes()) >= self.limits.warn_mb and self._budget.pause():
                log.warning("admission paused: still above warn %.0f MB after GC (no event loop "
                            "for pressure actions)", self.limits.warn_mb)
            return
        task = loop.create_task(self.relieve(reason), name="memory-relief")
        task.add_done_callback(self._relief_done)
        self.task = task

    @staticmethod
    def _relief_done(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("memory relief failed", exc_info=task.exception())

    def gc_step(self) -> dict:
        before = self._rss_bytes()
        collected = gc.collect()
        trimmed = _malloc_trim()
        after = self._rss_bytes()
        self.gc_runs += 1
        freed = _mb(before - after)
        trim_note = {True: ", malloc_trim released pages", False: ", malloc_trim: nothing to release",
                     None: ""}[trimmed]
        text = (f"GC performed: collected {collected} objects, freed {freed:.1f} MB "
                f"({_mb(before):.1f} -> {_mb(after):.1f} MB{trim_note})")
        log.info(text)
        return {"name": "gc+malloc_trim", "collected": collected, "trimmed": trimmed,
                "rss_before_mb": _mb(before), "rss_after_mb": _mb(after), "freed_mb": freed,
                "text": text}

    async def relieve(self, reason: str = "manual") -> dict:
        """Shed memory in order (GC+trim, then registered actions) until below warn."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            self.relief_runs += 1
            start = self._rss_bytes()
            log.warning("memory relief started (%s): RSS %.1f MB", reason, _mb(start))
            steps = [self.gc_step()]
            for name, fn in list(self._actions):
                if _mb(self._rss_bytes()) < self.limits.warn_mb:
                    break
                steps.append(await self._run_action(name, fn))
            end = self._rss_bytes()
            if _mb(end) >= self.limits.warn_mb and self._budget.pause():
                log.warning("admission paused: RSS %.1f MB still >= warn %.0f MB after relief",
                            _mb(end), self.limits.warn_mb)
            return {"reason": reason, "rss_before_mb": _mb(start), "rss_after_mb": _mb(end),
                    "freed_mb": _mb(start - end), "steps": steps,
                    "admission_paused": self._budget.paused}

    async def _run_action(self, name: str, fn: ActionFn) -> dict:
        before = self._rss_bytes()
        try:
            result = fn()
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, self.ACTION_TIMEOUT_S)
            outcome = str(result) if result is not None else "done"
        except asyncio.TimeoutError:
            outcome = f"timed out after {self.ACTION_TIMEOUT_S:.0f}s"
        except Exception as exc:
            log.exception("pressure action %r failed", name)
            outcome = f"failed: {_short(exc, 80)}"
        after = self._rss_bytes()
        log.warning("pressure action %r: %s (RSS %.1f -> %.1f MB, freed %.1f MB)",
                    name, _short(outcome, 200), _mb(before), _mb(after), _mb(before - after))
        return {"name": name, "result": outcome, "rss_before_mb": _mb(before),
                "rss_after_mb": _mb(after), "freed_mb": _mb(before - after)}
