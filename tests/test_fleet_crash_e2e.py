"""kill -9 of a worker in the scaled layout: mid-transfer, and after Telegram posted the
file but before the worker could record it. Either way the job ends on the other worker and
the user gets the file exactly once."""

from __future__ import annotations

import asyncio

from harness.fleetrig import check_bytes, public_channel, until
from harness.fleetrig import people as _people
from harness.fleetrig import serial as _serial

_FILE = 4_000_000


async def settle(fleet, client, inbox) -> None:
    """A /status round trip: what the bot sent this chat before it has arrived by then."""
    n = len(inbox.texts)
    await client.send_message(fleet.bot_acc.username, "/status")
    await until(lambda: any(t.startswith("You have no jobs") for t in inbox.texts[n:]), 30,
                "the /status reply")


async def _one_job(fleet, clients, tmp_path, tag: str):
    from harness.fleetrig import phone as _phone

    owner = await clients.user(_phone(), "Owner")
    links, captions, digests = await public_channel(owner, f"{tag}{next(_serial)}", [_FILE],
                                                    tmp_path)
    (client, inbox), = await _people(clients, fleet, 1)
    await fleet.start("front", "front")
    await asyncio.gather(fleet.start("w1", "worker"), fleet.start("w2", "worker"))
    return links[0], captions[0], digests, client, inbox


async def test_kill9_mid_transfer_the_other_worker_finishes_it_once(fleet, clients, tmp_path):
    link, caption, digests, client, inbox = await _one_job(fleet, clients, tmp_path, "fleetk")
    sim = fleet.sim
    sim.faults.bandwidth_bps = 400_000  # ~10 s of download
    await client.send_message(fleet.bot_acc.username, link)
    await until(lambda: sim.stats["upload.GetFile"] >= 3, 60, "the download")
    job = (await fleet.jobs())[0]
    first = await fleet.holder(job["id"])
    other = "w2" if first == "w1" else "w1"
    await fleet.procs[first].kill9()
    sim.faults.bandwidth_bps = 0
    rows = await fleet.all_final(1, timeout=90)
    assert rows[0]["status"] == "done" and rows[0]["delivered"], rows
    assert rows[0]["attempts"] == 1, rows  # one interrupted attempt, then the takeover
    assert "taken over" in fleet.procs[other].logs()
    await until(lambda: inbox.media, 30, "the file")
    await settle(fleet, client, inbox)
    assert inbox.captions() == [caption], inbox.captions()
    await check_bytes(client, inbox.media, digests, tmp_path)
    assert not list((fleet.tmp / other / "Assets").rglob("*"))
    # the killed worker's disk keeps its partial download until it starts again: its
    # start-up sweep removes it (Render restarts a dead instance)
    await fleet.start(first, "worker")
    assert not list((fleet.tmp / first / "Assets").rglob("*")), "orphan files"


async def test_kill9_after_the_send_before_the_record_delivers_once(fleet, clients, tmp_path):
    """Telegram has posted the file (the user sees it) but its answer has not reached the
    worker when it dies: the worker that takes over must not send it again."""
    link, caption, digests, client, inbox = await _one_job(fleet, clients, tmp_path, "fleets")
    sim = fleet.sim
    sim.faults.answer_latency_s["messages.SendMedia"] = 10.0
    await client.send_message(fleet.bot_acc.username, link)
    await until(lambda: inbox.media, 60, "the file to reach the user")
    job = (await fleet.jobs())[0]
    first = await fleet.holder(job["id"])
    assert first is not None and not job["delivered"], job
    await fleet.procs[first].kill9()
    sim.faults.answer_latency_s.clear()
    rows = await fleet.all_final(1, timeout=90)
    assert rows[0]["status"] == "done", rows
    await until(lambda: any(t.startswith(f"Job #{job['id']} done") for t in inbox.texts),
                30, "the done line")
    await settle(fleet, client, inbox)
    assert inbox.captions() == [caption], inbox.captions()  # one copy, not two
    other = "w2" if first == "w1" else "w1"
    assert "RANDOM_ID_DUPLICATE" in fleet.procs[other].logs()
    await check_bytes(client, inbox.media, digests, tmp_path)
