"""The load rehearsal, `python -m bot rehearse --users N --jobs M --file-mb S ...`: tgsim and
the bot as processes (harness.loadrig), simulated users, a table of figures.

Units: file sizes and throughput in MB of 1,000,000 bytes (a 2048 MB file stays under the
2000 MiB a free account may upload); RSS in MiB, the unit of MEMORY_LIMIT_MB.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.chats import link
from harness.files import FREE_UPLOAD_LIMIT, MB, MIB, file_digest, write_random_hashed
from harness.loadrig import Harness
from harness.rss import slope
from harness.runs import enough_disk, run_in
from harness.simusers import SimUser

__all__ = ["FREE_UPLOAD_LIMIT", "MB", "LoadArgs", "run_load"]


@dataclass
class LoadArgs:
    users: int = 3
    jobs: int = 2
    file_mb: float = 4
    concurrency: int = 2
    memory_limit_mb: int = 512
    max_sessions: int | None = None
    constrained: bool = False
    keep: bool = False
    dir: str | None = None


def _row(name: str, value: str, note: str = "") -> str:
    return f"{name:<24}{value:>14}  {note}".rstrip()


async def rehearse_load(a: LoadArgs, work: Path) -> int:
    size = int(a.file_mb * MB)
    sessions = a.max_sessions or (3 if a.constrained else 5)
    total_jobs = a.users * a.jobs
    settings = {
        "MAX_CONCURRENT_DOWNLOADS": a.concurrency, "MAX_SESSIONS": a.max_sessions,
        "SESSION_IDLE_S": 3600, "MAX_QUEUE": total_jobs + 2 * a.users + 20,
        "MAX_JOBS_PER_USER": max(5, a.jobs + 1), "FREE_DAILY_JOBS": a.jobs + 10,
        "FREE_BATCH_CAP": max(20, a.jobs), "MEMORY_LIMIT_MB": a.memory_limit_mb,
        "CONSTRAINED": "true" if a.constrained else "false"}
    print(f"Rehearsal: {a.users} user(s) x {a.jobs} job(s) of {a.file_mb:g} MB from a private "
          f"protected channel; MAX_CONCURRENT_DOWNLOADS {a.concurrency}, MAX_SESSIONS "
          f"{sessions}, MEMORY_LIMIT_MB {a.memory_limit_mb}", flush=True)
    async with Harness(work, settings, keep=a.keep) as h:
        idle = await h.sampler.settled(1.5)
        print(f"  bot pid {h.bot.pid} up; idle RSS {idle / MIB:.1f} MiB", flush=True)

        h.sampler.phase = "logins"
        users = await h.add_users(a.users)
        await h.login_all(users)
        # protected only once the copies are in: Telegram refuses to re-send protected media
        # by reference (core.telegram.org/api/content-protection), which is how post copies
        chat = await h.private_channel(users, protected=False)
        src = work / "file.bin"
        want = await asyncio.to_thread(write_random_hashed, src, size)
        ping = work / "ping.bin"
        write_random_hashed(ping, 64 * 1024)
        posts = await h.post(chat, src, "load", copies=a.jobs)
        (ping_id,) = await h.post(chat, ping, "ping")
        await h.protect(chat)
        src.unlink()
        ping.unlink()
        print(f"  {a.users} user(s) logged in to the bot; {a.jobs} post(s) in the channel",
              flush=True)

        h.sampler.phase = "sessions"
        curve = await h.session_curve(users[:sessions], chat, ping_id, "ping")
        per_session = slope([(k, rss / MIB) for k, rss in curve])

        h.sampler.phase = "load"
        t0 = time.monotonic()
        texts = [link(chat, mid) for mid in posts]
        await asyncio.gather(*(u.say("\n".join(texts[i:i + 40]))
                               for u in users for i in range(0, len(texts), 40)))

        def finished(u: SimUser) -> bool:
            return len(u.delivered("load")) + len(u.ended) + u.refused >= a.jobs

        timeout = 120 + total_jobs * size / (2 * MB)
        await asyncio.gather(*(u.wait_for(lambda u=u: finished(u), timeout) for u in users))
        t1 = time.monotonic()
        h.sampler.phase = "verify"
        delivered = [m for u in users for m in u.delivered("load")]
        failed = sum(len(u.ended) + u.refused for u in users)
        moved = sum(m.document.file_size for m in delivered if m.document)
        identical = 0
        for i, u in enumerate(users):
            got = u.delivered("load")
            if got:
                path = await u.client.download_media(got[0], file_name=str(work / f"got{i}"))
                identical += await asyncio.to_thread(file_digest, Path(path)) == want
                os.remove(path)
        m = await h.bot.metrics()
        peak = h.sampler.peak()
        samples = len(h.sampler.samples)
    rc_bot = h.bot_rc

    held = peak < a.memory_limit_mb * MIB
    done = len(delivered)
    print()
    print(_row("figure", "value"))
    print(_row("idle RSS", f"{idle / MIB:.1f} MiB", "bot connected, web face up, DB open; "
                                                     "before logins"))
    print(_row("RSS per live session", f"{per_session:.2f} MiB",
               f"slope over {curve[0][0]}..{curve[-1][0]} live sessions "
               f"({len(curve)} points, one 64 KB private job each)"))
    print(_row("peak RSS", f"{peak / MIB:.1f} MiB", f"{samples} samples every "
                                                     f"{h.every:g} s"))
    print(_row("throughput", f"{moved / MB / max(t1 - t0, 1e-6):.1f} MB/s",
               f"{moved / MB:.1f} MB delivered in {t1 - t0:.1f} s"))
    print(_row("jobs done / failed", f"{done} / {failed}",
               f"of {total_jobs}; bot_jobs metrics: done {m.jobs('done')}, failed "
               f"{m.jobs('failed')} (incl. {len(curve) - 1} warm-up)"))
    print(_row("bytes identical", f"{identical} / {a.users}",
               "users (sha256 of one delivery each)"))
    print(_row("MEMORY_LIMIT_MB held", "yes" if held else "NO",
               f"peak {peak / MIB:.1f} {'<' if held else '>='} {a.memory_limit_mb} MiB"))
    if rc_bot != 0:
        print(f"the bot exited with {rc_bot} after SIGTERM (see {work / 'bot' / 'bot.out'})")
    ok = (done == total_jobs and failed == 0 and identical == a.users and held
          and rc_bot == 0)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def run_load(a: LoadArgs) -> int:
    """Check the disk, make the work dir, run, clean up; SIGTERM and Ctrl-C stop cleanly."""
    size = int(a.file_mb * MB)
    base = Path(a.dir or tempfile.gettempdir())
    # source posted (parts, then joined), the bot's files in flight (+ their parts on tgsim),
    # every delivery tgsim keeps, one verification download
    if not enough_disk(base, size * (4 + 2 * a.concurrency + a.users * a.jobs) + 256 * MIB):
        return 2
    work = Path(tempfile.mkdtemp(prefix="bot-load-", dir=base))
    return run_in(work, lambda w: rehearse_load(a, w), keep=a.keep, failed="rehearsal failed")
