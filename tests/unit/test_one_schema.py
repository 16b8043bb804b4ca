"""One schema and one migration path for both engines (issue 15): every table, index and
trigger of the product is made by a numbered migration of helpers/storage_schema.py, none by
a module of its own (the fleet's tables once were, in helpers/fleet_store.py, with a second
lock and a second pool)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from helpers.database import Database
from helpers.storage_schema import MIGRATIONS, SQLITE, Dialects

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("bot", "helpers", "plugins")
SCHEMA = "helpers/storage_schema.py"
_DDL = re.compile(r"\b(CREATE|ALTER|DROP)\s+(UNIQUE\s+)?(TABLE|INDEX|TRIGGER|FUNCTION|VIEW)\b",
                  re.IGNORECASE)


def ddl_strings(source: str) -> list[tuple[int, str]]:
    """(line, text) of each string literal (f-string parts too) that holds a DDL statement;
    comments are not strings, so a comment that names one is not counted."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and _DDL.search(node.value):
            out.append((node.lineno, node.value.strip().splitlines()[0]))
    return out


def test_no_product_module_but_the_schema_makes_tables():
    found = []
    for top in PRODUCT:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == SCHEMA:
                continue
            found += [f"{rel}:{line}: {text}"
                      for line, text in ddl_strings(path.read_text(encoding="utf-8"))]
    assert not found, ("tables, indexes and triggers are made by a numbered migration in "
                       f"{SCHEMA}, for both engines:\n" + "\n".join(found))


def test_the_scan_sees_ddl_in_strings_and_not_in_comments():
    assert ddl_strings('x = """CREATE TABLE IF NOT EXISTS t (a INTEGER)"""')
    assert ddl_strings("q = f'create index {name} on t(a)'")
    assert ddl_strings('conn.execute("ALTER TABLE t ADD COLUMN b TEXT")')
    assert not ddl_strings("# CREATE TABLE IF NOT EXISTS alone races\nx = 'SELECT 1'")
    assert not ddl_strings("x = 'INSERT INTO fleet_jobs(a) VALUES (1)'")


def _fleet_tables() -> set[str]:
    """The tables helpers/fleet_store.py reads and writes."""
    text = (ROOT / "helpers/fleet_store.py").read_text(encoding="utf-8")
    return set(re.findall(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+(fleet_\w+)", text))


def _created(dialect: str) -> set[str]:
    out = set()
    for _version, statements in MIGRATIONS:
        for stmt in statements:
            sql = stmt.for_(dialect) if isinstance(stmt, Dialects) else stmt
            out |= set(re.findall(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", sql))
    return out


def test_every_fleet_table_is_a_migration():
    used = _fleet_tables()
    assert {"fleet_job_leases", "fleet_session_leases", "fleet_delivery_intents",
            "fleet_workers"} <= used  # the scan of fleet_store is not blind
    assert used <= _created(SQLITE)


async def test_both_engines_have_the_fleet_tables_after_the_migrations(db_target):
    db = await Database.open(db_target)
    try:
        for table in sorted(_fleet_tables()):
            assert await db._scalar(f"SELECT COUNT(*) FROM {table}") == 0
    finally:
        await db.close()


# The fleet's tables as the build before migration 6 made them itself (helpers/fleet_store.py
# at 78159de), in PostgreSQL's spelling.
_BEFORE_MIGRATION_6 = (
    ("CREATE TABLE fleet_job_leases (job_id BIGINT PRIMARY KEY, worker TEXT NOT NULL, "
     "expires DOUBLE PRECISION NOT NULL, cancel BOOLEAN NOT NULL DEFAULT FALSE)"),
    "CREATE INDEX fleet_job_leases_expires ON fleet_job_leases(expires)",
    ("CREATE TABLE fleet_session_leases (user_id BIGINT PRIMARY KEY, worker TEXT NOT NULL, "
     "expires DOUBLE PRECISION NOT NULL)"),
    ("CREATE TABLE fleet_delivery_intents (job_id BIGINT PRIMARY KEY, worker TEXT NOT NULL, "
     "since DOUBLE PRECISION NOT NULL)"),
    ("CREATE TABLE fleet_workers (name TEXT PRIMARY KEY, host TEXT NOT NULL, "
     "pid INTEGER NOT NULL, version TEXT NOT NULL, started DOUBLE PRECISION NOT NULL, "
     "seen DOUBLE PRECISION NOT NULL, rss_mb DOUBLE PRECISION NOT NULL DEFAULT 0, "
     "peak_mb DOUBLE PRECISION NOT NULL DEFAULT 0, sessions INTEGER NOT NULL DEFAULT 0, "
     "max_sessions INTEGER NOT NULL DEFAULT 0, transfers INTEGER NOT NULL DEFAULT 0, "
     "max_transfers INTEGER NOT NULL DEFAULT 0, done BIGINT NOT NULL DEFAULT 0, "
     "failed BIGINT NOT NULL DEFAULT 0)"),
)


async def test_a_database_whose_fleet_tables_the_earlier_build_made_migrates(pg_url):
    """A scaled deployment upgraded in place: its fleet tables exist, migration 6 has not run;
    its rows (a lease held by a running worker) stay."""
    db = await Database.open(pg_url)
    try:
        async with db._tx() as tx:
            for table in sorted(_fleet_tables()):
                await tx.execute(f"DROP TABLE {table}")
            for sql in _BEFORE_MIGRATION_6:
                await tx.execute(sql)
            await tx.execute("INSERT INTO fleet_session_leases VALUES (7, 'w1', 1e12)")
            await tx.execute("DELETE FROM schema_version WHERE version >= 6")
        assert await db.schema_version() == 5
    finally:
        await db.close()
    db = await Database.open(pg_url)
    try:
        assert await db.schema_version() == MIGRATIONS[-1][0]
        assert await db._scalar("SELECT worker FROM fleet_session_leases WHERE user_id = 7") \
            == "w1"
    finally:
        await db.close()


def test_one_pool_per_process_the_storages():
    """Only the PostgreSQL backend talks to asyncpg: every other module's SQL goes through the
    Database (its pool, its LISTEN connection), so a process opens one pool, not one per
    concern (helpers/fleet_store.py once opened its own)."""
    found = []
    for top in PRODUCT:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "helpers/storage_postgres.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                found += [f"{rel}:{node.lineno}: {n}" for n in names
                          if n.split(".")[0] == "asyncpg"]
    assert not found, ("asyncpg only in helpers/storage_postgres.py (Database."
                       "postgres_connection hands out its connections):\n" + "\n".join(found))
