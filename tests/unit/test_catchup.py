"""helpers.catchup against a real SQLite file: each message acted on once, the checkpoint
never ahead of a running handler, the offline note for old links."""

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyrogram.storage import SQLiteStorage, UpdateState

from helpers.catchup import NEW, SEEN, STALE, Catchup, asks_for_jobs, offline_note
from helpers.database import AlreadyHandled, Database

LINK = "https://t.me/somechannel/5"


@pytest.fixture
async def db(db_target):
    d = await Database.open(db_target)
    yield d
    await d.close()


@pytest.fixture
async def client():
    """Just what Catchup reads of a client: a real session storage and a dispatcher's
    queue and worker locks (no network: pure logic)."""
    storage = SQLiteStorage("t", workdir=Path("."), in_memory=True)
    await storage.open()
    await storage.set_update_state(UpdateState(0, 10, 0, 1000, 3))
    resyncs = []

    async def recover_gaps():
        resyncs.append(time.monotonic())
        return 0, 0

    yield SimpleNamespace(storage=storage, dispatcher=SimpleNamespace(
        updates_queue=asyncio.Queue(), locks_list=[asyncio.Lock(), asyncio.Lock()]),
        is_connected=True, recover_gaps=recover_gaps, resyncs=resyncs)
    await storage.close()


async def test_admit_marks_once_and_defers_links_to_their_jobs(db, client):
    c = Catchup(client, db, max_age_s=60)
    now = time.time()
    assert await c.admit(1, 1, now, "/start") == NEW
    assert await c.admit(1, 1, now, "/start") == SEEN
    assert await c.admit(1, 2, now, LINK) == NEW  # not marked yet: its jobs will be
    assert await c.admit(1, 2, now, LINK) == NEW
    await db.add_jobs([(1, "@somechannel", 5, None, False)], source=(1, 2))
    assert await c.admit(1, 2, now, LINK) == SEEN
    with pytest.raises(AlreadyHandled):
        await db.add_jobs([(1, "@somechannel", 5, None, False)], source=(1, 2))
    assert len(await db.jobs_of_user(1)) == 1
    assert await c.admit(1, 3, now - 120, LINK) == STALE
    assert await c.admit(1, 3, now - 120, LINK) == SEEN  # the note goes once
    assert await c.admit(1, 4, now - 120, "hello") == NEW  # no link: nothing to refuse


async def test_checkpoint_waits_for_idle_handlers_and_the_lag(db, client):
    c = Catchup(client, db, max_age_s=60, lag_s=0)
    await c.tick()
    assert await db.get_update_state() is None, "nothing before the catch-up ran"
    c._recovered = True
    await c.tick()  # candidate taken
    async with client.dispatcher.locks_list[1]:  # a handler is running: candidate dropped
        await client.storage.set_update_state(UpdateState(0, 12, None, None, None))
        await c.tick()
    assert await db.get_update_state() is None
    await c.tick()  # new candidate (pts 12) while idle
    client.dispatcher.updates_queue.put_nowait(object())  # an update waits: not idle
    await c.tick()
    assert await db.get_update_state() is None
    client.dispatcher.updates_queue.get_nowait()
    await c.tick()
    await c.tick()
    assert await db.get_update_state() == (12, 0, 1000, 3)


def test_what_counts_as_a_link_and_the_note():
    assert asks_for_jobs("see https://T.ME/c/123/4") and asks_for_jobs("telegram.me/x/1")
    assert not asks_for_jobs("/start") and not asks_for_jobs(None)
    assert "26 h ago" in offline_note(26 * 3600) and "5 min ago" in offline_note(300)


async def test_a_running_bot_asks_for_a_difference_now_and_then(db, client):
    c = Catchup(client, db, max_age_s=60, resync_s=3600)
    c._recovered = True
    await c.tick()
    assert client.resyncs == []
    c.resync_s = 0
    await c.tick()
    client.is_connected = False
    await c.tick()
    assert len(client.resyncs) == 1


async def test_a_channel_state_without_pts_does_not_stop_the_catch_up(db, client):
    """A bot's updateChannelParticipant (channel_id, qts, no pts) leaves the library a channel
    state with pts NULL, from which recover_gaps would send getChannelDifference(pts=None)
    and fail as a whole; the catch-up drops that row and keeps real channel states."""
    await client.storage.set_update_state(UpdateState(-1001234, None, 7, None, None))
    await client.storage.set_update_state(UpdateState(-1005678, 40, None, 900, None))
    seen = []

    async def recover_gaps():
        states = await client.storage.get_update_states()
        assert all(s.pts is not None for s in states), states  # what the library would use
        seen.extend(s.id for s in states)
        return 0, 0

    client.recover_gaps = recover_gaps
    await Catchup(client, db, max_age_s=60).recover()
    assert sorted(seen) == [-1005678, 0]
