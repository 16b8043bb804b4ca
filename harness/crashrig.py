"""The bot as a process that can be killed (-9) and started again, against the in-process
tgsim, and one user whose every message from the bot is kept in arrival order: the rig of the
crash and catch-up tests, with the verdict they print (accepted / finished / lost /
duplicates-without-notice)."""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyrogram import filters

from harness.files import file_digest, write_random
from harness.outcomes import FINAL, read_jobs, until_final
from harness.ports import free_port
from harness.processes import ROOT, bot_environment, end
from harness.stored_state import query_now

_JOB_RE = re.compile(r"Job #(\d+)")
_STARTED = "MEMORY SNAPSHOT [startup]"

# Summed over every verdict of a run; tests/test_crash_e2e.py prints them at its end.
TOTALS = {"accepted": 0, "finished": 0, "failed_told": 0, "lost": 0,
          "duplicates_without_notice": 0}


@dataclass
class Seen:
    """One message as the user saw it, in arrival order (edits arrive again, same id)."""
    order: int
    id: int
    text: str
    caption: str | None
    media: bool
    msg: object = field(repr=False, default=None)


class Rig:
    """tgsim in-process, one user with a protected channel the bot is in, and the bot as a
    process that can be killed and started again."""

    def __init__(self, sim, user, bot_acc, tmp_path: Path, **env):
        self.sim, self.user, self.bot_acc, self.tmp = sim, user, bot_acc, tmp_path
        self.seen: list[Seen] = []
        self.arrived = asyncio.Event()
        self.proc: subprocess.Popen | None = None
        self.db_path = tmp_path / "bot" / "bot.db"
        self.assets = tmp_path / "bot" / "Assets"
        self.log = tmp_path / "logs.txt"
        self.env = bot_environment({
            "API_ID": "12345", "API_HASH": "0123456789abcdef0123456789abcdef",
            "BOT_TOKEN": bot_acc.bot_token, "TELEGRAM_SERVER": sim.server_spec,
            "TELEGRAM_SERVER_KEY": str(sim.public_key_path),
            "DATABASE_PATH": str(self.db_path), "ASSETS_DIR": str(self.assets),
            "LOG_FILE": str(self.log), "PORT": str(free_port()),
            "PROGRESS_INTERVAL": "3", "MAX_CONCURRENT_DOWNLOADS": "1",
            "MAX_JOBS_PER_USER": "20", **env})
        self.restarts = 0

        def record(message):
            self.seen.append(Seen(len(self.seen), message.id, message.text or "",
                                  message.caption, message.media is not None, message))
            self.arrived.set()

        @user.on_message(filters.private & filters.user(bot_acc.id))
        async def on_new(_, message):
            record(message)

        @user.on_edited_message(filters.private & filters.user(bot_acc.id))
        async def on_edit(_, message):
            record(message)

    # -- the bot process ------------------------------------------------------------------
    def _started(self) -> int:
        """App.start's last line, once per start: the queue and every handler are running."""
        return self.log.read_text(errors="replace").count(_STARTED) if self.log.exists() else 0

    async def start(self) -> None:
        before = self._started()
        self.proc = subprocess.Popen([sys.executable, "-m", "bot"], cwd=ROOT, env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await self.until(lambda: self._started() > before, 30, "the bot to start")

    async def introduce(self, chat_id: int) -> None:
        """Add the bot to the chat while it runs (Telegram sends a bot a private chat's
        access hash only in that update), wait until it has kept it, then kill it: the test
        starts it again when it wants."""
        await self.start()
        await self.user.add_chat_members(chat_id, self.bot_acc.username)
        await self.until(lambda: self._bot_keeps(chat_id), 30, "the bot to keep the chat")
        await end(self.proc, 10, signal.SIGKILL)

    def _bot_keeps(self, chat_id: int) -> bool:
        """The chat is committed in the bot's peer database (pyrogram's session file)."""
        con = sqlite3.connect(self.db_path.parent / "bot.session", timeout=10)
        try:
            row = con.execute("SELECT 1 FROM peers WHERE id = ?", (chat_id,)).fetchone()
            return row is not None
        except sqlite3.OperationalError:
            return False
        finally:
            con.close()

    async def kill9(self) -> None:
        await end(self.proc, 10, signal.SIGKILL)
        self.restarts += 1

    async def stop(self) -> None:
        if self.proc:
            await end(self.proc, 25)

    async def until(self, cond, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if self.proc is not None and self.proc.poll() is not None and self.proc.returncode > 0:
                raise AssertionError(f"the bot exited with {self.proc.returncode} waiting "
                                     f"for {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)

    # -- what the user saw and what the DB says ----------------------------------------------
    def texts(self) -> list[str]:
        return [s.text for s in self.seen if not s.media]

    def media(self, caption: str) -> list[Seen]:
        return [s for s in self.seen if s.media and s.caption == caption]

    def accepted(self) -> list[int]:
        ids = []
        for s in self.seen:
            for line in s.text.splitlines():
                if "queued at position" in line:
                    ids.append(int(_JOB_RE.search(line).group(1)))
        return sorted(set(ids))

    def jobs(self) -> dict[int, dict]:
        columns = "id, status, attempts, delivered, error, msg_id"
        if self.env.get("DATABASE_URL"):  # the rig runs on PostgreSQL
            sql = f"SELECT {columns} FROM jobs ORDER BY id"
            return {r["id"]: r for r in query_now(self.env["DATABASE_URL"], sql)}
        return {r["id"]: r for r in read_jobs(self.db_path, columns)}

    async def all_final(self, n: int, timeout: float = 60) -> dict[int, dict]:
        return await until_final(self.jobs, n, timeout)

    def verdict(self, captions: dict[int, str], label: str) -> dict:
        """Per job: delivered how often, and whether a second copy came after a notice."""
        rows = self.jobs()
        accepted = self.accepted()
        finished = lost = dup_no_notice = failed_told = 0
        detail = {}
        for job_id in accepted:
            row = rows.get(job_id)
            copies = self.media(captions[job_id])
            notice = [s for s in self.seen if not s.media and s.text.startswith(
                f"Job #{job_id} ") and ("this is a retry" in s.text
                                        or "delivered before the bot restarted" in s.text)]
            if row is None or row["status"] not in FINAL:
                lost += 1
            elif row["status"] == "done":
                finished += 1
            elif any(t.startswith(f"Job #{job_id} failed") for t in self.texts()):
                failed_told += 1  # ended, and the user was told why
            else:
                lost += 1
            if row is not None and row["status"] == "done" and not copies and not notice:
                lost += 1  # marked done but nothing arrived
            for extra in copies[1:]:
                if not any(n.order < extra.order for n in notice):
                    dup_no_notice += 1
            # announced done once: distinct messages that say so (a failure says it twice,
            # on the progress message and in a note, which is fine)
            finals = {s.id for s in self.seen if not s.media and re.match(
                rf"Job #{job_id} done", s.text)}
            detail[job_id] = (row and row["status"], len(copies), len(notice), len(finals))
        figures = {"accepted": len(accepted), "finished": finished, "lost": lost,
                   "duplicates_without_notice": dup_no_notice, "failed_told": failed_told}
        for k, v in figures.items():
            TOTALS[k] = TOTALS.get(k, 0) + v
        print(f"\n[{label}] restarts {self.restarts}; jobs accepted {figures['accepted']} / "
              f"finished {finished} / failed-and-told {failed_told} / lost {lost} / "
              f"duplicates-without-notice {dup_no_notice}"
              f"; per job (status, copies, retry notices, 'done' messages): {detail}")
        return {"figures": figures, "detail": detail}

    def assert_clean(self, result: dict, n: int, *, all_done: bool = True) -> None:
        """Every job ended once, told, and no folder is left in Assets/ (those of jobs that
        ended at start-up without running included: App.start sweeps them)."""
        f = result["figures"]
        assert f["accepted"] == n, f
        assert f["lost"] == 0 and f["duplicates_without_notice"] == 0, result
        assert f["finished"] + (0 if all_done else f["failed_told"]) == n, result
        for job_id, (status, copies, notices, finals) in result["detail"].items():
            if status == "done":
                assert copies or notices, f"job #{job_id} done but nothing arrived: {result}"
            assert finals <= 1, f"job #{job_id} announced done more than once: {result}"
        orphans = list(self.assets.rglob("*"))
        assert not orphans, f"orphans: {orphans}"
        for t in self.texts():
            assert "Traceback" not in t


async def protected_channel(rig: Rig, sizes: list[int], tag: str):
    """A protected channel the bot is in, with one document per size; returns links,
    captions in order and digests by caption."""
    user = rig.user
    ch = await user.create_channel(f"Crash {tag}", "")
    await user.set_chat_protected_content(ch.id, True)
    await rig.introduce(ch.id)
    links, captions, digests = [], [], {}
    for i, size in enumerate(sizes):
        src = write_random(rig.tmp / f"{tag}{i}.bin", size)
        caption = f"{tag} {i}"
        post = await user.send_document(ch.id, str(src), caption=caption)
        links.append(f"https://t.me/c/{str(ch.id)[4:]}/{post.id}")
        captions.append(caption)
        digests[caption] = file_digest(src)
    return links, captions, digests
