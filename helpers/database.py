"""Persistent state: the storage interface of the whole bot.

The database is the source of truth for users, jobs and encrypted sessions: every
write is committed before the call returns, so a kill -9 loses nothing that a caller
was told had happened. Reads that can grow with the user base are paged by key
(never fetchall), so memory stays flat however large the tables get.

Two backends sit behind this one class: SQLite on the instance's disk (DATABASE_PATH, the
embedded default, helpers/storage_sqlite.py) and PostgreSQL (DATABASE_URL, shared by any
number of processes, helpers/storage_postgres.py). The schema and its migrations are one
list (helpers/storage_schema.py); every query here is written once, in the SQL both share,
so nothing above this class knows which one is in use.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable, Sequence

from helpers.storage_schema import (MIGRATIONS, POSTGRES, SQLITE, VERSION_TABLE, Dialects,
                                    ddl)
from helpers.storage_sqlite import LOCKED_RETRY_S, SqliteBackend  # noqa: F401 - re-exported

STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATUSES = frozenset({"done", "failed", "cancelled"})
ACTIVE_STATUSES = ("queued", "running")

# Page size for keyset iteration: small enough to bound memory, large enough that a
# broadcast over many users does not pay one round trip per row.
_PAGE = 500

log = logging.getLogger(__name__)

_MIGRATIONS = MIGRATIONS  # the name tests and older callers know

_JOB_COLUMNS = (
    "id, user_id, chat_ref, msg_id, topic_id, premium, status, attempts, created, "
    "started, finished, error, progress_chat_id, progress_msg_id, bytes, delivered"
)


class StorageUnavailable(Exception):
    """The database server could not be reached (down, network): retrying may help.
    str() is one line without the URL's password."""


class StorageRefused(Exception):
    """The database server refused us (password, unknown database or role): a setting to
    fix, retrying will not help. str() is one line without the URL's password."""


class AlreadyHandled(Exception):
    """The message that asked for these jobs was acted upon before (a caught-up repeat)."""


def _check_statuses(statuses: Iterable[str] | str) -> tuple[str, ...]:
    """Reject typos early: a misspelt status would silently match nothing."""
    if isinstance(statuses, str):
        statuses = (statuses,)
    out = tuple(statuses)
    if not out:
        raise ValueError("at least one status is required")
    for s in out:
        if s not in STATUSES:
            raise ValueError(f"unknown job status {s!r}")
    return out


def _utc_midnight(now: float) -> float:
    d = _dt.datetime.fromtimestamp(now, tz=_dt.timezone.utc).date()
    return _dt.datetime(d.year, d.month, d.day, tzinfo=_dt.timezone.utc).timestamp()


