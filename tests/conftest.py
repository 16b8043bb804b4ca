"""Fixtures: an in-process tgsim on free loopback ports, real pyrogram clients for it, and the
bot running against it. What they are made of is the harness (harness/); tests share it
through these fixtures and harness imports, never by importing another test module."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.botenv import bot_env  # noqa: E402
from harness.simclients import SimClients  # noqa: E402
from harness.simserver import tgsim_in_process  # noqa: E402


@pytest.fixture
async def sim(tmp_path):
    async with tgsim_in_process(tmp_path / "tgsim") as server:
        yield server


@pytest.fixture
async def clients(sim):
    pool = SimClients(sim)
    try:
        yield pool
    finally:
        await pool.stop_all()


_phones = itertools.count(1000)


@pytest.fixture
def phone():
    return f"+1555{os.getpid() % 1000:03d}{next(_phones):04d}"


@pytest.fixture
async def env(sim, clients, tmp_path):
    """The bot running against tgsim, with one logged-in person (env.people[0])."""
    async with bot_env(sim, clients, tmp_path) as e:
        yield e


# PostgreSQL ------------------------------------------------------------------------------
# One throwaway cluster per test run (harness/postgres.py), one fresh database per test.
# Without PostgreSQL's server binaries the PostgreSQL half of the suite is skipped on a
# laptop, and fails under CI (CI set), where .ci/run installs them.

@pytest.fixture(scope="session")
def pg_cluster():
    from harness.postgres import PostgresCluster, PostgresUnavailable
    try:
        cluster = PostgresCluster().start()
    except PostgresUnavailable as e:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"CI needs a PostgreSQL server: {e}")
        pytest.skip(str(e))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster):
    """A fresh, empty PostgreSQL database's URL (a DATABASE_URL), dropped after the test."""
    url = pg_cluster.create_database()
    yield url
    pg_cluster.drop_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def db_target(request, tmp_path):
    """What Database.open takes, once per backend: a SQLite file path, then a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "state" / "bot.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture(params=["sqlite", "postgres"])
async def env_both(request, sim, clients, tmp_path):
    """`env` once on SQLite and once on PostgreSQL: for the end-to-end tests whose subject
    is state (sessions, settings, jobs across a restart). A module opts in by defining its own
    `env` fixture that returns env_both (see test_settings_e2e)."""
    overrides = {}
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    async with bot_env(sim, clients, tmp_path, **overrides) as e:
        assert e.app.db.dialect == request.param  # never silently the other backend
        yield e


@pytest.fixture(params=["sqlite", "postgres"])
def db_environ(request):
    """For a bot run as a process: the variables that choose its backend, {} (SQLite at its
    DATABASE_PATH) or {"DATABASE_URL": a fresh PostgreSQL database}."""
    if request.param == "sqlite":
        return {}
    return {"DATABASE_URL": request.getfixturevalue("pg_url")}


@pytest.fixture
async def fleet(sim, pg_url, tmp_path):
    """The scaled layout's processes (front, workers) over one PostgreSQL database."""
    from harness.fleetrig import Fleet, serial

    bot_acc = sim.world.add_bot(f"fleet{next(serial)}_bot", "Fleet")
    f = Fleet(sim, pg_url, bot_acc, tmp_path)
    try:
        yield f
    finally:
        await f.stop_all()
