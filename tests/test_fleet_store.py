"""helpers/fleet_store.py against a real PostgreSQL server (harness/postgres.py): claiming
order and SKIP LOCKED, leases that run out, ending only under one's own lease, session
leases, cancel flags."""

from __future__ import annotations

import asyncio

import pytest

from helpers.database import Database
from helpers.fleet_store import FleetStore


@pytest.fixture
async def store(pg_url):
    db = await Database.open(pg_url)  # the schema (the fleet's tables too) and the pool
    s = FleetStore(db)
    try:
        yield db, s
    finally:
        await db.close()


async def _jobs(db, specs):
    return await db.add_jobs([(uid, "chan", i, None, prem) for i, (uid, prem) in
                              enumerate(specs, 1)])


async def test_claims_premium_first_then_oldest_each_job_once(store):
    db, s = store
    ids = await _jobs(db, [(1, False), (2, True), (3, False), (4, True)])
    got = await asyncio.gather(*[s.claim(f"w{i}", 30) for i in range(6)])
    claimed = [r["id"] for r in got if r is not None]
    assert sorted(claimed) == sorted(ids)  # each once, none twice, two workers got nothing
    order = []
    ids2 = await _jobs(db, [(5, False), (6, True), (7, False), (8, True)])
    for _ in range(4):
        order.append((await s.claim("solo", 30))["id"])
    assert order == [ids2[1], ids2[3], ids2[0], ids2[2]]


async def test_an_expired_lease_puts_the_job_back_and_its_worker_cannot_end_it(store):
    db, s = store
    (job,) = await _jobs(db, [(1, False)])
    row = await s.claim("dead", 0.2)
    assert row["id"] == job
    assert await s.reap() == []  # not yet
    await asyncio.sleep(0.3)  # the lease's own time, on the database clock
    assert await s.reap() == [job]
    again = await s.claim("alive", 30)
    assert again["id"] == job and again["attempts"] == 1
    assert not await s.finish("dead", job, "done")  # lost it: must not end it
    assert await s.renew("dead", [job], 30) == {}
    assert await s.finish("alive", job, "done")
    assert (await db.get_job(job))["status"] == "done"


async def test_session_lease_is_exclusive_and_holds_back_the_users_jobs(store):
    db, s = store
    await db.save_session(9, b"blob")  # a user with a stored session
    a, b = await _jobs(db, [(9, False), (9, False)])
    first = await s.claim("w1", 30)
    assert first["id"] == a
    assert await s.take_session("w2", 9, 30) == "w1"
    assert await s.claim("w2", 30) is None  # the user's other job waits for w1
    assert (await s.claim("w1", 30))["id"] == b
    await s.release_session("w1", 9)
    assert await s.take_session("w2", 9, 30) is None


async def test_cancel_flags_running_jobs_for_their_worker(store):
    db, s = store
    a, b = await _jobs(db, [(1, False), (1, False)])
    await s.claim("w1", 30)
    seen = asyncio.Event()
    await s.listen("fleet_cancel", lambda payload: seen.set())
    now, running = await s.cancel_user(1, None)
    assert (now, running) == (1, [a])
    await asyncio.wait_for(seen.wait(), 2)
    assert await s.renew("w1", [a], 30) == {a: True}
    assert (await db.get_job(b))["status"] == "cancelled"