def is_database_url(target: object) -> bool:
    """A PostgreSQL URL (DATABASE_URL) rather than a SQLite file path."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


class Database:
    """The bot's state, on SQLite or PostgreSQL (see the module docstring)."""

    def __init__(self, backend, clock: Callable[[], float] | None = None):
        self._b = backend
        self.path: Path | None = backend.path  # None on PostgreSQL
        # Wall clock of every stored timestamp (created, finished, first_seen, daily caps,
        # premium expiry): a test advances it to live through weeks in seconds.
        self._clock = clock or time.time

    def now(self) -> float:
        return self._clock()

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgres': for the few callers whose SQL only one engine has
        (claiming with SKIP LOCKED); everything else must not ask."""
        return self._b.dialect

    def postgres_connection(self):
        """PostgreSQL only: one connection of this storage's own pool, for the SQL that only
        PostgreSQL has (helpers/fleet_store.py: FOR UPDATE SKIP LOCKED claiming, advisory
        locks, arrays), written in asyncpg's own terms ($1 placeholders, conn.transaction()):
        `async with db.postgres_connection() as conn:`. One pool per process, the schema's
        own; the connection goes back to it at the end of the block."""
        if self._b.dialect != POSTGRES:
            raise RuntimeError("postgres_connection() needs DATABASE_URL=postgresql://...")
        return self._b.connection()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, target: str | Path,
                   clock: Callable[[], float] | None = None) -> "Database":
        """target: a SQLite file path (DATABASE_PATH) or a postgresql:// URL (DATABASE_URL)."""
        if is_database_url(target):
            from helpers.storage_postgres import PostgresBackend  # asyncpg only when used
            backend = await PostgresBackend.open(str(target))
        else:
            backend = await SqliteBackend.open(target)
        db = cls(backend, clock)
        try:
            await db._migrate()
        except BaseException:
            await backend.close()
            raise
        return db

    async def close(self) -> None:
        await self._b.close()

    async def _migrate(self) -> None:
        dialect = self._b.dialect
        async with self._b.tx() as tx:
            if dialect != SQLITE:  # SQLite's BEGIN IMMEDIATE already excludes other writers
                await self._b.migration_lock(tx)
            await tx.execute(VERSION_TABLE)
            current = await tx.scalar("SELECT MAX(version) FROM schema_version") or 0
            for version, statements in _MIGRATIONS:
                if version <= current:
                    continue
                for stmt in statements:
                    sql = ddl(stmt, dialect)
                    if isinstance(stmt, Dialects) and dialect != SQLITE:
                        await tx.script(sql)  # a function and its trigger: two statements
                    else:
                        await tx.execute(sql)
                await tx.execute("INSERT INTO schema_version(version) VALUES (?)", (version,))

    async def schema_version(self) -> int:
        return int(await self._scalar("SELECT MAX(version) FROM schema_version") or 0)

    # ------------------------------------------------------------------ plumbing

    def _tx(self):
        """One transaction: `async with db._tx() as tx: await tx.execute(sql, params)`
        (also tx.fetchone, tx.scalar); committed at the end, rolled back on an exception."""
        return self._b.tx()

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Single-statement write, committed on return; returns the rowcount."""
        return await self._b.write(sql, params)

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> dict | None:
        row = await self._b.fetchone(sql, params)
        return dict(row) if row is not None else None

    async def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = await self._b.fetchone(sql, params)
        return row[0] if row is not None else None

    async def _page(self, sql: str, params: Sequence[Any]) -> list:
        """One bounded page of rows."""
        return await self._b.page(sql, params)

    async def _limited(self, sql: str, params: Sequence[Any], limit: int) -> list[dict]:
        """Bounded list: the LIMIT is part of the query, never trusted to the caller."""
        return [dict(r) for r in await self._page(f"{sql} LIMIT ?", (*params, int(limit)))]

    # ------------------------------------------------------------------ notices

    async def listen(self, channel: str, callback: Callable[[str], Any]) -> None:
        """callback(payload) for every notify(channel, payload) of every process sharing this
        database (PostgreSQL LISTEN/NOTIFY; on SQLite, this process's). Called on the event
        loop; it must not block. Best effort: a notice can be lost on a dropped connection,
        so a caller that must not miss one also polls the state now and then."""
        await self._b.listen(channel, callback)

    async def notify(self, channel: str, payload: str) -> None:
        await self._b.notify(channel, str(payload))

    # ------------------------------------------------------------------ users

    async def ensure_user(self, user_id: int) -> bool:
        """Returns True when the user is new (first contact)."""
        n = await self._write(
            "INSERT INTO users(id, first_seen) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (int(user_id), self._clock()),
        )
        return n > 0

    async def get_user(self, user_id: int) -> dict | None:
        row = await self._one("SELECT * FROM users WHERE id = ?", (int(user_id),))
        if row is not None:
            row["banned"] = bool(row["banned"])
            row["is_admin"] = bool(row["is_admin"])
            until = row["premium_until"]
            # Effective tier, so callers never forget the expiry check.
            row["premium"] = (row["tier"] == "premium"
                              and (until is None or until > self._clock()))
        return row

    async def set_premium(
        self, user_id: int, until: float | None = None, *, enabled: bool = True
    ) -> None:
        """until=None with enabled=True means premium with no expiry; enabled=False revokes."""
        await self.ensure_user(user_id)
        if enabled:
            await self._write(
                "UPDATE users SET tier = 'premium', premium_until = ? WHERE id = ?",
                (until, int(user_id)),
            )
        else:
            await self._write(
                "UPDATE users SET tier = 'free', premium_until = NULL WHERE id = ?",
                (int(user_id),),
            )

    async def is_premium(self, user_id: int, now: float | None = None) -> bool:
        """Expiry is checked at read time so no sweeper is needed to demote users."""
        row = await self._one(
            "SELECT tier, premium_until FROM users WHERE id = ?", (int(user_id),)
        )
        if row is None or row["tier"] != "premium":
            return False
        until = row["premium_until"]
        return until is None or until > (self._clock() if now is None else now)

    async def set_admin(self, user_id: int, is_admin: bool) -> None:
        await self.ensure_user(user_id)
        await self._write(
            "UPDATE users SET is_admin = ? WHERE id = ?", (int(bool(is_admin)), int(user_id))
        )

    async def set_banned(self, user_id: int, banned: bool) -> None:
        await self.ensure_user(user_id)
        await self._write(
            "UPDATE users SET banned = ? WHERE id = ?", (int(bool(banned)), int(user_id))
        )

    async def is_banned(self, user_id: int) -> bool:
        return bool(await self._scalar("SELECT banned FROM users WHERE id = ?", (int(user_id),)))

    async def iter_user_ids(self) -> AsyncIterator[int]:
        """Keyset pages rather than one open cursor, so a slow consumer (a broadcast
        throttled by FloodWait) never pins a read snapshot and stalls WAL checkpoints."""
        last = None
        while True:
            if last is None:
                sql, params = "SELECT id FROM users ORDER BY id LIMIT ?", (_PAGE,)
            else:
                sql, params = "SELECT id FROM users WHERE id > ? ORDER BY id LIMIT ?", (last, _PAGE)
            page = [row[0] for row in await self._page(sql, params)]
            for uid in page:
                last = uid
                yield uid
            if len(page) < _PAGE:
                return

    async def count_users(self) -> int:
        return int(await self._scalar("SELECT value FROM counters WHERE name = 'users'") or 0)

    async def get_settings(self, user_id: int) -> dict:
        raw = await self._scalar("SELECT settings_json FROM users WHERE id = ?", (int(user_id),))
        if not raw:
            return {}
        try:
            val = json.loads(raw)
        except ValueError:
            return {}
        return val if isinstance(val, dict) else {}

    async def set_settings(self, user_id: int, settings: dict) -> None:
        data = json.dumps(settings, separators=(",", ":"), sort_keys=True)
        await self.ensure_user(user_id)
        await self._write("UPDATE users SET settings_json = ? WHERE id = ?", (data, int(user_id)))

    # ------------------------------------------------------------------ jobs

    async def add_job(
        self, user_id: int, chat_ref: str, msg_id: int, topic_id: int | None, premium: bool
    ) -> int:
        ids = await self.add_jobs([(user_id, chat_ref, msg_id, topic_id, premium)])
        return ids[0]

    async def add_jobs(
        self, jobs: Sequence[tuple[int, str, int, int | None, bool]],
        source: tuple[int, int] | None = None,
    ) -> list[int]:
        """All or nothing: an album or a link range is accepted as one unit.

        source: the (chat_id, msg_id) of the message that asked, marked handled in the same
        transaction, so a crash leaves either both or neither; AlreadyHandled if it was."""
        now = self._clock()
        ids: list[int] = []
        async with self._tx() as tx:
            if source is not None:
                fresh = await tx.execute(
                    "INSERT INTO handled_messages(chat_id, msg_id, handled) "
                    "VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    (int(source[0]), int(source[1]), now)) == 1
                if not fresh:
                    raise AlreadyHandled(source)
            for user_id, chat_ref, msg_id, topic_id, premium in jobs:
                await tx.execute(
                    "INSERT INTO users(id, first_seen) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    (int(user_id), now),
                )
                ids.append(await tx.scalar(
                    "INSERT INTO jobs(user_id, chat_ref, msg_id, topic_id, premium, "
                    "status, created) VALUES (?, ?, ?, ?, ?, 'queued', ?) RETURNING id",
                    (int(user_id), str(chat_ref), int(msg_id),
                     None if topic_id is None else int(topic_id), int(bool(premium)), now),
                ))
        return ids

    # ------------------------------------------------------------------ catch-up

    async def mark_handled(self, chat_id: int, msg_id: int) -> bool:
        """True if this call marked it (the caller acts on the message), False if done."""
        return await self._write(
            "INSERT INTO handled_messages(chat_id, msg_id, handled) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (int(chat_id), int(msg_id), time.time())) == 1

    async def was_handled(self, chat_id: int, msg_id: int) -> bool:
        return await self._scalar(
            "SELECT 1 FROM handled_messages WHERE chat_id = ? AND msg_id = ?",
            (int(chat_id), int(msg_id))) is not None

    async def prune_handled(self, before: float) -> int:
        return await self._write("DELETE FROM handled_messages WHERE handled < ?",
                                 (float(before),))

    async def get_update_state(self) -> tuple[int, int, int, int] | None:
        row = await self._one("SELECT pts, qts, date, seq FROM update_state WHERE id = 0")
        return None if row is None else (row["pts"], row["qts"], row["date"], row["seq"])

    async def set_update_state(self, pts: int, qts: int, date: int, seq: int) -> None:
        await self._write(
            "INSERT INTO update_state(id, pts, qts, date, seq) VALUES (0, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET pts = excluded.pts, qts = excluded.qts, "
            "date = excluded.date, seq = excluded.seq",
            (int(pts), int(qts), int(date), int(seq)))

    async def get_job(self, job_id: int) -> dict | None:
        return await self._one(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (int(job_id),))

    async def set_status(self, job_id: int, status: str, error: str | None = None) -> bool:
        """Returns False when the job is missing or already final: a final state is
        never left or overwritten, so every job ends exactly once."""
        _check_statuses(status)
        now = self._clock()
        if status == "running":
            sql = ("UPDATE jobs SET status = 'running', started = ?, finished = NULL, "
                   "error = NULL WHERE id = ? AND status NOT IN ('done','failed','cancelled')")
            params: tuple = (now, int(job_id))
        elif status == "queued":
            sql = ("UPDATE jobs SET status = 'queued', started = NULL WHERE id = ? "
                   "AND status NOT IN ('done','failed','cancelled')")
            params = (int(job_id),)
        else:
            sql = ("UPDATE jobs SET status = ?, finished = ?, error = ? WHERE id = ? "
                   "AND status NOT IN ('done','failed','cancelled')")
            params = (status, now, error, int(job_id))
        return await self._write(sql, params) > 0

    async def set_progress_message(self, job_id: int, chat_id: int, msg_id: int) -> None:
        await self._write(
            "UPDATE jobs SET progress_chat_id = ?, progress_msg_id = ? WHERE id = ?",
            (int(chat_id), int(msg_id), int(job_id)),
        )

    async def add_bytes(self, job_id: int, n: int) -> None:
        await self._write("UPDATE jobs SET bytes = bytes + ? WHERE id = ?", (int(n), int(job_id)))

    async def mark_delivered(self, job_id: int, announced: bool = False) -> None:
        """delivered: 1 once the user has the files, 2 once they were also told it is done
        (a restart between the two then says so, and after the second says nothing)."""
        await self._write("UPDATE jobs SET delivered = ? WHERE id = ?",
                          (2 if announced else 1, int(job_id)))

    async def increment_attempts(self, job_id: int) -> None:
        await self._write("UPDATE jobs SET attempts = attempts + 1 WHERE id = ?", (int(job_id),))

    async def count_waiting(self) -> int:
        return int(await self._scalar("SELECT COUNT(*) FROM jobs WHERE status = 'queued'"))

    async def count_user_active(self, user_id: int) -> int:
        return int(await self._scalar(
            "SELECT COUNT(*) FROM jobs WHERE user_id = ? AND status IN ('queued','running')",
            (int(user_id),),
        ))

    async def jobs_of_user(
        self, user_id: int, statuses: Iterable[str] | str | None = None, limit: int = 50
    ) -> list[dict]:
        """Newest first; statuses=None means any status."""
        if statuses is None:
            return await self._limited(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE user_id = ? ORDER BY id DESC",
                (int(user_id),), limit,
            )
        st = _check_statuses(statuses)
        marks = ",".join("?" * len(st))
        return await self._limited(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE user_id = ? AND status IN ({marks}) "
            "ORDER BY id DESC",
            (int(user_id), *st), limit,
        )

    async def iter_jobs_with_status(self, statuses: Iterable[str] | str) -> AsyncIterator[dict]:
        """Queue order (premium first, then oldest), paged by key on (premium, id)."""
        st = _check_statuses(statuses)
        marks = ",".join("?" * len(st))
        base = f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status IN ({marks})"
        order = " ORDER BY premium DESC, id ASC LIMIT ?"
        last: tuple[int, int] | None = None
        while True:
            if last is None:
                sql, params = base + order, (*st, _PAGE)
            else:
                sql = base + " AND (premium < ? OR (premium = ? AND id > ?))" + order
                params = (*st, last[0], last[0], last[1], _PAGE)
            page = [dict(row) for row in await self._page(sql, params)]
            for row in page:
                last = (row["premium"], row["id"])
                yield row
            if len(page) < _PAGE:
                return

    async def requeue_running(self) -> int:
        """At start-up nothing can be running: what is marked so was cut off by a crash."""
        return await self._write(
            "UPDATE jobs SET status = 'queued', started = NULL, attempts = attempts + 1 "
            "WHERE status = 'running'"
        )

    async def jobs_today(self, user_id: int, now: float | None = None) -> int:
        since = _utc_midnight(self._clock() if now is None else now)
        return int(await self._scalar(
            "SELECT COUNT(*) FROM jobs WHERE user_id = ? AND created >= ?",
            (int(user_id), since),
        ))

    async def _counters(self) -> dict[str, int]:
        return {name: int(value) for name, value in
                await self._page("SELECT name, value FROM counters", ())}

    async def stats(self) -> dict:
        """From the counters and the status index: no scan of the jobs table, and jobs
        pruned from the history still count."""
        counters = await self._counters()
        by_status = {s: counters.get(f"jobs_{s}", 0) for s in STATUSES}
        for status in ACTIVE_STATUSES:
            by_status[status] = int(await self._scalar(
                "SELECT COUNT(*) FROM jobs WHERE status = ?", (status,)))
        return {
            "users": counters.get("users", 0),
            "jobs": by_status,
            "total_bytes": counters.get("bytes", 0),
            "sessions": int(await self._scalar("SELECT COUNT(*) FROM user_sessions")),
        }

    # ------------------------------------------------------------------ history

    async def count_jobs(self) -> int:
        """Rows in the jobs table (history included); for tests and the janitor's log."""
        return int(await self._scalar("SELECT COUNT(*) FROM jobs"))

    async def prune_jobs(self, before: float, batch: int = _PAGE) -> int:
        """Delete ended jobs that finished before `before` (their job_files go with them),
        a batch per statement so other writers are not held up behind one long delete.
        Waiting and running jobs are never touched; /stats keeps counting the pruned ones."""
        total = 0
        while True:
            n = await self._write(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE finished < ? "
                "AND status IN ('done','failed','cancelled') LIMIT ?)",
                (float(before), int(batch)),
            )
            total += n
            if n < batch:
                return total

    async def compact(self) -> None:
        """Give the pages freed by pruning back to the file system and empty the WAL, so
        the files on disk stay the size of the live data, not of everything ever written."""
        await self._b.compact()

    def file_bytes(self) -> int:
        """The database's size: on SQLite the main file plus its WAL; on PostgreSQL the
        server's figure as of the last compact()."""
        return self._b.size_bytes()

    # ------------------------------------------------------------------ job files (resume)

    async def set_job_file(self, job_id: int, path: str, size: int, parts_done: str = "") -> None:
        await self._write(
            "INSERT INTO job_files(job_id, path, size, parts_done) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(job_id, path) DO UPDATE SET size = excluded.size, "
            "parts_done = excluded.parts_done",
            (int(job_id), str(path), int(size), parts_done),
        )

    async def get_job_files(self, job_id: int, limit: int = 100) -> list[dict]:
        return await self._limited(
            "SELECT job_id, path, size, parts_done FROM job_files WHERE job_id = ? ORDER BY path",
            (int(job_id),), limit,
        )

    async def delete_job_files(self, job_id: int) -> None:
        await self._write("DELETE FROM job_files WHERE job_id = ?", (int(job_id),))

    # ------------------------------------------------------------------ sessions

    async def save_session(self, user_id: int, blob: bytes) -> None:
        now = self._clock()
        async with self._tx() as tx:
            await tx.execute(
                "INSERT INTO users(id, first_seen) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (int(user_id), now),
            )
            await tx.execute(
                "INSERT INTO user_sessions(user_id, session_blob, created, last_used) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(user_id) DO UPDATE SET "
                "session_blob = excluded.session_blob, created = excluded.created, "
                "last_used = excluded.last_used, peers_blob = NULL",
                (int(user_id), bytes(blob), now, now),
            )

    async def load_session(self, user_id: int) -> bytes | None:
        blob = await self._scalar(
            "SELECT session_blob FROM user_sessions WHERE user_id = ?", (int(user_id),)
        )
        return bytes(blob) if blob is not None else None

    async def load_session_peers(self, user_id: int) -> bytes | None:
        blob = await self._scalar(
            "SELECT peers_blob FROM user_sessions WHERE user_id = ?", (int(user_id),)
        )
        return bytes(blob) if blob is not None else None

    async def save_session_peers(self, user_id: int, blob: bytes | None) -> None:
        """Beside the session, and gone with it (a deleted session leaves nothing here)."""
        await self._write(
            "UPDATE user_sessions SET peers_blob = ? WHERE user_id = ?",
            (None if blob is None else bytes(blob), int(user_id)),
        )

    async def touch_session(self, user_id: int) -> None:
        await self._write(
            "UPDATE user_sessions SET last_used = ? WHERE user_id = ?",
            (self._clock(), int(user_id)),
        )

    async def delete_session(self, user_id: int) -> bool:
        return await self._write(
            "DELETE FROM user_sessions WHERE user_id = ?", (int(user_id),)
        ) > 0

    async def iter_session_user_ids(self) -> AsyncIterator[int]:
        last = None
        while True:
            if last is None:
                sql, params = "SELECT user_id FROM user_sessions ORDER BY user_id LIMIT ?", (_PAGE,)
            else:
                sql = "SELECT user_id FROM user_sessions WHERE user_id > ? ORDER BY user_id LIMIT ?"
                params = (last, _PAGE)
            page = [row[0] for row in await self._page(sql, params)]
            for uid in page:
                last = uid
                yield uid
            if len(page) < _PAGE:
                return

    # ------------------------------------------------------------------ the bot's peers

    async def save_bot_peers(self, rows: Sequence[tuple[int, int, str]]) -> None:
        """(pyrogram peer id, access_hash, pyrogram peer type), upserted in one transaction."""
        if not rows:
            return
        now = self._clock()
        async with self._tx() as tx:
            await tx.executemany(
                "INSERT INTO bot_peers(id, access_hash, type, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET access_hash = excluded.access_hash, "
                "type = excluded.type, updated = excluded.updated",
                [(int(i), int(h), str(t), now) for i, h, t in rows])

    async def get_bot_peer(self, peer_id: int) -> tuple[int, int, str] | None:
        row = await self._one("SELECT id, access_hash, type FROM bot_peers WHERE id = ?",
                              (int(peer_id),))
        return None if row is None else (row["id"], row["access_hash"], row["type"])
