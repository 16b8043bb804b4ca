"""Everything the bot has stored, as bytes, whichever backend holds it: for tests that
check a secret never reaches the database in the clear."""

from __future__ import annotations

from pathlib import Path

from helpers.storage_schema import TABLES


async def stored_bytes(app) -> bytes:
    """SQLite: the database file and its WAL, as they are on disk. PostgreSQL: every
    column of every row of every table, raw bytes as they are stored, text as UTF-8."""
    s = app.settings
    if not s.database_url:
        out = b""
        for suffix in ("", "-wal"):
            path = Path(s.database_path + suffix)
            if path.exists():
                out += path.read_bytes()
        return out
    parts: list[bytes] = []
    for table, _key in TABLES:
        for row in await app.db._page(f"SELECT * FROM {table}", ()):
            for value in tuple(row):
                if isinstance(value, (bytes, bytearray, memoryview)):
                    parts.append(bytes(value))
                elif value is not None:
                    parts.append(str(value).encode())
    return b"\0".join(parts)


def query_now(url: str, sql: str) -> list[dict]:
    """A synchronous read of a PostgreSQL database (for a test's sync helper that runs
    while an event loop is running in this thread: the read gets a loop of its own)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from helpers.database import Database

    async def read() -> list[dict]:
        db = await Database.open(url)
        try:
            return [dict(r) for r in await db._page(sql, ())]
        finally:
            await db.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result(timeout=60)
