"""Load: many users each sending several links within seconds, against the real bot process.

tgsim runs in this process; the bot runs as `python -m bot` in its own (harness/botprocess.py),
so the RSS sampled with psutil is the bot's alone. Each user sends --links messages with one
link each, as fast as the client allows. The queue cap refuses what does not fit, and every refusal must come
with a clear reply; every accepted job must finish; an admin asks /memstats once a second
throughout and the reply time is recorded.

    python -m bench.load                      # 100 users x 5 links
    python -m bench.load --users 10 --links 3 # a quick run

Prints accepted / refused / finished / lost, peak RSS of the bot, p50/p95 of /memstats, and
PASS/FAIL against: nothing lost, a reply for every link, RSS < 300 MB, /memstats p95 < 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pyrogram import Client, filters  # noqa: E402

from harness.botprocess import BotProcess  # noqa: E402
from harness.rss import RssSampler  # noqa: E402
from harness.signin import sign_in  # noqa: E402
from tgsim import TgSim  # noqa: E402

RSS_GOAL_MB = 300
MEMSTATS_P95_GOAL_S = 2.0
_QUEUED = re.compile(r"Job #(\d+) queued")
_DONE = re.compile(r"Job #(\d+) (done|failed)")


async def _user(sim, n: int, name: str) -> Client:
    return await sign_in(sim.dc_table, sim.public_key_path, f"+1777{n:07d}", name,
                         code=sim.world.login_code, workers=1, max_message_cache_size=10)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def run(users: int, links: int, max_queue: int, work: Path) -> int:
    sim = await TgSim(work / "tgsim").start()
    bot_acc = sim.world.add_bot("load_bench_bot", "Load")
    admin = await _user(sim, 0, "Admin")
    owner = await _user(sim, 1, "Owner")
    pub = await owner.create_channel("Load", "")
    await owner.set_chat_username(pub.id, "loadfeed")
    locked = await owner.create_channel("LoadLocked", "")
    await owner.set_chat_username(locked.id, "loadlocked")
    await owner.set_chat_protected_content(locked.id, True)
    sample = work / "sample.bin"
    sample.write_bytes(os.urandom(200_000))
    posts = [(await owner.send_document("loadfeed", str(sample), caption=f"p{i}")).id
             for i in range(3)]
    locked_posts = [(await owner.send_document("loadlocked", str(sample))).id for i in range(2)]

    bot = BotProcess(work / "bot", bot_token=bot_acc.bot_token, dc_table=sim.dc_table,
                     key_path=sim.public_key_path,
                     settings={"OWNER_ID": admin.me.id, "MAX_QUEUE": max_queue, "RENDER": "1",
                               "PROGRESS_INTERVAL": 5, "MESSAGES_PER_MINUTE": 30})
    bot.start()
    sampler = RssSampler(bot.pid, every=0.05).start()
    clients: list[Client] = []
    try:
        await bot.healthy()
        await asyncio.sleep(1.0)
        idle_mb = psutil.Process(bot.pid).memory_info().rss / 1048576
        t0 = time.monotonic()
        clients = list(await asyncio.gather(*(_user(sim, 10 + i, f"U{i}")
                                              for i in range(users))))
        print(f"{users} users signed up in {time.monotonic() - t0:.1f} s", flush=True)

        accepted: set[int] = set()
        finished: dict[int, int] = {}
        refusals = replies_to_links = 0
        memstats_times: list[float] = []
        memstats_waiter: asyncio.Queue = asyncio.Queue()

        def watch(c: Client):
            @c.on_message(filters.private & filters.user(bot_acc.id))
            async def got(_, m):
                nonlocal refusals, replies_to_links
                text = m.text or ""
                if "queued at position" in text or "refused" in text or "queue is full" in text \
                        or "at most" in text or "too fast" in text:
                    replies_to_links += 1
                accepted.update(int(x) for x in _QUEUED.findall(text))
                if "queue is full" in text or "refused" in text or "at most" in text:
                    refusals += 1

            @c.on_edited_message(filters.private & filters.user(bot_acc.id))
            async def edited(_, m):
                for job_id, _status in _DONE.findall(m.text or ""):
                    finished[int(job_id)] = finished.get(int(job_id), 0) + 1

        for c in clients:
            watch(c)

        @admin.on_message(filters.private & filters.user(bot_acc.id))
        async def admin_got(_, m):
            if (m.text or "").startswith("MEMORY") or "RSS" in (m.text or ""):
                await memstats_waiter.put(time.monotonic())

        stop = asyncio.Event()

        async def poll_memstats():
            while not stop.is_set():
                sent_at = time.monotonic()
                await admin.send_message(bot_acc.username, "/memstats")
                try:
                    got_at = await asyncio.wait_for(memstats_waiter.get(), 10)
                    memstats_times.append(got_at - sent_at)
                except TimeoutError:
                    memstats_times.append(10.0)
                await asyncio.sleep(0.25)

        poller = asyncio.create_task(poll_memstats())
        every = posts + locked_posts
        t0 = time.monotonic()

        async def send_links(i: int, c: Client):
            for k in range(links):
                post = every[(i + k) % len(every)]
                chan = "loadfeed" if post in posts else "loadlocked"
                await c.send_message(bot_acc.username, f"https://t.me/{chan}/{post}")

        await asyncio.gather(*(send_links(i, c) for i, c in enumerate(clients)))
        sent_s = time.monotonic() - t0
        total_links = users * links
        deadline = time.monotonic() + 60 + total_links * 0.5
        while time.monotonic() < deadline:
            if replies_to_links >= total_links and accepted <= set(finished):
                # every user has had replies; all accepted jobs reached an end
                await asyncio.sleep(2)
                if accepted <= set(finished):
                    break
            await asyncio.sleep(0.5)
        elapsed = time.monotonic() - t0
        stop.set()
        await poller
        sampler.stop()
        lost = accepted - set(finished)
        dupes = sum(1 for n in finished.values() if n > 1)
        peak_mb = sampler.peak() / 1048576
        p50, p95 = _pct(memstats_times, 0.5), _pct(memstats_times, 0.95)
        print(f"\n{'users x links':<34}{users} x {links} = {total_links} links, "
              f"sent in {sent_s:.1f} s")
        print(f"{'jobs accepted':<34}{len(accepted)} (MAX_QUEUE {max_queue})")
        print(f"{'links answered':<34}{replies_to_links} of {total_links}")
        print(f"{'link messages refused (replied)':<34}{refusals}")
        print(f"{'jobs finished':<34}{len(set(finished) & accepted)} in {elapsed:.1f} s")
        print(f"{'jobs lost':<34}{len(lost)}")
        print(f"{'finished twice':<34}{dupes}")
        print(f"{'bot RSS idle / peak':<34}{idle_mb:.1f} / {peak_mb:.1f} MB")
        print(f"{'/memstats reply p50 / p95':<34}{p50:.2f} / {p95:.2f} s "
              f"({len(memstats_times)} asked)")
        ok = (not lost and not dupes and peak_mb < RSS_GOAL_MB and p95 < MEMSTATS_P95_GOAL_S
              and accepted and replies_to_links == total_links)
        print(f"\n{'PASS' if ok else 'FAIL'}: every link answered, nothing lost, "
              f"RSS < {RSS_GOAL_MB} MB, "
              f"/memstats p95 < {MEMSTATS_P95_GOAL_S:.0f} s")
        return 0 if ok else 1
    finally:
        sampler.stop()
        await bot.close_http()
        await asyncio.to_thread(bot.stop, 30)
        for c in [admin, owner, *clients]:
            try:
                await c.stop()
            except Exception:  # noqa: BLE001 - teardown
                pass
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--links", type=int, default=5)
    parser.add_argument("--max-queue", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    try:
        return asyncio.run(run(args.users, args.links, args.max_queue, work))
    finally:
        if args.keep:
            print(f"work dir: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
