"""The fleet's shared state in PostgreSQL: job leases, session leases, cancel requests,
delivery intents and worker heartbeats (asyncpg, on the storage's own pool).

Why a lease and not just a `running` status: a worker killed with -9 never writes anything
again, so "running" alone would hold its job forever. A worker renews the leases of what it
holds every few seconds; a lease whose time ran out is reaped by whoever looks next (any
worker, or the front) and its job goes back to the queue for another worker.

Every time here is the database server's clock (clock_timestamp()), never a worker's, so
machines whose clocks disagree still agree on which lease has run out.

Its tables are migration 6 of helpers/storage_schema.py (the one schema); of the jobs table
it touches only the columns id, user_id, status, premium, attempts, started, finished, error
and delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Awaitable, Callable

from helpers.database import Database
from helpers.storage_schema import POSTGRES

log = logging.getLogger("fleet")

_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"
CANCEL_CHANNEL = "fleet_cancel"
JOBS_CHANNEL = "fleet_jobs"

_WORKERS_KEPT_S = 3600  # a worker silent this long is forgotten (the table stays small)
SUBMIT_LOCK = 0x466C6566  # advisory lock: one admission at a time across fronts

JOB_COLUMNS = ("id, user_id, chat_ref, msg_id, topic_id, premium, status, attempts, created, "
               "started, finished, error, progress_chat_id, progress_msg_id, bytes, delivered")


_TAKE_SESSION = (
    "INSERT INTO fleet_session_leases(user_id, worker, expires) "
    f"VALUES ($1, $2, {_NOW} + $3) ON CONFLICT (user_id) DO UPDATE SET "
    "worker = excluded.worker, expires = excluded.expires "
    "WHERE fleet_session_leases.worker = excluded.worker "
    f"OR fleet_session_leases.expires < {_NOW} RETURNING worker")


class _Contended(Exception):
    """Another worker took the user's session lease while this one claimed the job."""


