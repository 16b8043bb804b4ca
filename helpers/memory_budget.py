"""The one memory budget: whether new work may start, and room held for work in flight.

Other parts ask it before they take memory: the queue, the session manager and /login call
``admit`` before a job, a session or a login starts; transfers hold ``parts in flight x part
size`` with ``try_reserve`` and size K down when refused. RSS + held reservations stay under
``limit_mb x critical_ratio``; above that the relief already runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Callable

from helpers.memory_readings import MemoryLimits


class Reservation:
    """A declared expected peak (e.g. part size x parts in flight) held against the budget."""

    __slots__ = ("name", "mb", "created", "_budget", "_released")

    def __init__(self, budget: "MemoryBudget", name: str, mb: float, created: float) -> None:
        self.name = name
        self.mb = mb
        self.created = created
        self._budget = budget
        self._released = False

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        self._budget.release(self)

    def __enter__(self) -> "Reservation":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> "Reservation":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<Reservation {self.name!r} {self.mb:.1f} MB {state}>"


class MemoryBudget:
    """Admission (paused by the relief, resumed by a reading below warn) and reservations.

    ``rss_mb`` reads memory now; ``recheck`` takes a fresh reading (which may resume
    admission), so a paused budget answers promptly once memory is back.
    """

    RESERVE_POLL_S = 1.0
    MAX_RESERVATIONS = 1000

    def __init__(self, limits: MemoryLimits, rss_mb: Callable[[], float], *,
                 clock: Callable[[], float], recheck: Callable[[], None]) -> None:
        self.limits = limits
        self._rss_mb = rss_mb
        self._clock = clock
        self._recheck = recheck
        self.paused = False
        self._reservations: dict[int, Reservation] = {}
        self._reserved_mb = 0.0
        self._released_event: asyncio.Event | None = None

    # ------------------------------------------------------------------ admission

    def pause(self) -> bool:
        """Refuse new work; True when it was open until now."""
        was_open, self.paused = not self.paused, True
        return was_open

    def resume(self) -> bool:
        """Admit new work again; True when it was paused until now."""
        was_paused, self.paused = self.paused, False
        return was_paused

    async def admit(self) -> bool:
        """Whether a new job may start; a paused budget re-reads so resumption is prompt."""
        if self.paused:
            self._recheck()
        return not self.paused

    # ------------------------------------------------------------------ reservations

    @property
    def reserved_mb(self) -> float:
        return self._reserved_mb

    def reservations(self) -> list[Reservation]:
        return list(self._reservations.values())

    def try_reserve(self, name: str, mb: float) -> Reservation | None:
        """Hold ``mb`` against the budget, or None when rss + held + mb would exceed it.

        In-flight transfers are counted both in RSS and in their reservation: deliberately
        conservative on a box where running out means being killed.
        """
        mb = max(0.0, float(mb))
        if len(self._reservations) >= self.MAX_RESERVATIONS:
            return None
        if self._rss_mb() + self._reserved_mb + mb > self.limits.budget_mb:
            return None
        res = Reservation(self, name, mb, self._clock())
        self._reservations[id(res)] = res
        self._reserved_mb += mb
        return res

    def release(self, reservation: Reservation) -> None:
        """Idempotent; wakes any ``reserve_wait`` callers."""
        if reservation._released:
            return
        reservation._released = True
        if self._reservations.pop(id(reservation), None) is not None:
            self._reserved_mb = max(0.0, self._reserved_mb - reservation.mb)
        event, self._released_event = self._released_event, None
        if event is not None:
            event.set()

    async def reserve_wait(self, name: str, mb: float, timeout: float) -> Reservation | None:
        """Wait up to ``timeout`` s for room; polls too, since RSS can fall without a release."""
        if mb > self.limits.budget_mb:
            return None  # could never fit: fail now rather than after the timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            res = self.try_reserve(name, mb)
            if res is not None:
                return res
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            if self._released_event is None:
                self._released_event = asyncio.Event()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._released_event.wait(),
                                       min(remaining, self.RESERVE_POLL_S))
