"""QueueManager against a real SQLite file: order, caps, cancel, restart, exactly-once endings."""

import asyncio
import logging
import time

import pytest

from helpers.database import Database
from helpers.queue_manager import (
    JobError,
    QueueFull,
    QueueManager,
    SubmitRefused,
    SubmitResult,
    UserLimit,
)


async def wait_until(pred, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def db(db_target):
    d = await Database.open(db_target)
    yield d
    await d.close()


class Recorder:
    """Runner + notify that record calls; behaviour per message id."""

    def __init__(self):
        self.ran: list[int] = []
        self.notes: list[tuple[int, str]] = []
        self.started = asyncio.Event()
        self.behaviour = {}  # msg_id -> callable(row) coroutine

    async def runner(self, row):
        self.ran.append(row["id"])
        self.started.set()
        fn = self.behaviour.get(row["msg_id"])
        if fn is not None:
            await fn(row)

    async def notify(self, user_id, text):
        self.notes.append((user_id, text))


@pytest.fixture
async def make_qm(db):
    made = []

    def make(rec=None, database=None, **kw):
        rec = rec or Recorder()
        kw.setdefault("max_concurrent", 1)
        kw.setdefault("max_queue", 50)
        kw.setdefault("max_per_user", 50)
        qm = QueueManager(database or db, rec.runner, notify=rec.notify, **kw)
        made.append(qm)
        return qm, rec

    yield make
    for qm in made:
        await qm.stop(timeout=2)


def ref(n):
    return ("@chan", n, None)


async def long_sleep(row):
    await asyncio.sleep(3600)


async def test_premium_before_free_and_fifo_within_tier(make_qm):
    qm, rec = make_qm()
    free_a = await qm.submit(1, [ref(1)], premium=False)
    free_b = await qm.submit(2, [ref(2)], premium=False)
    prem_c = await qm.submit(3, [ref(3)], premium=True)
    free_d = await qm.submit(1, [ref(4)], premium=False)
    prem_e = await qm.submit(4, [ref(5)], premium=True)
    assert isinstance(free_a, SubmitResult)
    # Positions are 1-based in the combined order at the time of submission.
    assert [r.accepted[0][1] for r in (free_a, free_b, prem_c, free_d, prem_e)] == [1, 2, 1, 4, 2]
    ids = [r.accepted[0][0] for r in (free_a, free_b, prem_c, free_d, prem_e)]
    assert qm.position(ids[4]) == 2 and qm.position(ids[0]) == 3
    await qm.start()
    await asyncio.wait_for(qm.wait_idle(), 5)
    assert rec.ran == [ids[2], ids[4], ids[0], ids[1], ids[3]]
    assert qm.done_count == 5


async def test_caps_partial_acceptance_and_refusal_text(make_qm, db):
    qm, _ = make_qm(max_queue=3, max_per_user=2)
    r = await qm.submit(1, [ref(1), ref(2), ref(3)], premium=False)
    assert len(r.accepted) == 2 and r.refused == 1
    assert "at most 2" in r.reason
    with pytest.raises(UserLimit) as ei:
        await qm.submit(1, [ref(4)], premium=False)
    assert "at most 2" in str(ei.value)
    r2 = await qm.submit(2, [ref(5), ref(6), ref(7)], premium=True)
    assert len(r2.accepted) == 1 and r2.refused == 2
    assert "queue is full" in r2.reason
    with pytest.raises(QueueFull) as ei:
        await qm.submit(3, [ref(8)], premium=True)
    assert isinstance(ei.value, SubmitRefused) and "queue is full" in str(ei.value)
    assert await db.count_waiting() == 3 and qm.waiting == 3
    ok = await qm.submit(3, [], premium=False)
    assert ok == SubmitResult([], 0, None)


async def test_concurrent_submits_never_exceed_cap(make_qm, db):
    qm, _ = make_qm(max_queue=5, max_per_user=5)
    results = await asyncio.gather(
        *(qm.submit(u, [ref(u)], premium=False) for u in range(20)), return_exceptions=True
    )
    assert sum(isinstance(r, SubmitResult) for r in results) == 5
    assert all(isinstance(r, (SubmitResult, QueueFull)) for r in results)
    assert await db.count_waiting() == 5


async def test_cancel_queued(make_qm, db):
    qm, rec = make_qm()
    a = (await qm.submit(1, [ref(1)], premium=False)).accepted[0][0]
    b = (await qm.submit(1, [ref(2)], premium=False)).accepted[0][0]
    assert await qm.cancel(1, a) == 1
    assert (await db.get_job(a))["status"] == "cancelled"
    assert qm.position(a) is None and qm.position(b) == 1
    assert await qm.cancel(1, a) == 0  # already final
    await qm.start()
    await asyncio.wait_for(qm.wait_idle(), 5)
    assert rec.ran == [b]
    assert qm.cancelled_count == 1 and qm.done_count == 1


async def test_cancel_running_returns_quickly(make_qm, db):
    qm, rec = make_qm()
    rec.behaviour[1] = long_sleep
    jid = (await qm.submit(7, [ref(1)], premium=False)).accepted[0][0]
    await qm.start()
    await asyncio.wait_for(rec.started.wait(), 2)
    assert qm.running == 1
    assert (await qm.user_jobs(7)) == [(jid, "running", None)]
    t0 = time.monotonic()
    assert await qm.cancel(7) == 1
    assert time.monotonic() - t0 < 2
    row = await db.get_job(jid)
    assert row["status"] == "cancelled"
    assert qm.cancelled_count == 1 and qm.running == 0
    assert (7, f"Job #{jid} started") in rec.notes


async def test_cannot_cancel_another_users_job(make_qm, db):
    qm, rec = make_qm()
    rec.behaviour[1] = long_sleep
    running = (await qm.submit(1, [ref(1)], premium=False)).accepted[0][0]
    queued = (await qm.submit(1, [ref(2)], premium=False)).accepted[0][0]
    await qm.start()
    await asyncio.wait_for(rec.started.wait(), 2)
    assert await qm.cancel(2, running) == 0
    assert await qm.cancel(2, queued) == 0
    assert await qm.cancel(2) == 0
    assert (await db.get_job(running))["status"] == "running"
    assert (await db.get_job(queued))["status"] == "queued"
    assert qm.position(queued) == 1


async def test_restart_resumes_running_and_queued(db_target):
    path = db_target
    db1 = await Database.open(path)
    ids = await db1.add_jobs([(1, "@c", n, None, False) for n in (1, 2, 3)])
    await db1.set_status(ids[0], "running")  # the process "crashed" here
    await db1.close()

    db2 = await Database.open(path)
    rec = Recorder()
    qm = QueueManager(db2, rec.runner, notify=rec.notify, max_concurrent=1,
                      max_queue=10, max_per_user=10)
    try:
        await qm.start()
        await asyncio.wait_for(qm.wait_idle(), 5)
        assert rec.ran == ids
        for jid in ids:
            assert (await db2.get_job(jid))["status"] == "done"
        assert (await db2.get_job(ids[0]))["attempts"] == 1
    finally:
        await qm.stop()
        await db2.close()


async def test_crash_loop_job_is_dropped(make_qm, db):
    (jid,) = await db.add_jobs([(5, "@c", 1, None, False)])
    for _ in range(2):  # two crashes while running
        await db.set_status(jid, "running")
        await db.requeue_running()
    await db.set_status(jid, "running")  # and a third
    qm, rec = make_qm(max_attempts=3)
    await qm.start()
    row = await db.get_job(jid)
    assert row["status"] == "failed" and row["attempts"] == 3
    assert rec.ran == [] and qm.failed_count == 1
    assert any(u == 5 and f"Job #{jid} failed" in t for u, t in rec.notes)


async def test_every_job_ends_exactly_once(make_qm, db):
    qm, rec = make_qm(max_concurrent=3)

    async def quick(row):
        await asyncio.sleep(0.01)

    async def bad(row):
        raise JobError("nope")

    async def boom(row):
        raise RuntimeError("boom")

    async def slow(row):
        await asyncio.sleep(0.05)

    kinds = [quick, bad, boom, slow, long_sleep]
    refs = []
    for n in range(40):
        rec.behaviour[n] = kinds[n % len(kinds)]
        refs.append(ref(n))
    ids = []
    for user in range(4):
        res = await qm.submit(user, refs[user * 10:(user + 1) * 10], premium=user % 2 == 0)
        ids += [jid for jid, _ in res.accepted]
    assert len(ids) == 40
    await qm.start()
    # Cancel users 0 and 1 entirely while their jobs are in flight; the long sleepers of the
    # others are cancelled one by one as they appear.
    await asyncio.sleep(0.05)
    await qm.cancel(0)
    await qm.cancel(1)

    async def reap():
        while qm.waiting or qm.running:
            for user in (2, 3):
                for jid, status, _ in await qm.user_jobs(user):
                    row = await db.get_job(jid)
                    if status == "running" and row["msg_id"] % 5 == 4:
                        await qm.cancel(user, jid)
            await asyncio.sleep(0.01)

    await asyncio.wait_for(reap(), 15)
    await asyncio.wait_for(qm.wait_idle(), 5)
    finals = {}
    for jid in ids:
        row = await db.get_job(jid)
        assert row["status"] in ("done", "failed", "cancelled")
        finals[row["status"]] = finals.get(row["status"], 0) + 1
        # A final state is never left.
        assert await db.set_status(jid, "done") is False
        assert await db.set_status(jid, "queued") is False
    assert len(rec.ran) == len(set(rec.ran))  # no job ran twice
    assert qm.done_count == finals.get("done", 0)
    assert qm.failed_count == finals.get("failed", 0)
    assert qm.cancelled_count == finals.get("cancelled", 0)
    assert qm.done_count + qm.failed_count + qm.cancelled_count == 40
    failed_notes = [t for _, t in rec.notes if "failed" in t]
    assert len(failed_notes) == qm.failed_count


async def test_admission_false_pauses_then_resumes(make_qm, db):
    allow = {"ok": False, "calls": 0}

    async def admission():
        allow["calls"] += 1
        return allow["ok"]

    qm, rec = make_qm(admission=admission)
    jid = (await qm.submit(1, [ref(1)], premium=False)).accepted[0][0]
    await qm.start()
    await wait_until(lambda: qm.paused)
    await asyncio.sleep(0.1)
    assert rec.ran == [] and (await db.get_job(jid))["status"] == "queued"
    assert qm.snapshot()["paused"] is True
    allow["ok"] = True
    await asyncio.wait_for(qm.wait_idle(), 3)
    assert rec.ran == [jid] and not qm.paused


async def test_admission_error_fails_open(make_qm):
    async def admission():
        raise RuntimeError("budget broken")

    qm, rec = make_qm(admission=admission)
    await qm.submit(1, [ref(1)], premium=False)
    await qm.start()
    await asyncio.wait_for(qm.wait_idle(), 3)
    assert qm.done_count == 1


async def test_job_error_text_stored_and_notified(make_qm, db):
    qm, rec = make_qm()

    async def bad(row):
        raise JobError("That message has no media.")

    rec.behaviour[1] = bad
    jid = (await qm.submit(9, [ref(1)], premium=False)).accepted[0][0]
    await qm.start()
    await asyncio.wait_for(qm.wait_idle(), 3)
    row = await db.get_job(jid)
    assert row["status"] == "failed" and row["error"] == "That message has no media."
    assert (9, f"Job #{jid} failed: That message has no media.") in rec.notes
    assert qm.failed_count == 1


async def test_unexpected_exception_is_logged_and_generic(make_qm, db, caplog):
    qm, rec = make_qm()

    async def boom(row):
        raise RuntimeError("secret internals")

    rec.behaviour[1] = boom
    jid = (await qm.submit(9, [ref(1)], premium=False)).accepted[0][0]
    with caplog.at_level(logging.ERROR, logger="helpers.queue_manager"):
        await qm.start()
        await asyncio.wait_for(qm.wait_idle(), 3)
    row = await db.get_job(jid)
    assert row["status"] == "failed" and "secret internals" not in row["error"]
    assert any(r.exc_info for r in caplog.records)
    assert not any("secret internals" in t for _, t in rec.notes)


async def test_stop_puts_running_jobs_back_to_queued(make_qm, db):
    qm, rec = make_qm(max_concurrent=2)
    rec.behaviour[1] = long_sleep
    rec.behaviour[2] = long_sleep
    ids = [j for j, _ in (await qm.submit(1, [ref(1), ref(2), ref(3)], premium=False)).accepted]
    await qm.start()
    await wait_until(lambda: qm.running == 2)
    await wait_until(lambda: len(rec.ran) == 2)
    await asyncio.wait_for(qm.stop(timeout=5), 6)
    statuses = [(await db.get_job(j))["status"] for j in ids]
    assert statuses == ["queued", "queued", "queued"]
    assert (await db.get_job(ids[0]))["attempts"] == 0  # a clean stop is not a crash
    # A new manager on the same DB resumes them, in order.
    qm2, rec2 = make_qm()
    await qm2.start()
    await asyncio.wait_for(qm2.wait_idle(), 3)
    assert rec2.ran == ids


async def test_more_queued_in_db_than_fit_are_refilled(make_qm, db):
    ids = await db.add_jobs([(u, "@c", u, None, u >= 5) for u in range(8)])
    qm, rec = make_qm(max_queue=3)
    await qm.start()  # a paused start is not needed: one worker, jobs are quick
    await asyncio.wait_for(qm.wait_idle(), 5)
    premium, free = ids[5:], ids[:5]
    assert rec.ran == premium + free
    assert qm.snapshot()["waiting"] == 0


async def test_overflow_keeps_memory_bounded_and_refuses_new(make_qm, db):
    await db.add_jobs([(u, "@c", u, None, False) for u in range(6)])
    gate = asyncio.Event()

    async def admission():
        return gate.is_set()

    qm, rec = make_qm(max_queue=3, admission=admission)
    await qm.start()
    assert qm.snapshot()["in_memory"] == 3 and qm.waiting == 6
    with pytest.raises(QueueFull):
        await qm.submit(99, [ref(1)], premium=True)
    gate.set()
    await asyncio.wait_for(qm.wait_idle(), 5)
    assert qm.done_count == 6


async def test_cancel_between_take_and_start(make_qm, db):
    """Cancel lands while the worker is announcing the job: the runner never starts."""
    release = asyncio.Event()
    rec = Recorder()
    announced = asyncio.Event()

    async def slow_notify(user_id, text):
        rec.notes.append((user_id, text))
        if "started" in text:
            announced.set()
            await release.wait()

    rec.notify = slow_notify
    qm, _ = make_qm(rec=rec)
    jid = (await qm.submit(3, [ref(1)], premium=False)).accepted[0][0]
    await qm.start()
    await asyncio.wait_for(announced.wait(), 2)
    assert await qm.cancel(3, jid, wait=0) == 1
    release.set()
    await asyncio.wait_for(qm.wait_idle(), 3)
    assert rec.ran == []
    assert (await db.get_job(jid))["status"] == "cancelled" and qm.cancelled_count == 1
