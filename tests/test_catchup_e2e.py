"""Links sent while the bot process is down (a deploy's SIGTERM, a kill -9) are answered after
the restart, each exactly once; one older than CATCHUP_MAX_AGE gets the offline note and no
job. tgsim pushes nothing old to a restarted client, as Telegram does, so only a catch-up
through updates.getDifference finds them."""

from __future__ import annotations

import time

import pytest

from harness.crashrig import Rig
from harness.crashrig import protected_channel as _channel


@pytest.fixture
async def make_rig(request, sim, clients, phone, tmp_path):
    """A test that also asks for db_environ runs on SQLite and on PostgreSQL."""
    db_environ = (request.getfixturevalue("db_environ")
                  if "db_environ" in request.fixturenames else {})
    rigs: list[Rig] = []

    async def make(username: str, **env) -> Rig:
        bot_acc = sim.world.add_bot(username, "Catcher")
        user = await clients.user(phone, "Away")
        rig = Rig(sim, user, bot_acc, tmp_path, **db_environ, **env)
        rigs.append(rig)
        return rig

    try:
        yield make
    finally:
        for rig in rigs:
            await rig.stop()


def _caught_up(rig: Rig) -> int:
    return rig.log.read_text().count("Caught up:") if rig.log.exists() else 0


async def _send(rig: Rig, link: str):
    return await rig.user.send_message(rig.bot_acc.username, link)


async def _settled(rig: Rig, runs: int) -> None:
    """This run's catch-up is done and a live message sent after it has been answered, so
    whatever the catch-up fetched again has been through the handlers."""
    await rig.until(lambda: _caught_up(rig) >= runs, 30, "the catch-up")
    before = len(rig.seen)
    await rig.user.send_message(rig.bot_acc.username, "/status")
    await rig.until(lambda: len(rig.seen) > before, 30, "the barrier reply")


async def test_links_sent_while_down_are_answered_once_after_sigterm_and_kill9(make_rig,
                                                                              db_environ):
    # db_environ: on both backends, since what was handled and the update state are stored
    rig = await make_rig("catchup_bot")
    links, captions, _ = await _channel(rig, [200_000, 200_000, 200_000], "cu")
    await rig.start()
    await _send(rig, links[0])
    await rig.until(lambda: rig.media(captions[0]), 60, "the live link's file")

    await rig.stop()  # SIGTERM, as on every deploy
    assert rig.proc.returncode == 0
    await _send(rig, links[1])
    await rig.start()
    await rig.until(lambda: rig.media(captions[1]), 60, "the link sent after SIGTERM")
    await _settled(rig, 2)

    await rig.kill9()
    await _send(rig, links[2])
    await rig.start()
    await rig.until(lambda: rig.media(captions[2]), 60, "the link sent after kill -9")
    await _settled(rig, 3)

    # the job's row is written after its file went out, so wait for it, not assert at once
    jobs = await rig.all_final(3, 30)
    assert len(jobs) == 3, f"one job per link, none twice: {jobs}"
    for caption in captions:
        assert len(rig.media(caption)) == 1, f"{caption} delivered {len(rig.media(caption))}x"
    queued = [t for t in rig.texts() if "queued at position" in t]
    assert len(queued) == 3, queued
    assert not any("offline" in t for t in rig.texts())


async def test_a_link_older_than_the_bound_gets_the_offline_note_and_no_job(make_rig):
    rig = await make_rig("stale_catchup_bot", CATCHUP_MAX_AGE="25")
    links, captions, _ = await _channel(rig, [150_000, 150_000], "old")
    await rig.start()
    await _settled(rig, 1)
    await rig.stop()

    old = await _send(rig, links[0])
    await rig.until(lambda: time.time() > old.date.timestamp() + 26, 40, "the link to age")
    await _send(rig, links[1])
    await rig.start()
    await rig.until(lambda: rig.media(captions[1]), 60, "the fresh link's file")
    await _settled(rig, 2)

    notes = [s for s in rig.seen if "arrived while I was offline" in s.text]
    assert len(notes) == 1, rig.texts()
    assert notes[0].msg.reply_to_message_id == old.id
    assert not rig.media(captions[0])
    jobs = rig.jobs()
    assert [j["msg_id"] for j in jobs.values()] == [int(links[1].rsplit("/", 1)[1])], jobs
