"""What an operator meets when starting and stopping the real `python -m bot` process:
a refused token, an unreachable server, SIGTERM at every start-up stage, a deployment without
credentials. Each run gets an environment built here (no developer os.environ, no
config.env) and free ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from pyrogram import filters

from helpers.database import Database
from helpers.secrets import SessionCipher, generate_key
from harness.ports import free_port
from harness.signin import API_HASH, API_ID
from harness.simclients import SimClients
from tgsim import TgSim

ROOT = Path(__file__).resolve().parent.parent
SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


class BotProcess:
    """One `python -m bot` with a clean environment and its files under `work`."""

    runs = 0

    def __init__(self, work: Path, **settings: str):
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        BotProcess.runs += 1
        self.log = work / f"logs{BotProcess.runs}.txt"  # one per run, in a shared folder
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work),
                    "TMPDIR": str(work), "CONFIG_ENV": "", "PYTHONDONTWRITEBYTECODE": "1",
                    "DATABASE_PATH": str(work / "data" / "bot.db"),
                    "ASSETS_DIR": str(work / "Assets"), "LOG_FILE": str(self.log),
                    "PORT": str(free_port()), **settings}
        self.proc: subprocess.Popen | None = None

    @classmethod
    def for_sim(cls, work: Path, sim, token: str, **settings: str) -> "BotProcess":
        return cls(work, **{"API_ID": str(API_ID), "API_HASH": API_HASH, "BOT_TOKEN": token,
                            "TELEGRAM_SERVER": f"127.0.0.1:{sim.port}",
                            "TELEGRAM_SERVER_KEY": str(sim.public_key_path), **settings})

    def start(self) -> "BotProcess":
        self.out = open(self.log.with_suffix(".out"), "w")
        self.err = open(self.log.with_suffix(".err"), "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "bot"], cwd=ROOT, env=self.env,
                                     stdout=self.out, stderr=self.err)
        return self

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stderr(self) -> str:
        self.err.flush()
        return self.log.with_suffix(".err").read_text(errors="replace")

    def catches_sigterm(self) -> bool:
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except FileNotFoundError:
            return False
        caught = re.search(r"^SigCgt:\s*([0-9a-f]+)", status, re.M)
        return bool(caught and int(caught.group(1), 16) & SIGTERM_BIT)

    async def until(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.proc.poll() is None, f"bot exited ({self.proc.returncode}) before " \
                                             f"{what}:\n{self.stderr()[-2000:]}"
            assert time.monotonic() < deadline, f"no {what} within {timeout} s:\n" \
                                                f"{self.logs()[-3000:]}"
            await asyncio.sleep(0.05)

    async def wait(self, timeout: float) -> tuple[int, float]:
        started = time.monotonic()
        try:
            code = await asyncio.to_thread(self.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"bot still running after {timeout} s:\n"
                                 f"{self.logs()[-3000:]}") from None
        return code, time.monotonic() - started

    async def sigterm(self, within: float = 5.0) -> float:
        self.proc.send_signal(signal.SIGTERM)
        code, took = await self.wait(within + 10)
        print(f"\nSIGTERM to exit: {took:.2f} s, exit code {code}")
        assert code == 0, self.stderr()[-2000:]
        assert took < within, f"took {took:.1f} s"
        return took

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for f in (getattr(self, "out", None), getattr(self, "err", None)):
            if f is not None:
                f.close()


async def _blackhole():
    """A TCP server that accepts and never answers: a Telegram stuck mid-connect."""
    accepted = []

    async def hold(reader, writer):
        accepted.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, accepted


async def test_bad_token_exits_2_with_one_line_in_logs_and_stderr(sim, tmp_path):
    bot = BotProcess.for_sim(tmp_path / "bot", sim, "123456:" + "A" * 35).start()
    try:
        code, took = await bot.wait(30)
        assert code == 2, bot.stderr()
        line = "BOT_TOKEN was refused by Telegram: ACCESS_TOKEN_INVALID"
        assert bot.logs().count(line) == 1, bot.logs()
        assert [ln for ln in bot.stderr().splitlines() if ln.strip()] == \
               [ln for ln in bot.stderr().splitlines() if line in ln], bot.stderr()
        assert "Traceback" not in bot.stderr() + bot.logs()
        assert "Stopped" in bot.logs()  # the database and everything else closed
        print(f"\nbad token: exit 2 in {took:.1f} s")
    finally:
        bot.close()


async def test_wrong_session_key_exits_2_with_one_line(sim, tmp_path):
    bot_acc = sim.world.add_bot("keyed_bot")
    work = tmp_path / "bot"
    (work / "data").mkdir(parents=True)
    db = await Database.open(work / "data" / "bot.db")
    await db.save_session(42, SessionCipher(generate_key()).encrypt("a session"))
    await db.close()
    bot = BotProcess.for_sim(work, sim, bot_acc.bot_token, SESSION_KEY=generate_key()).start()
    try:
        code, _ = await bot.wait(30)
        assert code == 2, bot.stderr()
        assert len(bot.stderr().strip().splitlines()) == 1, bot.stderr()
        assert "SESSION_KEY" in bot.stderr()
        assert bot.stderr().strip().split("Configuration error: ")[-1] in bot.logs()
    finally:
        bot.close()


async def test_unreachable_server_is_retried_with_backoff_then_exits_nonzero(sim, tmp_path):
    bot = BotProcess.for_sim(tmp_path / "bot", sim, "123456:" + "A" * 35,
                             TELEGRAM_SERVER=f"127.0.0.1:{free_port()}",
                             STARTUP_RETRIES="2").start()
    try:
        code, took = await bot.wait(60)
        logs = bot.logs()
        assert code not in (0, 2), (code, bot.stderr())
        pauses = [float(p) for p in re.findall(r"retrying in (\d+) s", logs)]
        assert len(pauses) == 2 and pauses[1] > pauses[0], logs
        assert "Telegram could not be reached after 3 attempt(s)" in bot.stderr()
        assert "Stopped" in logs
        print(f"\nunreachable: exit {code} after {took:.1f} s, pauses {pauses}")
    finally:
        bot.close()


async def test_sigterm_before_connect_exits_0_within_5s(sim, tmp_path):
    bot_acc = sim.world.add_bot("early_bot")
    bot = BotProcess.for_sim(tmp_path / "bot", sim, bot_acc.bot_token).start()
    try:
        await bot.until(bot.catches_sigterm, 30, "SIGTERM handler")
        await bot.sigterm()
        assert sim.stats["connections"] == 0, "the bot connected after the SIGTERM"
    finally:
        bot.close()


async def test_sigterm_during_connect_exits_0_within_5s(sim, tmp_path):
    server, accepted = await _blackhole()
    port = server.sockets[0].getsockname()[1]
    bot = BotProcess.for_sim(tmp_path / "bot", sim, "123456:" + "A" * 35,
                             TELEGRAM_SERVER=f"127.0.0.1:{port}").start()
    try:
        await bot.until(lambda: accepted, 30, "connection to the silent server")
        await bot.sigterm()
    finally:
        bot.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_sigterm_during_retry_exits_0_within_5s(sim, tmp_path):
    bot = BotProcess.for_sim(tmp_path / "bot", sim, "123456:" + "A" * 35,
                             TELEGRAM_SERVER=f"127.0.0.1:{free_port()}",
                             STARTUP_RETRIES="50").start()
    try:
        await bot.until(lambda: "retrying in" in bot.logs(), 30, "a retry")
        await bot.sigterm()
        assert "Stop requested during start-up" in bot.logs()
    finally:
        bot.close()


async def test_sigterm_after_start_exits_0_within_5s(sim, tmp_path):
    bot_acc = sim.world.add_bot("started_bot")
    bot = BotProcess.for_sim(tmp_path / "bot", sim, bot_acc.bot_token).start()
    try:
        await bot.until(lambda: "MEMORY SNAPSHOT [startup]" in bot.logs(), 60, "start-up")
        await bot.sigterm()
        assert "Stopped" in bot.logs()
        await asyncio.sleep(0.2)
        assert sim.connection_count(bot_acc.id) == 0
    finally:
        bot.close()


def test_render_without_credentials_exits_2_and_leaves_nothing(tmp_path):
    work = tmp_path / "bot"
    bot = BotProcess(work, RENDER="true")
    before = sorted(p.name for p in work.iterdir())
    r = subprocess.run([sys.executable, "-m", "bot"], cwd=ROOT, env=bot.env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "API_ID" in r.stderr and "BOT_TOKEN" in r.stderr
    assert r.stdout == ""
    assert sorted(p.name for p in work.iterdir()) == before, "files left behind"


async def test_debug_login_with_2fa_leaves_no_secret_in_logs_or_database(tmp_path):
    code, password = "73915", "tr0ub4dor &3 horse"
    sim = await TgSim(tmp_path / "tgsim", login_code=code).start()
    clients = SimClients(sim)
    bot_acc = sim.world.add_bot("debug_bot")
    key = generate_key()
    work = tmp_path / "bot"
    bot = BotProcess.for_sim(work, sim, bot_acc.bot_token, LOG_LEVEL="DEBUG",
                             SESSION_KEY=key).start()
    phone = "+16665550123"
    try:
        user = await clients.user(phone, "Secret", password=password)
        inbox: asyncio.Queue = asyncio.Queue()

        @user.on_message(filters.private & filters.user(bot_acc.id))
        async def collect(_, message):
            await inbox.put(message.text or "")

        async def expect(fragment: str) -> None:
            deadline = time.monotonic() + 30
            while True:
                text = await asyncio.wait_for(inbox.get(), deadline - time.monotonic())
                if fragment in text:
                    return

        await bot.until(lambda: "MEMORY SNAPSHOT [startup]" in bot.logs(), 60, "start-up")
        for send, reply in (("/login", "phone number"), (phone, "login code"),
                            (" ".join(code), "two-step verification"),
                            (password, "Logged in as")):
            await user.send_message(bot_acc.username, send)
            await expect(reply)
        await bot.sigterm(within=20)
    finally:
        bot.close()
        await clients.stop_all()
        await sim.stop()
    db = await Database.open(work / "data" / "bot.db")
    try:
        session_string = SessionCipher(key).decrypt(await db.load_session(user.me.id))
    finally:
        await db.close()
    assert "DEBUG" in bot.logs() and "Received:" in bot.logs(), "ran at DEBUG"
    secrets = {"phone": phone, "phone digits": phone[1:], "code": code,
               "spaced code": " ".join(code), "password": password,
               "session string": session_string}
    files = [p for p in work.rglob("*") if p.is_file()]
    assert any(p.name == "bot.db" for p in files) and bot.log in files
    for path in files:
        data = path.read_bytes()
        for what, value in secrets.items():
            found = re.search(rb"(?<![0-9])" + re.escape(value.encode()) + rb"(?![0-9])", data)
            assert found is None, f"{what} in {path.relative_to(work)}"


async def test_revoked_bot_session_signs_in_again_and_a_revoked_token_exits_2(sim, tmp_path):
    bot_acc = sim.world.add_bot("revoked_bot")
    work = tmp_path / "bot"

    async def started(token: str) -> BotProcess:
        return BotProcess.for_sim(work, sim, token).start()

    bot = await started(bot_acc.bot_token)
    try:
        await bot.until(lambda: "MEMORY SNAPSHOT [startup]" in bot.logs(), 60, "start-up")
        await bot.sigterm(within=20)
    finally:
        bot.close()
    assert (work / "data" / "bot.session").exists()
    # Logged out server-side (another device terminated it): the token still opens a session.
    assert sim.revoke(bot_acc.id) >= 1
    bot = await started(bot_acc.bot_token)
    try:
        await bot.until(lambda: "MEMORY SNAPSHOT [startup]" in bot.logs(), 60, "start-up")
        assert "refused the bot's stored session (AUTH_KEY_UNREGISTERED)" in bot.logs()
        await bot.sigterm(within=20)
    finally:
        bot.close()
    # The token revoked in @BotFather: a new one replaces it and every session ends.
    old = bot_acc.bot_token
    del sim.world.by_token[old]
    bot_acc.bot_token = f"{bot_acc.id}:{'B' * 35}"
    sim.world.by_token[bot_acc.bot_token] = bot_acc.id
    sim.revoke(bot_acc.id)
    bot = await started(old)
    try:
        code, _ = await bot.wait(30)
        assert code == 2, bot.stderr()
        assert "BOT_TOKEN was refused by Telegram: ACCESS_TOKEN_INVALID" in bot.logs()
    finally:
        bot.close()


def test_laptop_without_credentials_rehearses_and_says_so(tmp_path):
    work = tmp_path / "bot"
    bot = BotProcess(work)  # no credentials, no deployment marker: a newcomer's laptop
    r = subprocess.run([sys.executable, "-m", "bot"], cwd=ROOT, env=bot.env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "This is a rehearsal, not the bot" in r.stdout
    assert "3 jobs in" in r.stdout
    (rehearsal,) = work.glob("bot-rehearsal-*")
    assert [p.name for p in rehearsal.iterdir()] == ["logs.txt"]


async def test_refused_api_id_exits_2_with_one_line(sim, tmp_path):
    bot_acc = sim.world.add_bot("app_bot")
    bot = BotProcess.for_sim(tmp_path / "bot", sim, bot_acc.bot_token, API_ID="777",
                             API_HASH="f" * 32).start()
    try:
        code, _ = await bot.wait(30)
        assert code == 2, bot.stderr()
        line = "API_ID / API_HASH were refused by Telegram: API_ID_INVALID"
        assert line in bot.logs() and line in bot.stderr()
        assert len(bot.stderr().strip().splitlines()) == 1, bot.stderr()
    finally:
        bot.close()


async def test_unreachable_with_a_stored_session_is_bounded_too(sim, tmp_path):
    """The stored session makes the client library retry on its own, without end: each
    attempt is cut at STARTUP_TIMEOUT, and SIGTERM still ends it at once."""
    bot_acc = sim.world.add_bot("stored_bot")
    work = tmp_path / "bot"
    bot = BotProcess.for_sim(work, sim, bot_acc.bot_token).start()
    try:
        await bot.until(lambda: "MEMORY SNAPSHOT [startup]" in bot.logs(), 60, "start-up")
        await bot.sigterm(within=20)
    finally:
        bot.close()
    gone = f"127.0.0.1:{free_port()}"
    bot = BotProcess.for_sim(work, sim, bot_acc.bot_token, TELEGRAM_SERVER=gone,
                             STARTUP_RETRIES="1", STARTUP_TIMEOUT="4").start()
    try:
        code, took = await bot.wait(60)
        assert code == 1, bot.stderr()
        assert "no answer in time" in bot.stderr()
        assert took < 30, took
    finally:
        bot.close()
    bot = BotProcess.for_sim(work, sim, bot_acc.bot_token, TELEGRAM_SERVER=gone).start()
    try:
        await bot.until(lambda: bot.logs().count("Connecting to Telegram") >= 1, 30, "connect")
        await bot.sigterm()
    finally:
        bot.close()
