"""Persistent state on SQLite (aiosqlite).

The database is the source of truth for users, jobs and encrypted sessions: every
write is committed before the call returns, so a kill -9 loses nothing that a caller
was told had happened. Reads that can grow with the user base are paged by key
(never fetchall), so memory stays flat however large the tables get.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable, Sequence

import aiosqlite

STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATUSES = frozenset({"done", "failed", "cancelled"})
ACTIVE_STATUSES = ("queued", "running")

# Page size for keyset iteration: small enough to bound memory, large enough that a
# broadcast over many users does not pay one round trip per row.
_PAGE = 500
LOCKED_RETRY_S = 30.0  # beyond the 5 s busy timeout, before a write gives up

log = logging.getLogger(__name__)

# Append-only: a released migration is never edited, a new one is added instead.
_MIGRATIONS: list[tuple[int, tuple[str, ...]]] = [
    (
        1,
        (
            """CREATE TABLE users (
                id            INTEGER PRIMARY KEY,
                first_seen    REAL    NOT NULL,
                tier          TEXT    NOT NULL DEFAULT 'free'
                              CHECK (tier IN ('free', 'premium')),
                premium_until REAL    NULL,
                banned        INTEGER NOT NULL DEFAULT 0,
                is_admin      INTEGER NOT NULL DEFAULT 0,
                settings_json TEXT    NOT NULL DEFAULT '{}'
            )""",
            """CREATE TABLE jobs (
                id               INTEGER PRIMARY KEY AUTOINCREMENT,
                user_id          INTEGER NOT NULL REFERENCES users(id),
                chat_ref         TEXT    NOT NULL,
                msg_id           INTEGER NOT NULL,
                topic_id         INTEGER NULL,
                premium          INTEGER NOT NULL DEFAULT 0,
                status           TEXT    NOT NULL DEFAULT 'queued'
                                 CHECK (status IN ('queued', 'running', 'done',
                                                   'failed', 'cancelled')),
                attempts         INTEGER NOT NULL DEFAULT 0,
                created          REAL    NOT NULL,
                started          REAL    NULL,
                finished         REAL    NULL,
                error            TEXT    NULL,
                progress_chat_id INTEGER NULL,
                progress_msg_id  INTEGER NULL,
                bytes            INTEGER NOT NULL DEFAULT 0,
                delivered        INTEGER NOT NULL DEFAULT 0
            )""",
            "CREATE INDEX jobs_status_order ON jobs(status, premium DESC, id)",
            "CREATE INDEX jobs_user_status ON jobs(user_id, status)",
            "CREATE INDEX jobs_user_created ON jobs(user_id, created)",
            """CREATE TABLE user_sessions (
                user_id      INTEGER PRIMARY KEY REFERENCES users(id),
                session_blob BLOB    NOT NULL,
                created      REAL    NOT NULL,
                last_used    REAL    NOT NULL
            )""",
            """CREATE TABLE job_files (
                job_id     INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
                path       TEXT    NOT NULL,
                size       INTEGER NOT NULL DEFAULT 0,
                parts_done TEXT    NOT NULL DEFAULT '',
                PRIMARY KEY (job_id, path)
            )""",
        ),
    ),
    (
        2,
        (
            # Incoming messages already acted upon, so a catch-up that fetches them again
            # (updates.getDifference after a restart) acts on none of them twice.
            """CREATE TABLE handled_messages (
                chat_id INTEGER NOT NULL,
                msg_id  INTEGER NOT NULL,
                handled REAL    NOT NULL,
                PRIMARY KEY (chat_id, msg_id)
            ) WITHOUT ROWID""",
            "CREATE INDEX handled_messages_time ON handled_messages(handled)",
            # The bot's update state (pts/qts/date/seq) up to which everything is handled.
            """CREATE TABLE update_state (
                id   INTEGER PRIMARY KEY CHECK (id = 0),
                pts  INTEGER NOT NULL,
                qts  INTEGER NOT NULL,
                date INTEGER NOT NULL,
                seq  INTEGER NOT NULL
            )""",
        ),
    ),
    (
        3,
        (
            # A user session's known peers (helpers/peers.py), encrypted like the session.
            "ALTER TABLE user_sessions ADD COLUMN peers_blob BLOB NULL",
        ),
    ),
    (
        # Running totals for /stats, kept by triggers so that no code path can forget them
        # and so that pruning old jobs (prune_jobs) does not change what /stats reports.
        4,
        (
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL DEFAULT 0)",
            "INSERT INTO counters(name, value) SELECT 'jobs_' || s.status, COUNT(j.id) FROM "
            "(SELECT 'done' AS status UNION SELECT 'failed' UNION SELECT 'cancelled') s "
            "LEFT JOIN jobs j ON j.status = s.status GROUP BY s.status",
            "INSERT INTO counters(name, value) SELECT 'bytes', COALESCE(SUM(bytes), 0) FROM jobs",
            "INSERT INTO counters(name, value) SELECT 'users', COUNT(*) FROM users",
            """CREATE TRIGGER jobs_count_final AFTER UPDATE OF status ON jobs
               WHEN NEW.status IN ('done', 'failed', 'cancelled')
                AND OLD.status NOT IN ('done', 'failed', 'cancelled')
               BEGIN UPDATE counters SET value = value + 1 WHERE name = 'jobs_' || NEW.status;
               END""",
            """CREATE TRIGGER jobs_count_bytes AFTER UPDATE OF bytes ON jobs
               WHEN NEW.bytes != OLD.bytes
               BEGIN UPDATE counters SET value = value + NEW.bytes - OLD.bytes
                     WHERE name = 'bytes'; END""",
            """CREATE TRIGGER users_count_insert AFTER INSERT ON users
               BEGIN UPDATE counters SET value = value + 1 WHERE name = 'users'; END""",
            """CREATE TRIGGER users_count_delete AFTER DELETE ON users
               BEGIN UPDATE counters SET value = value - 1 WHERE name = 'users'; END""",
            # prune_jobs walks final jobs by age.
            "CREATE INDEX jobs_finished ON jobs(finished) WHERE finished IS NOT NULL",
        ),
    ),
]

_JOB_COLUMNS = (
    "id, user_id, chat_ref, msg_id, topic_id, premium, status, attempts, created, "
    "started, finished, error, progress_chat_id, progress_msg_id, bytes, delivered"
)


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


async def _incremental_auto_vacuum(conn: aiosqlite.Connection) -> None:
    """Pages freed by pruning go back to the file system on compact() instead of staying
    in the file. A database made before this setting existed is rebuilt once (VACUUM), the
    only way SQLite switches an existing file; a new one just takes the setting."""
    cur = await conn.execute("PRAGMA auto_vacuum")
    (mode,) = await cur.fetchone()
    await cur.close()
    if mode == 2:
        return
    await conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    cur = await conn.execute("SELECT COUNT(*) FROM sqlite_master")
    (objects,) = await cur.fetchone()
    await cur.close()
    if objects:
        log.info("database: switching to incremental auto_vacuum (one VACUUM)")
        await conn.execute("VACUUM")


class Database:
    """One aiosqlite connection shared by the whole process.

    Every statement is serialised by an asyncio lock: the connection runs in autocommit
    mode, and a multi-statement transaction from one coroutine must not absorb (or roll
    back) another coroutine's statement that lands in between. Reads take the lock too:
    on a shared connection a read between BEGIN and COMMIT would see rows that a
    ROLLBACK may still erase (a dirty read). The connection's single thread runs one
    statement at a time anyway, so the lock costs no throughput.
    """

    def __init__(self, conn: aiosqlite.Connection, path: Path,
                 clock: Callable[[], float] | None = None):
        self._conn = conn
        self.path = path
        self._wlock = asyncio.Lock()
        # Wall clock of every stored timestamp (created, finished, first_seen, daily caps,
        # premium expiry): a test advances it to live through weeks in seconds.
        self._clock = clock or time.time

    def now(self) -> float:
        return self._clock()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, path: str | Path,
                   clock: Callable[[], float] | None = None) -> "Database":
        path = Path(path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit; transactions are explicit (BEGIN IMMEDIATE).
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        try:
            conn.row_factory = aiosqlite.Row
            await _incremental_auto_vacuum(conn)
            await conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL under WAL survives a process crash (kill -9); only an OS crash or
            # power cut can lose the last commits, and it costs far fewer fsyncs.
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA busy_timeout=5000")
            await conn.execute("PRAGMA foreign_keys=ON")
            db = cls(conn, path, clock)
            await db._migrate()
        except BaseException:
            await conn.close()
            raise
        return db

    async def close(self) -> None:
        async with self._wlock:
            await self._conn.close()

    async def _migrate(self) -> None:
        async with self._tx() as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            cur = await conn.execute("SELECT MAX(version) FROM schema_version")
            row = await cur.fetchone()
            await cur.close()
            current = row[0] or 0
            for version, statements in _MIGRATIONS:
                if version <= current:
                    continue
                for sql in statements:
                    await conn.execute(sql)
                await conn.execute("INSERT INTO schema_version(version) VALUES (?)", (version,))

    async def schema_version(self) -> int:
        return int(await self._scalar("SELECT MAX(version) FROM schema_version") or 0)

    # ------------------------------------------------------------------ plumbing

    async def _locked_retry(self, sql: str, params: Sequence[Any] = ()):
        """Execute, waiting out another process's lock past the busy timeout: a backup or
        an operator's sqlite3 shell must delay a write, not lose it."""
        deadline = time.monotonic() + LOCKED_RETRY_S
        delay = 0.2
        while True:
            try:
                return await self._conn.execute(sql, params)
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                if time.monotonic() >= deadline:
                    raise
                log.warning("database locked; retrying in %.1f s", delay)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._wlock:
            await self._locked_retry("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            else:
                await self._conn.execute("COMMIT")

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Single-statement write, committed on return; returns the rowcount."""
        async with self._wlock:
            cur = await self._locked_retry(sql, params)
            n = cur.rowcount
            await cur.close()
            return n

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> dict | None:
        async with self._wlock:
            cur = await self._conn.execute(sql, params)
            try:
                row = await cur.fetchone()
            finally:
                await cur.close()
        return dict(row) if row is not None else None

    async def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        async with self._wlock:
            cur = await self._conn.execute(sql, params)
            try:
                row = await cur.fetchone()
            finally:
                await cur.close()
        return row[0] if row is not None else None

    async def _page(self, sql: str, params: Sequence[Any]) -> list:
        """One bounded page of rows, read under the lock (see the class docstring)."""
        async with self._wlock:
            async with self._conn.execute(sql, params) as cur:
                return [row async for row in cur]

    async def _limited(self, sql: str, params: Sequence[Any], limit: int) -> list[dict]:
        """Bounded list: the LIMIT is part of the query, never trusted to the caller."""
        return [dict(r) for r in await self._page(f"{sql} LIMIT ?", (*params, int(limit)))]

    # ------------------------------------------------------------------ users

    async def ensure_user(self, user_id: int) -> bool:
        """Returns True when the user is new (first contact)."""
        n = await self._write(
            "INSERT OR IGNORE INTO users(id, first_seen) VALUES (?, ?)",
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
        async with self._tx() as conn:
            if source is not None:
                cur = await conn.execute(
                    "INSERT OR IGNORE INTO handled_messages(chat_id, msg_id, handled) "
                    "VALUES (?, ?, ?)", (int(source[0]), int(source[1]), now))
                fresh = cur.rowcount == 1
                await cur.close()
                if not fresh:
                    raise AlreadyHandled(source)
            for user_id, chat_ref, msg_id, topic_id, premium in jobs:
                await conn.execute(
                    "INSERT OR IGNORE INTO users(id, first_seen) VALUES (?, ?)",
                    (int(user_id), now),
                )
                cur = await conn.execute(
                    "INSERT INTO jobs(user_id, chat_ref, msg_id, topic_id, premium, "
                    "status, created) VALUES (?, ?, ?, ?, ?, 'queued', ?)",
                    (int(user_id), str(chat_ref), int(msg_id),
                     None if topic_id is None else int(topic_id), int(bool(premium)), now),
                )
                ids.append(cur.lastrowid)
                await cur.close()
        return ids

    # ------------------------------------------------------------------ catch-up

    async def mark_handled(self, chat_id: int, msg_id: int) -> bool:
        """True if this call marked it (the caller acts on the message), False if done."""
        return await self._write(
            "INSERT OR IGNORE INTO handled_messages(chat_id, msg_id, handled) VALUES (?, ?, ?)",
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

    async def mark_delivered(self, job_id: int) -> None:
        await self._write("UPDATE jobs SET delivered = 1 WHERE id = ?", (int(job_id),))

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
        async with self._wlock:
            # executescript steps the pragma to its end; execute() steps it once, which
            # frees a single page.
            await self._conn.executescript("PRAGMA incremental_vacuum")
            async with self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)") as cur:
                await cur.fetchall()

    def file_bytes(self) -> int:
        """The database's size on disk: the main file plus its WAL."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += Path(f"{self.path}{suffix}").stat().st_size
        return total

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
        async with self._tx() as conn:
            await conn.execute(
                "INSERT OR IGNORE INTO users(id, first_seen) VALUES (?, ?)", (int(user_id), now)
            )
            await conn.execute(
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
