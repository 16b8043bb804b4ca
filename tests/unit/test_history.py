"""Job history on SQLite: pruned by age, /stats totals kept in counters, the file compacted."""

import sqlite3

from helpers import database
from helpers.database import Database

DAY = 86400.0


class Clock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


async def _finished_jobs(db: Database, n: int, status: str = "done", size: int = 0) -> list:
    ids = await db.add_jobs([(7, "@c", i + 1, None, False) for i in range(n)])
    for jid in ids:
        await db.set_status(jid, "running")
        if size:
            await db.add_bytes(jid, size)
        await db.set_status(jid, status, None if status == "done" else "why")
    return ids


async def test_prune_deletes_only_jobs_that_ended_before_the_cutoff(db_target):
    clock = Clock()
    db = await Database.open(db_target, clock=clock)
    try:
        old = await _finished_jobs(db, 3)
        old_failed = await _finished_jobs(db, 1, "failed")
        waiting = await db.add_job(7, "@c", 99, None, False)  # created long ago, still queued
        running = await db.add_job(7, "@c", 98, None, False)
        await db.set_status(running, "running")
        clock.t += 10 * DAY
        recent = await _finished_jobs(db, 2, "cancelled")
        await db.set_job_file(old[0], "a.bin", 5)
        assert await db.prune_jobs(clock.t - 5 * DAY, batch=2) == 4
        left = {r["id"] async for r in _all(db)}
        assert left == {waiting, running, *recent}, left
        assert await db.get_job_files(old[0]) == []
        assert not set(old + old_failed) & left
    finally:
        await db.close()


async def _all(db):
    async for row in db.iter_jobs_with_status(database.STATUSES):
        yield row


async def test_stats_keep_counting_pruned_jobs_and_bytes(db_target):
    clock = Clock()
    db = await Database.open(db_target, clock=clock)
    try:
        await _finished_jobs(db, 4, size=1000)
        await _finished_jobs(db, 2, "failed", size=10)
        await db.add_job(8, "@c", 1, None, False)
        before = await db.stats()
        assert before["jobs"] == {"queued": 1, "running": 0, "done": 4, "failed": 2,
                                  "cancelled": 0}
        assert before["total_bytes"] == 4020 and before["users"] == 2
        clock.t += 40 * DAY
        assert await db.prune_jobs(clock.t - 30 * DAY) == 6
        assert await db.count_jobs() == 1
        assert await db.stats() == before
        assert await db.count_users() == 2
        # a job ends once: a repeated final status does not count twice
        jid = (await _finished_jobs(db, 1))[0]
        assert await db.set_status(jid, "failed") is False
        assert (await db.stats())["jobs"]["done"] == 5
    finally:
        await db.close()


async def test_daily_cap_and_timestamps_follow_the_injected_clock(db_target):
    clock = Clock(1_700_006_400.0)  # 00:00 UTC
    db = await Database.open(db_target, clock=clock)
    try:
        jid = await db.add_job(7, "@c", 1, None, False)
        assert (await db.get_job(jid))["created"] == clock.t
        assert await db.jobs_today(7) == 1
        clock.t += DAY
        assert await db.jobs_today(7) == 0
    finally:
        await db.close()


async def test_compact_gives_the_space_of_pruned_jobs_back(tmp_path):
    clock = Clock()
    db = await Database.open(tmp_path / "v.db", clock=clock)
    try:
        ids = await _finished_jobs(db, 60)
        for jid in ids:  # fat rows, so the pages are many
            await db._write("UPDATE jobs SET error = ? WHERE id = ?", ("e" * 3000, jid))
        await db.compact()
        full = db.file_bytes()
        clock.t += 31 * DAY
        assert await db.prune_jobs(clock.t - 30 * DAY) == 60
        await db.compact()
        assert (tmp_path / "v.db-wal").stat().st_size == 0
        assert db.file_bytes() < full / 3, (db.file_bytes(), full)  # 16 pages of schema
    finally:
        await db.close()


async def test_a_database_from_before_the_counters_is_migrated_and_switched(tmp_path):
    """Schema 1, as released: its jobs are counted once, and the file is switched to
    incremental auto_vacuum (a VACUUM) so it can shrink from then on."""
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for sql in database._MIGRATIONS[0][1]:
        con.execute(sql)
    con.execute("INSERT INTO schema_version VALUES (1)")
    con.execute("INSERT INTO users(id, first_seen) VALUES (1, 0), (2, 0)")
    for i, status in enumerate(["done", "done", "failed", "queued"]):
        con.execute("INSERT INTO jobs(user_id, chat_ref, msg_id, status, created, bytes) "
                    "VALUES (1, '@c', ?, ?, 0, 100)", (i, status))
    con.commit()
    assert con.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    con.close()
    db = await Database.open(path)
    try:
        st = await db.stats()
        assert st["users"] == 2 and st["total_bytes"] == 400
        assert st["jobs"] == {"queued": 1, "running": 0, "done": 2, "failed": 1,
                              "cancelled": 0}
        assert await db._scalar("PRAGMA auto_vacuum") == 2
    finally:
        await db.close()


def test_history_days_setting_is_documented_and_checked():
    import re
    from pathlib import Path

    import pytest

    from bot.config import ConfigError, load_settings

    example = (Path(__file__).resolve().parents[2] / "config.env.example").read_text()
    assert re.search(r"^JOB_HISTORY_DAYS=30$", example, re.M)
    assert load_settings({}, env_file=None).job_history_days == 30
    assert load_settings({"JOB_HISTORY_DAYS": "7"}, env_file=None).job_history_days == 7
    for bad in ("0", "-1", "x", "99999"):
        with pytest.raises(ConfigError, match="JOB_HISTORY_DAYS"):
            load_settings({"JOB_HISTORY_DAYS": bad}, env_file=None)
