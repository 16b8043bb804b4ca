"""kill -9 at every point of a job: queued, downloading, uploading, and after the upload but
before the bookkeeping. The bot runs as a process against the in-process tgsim; after each
restart every job must end exactly once: none lost, and no file delivered twice unless the
user was told first that it is a retry.

Each test prints its figures: jobs accepted / finished / lost / duplicates-without-notice."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3

import pytest

from harness.crashrig import TOTALS, Rig
from harness.crashrig import protected_channel as _channel
from harness.files import file_digest, write_random
from harness.outcomes import FINAL


@pytest.fixture(scope="module", autouse=True)
def _print_totals():
    yield
    print(f"\n[crash totals] jobs accepted {TOTALS['accepted']} / finished "
          f"{TOTALS['finished']} / failed-and-told {TOTALS['failed_told']} / lost "
          f"{TOTALS['lost']} / duplicates-without-notice "
          f"{TOTALS['duplicates_without_notice']}")


@pytest.fixture
async def rig(sim, clients, phone, tmp_path):
    bot_acc = sim.world.add_bot("crashy_bot", "Crashy")
    user = await clients.user(phone, "Patient")
    r = Rig(sim, user, bot_acc, tmp_path)
    try:
        yield r
    finally:
        await r.stop()


async def _submit(rig: Rig, links: list[str], captions: list[str]) -> dict[int, str]:
    """Send the links in one message; job id -> caption, from the 'queued' reply."""
    await rig.user.send_message(rig.bot_acc.username, "\n".join(links))
    await rig.until(lambda: len(rig.accepted()) >= len(links), 30, "the queued reply")
    return dict(zip(rig.accepted(), captions))


async def _check_bytes(rig: Rig, digests: dict[str, str]) -> None:
    for caption, digest in digests.items():
        copies = rig.media(caption)
        path = await rig.user.download_media(copies[-1].msg,
                                             file_name=str(rig.tmp / "out" / "f"))
        assert file_digest(path) == digest, caption
        os.remove(path)


# -- the tests -----------------------------------------------------------------------------
async def test_kill_while_downloading_with_jobs_queued(rig):
    """Job 1 killed mid-download, jobs 2 and 3 waiting in the queue."""
    sim = rig.sim
    links, captions, digests = await _channel(rig, [3_000_000, 800_000, 700_000], "dl")
    sim.faults.bandwidth_bps = 1024 * 1024
    await rig.start()
    base = sim.stats["upload.GetFile"]
    by_job = await _submit(rig, links, captions)
    await rig.until(lambda: sim.stats["upload.GetFile"] >= base + 2, 30, "the download")
    await rig.kill9()
    before = rig.jobs()
    assert [r["status"] for r in before.values()] == ["running", "queued", "queued"], before
    sim.faults.bandwidth_bps = 0
    await rig.start()
    await rig.all_final(3)
    await rig.until(lambda: all(rig.media(c) for c in captions), 30, "every file")
    result = rig.verdict(by_job, "killed while downloading, 2 queued")
    rig.assert_clean(result, 3)
    first = min(by_job)
    assert any(t.startswith(f"Job #{first} resumed after an interruption") for t in rig.texts())
    assert rig.jobs()[first]["attempts"] == 1
    await _check_bytes(rig, digests)


async def test_kill_while_uploading(rig):
    sim = rig.sim
    links, captions, digests = await _channel(rig, [3_000_000, 500_000], "up")
    await rig.start()
    sim.faults.method_latency_s["upload.SaveFilePart"] = 0.4  # ~3 s for the 6 parts
    base = sim.stats["upload.SaveFilePart"]
    by_job = await _submit(rig, links, captions)
    await rig.until(lambda: sim.stats["upload.SaveFilePart"] >= base + 2, 30, "the upload")
    await rig.kill9()
    before = rig.jobs()
    assert not rig.media(captions[0]), "killed before the upload completed"
    assert [r["status"] for r in before.values()] == ["running", "queued"], before
    sim.faults.reset()
    await rig.start()
    await rig.all_final(2)
    await rig.until(lambda: all(rig.media(c) for c in captions), 30, "every file")
    result = rig.verdict(by_job, "killed while uploading")
    rig.assert_clean(result, 2)
    await _check_bytes(rig, digests)


async def test_kill_after_the_upload_before_the_bookkeeping(rig):
    """The window between the file reaching the user and the job being marked done, made
    wide by a slow final edit of the progress message."""
    sim = rig.sim
    links, captions, digests = await _channel(rig, [600_000, 400_000], "bk")
    await rig.start()
    sim.faults.method_latency_s["messages.EditMessage"] = 5.0
    by_job = await _submit(rig, links, captions)
    first = min(by_job)
    await rig.until(lambda: rig.media(captions[0]), 30, "the first file")
    # delivered is committed just after the file goes; the slow final edit holds 'done' back
    await rig.until(lambda: rig.jobs()[first]["delivered"] == 1, 10, "delivered recorded")
    await rig.kill9()
    row = rig.jobs()[first]
    assert row["status"] == "running" and row["delivered"] == 1, (
        f"the kill landed in the window (sent, not yet done): {row}")
    sim.faults.reset()
    await rig.start()
    await rig.all_final(2)
    await rig.until(lambda: all(rig.media(c) for c in captions), 30, "every file")
    result = rig.verdict(by_job, "killed after the upload, before the bookkeeping")
    rig.assert_clean(result, 2)
    assert len(rig.media(captions[0])) == 1, "not sent again"
    assert any(t.startswith(f"Job #{first} done") and "delivered before the bot restarted" in t
               for t in rig.texts())
    await _check_bytes(rig, digests)


async def _crashed_state(rig: Rig, links: list[str], states: list[dict]) -> list[int]:
    """Jobs for the links, left in the DB as a kill -9 leaves them (columns per job), with
    the partial or complete file a killed run leaves in Assets/<job>/ when `file` is set."""
    from helpers.database import Database

    chat_ref = "-100" + links[0].split("/")[-2]
    db = await Database.open(rig.db_path)
    ids = await db.add_jobs([(rig.user.me.id, chat_ref, int(link.rsplit("/", 1)[1]), None,
                              False) for link in links])
    await db.close()
    con = sqlite3.connect(rig.db_path)
    for job_id, state in zip(ids, states):
        state = dict(state)
        if state.pop("file", False):
            folder = rig.assets / str(job_id) / "001"
            folder.mkdir(parents=True)
            write_random(folder / "left.bin", 200_000)
        for column, value in state.items():
            con.execute(f"UPDATE jobs SET {column} = ? WHERE id = ?", (value, job_id))
    con.commit()
    con.close()
    return ids


async def test_restart_on_a_db_left_between_upload_and_bookkeeping(rig):
    """The same state written directly: a job 'running' with delivered=1 (sent, not marked
    done), one 'running' with delivered=0 (cut mid-transfer), one 'queued', and one 'running'
    with delivered=2 (sent and announced done, not marked done)."""
    links, captions, digests = await _channel(rig, [300_000] * 4, "db")
    ids = await _crashed_state(rig, links, [{"status": "running", "delivered": 1},
                                            {"status": "running"}, {},
                                            {"status": "running", "delivered": 2}])
    await rig.start()
    rows = await rig.all_final(4)
    await rig.until(lambda: all(rig.media(c) for c in captions[1:3]), 30, "the other files")
    assert [rows[i]["status"] for i in ids] == ["done"] * 4, rows
    assert not rig.media(captions[0]), "the delivered job is not sent again"
    assert not rig.media(captions[3]), "the delivered job is not sent again"
    texts = rig.texts()
    assert any(t.startswith(f"Job #{ids[0]} done") and "delivered before the bot restarted"
               in t for t in texts)
    assert any(t.startswith(f"Job #{ids[1]} resumed after an interruption") for t in texts)
    assert not any(t.startswith(f"Job #{ids[2]} resumed") for t in texts)
    assert not any(t.startswith(f"Job #{ids[3]} ") for t in texts), "told done once already"
    assert [rows[i]["attempts"] for i in ids] == [1, 1, 0, 1]
    assert not any(rig.assets.rglob("*"))
    await _check_bytes(rig, {c: digests[c] for c in captions[1:3]})
    TOTALS["accepted"] += 4
    TOTALS["finished"] += 4
    print(f"\n[state written in the DB] jobs 4 / finished 4 / lost 0 / "
          f"duplicates-without-notice 0 (job #{ids[0]} told, not re-sent)")


async def test_files_of_a_job_delivered_before_the_crash_are_removed(rig):
    links, captions, _ = await _channel(rig, [200_000], "orph")
    ids = await _crashed_state(rig, links, [{"status": "running", "delivered": 1,
                                             "file": True}])
    await rig.start()
    rows = await rig.all_final(1)
    assert rows[ids[0]]["status"] == "done"
    await rig.until(lambda: not any(rig.assets.rglob("*")), 5, "the orphan folder removed")


async def test_files_of_a_job_given_up_after_repeated_crashes_are_removed(rig):
    links, captions, _ = await _channel(rig, [200_000], "loop")
    ids = await _crashed_state(rig, links, [{"status": "running", "attempts": 2,
                                             "file": True}])
    await rig.start()
    rows = await rig.all_final(1)
    assert rows[ids[0]]["status"] == "failed" and "given up" in rows[ids[0]]["error"]
    await rig.until(lambda: any("given up" in t for t in rig.texts()), 10, "the user told")
    await rig.until(lambda: not any(rig.assets.rglob("*")), 5, "the orphan folder removed")


async def test_kill_at_random_points_then_restart(rig):
    """Four jobs; the bot is killed three times at random moments, then left to finish."""
    sim = rig.sim
    seed = int(os.environ.get("CRASH_SEED", random.randrange(1 << 30)))
    rnd = random.Random(seed)
    links, captions, digests = await _channel(
        rig, [900_000, 700_000, 1_200_000, 500_000], "rnd")
    sim.faults.bandwidth_bps = 2 * 1024 * 1024
    sim.faults.method_latency_s = {"messages.EditMessage": 0.5, "messages.SendMedia": 0.5}
    await rig.start()
    by_job = await _submit(rig, links, captions)
    delays = []
    for _ in range(3):
        delay = rnd.uniform(0.5, 4.0)
        delays.append(round(delay, 2))
        await asyncio.sleep(delay)
        await rig.kill9()
        await rig.start()
    sim.faults.reset()
    await rig.all_final(4, timeout=60)
    await rig.until(lambda: all(rig.media(c) for c in captions)
                    or all(r["status"] in FINAL for r in rig.jobs().values()), 30, "the files")
    result = rig.verdict(by_job, f"random kills (seed {seed}, after {delays} s)")
    # A job running at three kills in a row is given up (a crash loop guard): that is an
    # end too, as long as the user was told.
    rig.assert_clean(result, 4, all_done=False)
    await _check_bytes(rig, {c: d for c, d in digests.items() if rig.media(c)})
