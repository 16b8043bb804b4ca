"""The scaled layout end to end: `python -m bot front` and `python -m bot worker` processes
sharing a real PostgreSQL database, against tgsim. Each test waits on conditions (rows in
the database, messages in inboxes), never on fixed sleeps."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from harness.fleetrig import check_bytes, public_channel, until
from harness.fleetrig import people as _people
from harness.fleetrig import phone as _phone
from harness.fleetrig import serial as _serial


async def _total(counts) -> bool:
    return sum((await counts).values()) >= 20


async def test_front_and_two_workers_deliver_20_jobs_from_5_users_once(fleet, clients, tmp_path):
    owner = await clients.user(_phone(), "Owner")
    links, captions, digests = await public_channel(
        owner, f"fleetpub{next(_serial)}", [150_000 + 7_000 * i for i in range(20)], tmp_path)
    people = await _people(clients, fleet, 5)
    admin, admin_inbox = people[0]
    await fleet.start("front", "front", OWNER_ID=str(admin.me.id))
    await asyncio.gather(fleet.start("w1", "worker"), fleet.start("w2", "worker"))
    by_caption = {}
    for i, (client, _inbox) in enumerate(people):
        mine = list(range(i * 4, i * 4 + 4))
        for k in mine:
            by_caption[captions[k]] = i
        await client.send_message(fleet.bot_acc.username, "\n".join(links[k] for k in mine))
    rows = await fleet.all_final(20, timeout=240)
    assert [r["status"] for r in rows] == ["done"] * 20, rows
    await until(lambda: sum(len(ib.media) for _, ib in people) >= 20, 30, "20 files")
    workers_seen = set()
    for i, (client, inbox) in enumerate(people):
        got = sorted(inbox.captions())
        want = sorted(c for c, who in by_caption.items() if who == i)
        assert got == want, (i, got, want)  # each exactly once, nothing of another user's
        await check_bytes(client, inbox.media, digests, tmp_path)
    for name in ("w1", "w2"):
        if "Job #" in fleet.procs[name].logs():
            workers_seen.add(name)
    async def done_by_worker():
        return {r["worker"]: r["done"] for r in await fleet.sql(
            "SELECT name AS worker, done FROM fleet_workers")}

    # the workers' heartbeats (every 0.5 s here) catch up with the last jobs
    await until(lambda: _total(done_by_worker()), 10, "the heartbeats to count 20 jobs")
    done_by = await done_by_worker()
    print(f"\n[fleet] 20 jobs from 5 users: done per worker {done_by}")
    assert sum(done_by.values()) == 20, done_by
    assert all(v > 0 for v in done_by.values()) and len(done_by) == 2, done_by
    for name in ("w1", "w2"):
        assert not list((fleet.tmp / name / "Assets").rglob("*")), "files left behind"
    # the operator sees each worker: /memstats, /status (an admin's) and /metrics on the front
    for command in ("/memstats", "/status"):
        n = len(admin_inbox.texts)
        await admin.send_message(fleet.bot_acc.username, command)
        reply = await until(lambda: next((t for t in admin_inbox.texts[n:] if "Workers:" in t),
                                         None), 30, f"{command} with the workers")
        assert "Workers: 2 live of 2" in reply, reply
        assert "w1 (live" in reply and "w2 (live" in reply, reply
    port = fleet.procs["front"].env["PORT"]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
            metrics = await r.text()
    for name in ("w1", "w2"):
        assert f'bot_worker_rss_bytes{{worker="{name}"}}' in metrics, metrics[-2000:]
    assert "bot_workers_live 2.0" in metrics
    # a worker stopped (SIGTERM) gives back its leases and heartbeat before its storage closes
    await fleet.procs["w2"].stop()
    assert fleet.procs["w2"].popen.returncode == 0, fleet.procs["w2"].out.read_text()[-2000:]
    assert await fleet.sql("SELECT name FROM fleet_workers WHERE name = 'w2'") == []
    assert await fleet.sql("SELECT user_id FROM fleet_session_leases "
                           "WHERE worker LIKE 'w2.%'") == []
    assert "could not release" not in fleet.procs["w2"].logs()


async def test_global_cap_refuses_the_21st_waiting_job(fleet, clients, tmp_path):
    """No worker runs, so everything waits; 15 rows come from "another front" (inserted in
    the database directly), 5 of this user's 6 links fit, the 6th is refused."""
    owner = await clients.user(_phone(), "Owner")
    links, _, _ = await public_channel(owner, f"fleetcap{next(_serial)}", [1000] * 6, tmp_path)
    (client, inbox), = await _people(clients, fleet, 1)
    await fleet.start("front", "front")
    other = 777_000 + next(_serial)
    await fleet.sql("INSERT INTO users(id, first_seen) VALUES ($1, 0) ON CONFLICT DO NOTHING",
                    other)
    await fleet.sql(
        "INSERT INTO jobs(user_id, chat_ref, msg_id, premium, status, created) "
        "SELECT $1, 'elsewhere', g, 0, 'queued', 0 FROM generate_series(1, 15) g", other)
    await client.send_message(fleet.bot_acc.username, "\n".join(links))
    await until(lambda: any("queue is full" in t for t in inbox.texts), 30, "the refusal")
    rows = await fleet.jobs()
    assert sum(1 for r in rows if r["status"] == "queued") == 20, rows
    assert sum(1 for r in rows if r["user_id"] == client.me.id) == 5, rows
    text = next(t for t in inbox.texts if "queue is full" in t)
    assert "(20 jobs waiting)" in text, text


async def test_cancel_on_the_front_stops_a_job_on_a_worker_within_2_s(fleet, clients, tmp_path):
    owner = await clients.user(_phone(), "Owner")
    links, captions, _ = await public_channel(owner, f"fleetcan{next(_serial)}",
                                              [6_000_000], tmp_path)
    (client, inbox), = await _people(clients, fleet, 1)
    await fleet.start("front", "front")
    await fleet.start("w1", "worker")
    fleet.sim.faults.bandwidth_bps = 300_000  # the download takes ~20 s
    await client.send_message(fleet.bot_acc.username, links[0])
    await until(lambda: fleet.sim.stats["upload.GetFile"] >= 2, 60, "the download")
    rows = await fleet.jobs()
    assert rows[0]["status"] == "running" and await fleet.holder(rows[0]["id"]) == "w1"
    t0 = time.monotonic()
    await client.send_message(fleet.bot_acc.username, "/canceldownload")

    async def cancelled():
        return (await fleet.jobs())[0]["status"] == "cancelled"

    await until(cancelled, 10, "the job to be cancelled")
    took = time.monotonic() - t0
    print(f"\n[fleet] cancel on the front -> job cancelled on the worker in {took:.2f} s")
    assert took <= 2.0, took
    await until(lambda: any("Cancelled 1 job" in t for t in inbox.texts), 10, "the reply")
    fleet.sim.faults.bandwidth_bps = 0
    assert not inbox.media
    await until(lambda: not list((fleet.tmp / "w1" / "Assets").rglob("*")), 10, "clean-up")
