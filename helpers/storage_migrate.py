"""Moving a SQLite deployment into PostgreSQL (`python -m bot migrate-db --to URL`).

Both ends are opened through helpers.database, so both are at the latest schema first
(the same migrations); then every table of storage_schema.TABLES is copied row by row, in
keyset pages (memory stays flat however big the history is), inside ONE transaction on the
target: an interrupted copy leaves the target as it was, never half-moved.

Rows are upserted on their primary key, source wins: a second run over the same source
leaves the target exactly as the first did (safe to re-run), and rows only the target has
are kept. A target the bot has run on since (a job past the source's last id, or a /stats
total above the source's) is refused unless `force`: source-wins would put back the old
sessions, settings and totals over what the bot did there. Session blobs are copied as the
ciphertext they are; the same SESSION_KEY opens them on the other side. The counters (the /stats totals that outlive the pruned history)
are copied last, so what the target's triggers counted while rows arrived is replaced by
the source's exact totals. The bot's peers also come from the library's session file beside
the database (bot.session), where deployments kept them before bot_peers existed; a row
already in bot_peers wins over the file's. Job ids keep counting from where SQLite's AUTOINCREMENT was (it
never reuses an id, even a pruned one), so a new job never takes an old one's id.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from helpers.database import Database
from helpers.storage_schema import TABLES

log = logging.getLogger("migrate-db")

PAGE = 500


class MigrationError(Exception):
    """The operator asked for something impossible; str() is one line."""


def _upsert_sql(table: str, columns: list[str], key: tuple[str, ...]) -> str:
    cols = ", ".join(columns)
    marks = ", ".join("?" * len(columns))
    rest = [c for c in columns if c not in key]
    if rest:
        action = "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in rest)
    else:
        action = "DO NOTHING"
    return (f"INSERT INTO {table} ({cols}) VALUES ({marks}) "
            f"ON CONFLICT ({', '.join(key)}) {action}")


async def _columns(db: Database, table: str) -> list[str]:
    return [row["name"] for row in await db._page(f"PRAGMA table_info({table})", ())]


async def _pages(db: Database, table: str, columns: list[str], key: tuple[str, ...]):
    """The table in key order, PAGE rows at a time (row-value comparison for the composite
    keys of job_files and handled_messages)."""
    cols = ", ".join(columns)
    order = ", ".join(key)
    last = None
    while True:
        if last is None:
            sql, params = f"SELECT {cols} FROM {table} ORDER BY {order} LIMIT ?", (PAGE,)
        else:
            sql = (f"SELECT {cols} FROM {table} WHERE ({order}) > "
                   f"({', '.join('?' * len(key))}) ORDER BY {order} LIMIT ?")
            params = (*last, PAGE)
        page = [tuple(row) for row in await db._page(sql, params)]
        if page:
            yield page
            index = [columns.index(k) for k in key]
            last = tuple(page[-1][i] for i in index)
        if len(page) < PAGE:
            return


async def copy_sqlite_to_postgres(source: str | Path, target_url: str, *,
                                  force: bool = False) -> dict[str, int]:
    """Copy every table; returns the rows copied per table."""
    source = Path(source)
    if not source.is_file():
        raise MigrationError(f"no SQLite database at {source} (set DATABASE_PATH or --from)")
    src = await Database.open(source)
    try:
        if src.dialect != "sqlite":
            raise MigrationError("the source must be a SQLite file")
        dst = await Database.open(target_url)
        try:
            if dst.dialect != "postgres":
                raise MigrationError("--to must be a postgresql:// URL")
            return await _copy(src, dst, force)
        finally:
            await dst.close()
    finally:
        await src.close()


async def _bot_session_peers(src: Database, tx) -> int:
    """The bot's peers from the library's session file beside the database (bot.session),
    where a deployment from before bot_peers kept them: without them the bot on PostgreSQL
    would not know the private chats it was added to (helpers/shared_peers.py)."""
    path = src.path.parent / "bot.session"
    if not path.is_file():
        return 0
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    n = 0
    try:
        cur = con.execute("SELECT id, access_hash, type FROM peers "
                          "WHERE access_hash IS NOT NULL ORDER BY id")
        while page := cur.fetchmany(PAGE):
            await tx.executemany(
                "INSERT INTO bot_peers(id, access_hash, type, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING", [(*row, src.now()) for row in page])
            n += len(page)
    except sqlite3.Error as e:  # not a pyrogram session file after all: nothing to take
        log.warning("migrate-db: %s: no peers read (%s)", path, e)
    finally:
        con.close()
    log.info("migrate-db: bot.session: %d peers", n)
    return n


async def _last_job_id(src: Database) -> int:
    """The last job id SQLite handed out: AUTOINCREMENT's high-water mark, which pruning
    leaves above MAX(id)."""
    seq = await src._scalar("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'") or 0
    return max(int(seq), int(await src._scalar("SELECT COALESCE(MAX(id), 0) FROM jobs") or 0))


async def _in_use_since(src: Database, tx) -> str | None:
    """What says the bot has run on the target after the source was copied there, if
    anything: a job id past every id the source handed out, or a /stats total above the
    source's (both only grow while a bot runs)."""
    top = await _last_job_id(src)
    newer = int(await tx.scalar("SELECT COUNT(*) FROM jobs WHERE id > ?", (top,)) or 0)
    if newer:
        return f"{newer} job(s) newer than the source's last (id {top})"
    theirs = {row["name"]: row["value"] for row in await src._page(
        "SELECT name, value FROM counters", ())}
    for name, value in theirs.items():
        here = await tx.scalar("SELECT value FROM counters WHERE name = ?", (name,))
        if here is not None and int(here) > int(value):
            return f"the /stats total {name} is {here} there against {value} in the source"
    return None


async def _copy(src: Database, dst: Database, force: bool = False) -> dict[str, int]:
    counts: dict[str, int] = {}
    async with dst._tx() as tx:
        used = None if force else await _in_use_since(src, tx)
        if used:
            raise MigrationError(
                f"the target has been used since it was copied ({used}): copying again would "
                "put the old sessions, settings and totals back over it; --force to do it anyway")
        for table, key in TABLES:
            columns = await _columns(src, table)
            sql = _upsert_sql(table, columns, key)
            n = 0
            async for page in _pages(src, table, columns, key):
                await tx.executemany(sql, page)
                n += len(page)
            counts[table] = n
            log.info("migrate-db: %s: %d rows", table, n)
        counts["bot_peers"] += await _bot_session_peers(src, tx)
        name = await tx.scalar("SELECT pg_get_serial_sequence('jobs', 'id')")
        used = await tx.scalar(f"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {name}")
        top = max(await _last_job_id(src), int(used or 0),
                  int(await tx.scalar("SELECT COALESCE(MAX(id), 0) FROM jobs")))
        await tx.scalar("SELECT setval(?::regclass, ?, ?)", (name, max(top, 1), top > 0))
    return counts
