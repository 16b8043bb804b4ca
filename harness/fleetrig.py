"""The scaled layout as processes: a front and workers (`python -m bot front|worker`) over a
throwaway PostgreSQL database (harness/postgres.py), against the in-process tgsim, with
users in the test process whose inboxes record what the bot sent them."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
from pyrogram import filters

from harness.files import file_digest, write_random
from harness.ports import free_port
from harness.processes import bot_environment, end
from harness.waits import wait_until as until  # noqa: F401 - the fleet tests' name for it
from helpers.secrets import generate_key

ROOT = Path(__file__).resolve().parent.parent
STARTED = "MEMORY SNAPSHOT [startup]"
FINAL = ("done", "failed", "cancelled")


class Inbox:
    """What the bot sent one user: media in arrival order, and every text (edits too)."""

    def __init__(self, client, bot_id: int):
        self.client = client
        self.media: list = []
        self.texts: list[str] = []

        @client.on_message(filters.private & filters.user(bot_id))
        async def _new(_, m):
            (self.media if m.media else self.texts).append(m if m.media else (m.text or ""))

        @client.on_edited_message(filters.private & filters.user(bot_id))
        async def _edit(_, m):
            if not m.media:
                self.texts.append(m.text or "")

    def captions(self) -> list[str]:
        return [m.caption or "" for m in self.media]


class Proc:
    def __init__(self, name: str, role: str, env: dict, work: Path):
        self.name, self.role, self.env, self.work = name, role, env, work
        self.log = work / "logs.txt"
        self.popen: subprocess.Popen | None = None
        self.out = work / "stderr.txt"

    def started_count(self) -> int:
        return self.log.read_text(errors="replace").count(STARTED) if self.log.exists() else 0

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self._before = self.started_count()
        err = open(self.out, "ab")
        self.popen = subprocess.Popen([sys.executable, "-m", "bot", self.role], cwd=ROOT,
                                      env=self.env, stdout=err, stderr=err)
        err.close()

    def ready(self) -> bool:
        if self.popen is not None and self.popen.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.popen.returncode}: "
                                 f"{self.out.read_text(errors='replace')[-2000:]}")
        return self.started_count() > self._before

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    async def kill9(self) -> None:
        await end(self.popen, 10, signal.SIGKILL)

    async def stop(self) -> None:
        if self.alive():
            await end(self.popen, 25)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Fleet:
    def __init__(self, sim, pg_url: str, bot_acc, tmp: Path, **env):
        self.sim, self.url, self.bot_acc, self.tmp = sim, pg_url, bot_acc, tmp
        self.session_key = generate_key()
        self.extra = {"FLEET_LEASE_S": "3", "HEARTBEAT_S": "0.5", "MAX_JOBS_PER_USER": "20",
                      "PROGRESS_INTERVAL": "3", "MAX_CONCURRENT_DOWNLOADS": "2", **env}
        self.procs: dict[str, Proc] = {}

    def _env(self, name: str, work: Path, **extra) -> dict:
        return bot_environment({
            "API_ID": "12345", "API_HASH": "0123456789abcdef0123456789abcdef",
            "BOT_TOKEN": self.bot_acc.bot_token, "TELEGRAM_SERVER": self.sim.server_spec,
            "TELEGRAM_SERVER_KEY": str(self.sim.public_key_path),
            "SESSION_KEY": self.session_key, "DATABASE_URL": self.url,
            "DATABASE_PATH": str(work / "bot.db"), "ASSETS_DIR": str(work / "Assets"),
            "LOG_FILE": str(work / "logs.txt"), "PORT": str(free_port()),
            "WORKER_NAME": name, **self.extra, **extra})

    async def start(self, name: str, role: str, timeout: float = 60, **extra) -> Proc:
        work = self.tmp / name
        proc = self.procs.get(name)
        if proc is None:
            proc = self.procs[name] = Proc(name, role, self._env(name, work, **extra), work)
        proc.start()
        await until(proc.ready, timeout, f"{name} to start")
        return proc

    async def stop_all(self) -> None:
        for proc in self.procs.values():
            await proc.stop()

    async def sql(self, query: str, *args):
        conn = await asyncpg.connect(self.url)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async def jobs(self) -> list[dict]:
        return [dict(r) for r in await self.sql(
            "SELECT id, user_id, status, attempts, delivered, error FROM jobs ORDER BY id")]

    async def all_final(self, n: int, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            rows = await self.jobs()
            if len(rows) >= n and all(r["status"] in FINAL for r in rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs not final after {timeout} s: {rows}")
            for p in self.procs.values():
                if p.popen is not None and p.popen.poll() not in (None, -9, 0):
                    raise AssertionError(f"{p.name} exited with {p.popen.returncode}: "
                                         f"{p.out.read_text(errors='replace')[-2000:]}")
            await asyncio.sleep(0.1)

    async def holder(self, job_id: int) -> str | None:
        """The name of the worker holding the job's lease (leases are held as name.mark)."""
        rows = await self.sql("SELECT worker FROM fleet_job_leases WHERE job_id = $1", job_id)
        return rows[0]["worker"].rsplit(".", 1)[0] if rows else None


async def public_channel(owner, username: str, sizes: list[int], tmp: Path):
    """A public protected channel (the bot reads it with its own account and must download
    and upload: no copy); returns (links, captions, digests by caption)."""
    ch = await owner.create_channel(username, "")
    await owner.set_chat_username(ch.id, username)
    await owner.set_chat_protected_content(ch.id, True)
    links, captions, digests = [], [], {}
    for i, size in enumerate(sizes):
        src = write_random(tmp / f"{username}{i}.bin", size)
        caption = f"{username} {i}"
        post = await owner.send_document(ch.id, str(src), caption=caption)
        links.append(f"https://t.me/{username}/{post.id}")
        captions.append(caption)
        digests[caption] = file_digest(src)
        os.remove(src)
    return links, captions, digests


async def check_bytes(client, messages: list, digests: dict[str, str], tmp: Path) -> None:
    for m in messages:
        path = await client.download_media(m, file_name=str(tmp / "out" / "f"))
        assert file_digest(path) == digests[m.caption], m.caption
        os.remove(path)


serial = itertools.count(1)  # unique names and phones across one test run


def phone() -> str:
    return f"+1556{os.getpid() % 1000:03d}{next(serial):04d}"


async def people(clients, fleet, n: int) -> list[tuple[object, Inbox]]:
    """n signed-in users, each with an inbox of what the fleet's bot sends them."""
    out = []
    for i in range(n):
        c = await clients.user(phone(), f"Person{i}")
        out.append((c, Inbox(c, fleet.bot_acc.id)))
    return out
