"""The queue as the front sees it: admission, positions, cancel and status over every
process, with the jobs run by workers (helpers/fleet_worker.py).

The caps (MAX_QUEUE waiting, MAX_JOBS_PER_USER per user) are counted in the database under
one advisory lock, so they hold across every front and every worker. Nothing is kept in a
heap here: the database is the queue. A cancel cancels queued rows at once and flags the
running ones for their workers (NOTIFY fleet_cancel), then waits until they ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from helpers.fleet_store import FleetStore, every
from helpers.queue_manager import QueueManager, SubmitResult

log = logging.getLogger("fleet")

_TICK_S = 1.0


class FrontQueue(QueueManager):
    def __init__(self, db, store: FleetStore, *, max_queue: int, max_per_user: int,
                 lease_s: float, notify=None, bot_peers=None):
        async def never(_row):  # the front runs no job
            raise RuntimeError("the front does not run jobs")

        super().__init__(db, never, max_concurrent=1, max_queue=max_queue,
                         max_per_user=max_per_user, notify=notify, announce_start=False)
        self.store = store
        self.lease_s = float(lease_s)
        # async (chat ids) -> the front bot's (id, access_hash, kind) rows for them
        self._bot_peers = bot_peers
        self._waiting = 0
        self._running = 0
        self._page: list[dict] = []
        self.workers: list[dict] = []
        self._loop: asyncio.Task | None = None
        self._halt = asyncio.Event()

    # the heap is not used: every read goes to the database ----------------------------------
    def _push(self, item) -> None:
        pass

    async def _refill(self) -> None:
        pass

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def running(self) -> int:
        return self._running

    def position(self, job_id: int) -> int | None:
        return None  # asked through user_jobs, which reads the database

    def active_job_ids(self) -> list[int]:
        return []  # no job folders on the front

    def describe(self, limit: int = 50) -> list[dict]:
        rows = []
        for r in self._page[:limit]:
            state = "running" if r["status"] == "running" else (
                "waiting (premium)" if r["premium"] else "waiting")
            if r.get("worker"):
                state += f" on {r['worker']}"
            rows.append({"job": r["id"], "user_id": r["user_id"], "state": state})
        return rows

    def snapshot(self) -> dict:
        snap = super().snapshot()
        snap.update(waiting=self._waiting, running=self._running, workers=len(self.workers))
        return snap

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """No requeue at start: running jobs belong to live workers (or to leases that run
        out on their own). Reaping is done here too, so a fleet whose workers all died
        still shows its jobs back in the queue."""
        self._halt.clear()
        await self._tick()
        self._loop = asyncio.create_task(every(_TICK_S, self._tick, "front tick", self._halt),
                                         name="fleet-front")

    async def stop(self, timeout: float = 20) -> None:
        self._stopping = True
        self._halt.set()
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(BaseException):
                await self._loop
            self._loop = None

    async def _tick(self) -> None:
        await self.store.reap()
        self._waiting = await self.store.count_status("queued")
        self._running = await self.store.count_status("running")
        self._page = await self.store.queue_page(50)
        self.workers = await self.store.workers()

    async def wait_idle(self) -> None:
        while await self.store.count_status("queued") or await self.store.count_status("running"):
            await asyncio.sleep(0.2)

    # admission ---------------------------------------------------------------------------
    async def submit(self, user_id: int, refs, premium: bool, source=None) -> SubmitResult:
        async with self.store.submit_lock():
            result = await super().submit(user_id, refs, premium, source=source)
        accepted = [(job_id, await self.store.position(job_id) or 1)
                    for job_id, _ in result.accepted]
        if accepted:
            await self._share_peers(user_id, refs)
            await self.store.wake_workers()
            self._waiting = await self.store.count_status("queued")
        return SubmitResult(accepted, result.refused, result.reason)

    async def _share_peers(self, user_id: int, refs) -> None:
        """The access hashes of the user and of a private chat, which only the front learns
        (it alone takes the bot's updates), are in the database (bot_peers, read by the
        workers' clients on a miss: helpers/shared_peers.py) before any worker is woken:
        the library's own write-through runs in the background and may come later."""
        if self._bot_peers is None:
            return
        ids = sorted({int(user_id)} | {int(r[0]) for r in refs
                                       if str(r[0]).lstrip("-").isdigit()})
        try:
            await self.db.save_bot_peers(await self._bot_peers(ids))
        except Exception:  # noqa: BLE001 - the worker then says it cannot open the chat
            log.warning("fleet: could not share the bot's peers", exc_info=True)

    async def user_jobs(self, user_id: int) -> list[tuple[int, str, int | None]]:
        rows = await self.db.jobs_of_user(
            user_id, ("queued", "running"), limit=max(50, self.max_per_user * 2))
        out = []
        for row in reversed(rows):
            pos = await self.store.position(row["id"]) if row["status"] == "queued" else None
            out.append((row["id"], row["status"], pos))
        return out

    async def cancel(self, user_id: int, job_id: int | None = None, wait: float = 1.8) -> int:
        now, running = await self.store.cancel_user(int(user_id), job_id)
        self.cancelled_count += now
        if running and wait > 0:
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and not await self.store.final(running):
                await asyncio.sleep(0.05)
        return now + len(running)


def fleet_lines(workers: list[dict], stale_s: float) -> list[str]:
    """One line per worker for /memstats, /status and /stats."""
    if not workers:
        return ["Workers: none has reported yet"]
    out = [f"Workers: {sum(1 for w in workers if w['age_s'] <= stale_s)} live of {len(workers)}"]
    for w in workers:
        state = "live" if w["age_s"] <= stale_s else f"silent {w['age_s']:.0f} s"
        out.append(f"  {w['name']} ({state}, v{w['version']}): RSS {w['rss_mb']:.1f} MB "
                   f"(peak {w['peak_mb']:.1f}), sessions {w['sessions']}/{w['max_sessions']}, "
                   f"transfers {w['transfers']}/{w['max_transfers']}, done {w['done']}, "
                   f"failed {w['failed']}")
    return out
