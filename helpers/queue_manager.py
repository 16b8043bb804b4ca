"""Priority queue of download jobs: caps, per-user limits, cancel, persisted.

The database is the source of truth: a job exists once its row is committed, and a
restart resumes whatever was queued or cut off while running. In memory the queue keeps
only slim ``(tier, job_id, user_id)`` tuples in a heap capped at ``max_queue``; the heap
is always the best prefix of the queued rows in the DB (premium first, then oldest), so
popping it is correct even when the DB holds more than fits, and it is refilled from the
DB as room frees.

Every job ends exactly once: ``Database.set_status`` refuses to leave a final state,
and counters and notifications follow only a transition that actually happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from helpers.database import Database

log = logging.getLogger(__name__)

PREMIUM, FREE = 0, 1  # heap order: lower tier value runs first

_ADMISSION_RETRY_S = 1.0
_NOTIFY_TIMEOUT_S = 15.0  # a stuck notification must not hold a worker forever
_CANCEL_PAGE = 100


class JobError(Exception):
    """An expected failure (bad link, file gone, ...); its text is shown to the user."""


def failure_text(job_id: int, exc: BaseException) -> str:
    """The one notice of a failed job, whoever shows it (the runner's progress message or
    the queue's own message)."""
    if isinstance(exc, JobError):
        return f"Job #{job_id} failed: {str(exc) or 'failed'}"
    return f"Job #{job_id} failed: an internal error occurred."


def mark_told(exc: BaseException) -> None:
    """The runner has shown the user this failure: the queue must not say it again."""
    try:
        exc.user_told = True
    except AttributeError:  # an exception type without a __dict__: the queue says it
        pass


class SubmitRefused(Exception):
    """Nothing of a submission fits; the text is a reply for the user."""


class QueueFull(SubmitRefused):
    pass


class UserLimit(SubmitRefused):
    pass


@dataclass(frozen=True)
class SubmitResult:
    """accepted: (job_id, 1-based queue position); refused/reason cover what did not fit."""

    accepted: list[tuple[int, int]]
    refused: int
    reason: str | None


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
        self._heap: list[tuple[int, int, int]] = []
        self._queued: dict[int, tuple[int, int, int]] = {}  # job_id -> heap item
        self._overflow = 0  # queued rows in the DB that are not in the heap
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
        return len(self._heap) + self._overflow

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
        item = self._queued.get(int(job_id))
        if item is None:
            return None
        return 1 + sum(1 for other in self._heap if other < item)

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
        for tier, job_id, user_id in heapq.nsmallest(max(0, limit - len(rows)), self._heap):
            rows.append({"job": job_id, "user_id": user_id,
                         "state": "waiting (premium)" if tier == PREMIUM else "waiting"})
        return rows

    def snapshot(self) -> dict:
        return {
            "waiting": self.waiting,
            "in_memory": len(self._heap),
            "overflow": self._overflow,
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

    def _push(self, item: tuple[int, int, int]) -> None:
        """Keeps the heap the best prefix of the DB: when full the worst spills to the DB."""
        if self._overflow and self._heap and item > max(self._heap):
            self._overflow += 1  # worse than everything in memory: it waits in the DB
            return
        heapq.heappush(self._heap, item)
        self._queued[item[1]] = item
        if len(self._heap) > self.max_queue:
            worst = max(self._heap)
            self._remove(worst)
            self._overflow += 1

    def _remove(self, item: tuple[int, int, int]) -> None:
        self._heap.remove(item)
        heapq.heapify(self._heap)
        self._queued.pop(item[1], None)

    async def _refill(self) -> None:
        """Rebuild the heap from the DB order; only needed while some rows spilled over."""
        heap: list[tuple[int, int, int]] = []
        extra = 0
        async with contextlib.aclosing(self.db.iter_jobs_with_status("queued")) as rows:
            async for row in rows:
                if row["id"] in self._active:  # popped, not yet marked running
                    continue
                if len(heap) < self.max_queue:
                    heap.append((PREMIUM if row["premium"] else FREE, row["id"], row["user_id"]))
                else:
                    extra += 1  # counted, not kept: memory stays bounded
        heapq.heapify(heap)
        self._heap = heap
        self._queued = {item[1]: item for item in heap}
        self._overflow = extra

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
        dropped: list[tuple[int, int, int]] = []
        async with contextlib.aclosing(self.db.iter_jobs_with_status("queued")) as rows:
            async for row in rows:
                if row["attempts"] >= self.max_attempts:
                    dropped.append((row["id"], row["user_id"], row["attempts"]))
                    if len(dropped) >= 1000:
                        break  # bounded; the rest are caught at the next start
        for job_id, user_id, attempts in dropped:
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
                lambda: not self._heap and not self._overflow and not self._active
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
            if self._overflow:
                await self._refill()
            waiting = await self.db.count_waiting()
            active = await self.db.count_user_active(user_id)
            room_queue = max(0, self.max_queue - waiting)
            room_user = max(0, self.max_per_user - active)
            n = min(len(refs), room_queue, room_user)
            if room_user <= room_queue:
                reason = (f"You can have at most {self.max_per_user} jobs at a time "
                          f"({active} in progress). Wait for them to finish or /cancel.")
                exc: type[SubmitRefused] = UserLimit
            else:
                reason = (f"The queue is full ({self.max_queue} jobs waiting). "
                          "Please try again in a few minutes.")
                exc = QueueFull
            if n == 0:
                raise exc(reason)
            ids = await self.db.add_jobs(
                [(user_id, chat_ref, msg_id, topic_id, bool(premium))
                 for chat_ref, msg_id, topic_id in refs[:n]], source=source
            )
            tier = PREMIUM if premium else FREE
            for job_id in ids:
                self._push((tier, job_id, int(user_id)))
            order = sorted(self._heap)
            rank = {item[1]: i + 1 for i, item in enumerate(order)}
            accepted = [(job_id, rank.get(job_id, len(order) + 1)) for job_id in ids]
            self._cond.notify_all()
        refused = len(refs) - n
        return SubmitResult(accepted, refused, reason if refused else None)

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
            for item in [i for i in self._heap if i[2] == user_id and job_id in (None, i[1])]:
                self._remove(item)
                if await self.db.set_status(item[1], "cancelled", "cancelled by user"):
                    self.cancelled_count += 1
                    count += 1
            # Rows that spilled over to the DB: they are not in the heap.
            if self._overflow:
                count += await self._cancel_in_db(user_id, job_id)
            self._cond.notify_all()
        if signalled and wait > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    for entry in signalled:
                        await entry.finished.wait()
        return count

    async def _cancel_in_db(self, user_id: int, job_id: int | None) -> int:
        count = 0
        seen: set[int] = set()
        while True:
            rows = await self.db.jobs_of_user(user_id, "queued", limit=_CANCEL_PAGE)
            rows = [r for r in rows if r["id"] not in self._active and r["id"] not in seen
                    and job_id in (None, r["id"])]
            if not rows:
                return count
            for row in rows:
                seen.add(row["id"])
                if await self.db.set_status(row["id"], "cancelled", "cancelled by user"):
                    self.cancelled_count += 1
                    self._overflow = max(0, self._overflow - 1)
                    count += 1

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
            if not self._heap and not self._overflow:
                self._paused_by.discard(index)  # idle is not paused
            await self._cond.wait_for(
                lambda: self._stopping or bool(self._heap) or self._overflow > 0
            )
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
            if self._overflow and len(self._heap) <= self.max_queue // 2:
                await self._refill()
            if not self._heap:
                return None
            _, job_id, user_id = heapq.heappop(self._heap)
            self._queued.pop(job_id, None)
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
        told = bool(getattr(exc, "user_told", False))
        if exc is None:
            await self._finish(entry, "done")
        elif isinstance(exc, JobError):
            await self._finish(entry, "failed", str(exc) or "failed", told=told)
        else:
            log.error("queue: job #%d crashed", job_id, exc_info=exc)
            await self._finish(entry, "failed", f"internal error ({type(exc).__name__})",
                               told=told)

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
            if error and error.startswith("internal error"):
                text = f"Job #{entry.job_id} failed: an internal error occurred."
            else:
                text = f"Job #{entry.job_id} failed: {error}"
            await self._tell(entry.user_id, text)

    async def _tell(self, user_id: int, text: str) -> None:
        if self._notify is None:
            return
        try:
            await asyncio.wait_for(self._notify(user_id, text), _NOTIFY_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("queue: could not notify user %s", user_id, exc_info=True)
