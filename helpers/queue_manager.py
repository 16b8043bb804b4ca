"""Priority queue of download jobs: submit, cancel, the workers, and how each job ends.

The database is the source of truth: a job exists once its row is committed, and a
restart resumes whatever was queued or cut off while running. The policy in memory (tiers,
caps, the heap of waiting jobs and their places) is ``helpers.queue_policy``; the queue's
scans over its rows are ``helpers.queue_store``; how a failure is worded is
``helpers.job_outcomes``. Their public names are importable from here too.

Every job ends exactly once: ``Database.set_status`` refuses to leave a final state,
and counters and notifications follow only a transition that actually happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Awaitable, Callable

from helpers import queue_store
from helpers.database import Database
from helpers.job_outcomes import (
    JobError,
    failure_notice,
    failure_reason,
    failure_text,
    mark_told,
    tell,
)
from helpers.queue_policy import (
    FREE,
    PREMIUM,
    JobHeap,
    QueueFull,
    SubmitRefused,
    SubmitResult,
    UserLimit,
    fit,
    tier_of,
)

__all__ = ["FREE", "PREMIUM", "JobError", "QueueFull", "QueueManager", "SubmitRefused",
           "SubmitResult", "UserLimit", "failure_text", "mark_told"]

log = logging.getLogger(__name__)

_ADMISSION_RETRY_S = 1.0


class _Active:
    """A job taken from the heap: from the pop until its final status is written."""

    __slots__ = ("job_id", "user_id", "task", "cancel_requested", "finished")

    def __init__(self, job_id: int, user_id: int):
        self.job_id = job_id
        self.user_id = user_id
        self.task: asyncio.Task | None = None
        self.cancel_requested = False
        self.finished = asyncio.Event()


class QueueManager:
    def __init__(
        self,
        db: Database,
        runner: Callable[[dict], Awaitable[None]],
        *,
        max_concurrent: int,
        max_queue: int,
        max_per_user: int,
        admission: Callable[[], Awaitable[bool]] | None = None,
        notify: Callable[[int, str], Awaitable[None]] | None = None,
        max_attempts: int = 3,
        announce_start: bool = True,
    ):
        if max_concurrent < 1 or max_queue < 1 or max_per_user < 1:
            raise ValueError("max_concurrent, max_queue and max_per_user must be >= 1")
        self.db = db
        self._runner = runner
        self.max_concurrent = int(max_concurrent)
        self.max_queue = int(max_queue)
        self.max_per_user = int(max_per_user)
        self.max_attempts = int(max_attempts)
        self._admission = admission
        self._notify = notify
        # False when the runner posts its own start message (the bot's progress message).
        self._announce_start = announce_start
        # One condition: its lock guards the heap, the active map and the check-then-insert
        # of submit; workers sleep on it, so there is no polling for work.
        self._cond = asyncio.Condition()
        self._jobs = JobHeap(self.max_queue)  # waiting, best first; the rest spill to the DB
        self._active: dict[int, _Active] = {}
        self._paused_by: set[int] = set()
        self._workers: list[asyncio.Task] = []
        self._stopping = False
        self._stop_event = asyncio.Event()
        self.done_count = 0
        self.failed_count = 0
        self.cancelled_count = 0

    # ------------------------------------------------------------------ state

    @property
    def waiting(self) -> int:
        return self._jobs.waiting

    @property
    def running(self) -> int:
        return len(self._active)

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def paused(self) -> bool:
        """True while a worker holds back because the memory budget refused admission."""
        return bool(self._paused_by)

    def position(self, job_id: int) -> int | None:
        """1-based place in the combined queue; None when not waiting in memory."""
        return self._jobs.position(job_id)

    def active_job_ids(self) -> list[int]:
        """Jobs being worked on (for the janitor: their folders are not orphans)."""
        return list(self._active)

    async def user_jobs(self, user_id: int) -> list[tuple[int, str, int | None]]:
        """The user's unfinished jobs, oldest first: (job_id, status, position or None)."""
        rows = await self.db.jobs_of_user(
            user_id, ("queued", "running"), limit=max(50, self.max_per_user * 2)
        )
        out = []
        for row in reversed(rows):
            jid = row["id"]
            status = "running" if jid in self._active else row["status"]
            out.append((jid, status, self.position(jid) if status == "queued" else None))
        return out

    def describe(self, limit: int = 50) -> list[dict]:
        """Running then waiting jobs, best first, for the status page."""
        rows = [{"job": e.job_id, "user_id": e.user_id, "state": "running"}
                for e in list(self._active.values())[:limit]]
        for tier, job_id, user_id in self._jobs.best(limit - len(rows)):
            rows.append({"job": job_id, "user_id": user_id,
                         "state": "waiting (premium)" if tier == PREMIUM else "waiting"})
        return rows

    def snapshot(self) -> dict:
        return {
            "waiting": self.waiting,
            "in_memory": len(self._jobs),
            "overflow": self._jobs.spilled,
            "running": self.running,
            "paused": self.paused,
            "stopping": self._stopping,
            "done": self.done_count,
            "failed": self.failed_count,
            "cancelled": self.cancelled_count,
            "max_concurrent": self.max_concurrent,
            "max_queue": self.max_queue,
            "max_per_user": self.max_per_user,
        }

    # ------------------------------------------------------------------ heap (lock held)

    async def _refill(self) -> None:
        """Rebuild the heap from the DB order; only needed while some rows spilled over."""
        # Jobs in _active were popped but are not yet marked running.
        self._jobs.load(*await queue_store.best_queued(self.db, self.max_queue, self._active))

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._workers:
            return
        self._stopping = False
        self._stop_event.clear()
        n = await self.db.requeue_running()
        if n:
            log.warning("queue: %d job(s) were cut off by a restart and are queued again", n)
        await self._drop_crash_loops()
        async with self._cond:
            await self._refill()
        log.info("queue: loaded %d waiting job(s)", self.waiting)
        self._workers = [
            asyncio.create_task(self._worker(i), name=f"queue-worker-{i}")
            for i in range(self.max_concurrent)
        ]

    async def _drop_crash_loops(self) -> None:
        """A job that was running at each of the last crashes may be what crashes us."""
        for job_id, user_id, attempts in await queue_store.crash_loops(self.db, self.max_attempts):
            reason = f"interrupted {attempts} times, given up"
            if await self.db.set_status(job_id, "failed", reason):
                self.failed_count += 1
                log.warning("queue: job #%d dropped: %s", job_id, reason)
                await self._tell(user_id, f"Job #{job_id} failed: it was {reason}. "
                                          "Send the link again to retry.")

    async def stop(self, timeout: float = 20) -> None:
        """Stop taking jobs; running ones are cut and queued again for the next start."""
        self._stopping = True
        self._stop_event.set()
        async with self._cond:
            self._cond.notify_all()
        for entry in list(self._active.values()):
            if entry.task is not None:
                entry.task.cancel()
        workers, self._workers = self._workers, []
        if not workers:
            return
        _, pending = await asyncio.wait(workers, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("queue: %d worker(s) did not stop in %.0f s", len(pending), timeout)
            await asyncio.wait(pending, timeout=5)

    async def wait_idle(self) -> None:
        """Until nothing waits and nothing runs (tests, graceful drains)."""
        async with self._cond:
            await self._cond.wait_for(
                lambda: not self._jobs.waiting and not self._active
            )

    # ------------------------------------------------------------------ submit / cancel

    async def submit(
        self, user_id: int, refs: list[tuple[str, int, int | None]], premium: bool,
        source: tuple[int, int] | None = None,
    ) -> SubmitResult:
        """Check the caps and insert in one step, so two users cannot both take the last
        slot. Accepts what fits, in order; raises only when nothing fits. `source` (the
        asking message) is marked handled with the jobs (AlreadyHandled if it was)."""
        refs = list(refs)
        if not refs:
            return SubmitResult([], 0, None)
        async with self._cond:
            if self._jobs.spilled:
                await self._refill()
            n, refusal = fit(len(refs), waiting=await self.db.count_waiting(),
                             user_active=await self.db.count_user_active(user_id),
                             max_queue=self.max_queue, max_per_user=self.max_per_user)
            if n == 0:
                raise refusal
            ids = await self.db.add_jobs(
                [(user_id, chat_ref, msg_id, topic_id, bool(premium))
                 for chat_ref, msg_id, topic_id in refs[:n]], source=source
            )
            tier = tier_of(premium)
            for job_id in ids:
                self._jobs.push((tier, job_id, int(user_id)))
            accepted = self._jobs.positions(ids)
            self._cond.notify_all()
        refused = len(refs) - n
        return SubmitResult(accepted, refused, str(refusal) if refused else None)

    async def cancel(self, user_id: int, job_id: int | None = None, wait: float = 1.5) -> int:
        """Cancel the user's own queued and running jobs (one, or all when job_id is None).

        Another user's job id matches nothing and returns 0.
        """
        user_id = int(user_id)
        job_id = None if job_id is None else int(job_id)
        count = 0
        signalled: list[_Active] = []
        async with self._cond:
            for entry in self._active.values():
                if entry.user_id == user_id and job_id in (None, entry.job_id):
                    if not entry.cancel_requested:
                        entry.cancel_requested = True
                        if entry.task is not None:
                            entry.task.cancel()
                        count += 1
                    signalled.append(entry)
            for item in self._jobs.of_user(user_id, job_id):
                self._jobs.remove(item)
                if await self.db.set_status(item[1], "cancelled", "cancelled by user"):
                    self.cancelled_count += 1
                    count += 1
            # Rows that spilled over to the DB: they are not in the heap.
            if self._jobs.spilled:
                ended = await queue_store.cancel_queued(self.db, user_id, job_id, self._active)
                self.cancelled_count += ended
                self._jobs.spilled = max(0, self._jobs.spilled - ended)
                count += ended
            self._cond.notify_all()
        if signalled and wait > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    for entry in signalled:
                        await entry.finished.wait()
        return count

    # ------------------------------------------------------------------ workers

    async def _worker(self, index: int) -> None:
        while not self._stopping:
            try:
                entry = await self._take(index)
                if entry is None:
                    continue
                await self._run(entry)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A DB hiccup must not kill the worker: the pool would shrink silently.
                log.exception("queue worker %d: unexpected error", index)
                await self._sleep_unless_stopped(_ADMISSION_RETRY_S)
        self._paused_by.discard(index)

    async def _take(self, index: int) -> _Active | None:
        async with self._cond:
            if not self._jobs.waiting:
                self._paused_by.discard(index)  # idle is not paused
            await self._cond.wait_for(lambda: self._stopping or self._jobs.waiting > 0)
        if self._stopping:
            return None
        if not await self._admitted():
            self._paused_by.add(index)
            await self._sleep_unless_stopped(_ADMISSION_RETRY_S)
            return None
        self._paused_by.discard(index)
        async with self._cond:
            if self._stopping:
                return None
            if self._jobs.spilled and len(self._jobs) <= self.max_queue // 2:
                await self._refill()
            if not len(self._jobs):
                return None
            _, job_id, user_id = self._jobs.pop()
            entry = self._active[job_id] = _Active(job_id, user_id)
            return entry

    async def _admitted(self) -> bool:
        if self._admission is None:
            return True
        try:
            return bool(await self._admission())
        except Exception:
            # Fail open: a broken budget check must not stall every download.
            log.warning("queue: admission check failed; admitting", exc_info=True)
            return True

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), seconds)

    async def _run(self, entry: _Active) -> None:
        job_id, user_id = entry.job_id, entry.user_id
        try:
            if not await self.db.set_status(job_id, "running"):
                return  # already final (cancelled in the DB meanwhile)
            row = await self.db.get_job(job_id)
            if row is None:
                return
            if self._announce_start:
                await self._tell(user_id, f"Job #{job_id} started")
            # No await between these checks and create_task: cancel() and stop() see
            # either no task (and the flags) or the task.
            if entry.cancel_requested:
                await self._finish(entry, "cancelled", "cancelled by user")
                return
            if self._stopping:
                await self.db.set_status(job_id, "queued")
                return
            entry.task = asyncio.create_task(self._runner(row), name=f"job-{job_id}")
            try:
                await asyncio.wait({entry.task})
            except asyncio.CancelledError:
                # The worker itself is cancelled (stop timed out): take the job down too
                # and leave it queued for the next start.
                entry.task.cancel()
                await asyncio.wait({entry.task}, timeout=2)
                await self.db.set_status(job_id, "queued")
                raise
            await self._settle(entry)
        finally:
            self._active.pop(job_id, None)
            entry.finished.set()
            async with self._cond:
                self._cond.notify_all()

    async def _settle(self, entry: _Active) -> None:
        task, job_id = entry.task, entry.job_id
        assert task is not None and task.done()
        if task.cancelled():
            if entry.cancel_requested:
                await self._finish(entry, "cancelled", "cancelled by user")
            elif self._stopping:
                await self.db.set_status(job_id, "queued")  # resumed by the next start
            else:
                await self._finish(entry, "failed", "interrupted")
            return
        exc = task.exception()
        if exc is None:
            await self._finish(entry, "done")
            return
        if not isinstance(exc, JobError):
            log.error("queue: job #%d crashed", job_id, exc_info=exc)
        await self._finish(entry, "failed", failure_reason(exc),
                           told=bool(getattr(exc, "user_told", False)))

    async def _finish(self, entry: _Active, status: str, error: str | None = None,
                      told: bool = False) -> None:
        if not await self.db.set_status(entry.job_id, status, error):
            return  # already ended: never count or notify twice
        if status == "done":
            self.done_count += 1
        elif status == "cancelled":
            self.cancelled_count += 1
        else:
            self.failed_count += 1
            if told:
                return  # one notice per outcome: the runner's edit said it
            await self._tell(entry.user_id, failure_notice(entry.job_id, error or ""))

    async def _tell(self, user_id: int, text: str) -> None:
        await tell(self._notify, user_id, text, log, "queue")
