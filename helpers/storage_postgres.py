"""The shared backend: a small asyncpg pool to PostgreSQL (DATABASE_URL).

Unlike the SQLite backend nothing is serialised here: PostgreSQL isolates each pooled
connection's transaction (a read never sees another's uncommitted rows), and several
processes (front, workers) write to the same database at once. Every statement is
written with '?' placeholders and translated once, in helpers.storage_schema.query.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, AsyncIterator, Sequence

import asyncpg

from helpers.storage_errors import register_busy
from helpers.storage_schema import POSTGRES, query

# What a plugin may be told as "busy, send it again" (helpers/storage_errors.py).
register_busy(asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
              asyncpg.SerializationError, asyncpg.DeadlockDetectedError)

log = logging.getLogger("helpers.database")

CONNECT_TIMEOUT_S = 30.0
# per process, the fleet's SQL included (helpers/fleet_store.py runs on this pool): a front's
# handlers and a worker's transfers rarely need more
POOL_MAX = 5
# Any constant of our own: processes starting together run the migrations one at a time
# (CREATE TABLE IF NOT EXISTS alone races between two sessions in PostgreSQL).
_MIGRATION_LOCK = 0x7467_6462  # "tgdb"


def _rowcount(status: str) -> int:
    """asyncpg reports a command's tag ('INSERT 0 1', 'UPDATE 3'): its last word counts rows."""
    tail = status.rsplit(" ", 1)[-1] if status else ""
    return int(tail) if tail.isdigit() else 0


class PostgresTx:
    def __init__(self, conn: asyncpg.Connection):
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return _rowcount(await self._conn.execute(query(sql, POSTGRES), *params))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(query(sql, POSTGRES), rows)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()):
        return await self._conn.fetchrow(query(sql, POSTGRES), *params)

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return await self._conn.fetchval(query(sql, POSTGRES), *params)

    async def script(self, sql: str) -> None:
        """Several statements, no parameters (a trigger and its function)."""
        await self._conn.execute(sql)


class PostgresBackend:
    dialect = POSTGRES
    path = None  # nothing on the instance's disk

    def __init__(self, pool: asyncpg.Pool, url: str):
        self._pool = pool
        self.url = url
        self._size = 0
        self._listener: asyncpg.Connection | None = None

    @classmethod
    async def open(cls, url: str, pool_max: int = POOL_MAX) -> "PostgresBackend":
        from helpers.database import StorageRefused, StorageUnavailable
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_max,
                                             command_timeout=60, timeout=CONNECT_TIMEOUT_S)
        except (asyncpg.InvalidAuthorizationSpecificationError,
                asyncpg.InvalidCatalogNameError, asyncpg.InvalidPasswordError) as e:
            raise StorageRefused(f"PostgreSQL (DATABASE_URL) refused the connection: "
                                 f"{type(e).__name__}: {e}") from None
        except (OSError, asyncio.TimeoutError, asyncpg.CannotConnectNowError,
                asyncpg.TooManyConnectionsError) as e:
            raise StorageUnavailable(f"PostgreSQL (DATABASE_URL) could not be reached: "
                                     f"{type(e).__name__}: {e}") from None
        return cls(pool, url)

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        await self._pool.close()

    async def listen(self, channel: str, callback) -> None:
        """LISTEN on one connection of its own (a pooled one would be handed to others).
        If that connection drops, notifications are lost until the next listen(): callers
        keep a slow poll as well."""
        if self._listener is None or self._listener.is_closed():
            self._listener = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S)
        await self._listener.add_listener(
            channel, lambda _conn, _pid, _channel, payload: callback(payload))

    async def notify(self, channel: str, payload: str) -> None:
        await self.write("SELECT pg_notify(?, ?)", (channel, payload))

    async def migration_lock(self, tx: PostgresTx) -> None:
        await tx.scalar("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[PostgresTx]:
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                yield PostgresTx(conn)

    def connection(self):
        """A pooled asyncpg connection, untranslated (Database.postgres_connection)."""
        return self._pool.acquire()

    async def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._pool.acquire() as conn:
            return _rowcount(await conn.execute(query(sql, POSTGRES), *params))

    async def fetchone(self, sql: str, params: Sequence[Any] = ()):
        async with self._pool.acquire() as conn:
            return await conn.fetchrow(query(sql, POSTGRES), *params)

    async def page(self, sql: str, params: Sequence[Any]) -> list:
        async with self._pool.acquire() as conn:
            return await conn.fetch(query(sql, POSTGRES), *params)

    async def compact(self) -> None:
        """Autovacuum gives dead rows' space back for reuse on its own; what is left is to
        learn the size for the janitor's log line."""
        async with self._pool.acquire() as conn:
            self._size = int(await conn.fetchval(
                "SELECT pg_database_size(current_database())") or 0)

    def size_bytes(self) -> int:
        """The database's size as of the last compact() (PostgreSQL's files are not ours)."""
        return self._size
