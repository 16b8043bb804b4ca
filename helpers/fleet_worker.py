"""A worker's share of the queue: claim, hold by lease, run, end exactly once.

Each of `slots` loops claims the best job (FleetStore.claim: SELECT ... FOR UPDATE SKIP
LOCKED, premium first, then oldest), runs it, and writes its final state only while it
still holds the lease. One loop renews every lease this worker holds each min(lease_s / 3, 1 s),
reads the cancel flags set by the front, and reaps other workers' expired leases. A NOTIFY
on fleet_cancel runs that check at once (a cancel lands within a round trip); a NOTIFY on
fleet_jobs wakes idle slots (a 1 s poll backs both up).

It offers what the App and the janitor ask of a queue (running, waiting, active_job_ids,
stopping, stop), so the composition root treats it like QueueManager.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Awaitable, Callable

from helpers.fleet_store import CANCEL_CHANNEL, JOBS_CHANNEL, FleetStore
from helpers.job_outcomes import JobError, failure_notice, tell

log = logging.getLogger("fleet")

_POLL_S = 1.0


class _Held:
    __slots__ = ("row", "task", "cancelled", "lost")

    def __init__(self, row: dict):
        self.row = row
        self.task: asyncio.Task | None = None
        self.cancelled = False  # by the user, through the front
        self.lost = False  # the lease ran out and the job went to another worker


class FleetWorker:
    def __init__(self, store: FleetStore, runner: Callable[[dict], Awaitable[None]], *,
                 name: str, slots: int, lease_s: float,
                 admission: Callable[[], Awaitable[bool]] | None = None,
                 notify: Callable[[int, str], Awaitable[None]] | None = None,
                 max_attempts: int = 3, on_tick: Callable[[], Awaitable[None]] | None = None,
                 listen: Callable[[str, Callable[[str], None]], Awaitable[None]] | None = None):
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.store = store
        self._runner = runner
        self.name = name
        self.slots = int(slots)
        self.max_concurrent = self.slots
        self.lease_s = float(lease_s)
        self._admission = admission
        self._notify = notify
        self.max_attempts = int(max_attempts)
        self._on_tick = on_tick
        # LISTEN through the storage's own notice connection (Database.listen) when given
        self._listen = listen or store.listen
        self._held: dict[int, _Held] = {}
        self._tasks: list[asyncio.Task] = []
        self._wake = asyncio.Event()
        self._check = asyncio.Event()
        self._stop = asyncio.Event()
        self._stopping = False
        self.done_count = self.failed_count = self.cancelled_count = 0
        self.taken_over = 0  # jobs this worker claimed after another's lease ran out

    # what the App asks of a queue -------------------------------------------------------
    @property
    def running(self) -> int:
        return len(self._held)

    @property
    def waiting(self) -> int:
        return 0  # the front counts the queue; a worker only holds what it runs

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def paused(self) -> bool:
        return False

    def active_job_ids(self) -> list[int]:
        return list(self._held)

    def user_ids(self) -> list[int]:
        return [int(h.row["user_id"]) for h in list(self._held.values())]

    def describe(self, limit: int = 50) -> list[dict]:
        return [{"job": j, "user_id": h.row["user_id"], "state": "running"}
                for j, h in list(self._held.items())[:limit]]

    # lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._listen(JOBS_CHANNEL, lambda _p: self._wake.set())
        await self._listen(CANCEL_CHANNEL, self._on_cancel)
        self._tasks = [asyncio.create_task(self._slot(i), name=f"fleet-slot-{i}")
                       for i in range(self.slots)]
        self._tasks.append(asyncio.create_task(self._keeper(), name="fleet-leases"))

    def _on_cancel(self, payload: str) -> None:
        ids = {int(p) for p in payload.split(",") if p.strip().isdigit()}
        if ids & set(self._held):
            self._check.set()

    async def stop(self, timeout: float = 20) -> None:
        """Running jobs are cut and put back in the queue for another worker."""
        self._stopping = True
        self._stop.set()
        self._wake.set()
        for held in list(self._held.values()):
            if held.task is not None:
                held.task.cancel()
        tasks, self._tasks = self._tasks, []
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)

    # the slots ------------------------------------------------------------------------------
    async def _slot(self, index: int) -> None:
        while not self._stopping:
            try:
                if self._admission is not None and not await self._admitted():
                    await self._pause(_POLL_S)
                    continue
                self._wake.clear()
                row = await self.store.claim(self.name, self.lease_s)
                if row is None:
                    await self._pause(_POLL_S, self._wake)
                    continue
                self._wake.set()  # there may be more: let an idle slot look too
                await self._run(row)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the database may be briefly away
                log.exception("fleet slot %d: unexpected error", index)
                await self._pause(_POLL_S)

    async def _admitted(self) -> bool:
        try:
            return bool(await self._admission())
        except Exception:  # noqa: BLE001 - fail open, as the queue does
            return True

    async def _pause(self, seconds: float, event: asyncio.Event | None = None) -> None:
        waits = [asyncio.ensure_future(self._stop.wait())]
        if event is not None:
            waits.append(asyncio.ensure_future(event.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _run(self, row: dict) -> None:
        job_id, user_id = int(row["id"]), int(row["user_id"])
        if row.get("attempts", 0) >= self.max_attempts:
            reason = f"interrupted {row['attempts']} times, given up"
            if await self.store.finish(self.name, job_id, "failed", reason):
                self.failed_count += 1
                await self._tell(user_id, f"Job #{job_id} failed: it was {reason}. "
                                          "Send the link again to retry.")
            return
        if row.get("attempts"):
            self.taken_over += 1
            log.warning("fleet: job #%d taken over (attempt %d)", job_id, row["attempts"] + 1)
        held = self._held[job_id] = _Held(row)
        held.task = asyncio.create_task(self._runner(row), name=f"job-{job_id}")
        try:
            try:
                await asyncio.wait({held.task})
            except asyncio.CancelledError:
                held.task.cancel()
                await asyncio.wait({held.task}, timeout=5)
                await self.store.finish(self.name, job_id, "queued")
                raise
            await self._settle(held)
        finally:
            self._held.pop(job_id, None)

    async def _settle(self, held: _Held) -> None:
        task, job_id, user_id = held.task, int(held.row["id"]), int(held.row["user_id"])
        if held.lost:
            log.warning("fleet: job #%d lost its lease; another worker has it", job_id)
            return
        if task.cancelled():
            if held.cancelled:
                if await self.store.finish(self.name, job_id, "cancelled", "cancelled by user"):
                    self.cancelled_count += 1
            elif self._stopping:
                await self.store.finish(self.name, job_id, "queued")
            else:
                await self._fail(job_id, user_id, "interrupted", told=False)
            return
        exc = task.exception()
        if exc is None:
            if await self.store.finish(self.name, job_id, "done"):
                self.done_count += 1
            return
        told = bool(getattr(exc, "user_told", False))
        if isinstance(exc, JobError):
            await self._fail(job_id, user_id, str(exc) or "failed", told)
        else:
            log.error("fleet: job #%d crashed", job_id, exc_info=exc)
            await self._fail(job_id, user_id, f"internal error ({type(exc).__name__})", told)

    async def _fail(self, job_id: int, user_id: int, error: str, told: bool) -> None:
        if not await self.store.finish(self.name, job_id, "failed", error):
            return
        self.failed_count += 1
        if not told:
            await self._tell(user_id, failure_notice(job_id, error))

    async def _tell(self, user_id: int, text: str) -> None:
        await tell(self._notify, user_id, text, log, "fleet")

    # leases -----------------------------------------------------------------------------------
    async def _keeper(self) -> None:
        """Renew, read cancel flags, reap: every lease_s / 3 but at least each second (a
        cancel lands within 2 s even if a NOTIFY is lost), and at once on a cancel NOTIFY."""
        interval = max(0.2, min(1.0, self.lease_s / 3))
        while not self._stopping:
            try:
                await self._renew()
                await self.store.reap()
                if self._on_tick is not None:
                    await self._on_tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.warning("fleet: lease renewal failed", exc_info=True)
            self._check.clear()
            await self._pause(interval, self._check)

    async def _renew(self) -> None:
        ids = list(self._held)
        if not ids:
            return
        state = await self.store.renew(self.name, ids, self.lease_s)
        for job_id in ids:
            held = self._held.get(job_id)
            if held is None or held.task is None or held.task.done():
                continue
            if job_id not in state:
                held.lost = True
                held.task.cancel()
            elif state[job_id] and not held.cancelled:
                held.cancelled = True
                log.info("Job #%d: cancel requested through the front", job_id)
                held.task.cancel()


async def wait_for(cond: Callable[[], Awaitable[bool]], timeout: float,
                   step: float = 0.1) -> bool:
    """Poll an async condition; True once it holds, False at the timeout."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while not await cond():
                await asyncio.sleep(step)
            return True
    return False
