"""Horizontal scaling of the worker role: jobs per minute and per-process peak RSS with 1, 2
and 4 workers (`python -m bot worker`) behind one front (`python -m bot front`), over a
throwaway PostgreSQL cluster, against tgsim as its own process with latency per request and
a bandwidth cap per connection (a worker's transfer capacity is what it can pull through its
connections, as on a real instance).

    python -m bench.scale [--workers 1,2,4] [--jobs 24] [--users 4] [--file-mb 3]
                          [--latency-ms 50] [--bandwidth-mbps 16]

Each worker runs one transfer at a time over one media connection (MAX_CONCURRENT_DOWNLOADS=1,
TRANSFER_CONNECTIONS=1, TRANSFER_PARTS_IN_FLIGHT=4: four workers stay within tgsim's 16 file
requests in flight per account, shared by every session of the one bot). Goal: 2 workers >=
1.8x the jobs per minute of one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness.files import write_random
from harness.ports import free_port, server_spec
from harness.processes import ROOT, Child, bot_environment
from harness.rss import RssSampler
from harness.signin import sign_in
from harness.simserver import TgsimProcess
from harness.waits import wait_until
from helpers.secrets import generate_key

MB = 1000 * 1000
STARTED = "MEMORY SNAPSHOT [startup]"


class Role(Child):
    def __init__(self, name: str, role: str, work: Path, env: dict):
        work.mkdir(parents=True, exist_ok=True)
        self.work = work
        super().__init__(name, [sys.executable, "-m", "bot", role], work / "stdout.txt", env)

    def ready(self) -> bool:
        log = self.work / "logs.txt"
        if not self.alive():
            raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
        return log.exists() and STARTED in log.read_text(errors="replace")


async def run_once(n_workers: int, a, sim: TgsimProcess, cluster, owner, users, links,
                   run_dir: Path) -> dict:
    url = cluster.create_database()
    key = generate_key()

    def env(name: str, work: Path) -> dict:
        return bot_environment({
            "API_ID": "12345", "API_HASH": "0123456789abcdef0123456789abcdef",
            "BOT_TOKEN": sim.bot_token, "TELEGRAM_SERVER": server_spec(sim.dc_table),
            "TELEGRAM_SERVER_KEY": sim.key_path, "SESSION_KEY": key, "DATABASE_URL": url,
            "DATABASE_PATH": work / "bot.db", "ASSETS_DIR": work / "Assets",
            "LOG_FILE": work / "logs.txt", "PORT": free_port(), "WORKER_NAME": name,
            "MAX_CONCURRENT_DOWNLOADS": 1, "TRANSFER_CONNECTIONS": 1,
            "TRANSFER_PARTS_IN_FLIGHT": 4, "MAX_JOBS_PER_USER": a.jobs, "MAX_QUEUE": a.jobs,
            "PROGRESS_INTERVAL": 5, "FLEET_LEASE_S": 10, "HEARTBEAT_S": 2})

    procs = [Role("front", "front", run_dir / "front", env("front", run_dir / "front"))]
    procs += [Role(f"w{i}", "worker", run_dir / f"w{i}", env(f"w{i}", run_dir / f"w{i}"))
              for i in range(1, n_workers + 1)]
    samplers = []
    try:
        for p in procs:
            p.start()
        for p in procs:
            await wait_until(p.ready, 120, f"{p.name} to start")
            samplers.append(RssSampler(p.pid, 0.2).start())
        for u in users:
            u.got.clear()
        per_user = -(-len(links) // len(users))
        t0 = time.monotonic()
        for i, u in enumerate(users):
            mine = links[i * per_user:(i + 1) * per_user]
            if mine:
                await u.client.send_message(sim.bot_username, "\n".join(mine))
        await wait_until(lambda: sum(len(u.got) for u in users) >= len(links),
                     a.timeout, f"{len(links)} files with {n_workers} worker(s)")
        elapsed = time.monotonic() - t0
    finally:
        for s in samplers:
            s.stop()
        for p in procs:
            p.stop(30)
    got = [c for u in users for c in u.got]
    return {"workers": n_workers, "jobs": len(links), "seconds": elapsed,
            "jobs_per_min": len(links) / elapsed * 60,
            "duplicates": len(got) - len(set(got)),
            "peak_mib": {p.name: s.peak() / 2**20 for p, s in zip(procs, samplers)}}


class _User:
    def __init__(self, client, bot_id: int):
        from pyrogram import filters

        self.client = client
        self.got: list[str] = []

        @client.on_message(filters.private & filters.user(bot_id))
        async def _seen(_, m):
            if m.media:
                self.got.append(m.caption or "")


async def main(a) -> int:
    from harness.postgres import PostgresCluster

    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    cluster = PostgresCluster().start()
    extra = ["--latency-ms", str(a.latency_ms), "--bandwidth-mbps", str(a.bandwidth_mbps)]
    sim = TgsimProcess(work / "tgsim", work / "tgsim.log", extra)
    sim.start()
    clients = []
    try:
        await sim.ready()
        bot_id = int(sim.bot_token.split(":", 1)[0])
        owner = await sign_in(sim.dc_table, sim.key_path, "+19990000001", "Owner")
        clients.append(owner)
        users = []
        for i in range(a.users):
            c = await sign_in(sim.dc_table, sim.key_path, f"+1777000{i:04d}", f"User{i}")
            clients.append(c)
            users.append(_User(c, bot_id))
        # one stored file posted as many messages, then the channel protected: every job is
        # a real download and upload, with no upload of the sources per job
        ch = await owner.create_channel("scalebench", "")
        await owner.set_chat_username(ch.id, "scalebench")
        src = work / "src.bin"
        write_random(src, int(a.file_mb * MB))
        first = await owner.send_document(ch.id, str(src), caption="job 0")
        links = [f"https://t.me/scalebench/{first.id}"]
        for i in range(1, a.jobs):
            m = await owner.send_cached_media(ch.id, first.document.file_id, caption=f"job {i}")
            links.append(f"https://t.me/scalebench/{m.id}")
        await owner.set_chat_protected_content(ch.id, True)
        results = []
        for n in a.workers:
            r = await run_once(n, a, sim, cluster, owner, users, links, work / f"run{n}")
            results.append(r)
            print(f"{n} worker(s): {r['jobs']} jobs in {r['seconds']:.1f} s = "
                  f"{r['jobs_per_min']:.1f} jobs/min; duplicates {r['duplicates']}; peak RSS "
                  + ", ".join(f"{k} {v:.1f} MiB" for k, v in r["peak_mib"].items()),
                  flush=True)
        base = results[0]["jobs_per_min"]
        print("\n| workers | jobs/min | x one | peak RSS per process (MiB) |")
        print("| --- | --- | --- | --- |")
        for r in results:
            peaks = ", ".join(f"{k} {v:.1f}" for k, v in r["peak_mib"].items())
            print(f"| {r['workers']} | {r['jobs_per_min']:.1f} | "
                  f"{r['jobs_per_min'] / base:.2f}x | {peaks} |")
        two = next((r for r in results if r["workers"] == 2), None)
        if two and results[0]["workers"] == 1:
            ratio = two["jobs_per_min"] / base
            print(f"\n2 workers / 1 worker = {ratio:.2f}x (goal >= 1.8x): "
                  f"{'met' if ratio >= 1.8 else 'NOT met'}")
        return 0
    finally:
        for c in clients:
            with contextlib.suppress(Exception):
                await c.stop()
        sim.stop()
        cluster.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}")


def parse(argv: list[str]):
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", default="1,2,4",
                   type=lambda s: [int(x) for x in s.split(",") if x.strip()])
    p.add_argument("--jobs", type=int, default=24)
    p.add_argument("--users", type=int, default=4)
    p.add_argument("--file-mb", type=float, default=3.0)
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--bandwidth-mbps", type=float, default=16.0,
                   help="per connection and direction")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--keep", action="store_true")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