class FleetStore:
    """The fleet's SQL over the storage's own PostgreSQL pool (Database.postgres_connection):
    one pool and one schema per process; its tables are migration 6 of
    helpers/storage_schema.py. Notices go through Database.listen's connection."""

    def __init__(self, db: Database):
        if db.dialect != POSTGRES:
            raise ValueError("the fleet's shared state needs DATABASE_URL=postgresql://...")
        self._db = db
        self._submit_local = asyncio.Lock()

    def _conn(self):
        return self._db.postgres_connection()

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        async with self._conn() as conn:
            return await conn.fetchval(sql, *args)

    async def _fetch(self, sql: str, *args: Any) -> list:
        async with self._conn() as conn:
            return await conn.fetch(sql, *args)

    async def _execute(self, sql: str, *args: Any) -> str:
        async with self._conn() as conn:
            return await conn.execute(sql, *args)

    async def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """callback(payload) on each NOTIFY (Database.listen: one connection, every channel)."""
        await self._db.listen(channel, callback)

    async def now(self) -> float:
        return float(await self._fetchval(f"SELECT {_NOW}"))

    # ------------------------------------------------------------------ claiming (workers)

    async def claim(self, worker: str, lease_s: float) -> dict | None:
        """The best queued job (premium first, then oldest) that no other worker's session
        lease holds back, marked running under this worker's lease, in one transaction.
        SKIP LOCKED: two workers claiming at once each get a different job, neither waits.

        A user with a stored session: the job is claimed with the user's session lease, so
        two workers never both open it; of two workers claiming two jobs of one user at the
        same moment, the one that loses the lease gives its job back (and looks again)."""
        for _ in range(3):
            try:
                return await self._claim(worker, lease_s)
            except _Contended:
                continue
        return None

    async def _claim(self, worker: str, lease_s: float) -> dict | None:
        async with self._conn() as conn, conn.transaction():
            job_id = await conn.fetchval(
                "SELECT j.id FROM jobs j WHERE j.status = 'queued' AND NOT EXISTS ("
                "  SELECT 1 FROM fleet_session_leases s WHERE s.user_id = j.user_id"
                f"  AND s.worker <> $1 AND s.expires > {_NOW}) "
                "ORDER BY j.premium DESC, j.id LIMIT 1 FOR UPDATE OF j SKIP LOCKED", worker)
            if job_id is None:
                return None
            row = await conn.fetchrow(
                f"UPDATE jobs SET status = 'running', started = {_NOW}, finished = NULL, "
                f"error = NULL WHERE id = $1 RETURNING {JOB_COLUMNS}", job_id)
            if await conn.fetchval("SELECT 1 FROM user_sessions WHERE user_id = $1",
                                   row["user_id"]) is not None:
                got = await conn.fetchval(_TAKE_SESSION, row["user_id"], worker, float(lease_s))
                if got is None:
                    raise _Contended  # rolls the claim back
            await conn.execute(
                "INSERT INTO fleet_job_leases(job_id, worker, expires, cancel) "
                f"VALUES ($1, $2, {_NOW} + $3, FALSE) ON CONFLICT (job_id) DO UPDATE SET "
                "worker = excluded.worker, expires = excluded.expires, cancel = FALSE",
                job_id, worker, float(lease_s))
            return _plain(row)

    async def renew(self, worker: str, job_ids: list[int], lease_s: float) -> dict[int, bool]:
        """Extends this worker's leases; job_id -> cancel requested. A job missing from the
        answer lost its lease (reaped as expired): the worker must let go of it."""
        if not job_ids:
            return {}
        rows = await self._fetch(
            f"UPDATE fleet_job_leases SET expires = {_NOW} + $3 "
            "WHERE job_id = ANY($1::bigint[]) AND worker = $2 RETURNING job_id, cancel",
            [int(j) for j in job_ids], worker, float(lease_s))
        return {int(r["job_id"]): bool(r["cancel"]) for r in rows}

    async def reap(self) -> list[int]:
        """Jobs whose lease ran out go back to the queue, counted as an interrupted attempt."""
        async with self._conn() as conn, conn.transaction():
            rows = await conn.fetch(
                f"WITH dead AS (DELETE FROM fleet_job_leases WHERE expires < {_NOW} "
                "RETURNING job_id) UPDATE jobs SET status = 'queued', started = NULL, "
                "attempts = attempts + 1 FROM dead WHERE jobs.id = dead.job_id "
                "AND jobs.status = 'running' RETURNING jobs.id")
            # running without any lease: claimed by a build that had no leases, or a lease
            # row lost; treated the same
            rows += await conn.fetch(
                "UPDATE jobs SET status = 'queued', started = NULL, attempts = attempts + 1 "
                "WHERE status = 'running' AND NOT EXISTS (SELECT 1 FROM fleet_job_leases l "
                f"WHERE l.job_id = jobs.id) AND started < {_NOW} - 60 RETURNING id")
        ids = [int(r["id"]) for r in rows]
        if ids:
            await self._execute(f"SELECT pg_notify('{JOBS_CHANNEL}', '')")
        return ids

    async def finish(self, worker: str, job_id: int, status: str,
                     error: str | None = None) -> bool:
        """The final state, only while this worker still holds the lease: a worker that
        lost its job to another must not end it. False if it did not happen."""
        async with self._conn() as conn, conn.transaction():
            held = await conn.fetchval(
                "DELETE FROM fleet_job_leases WHERE job_id = $1 AND worker = $2 "
                "RETURNING job_id", int(job_id), worker)
            if held is None:
                return False
            if status == "queued":  # a worker stopping: the next one resumes it
                n = await conn.execute(
                    "UPDATE jobs SET status = 'queued', started = NULL WHERE id = $1 "
                    "AND status = 'running'", int(job_id))
            else:
                n = await conn.execute(
                    f"UPDATE jobs SET status = $2, finished = {_NOW}, error = $3 "
                    "WHERE id = $1 AND status = 'running'", int(job_id), status, error)
                await conn.execute("DELETE FROM fleet_delivery_intents WHERE job_id = $1",
                                   int(job_id))
        if status == "queued":
            await self._execute(f"SELECT pg_notify('{JOBS_CHANNEL}', '')")
        return n.endswith(" 1")

    async def fail_queued(self, job_id: int, error: str) -> bool:
        n = await self._execute(
            f"UPDATE jobs SET status = 'failed', finished = {_NOW}, error = $2 "
            "WHERE id = $1 AND status = 'queued'", int(job_id), error)
        return n.endswith(" 1")

    # ------------------------------------------------------------------ delivery intents

    async def record_intent(self, worker: str, job_id: int) -> bool:
        """Before the first send. True if an earlier attempt had recorded one (it may have
        sent before dying)."""
        earlier = await self._fetchval(
            "SELECT worker FROM fleet_delivery_intents WHERE job_id = $1", int(job_id))
        await self._execute(
            f"INSERT INTO fleet_delivery_intents(job_id, worker, since) VALUES ($1, $2, {_NOW}) "
            "ON CONFLICT (job_id) DO UPDATE SET worker = excluded.worker, since = excluded.since",
            int(job_id), worker)
        return earlier is not None

    async def had_intent(self, job_id: int) -> bool:
        return await self._fetchval(
            "SELECT 1 FROM fleet_delivery_intents WHERE job_id = $1", int(job_id)) is not None

    # ------------------------------------------------------------------ session leases

    async def take_session(self, worker: str, user_id: int, lease_s: float) -> str | None:
        """This worker's lease on the user's Telegram session; None if it got it, else the
        worker that holds it (Telegram refuses one auth key used from two places:
        AUTH_KEY_DUPLICATED)."""
        got = await self._fetchval(_TAKE_SESSION, int(user_id), worker, float(lease_s))
        if got is not None:
            return None
        return await self._fetchval(
            "SELECT worker FROM fleet_session_leases WHERE user_id = $1", int(user_id)) or "?"

    async def renew_sessions(self, worker: str, user_ids: list[int], lease_s: float) -> None:
        if user_ids:
            await self._execute(
                f"UPDATE fleet_session_leases SET expires = {_NOW} + $3 "
                "WHERE user_id = ANY($1::bigint[]) AND worker = $2",
                [int(u) for u in user_ids], worker, float(lease_s))

    async def release_session(self, worker: str, user_id: int) -> None:
        await self._execute(
            "DELETE FROM fleet_session_leases WHERE user_id = $1 AND worker = $2",
            int(user_id), worker)
        await self._execute(f"SELECT pg_notify('{JOBS_CHANNEL}', '')")

    async def release_all(self, worker: str) -> None:
        await self._execute("DELETE FROM fleet_session_leases WHERE worker = $1", worker)

    # ------------------------------------------------------------------ admission (front)

    @contextlib.asynccontextmanager
    async def submit_lock(self):
        """Held across the caps check and the insert: every front counts the same rows.
        In-process callers queue on an asyncio lock first, not on pooled connections."""
        async with self._submit_local, self._conn() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", SUBMIT_LOCK)
            try:
                yield
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", SUBMIT_LOCK)

    async def wake_workers(self) -> None:
        await self._execute(f"SELECT pg_notify('{JOBS_CHANNEL}', '')")

    async def position(self, job_id: int) -> int | None:
        """1-based place among every queued job, premium first then oldest."""
        return await self._fetchval(
            "SELECT 1 + (SELECT COUNT(*) FROM jobs o WHERE o.status = 'queued' AND "
            "(o.premium > j.premium OR (o.premium = j.premium AND o.id < j.id))) "
            "FROM jobs j WHERE j.id = $1 AND j.status = 'queued'", int(job_id))

    async def queue_page(self, limit: int) -> list[dict]:
        rows = await self._fetch(
            "SELECT j.id, j.user_id, j.status, j.premium, l.worker FROM jobs j "
            "LEFT JOIN fleet_job_leases l ON l.job_id = j.id "
            "WHERE j.status IN ('queued', 'running') "
            "ORDER BY (j.status = 'running') DESC, j.premium DESC, j.id LIMIT $1", int(limit))
        return [dict(r) for r in rows]

    async def count_status(self, status: str) -> int:
        return int(await self._fetchval(
            "SELECT COUNT(*) FROM jobs WHERE status = $1", status))

    async def cancel_user(self, user_id: int, job_id: int | None) -> tuple[int, list[int]]:
        """Queued jobs are cancelled here and now; running ones get a cancel flag on their
        lease and a NOTIFY to the worker that holds them. Returns (cancelled now, running
        ones signalled)."""
        queued = await self._fetch(
            f"UPDATE jobs SET status = 'cancelled', finished = {_NOW}, "
            "error = 'cancelled by user' WHERE user_id = $1 AND status = 'queued' "
            "AND ($2::bigint IS NULL OR id = $2) RETURNING id", int(user_id), job_id)
        running = await self._fetch(
            "UPDATE fleet_job_leases l SET cancel = TRUE FROM jobs j WHERE j.id = l.job_id "
            "AND j.user_id = $1 AND j.status = 'running' AND ($2::bigint IS NULL OR j.id = $2) "
            "AND NOT l.cancel RETURNING l.job_id", int(user_id), job_id)
        ids = [int(r["job_id"]) for r in running]
        if ids:
            await self._execute(f"SELECT pg_notify('{CANCEL_CHANNEL}', $1)",
                                    ",".join(map(str, ids)))
        return len(queued), ids

    async def final(self, job_ids: list[int]) -> bool:
        if not job_ids:
            return True
        left = await self._fetchval(
            "SELECT COUNT(*) FROM jobs WHERE id = ANY($1::bigint[]) "
            "AND status IN ('queued', 'running')", [int(j) for j in job_ids])
        return not left

    # ------------------------------------------------------------------ heartbeats

    async def heartbeat(self, name: str, info: dict[str, Any]) -> None:
        await self._execute(
            "INSERT INTO fleet_workers(name, host, pid, version, started, seen, rss_mb, "
            "peak_mb, sessions, max_sessions, transfers, max_transfers, done, failed) "
            f"VALUES ($1, $2, $3, $4, $5, {_NOW}, $6, $7, $8, $9, $10, $11, $12, $13) "
            "ON CONFLICT (name) DO UPDATE SET seen = excluded.seen, rss_mb = excluded.rss_mb, "
            "peak_mb = excluded.peak_mb, sessions = excluded.sessions, "
            "max_sessions = excluded.max_sessions, transfers = excluded.transfers, "
            "max_transfers = excluded.max_transfers, done = excluded.done, "
            "failed = excluded.failed, version = excluded.version, pid = excluded.pid",
            name, info["host"], int(info["pid"]), info["version"], float(info["started"]),
            float(info["rss_mb"]), float(info["peak_mb"]), int(info["sessions"]),
            int(info["max_sessions"]), int(info["transfers"]), int(info["max_transfers"]),
            int(info["done"]), int(info["failed"]))

    async def forget_worker(self, name: str) -> None:
        await self._execute("DELETE FROM fleet_workers WHERE name = $1", name)

    async def workers(self, limit: int = 50) -> list[dict]:
        """Every worker heard from lately, with `age_s` since its last heartbeat."""
        await self._execute(f"DELETE FROM fleet_workers WHERE seen < {_NOW} - $1",
                                float(_WORKERS_KEPT_S))
        rows = await self._fetch(
            f"SELECT *, {_NOW} - seen AS age_s FROM fleet_workers ORDER BY name LIMIT $1",
            int(limit))
        return [dict(r) for r in rows]


def _plain(row) -> dict:
    """An asyncpg Record as the dict the pipeline reads (premium/delivered as ints)."""
    out = dict(row)
    for key in ("premium", "delivered"):
        if isinstance(out.get(key), bool):
            out[key] = int(out[key])
    return out


async def every(interval: float, fn: Callable[[], Awaitable[None]], what: str,
                stop: asyncio.Event) -> None:
    """fn() each interval until stop; an error is logged and retried at the next tick."""
    while not stop.is_set():
        try:
            await fn()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the database may be briefly away
            log.warning("fleet: %s failed", what, exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
