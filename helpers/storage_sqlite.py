"""The embedded backend: one aiosqlite connection to a file on the instance's disk."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

import aiosqlite

from helpers.storage_schema import SQLITE

MIN_SQLITE = (3, 35, 0)  # INSERT ... RETURNING (helpers/storage_schema.py)
LOCKED_RETRY_S = 30.0  # beyond the 5 s busy timeout, before a write gives up

log = logging.getLogger("helpers.database")


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


class SqliteTx:
    """The statements of one transaction (the connection is held under the lock)."""

    def __init__(self, backend: "SqliteBackend"):
        self._b = backend

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = await self._b._conn.execute(sql, params)
        n = cur.rowcount
        await cur.close()
        return n

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._b._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()):
        cur = await self._b._conn.execute(sql, params)
        try:
            return await cur.fetchone()
        finally:
            await cur.close()

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = await self.fetchone(sql, params)
        return row[0] if row is not None else None

class SqliteBackend:
    """Every statement is serialised by an asyncio lock: the connection runs in autocommit
    mode, and a multi-statement transaction from one coroutine must not absorb (or roll
    back) another coroutine's statement that lands in between. Reads take the lock too:
    on a shared connection a read between BEGIN and COMMIT would see rows that a
    ROLLBACK may still erase (a dirty read). The connection's single thread runs one
    statement at a time anyway, so the lock costs no throughput.
    """

    dialect = SQLITE

    def __init__(self, conn: aiosqlite.Connection, path: Path):
        self._conn = conn
        self.path = path
        self._lock = asyncio.Lock()
        self._listeners: dict[str, list] = {}

    async def listen(self, channel: str, callback) -> None:
        """A SQLite file has one process: a notice goes to this process's listeners."""
        self._listeners.setdefault(channel, []).append(callback)

    async def notify(self, channel: str, payload: str) -> None:
        for callback in list(self._listeners.get(channel, ())):
            asyncio.get_running_loop().call_soon(callback, payload)

    @classmethod
    async def open(cls, path: str | Path) -> "SqliteBackend":
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            from helpers.database import StorageRefused
            raise StorageRefused(
                f"SQLite {sqlite3.sqlite_version} is too old: the bot needs "
                f"{'.'.join(map(str, MIN_SQLITE))} or later (INSERT ... RETURNING)")
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
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path)

    async def close(self) -> None:
        async with self._lock:
            await self._conn.close()

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
    async def tx(self) -> AsyncIterator[SqliteTx]:
        async with self._lock:
            await self._locked_retry("BEGIN IMMEDIATE")
            try:
                yield SqliteTx(self)
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            else:
                await self._conn.execute("COMMIT")

    async def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._lock:
            cur = await self._locked_retry(sql, params)
            n = cur.rowcount
            await cur.close()
            return n

    async def fetchone(self, sql: str, params: Sequence[Any] = ()):
        async with self._lock:
            cur = await self._conn.execute(sql, params)
            try:
                return await cur.fetchone()
            finally:
                await cur.close()

    async def page(self, sql: str, params: Sequence[Any]) -> list:
        async with self._lock:
            async with self._conn.execute(sql, params) as cur:
                return [row async for row in cur]

    async def compact(self) -> None:
        async with self._lock:
            # executescript steps the pragma to its end; execute() steps it once, which
            # frees a single page.
            await self._conn.executescript("PRAGMA incremental_vacuum")
            async with self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)") as cur:
                await cur.fetchall()

    def size_bytes(self) -> int:
        """The main file plus its WAL."""
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += Path(f"{self.path}{suffix}").stat().st_size
        return total
