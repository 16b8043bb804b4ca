"""Database on a real SQLite file and a real PostgreSQL server (db_target): migrations, final states, transactions, paging, sessions."""

import asyncio

import pytest

from helpers import database
from helpers.database import Database
from helpers.secrets import SessionCipher, generate_key


@pytest.fixture
async def db(db_target):
    d = await Database.open(db_target)
    yield d
    await d.close()


async def test_migrations_idempotent_on_reopen(db_target):
    path = db_target
    db = await Database.open(path)
    latest = database._MIGRATIONS[-1][0]
    assert await db.schema_version() == latest
    jid = await db.add_job(1, "@c", 5, None, False)
    await db.close()
    for _ in range(2):
        db = await Database.open(path)
        try:
            assert await db.schema_version() == latest
            assert await db._scalar("SELECT COUNT(*) FROM schema_version") == len(
                database._MIGRATIONS)
            assert (await db.get_job(jid))["msg_id"] == 5
        finally:
            await db.close()


async def test_set_status_final_state_is_a_no_op(db):
    jid = await db.add_job(1, "@c", 1, None, False)
    assert await db.set_status(jid, "running") is True
    assert await db.set_status(jid, "done") is True
    for status in ("failed", "cancelled", "done", "running", "queued"):
        assert await db.set_status(jid, status, "late") is False
    row = await db.get_job(jid)
    assert row["status"] == "done" and row["error"] is None
    assert await db.set_status(999, "done") is False
    with pytest.raises(ValueError):
        await db.set_status(jid, "finished")


async def test_add_jobs_is_one_transaction(db):
    with pytest.raises(TypeError):
        # The second row fails after the first was inserted: neither may remain.
        await db.add_jobs([(1, "@c", 1, None, False), (1, "@c", None, None, False)])
    assert await db.count_waiting() == 0
    ids = await db.add_jobs([(1, "@c", n, 7, n % 2 == 0) for n in range(3)])
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert await db.count_user_active(1) == 3


async def test_reads_do_not_see_an_open_transaction(db):
    reader = None
    with pytest.raises(RuntimeError):
        async with db._tx() as conn:
            await conn.execute(
                "INSERT INTO users(id, first_seen) VALUES (1, 0)")
            await conn.execute(
                "INSERT INTO jobs(user_id, chat_ref, msg_id, created) VALUES (1, '@c', 1, 0)")
            reader = asyncio.create_task(db.count_waiting())
            await asyncio.sleep(0.05)
            # SQLite: waits for the writer; PostgreSQL: reads what is committed. Neither
            # may see the rows a ROLLBACK is about to erase.
            assert not reader.done() or reader.result() == 0
            raise RuntimeError("roll back")
    assert await reader == 0


async def test_iteration_pages_over_cursor(db, monkeypatch):
    monkeypatch.setattr(database, "_PAGE", 7)
    rows = [(u % 13, "@c", n, None, n % 3 == 0) for n, u in enumerate(range(50))]
    ids = await db.add_jobs(rows)
    premium = [i for i, r in zip(ids, rows) if r[4]]
    free = [i for i, r in zip(ids, rows) if not r[4]]
    seen = [row["id"] async for row in db.iter_jobs_with_status("queued")]
    assert seen == premium + free
    users = [u async for u in db.iter_user_ids()]
    assert users == list(range(13))
    with pytest.raises(ValueError):
        async for _ in db.iter_jobs_with_status("nope"):
            pass
    assert len(await db.jobs_of_user(0, limit=2)) == 2


async def test_requeue_running(db):
    a, b, c = await db.add_jobs([(1, "@c", n, None, False) for n in range(3)])
    await db.set_status(a, "running")
    await db.set_status(b, "running")
    await db.set_status(b, "done")
    assert await db.requeue_running() == 1
    row = await db.get_job(a)
    assert row["status"] == "queued" and row["attempts"] == 1 and row["started"] is None
    assert (await db.get_job(b))["status"] == "done"
    assert (await db.get_job(c))["attempts"] == 0
    assert await db.requeue_running() == 0


async def test_sessions_round_trip(db, monkeypatch):
    monkeypatch.setattr(database, "_PAGE", 2)
    cipher = SessionCipher(generate_key())
    for uid in (3, 1, 2):
        await db.save_session(uid, cipher.encrypt(f"session-{uid}"))
    assert cipher.decrypt(await db.load_session(1)) == "session-1"
    await db.save_session(1, cipher.encrypt("replaced"))
    assert cipher.decrypt(await db.load_session(1)) == "replaced"
    assert [u async for u in db.iter_session_user_ids()] == [1, 2, 3]
    await db.touch_session(2)
    assert await db.delete_session(2) is True
    assert await db.delete_session(2) is False
    assert await db.load_session(2) is None
    assert (await db.stats())["sessions"] == 2


async def test_users_premium_and_settings(db):
    assert await db.ensure_user(1) is True
    assert await db.ensure_user(1) is False
    await db.set_premium(1, until=100.0)
    assert await db.is_premium(1, now=50.0) and not await db.is_premium(1, now=150.0)
    await db.set_premium(1, enabled=False)
    assert not await db.is_premium(1)
    await db.set_settings(1, {"b": 1})
    assert await db.get_settings(1) == {"b": 1}
    assert await db.get_settings(404) == {}
