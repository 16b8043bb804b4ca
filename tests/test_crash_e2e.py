"""kill -9 at every point of a job: queued, downloading, uploading, and after the upload but
before the bookkeeping. The bot runs as a process against the in-process tgsim; after each
restart every job must end exactly once: none lost, and no file delivered twice unless the
user was told first that it is a retry.

Each test prints its figures: jobs accepted / finished / lost / duplicates-without-notice."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pyrogram import filters

from bot.rehearsal_load import bot_environment
from tests.simclient import file_digest, free_port, write_random
from tests.stored_state import query_now

ROOT = Path(__file__).resolve().parent.parent
FINAL = {"done", "failed", "cancelled"}
_JOB_RE = re.compile(r"Job #(\d+)")
_STARTED = "MEMORY SNAPSHOT [startup]"

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
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

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

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.restarts += 1

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(25)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

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
        sql = "SELECT id, status, attempts, delivered, error, msg_id FROM jobs ORDER BY id"
        if self.env.get("DATABASE_URL"):  # the rig runs on PostgreSQL
            return {r["id"]: r for r in query_now(self.env["DATABASE_URL"], sql)}
        con = sqlite3.connect(self.db_path, timeout=10)
        con.row_factory = sqlite3.Row
        try:
            return {r["id"]: dict(r) for r in con.execute(sql)}
        finally:
            con.close()

    async def all_final(self, n: int, timeout: float = 60) -> dict[int, dict]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.jobs()
            if len(rows) >= n and all(r["status"] in FINAL for r in rows.values()):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"jobs not final after {timeout} s: {rows}")
            await asyncio.sleep(0.1)

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
        r.stop()


async def _channel(rig: Rig, sizes: list[int], tag: str):
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
    rig.kill9()
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
    rig.kill9()
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
    rig.kill9()
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
    done), one 'running' with delivered=0 (cut mid-transfer) and one 'queued'."""
    links, captions, digests = await _channel(rig, [300_000, 300_000, 300_000], "db")
    ids = await _crashed_state(rig, links, [{"status": "running", "delivered": 1},
                                            {"status": "running"}, {}])
    await rig.start()
    rows = await rig.all_final(3)
    await rig.until(lambda: all(rig.media(c) for c in captions[1:]), 30, "the other files")
    assert [rows[i]["status"] for i in ids] == ["done"] * 3, rows
    assert not rig.media(captions[0]), "the delivered job is not sent again"
    texts = rig.texts()
    assert any(t.startswith(f"Job #{ids[0]} done") and "delivered before the bot restarted"
               in t for t in texts)
    assert any(t.startswith(f"Job #{ids[1]} resumed after an interruption") for t in texts)
    assert not any(t.startswith(f"Job #{ids[2]} resumed") for t in texts)
    assert [rows[i]["attempts"] for i in ids] == [1, 1, 0]
    assert not any(rig.assets.rglob("*"))
    await _check_bytes(rig, {c: digests[c] for c in captions[1:]})
    TOTALS["accepted"] += 3
    TOTALS["finished"] += 3
    print(f"\n[state written in the DB] jobs 3 / finished 3 / lost 0 / "
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
        rig.kill9()
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
