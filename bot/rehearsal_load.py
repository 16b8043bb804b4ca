"""The load rehearsal and the harness it shares with bench/memory_profile.py.

tgsim and the real bot (`python -m bot`) run as separate processes, the simulated users as
real pyrogram clients in this one, and the bot's RSS is sampled from outside with psutil: a
figure taken inside the bot's own process would include the users and tgsim, and could not be
trusted while that process is the one under load.

Units: file sizes and throughput in MB of 1,000,000 bytes (a 2048 MB file stays under the
2000 MiB a free account may upload); RSS in MiB, the unit of MEMORY_LIMIT_MB.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

MB = 1000 * 1000
MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent
API_ID, API_HASH = 12345, "0123456789abcdef0123456789abcdef"
LOGIN_CODE = "12345"
FREE_UPLOAD_LIMIT = 2000 * MIB  # 4000 parts of 512 KiB: what a free account (and a bot) may send


# files -------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TGSIM_DCS = (1, 2, 3, 4, 5)


def tgsim_port_args() -> tuple[dict[int, int], list[str]]:
    """Free loopback ports for each of tgsim's DCs (all held open while picked, so no two are
    the same) and the `python -m tgsim` arguments that use them."""
    with contextlib.ExitStack() as stack:
        ports = {}
        for dc in TGSIM_DCS:
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports[dc] = s.getsockname()[1]
    return ports, ["--port", str(ports[2]), "--dc-ports",
                   ",".join(f"{dc}={p}" for dc, p in ports.items() if dc != 2)]


def server_spec(table: dict[int, tuple[str, int]]) -> str:
    """The bot's TELEGRAM_SERVER for a DC table: DC 2 first, then N=host:port."""
    host, port = table[2]
    return ",".join([f"{host}:{port}"] + [f"{dc}={h}:{p}" for dc, (h, p)
                                          in sorted(table.items()) if dc != 2])


def write_random(path: Path, size: int) -> str:
    """Random bytes written 1 MB at a time (never whole in memory); returns their sha256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left > 0:
            chunk = os.urandom(min(left, MB))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MB):
            h.update(chunk)
    return h.hexdigest()


def disk_usage(path: Path) -> int:
    """Bytes allocated under path (st_blocks), tolerant of files vanishing mid-walk."""
    total = 0
    stack = [str(path)]
    while stack:
        with contextlib.suppress(OSError):
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    with contextlib.suppress(OSError):
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
    return total


# child processes ---------------------------------------------------------------------------
class Child:
    """A child process whose stdout and stderr go to one log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None):
        self.name, self.argv, self.log_path, self.env = name, argv, log_path, env
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # a terminal's Ctrl-C is ours

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 25) -> str:
        with contextlib.suppress(OSError):
            lines = self.log_path.read_text(errors="replace").splitlines()
            return "\n".join(lines[-n:]) or "(no output)"
        return "(no output)"

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, wait, then SIGKILL; returns the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError):
            self._log.close()
        return self.proc.returncode


class TgsimProcess(Child):
    def __init__(self, data_dir: Path, log_path: Path, extra: list[str] = ()):
        self.dc_ports, port_args = tgsim_port_args()
        self.port = self.dc_ports[2]
        self.data_dir = data_dir
        super().__init__("tgsim", [sys.executable, "-m", "tgsim", *port_args,
                                   "--data", str(data_dir), "--code", LOGIN_CODE, *extra],
                         log_path, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    async def ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while "tgsim ready on" not in self.tail(50):
            if not self.alive():
                raise RuntimeError(f"tgsim exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"tgsim not ready after {timeout:.0f} s:\n{self.tail()}")
            await asyncio.sleep(0.05)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def dc_table(self) -> dict[int, tuple[str, int]]:
        return {dc: ("127.0.0.1", port) for dc, port in self.dc_ports.items()}

    @property
    def key_path(self) -> Path:
        return self.data_dir / "public.pem"

    @property
    def bot_token(self) -> str:
        return (self.data_dir / "bot_token").read_text().strip()

    @property
    def bot_username(self) -> str:
        return (self.data_dir / "bot_username").read_text().strip()

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    def stored_files(self) -> set[Path]:
        """tgsim's stored media, to tell which files a phase added (and delete them)."""
        return set(self.files_dir.iterdir()) if self.files_dir.is_dir() else set()


_SETTING = re.compile(r"^#?\s*([A-Z][A-Z0-9_]+)=", re.M)


# What a child process needs from ours to run at all; nothing else of the caller's leaks in.
_KEEP_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


def bot_environment(overrides: dict[str, object]) -> dict[str, str]:
    """The environment of a `python -m bot` child: a clean one (the caller's variables do
    not leak in, only _KEEP_ENV), every documented setting blank (so a config.env in the repo,
    read from the bot's working directory, does not either), then the overrides."""
    env = {k: os.environ[k] for k in _KEEP_ENV if k in os.environ}
    names = set(_SETTING.findall((ROOT / "config.env.example").read_text()))
    names |= {"RENDER", "RENDER_EXTERNAL_URL", "CONSTRAINED"}
    env.update({name: "" for name in names})
    env.update({k: str(v) for k, v in overrides.items() if v is not None})
    env["PYTHONUNBUFFERED"] = "1"
    return env


class BotProcess(Child):
    """`python -m bot`, the way Render runs it, with its web face on a free port."""

    def __init__(self, work: Path, sim: TgsimProcess, settings: dict[str, object]):
        from helpers.secrets import generate_key

        work.mkdir(parents=True, exist_ok=True)
        self.web_port = free_port()
        self.settings = {
            "API_ID": API_ID, "API_HASH": API_HASH, "BOT_TOKEN": sim.bot_token,
            "TELEGRAM_SERVER": server_spec(sim.dc_table), "TELEGRAM_SERVER_KEY": sim.key_path,
            "SESSION_KEY": generate_key(), "DATABASE_PATH": work / "bot.db",
            "ASSETS_DIR": work / "Assets", "LOG_FILE": work / "logs.txt",
            "PORT": self.web_port, **settings}
        super().__init__("bot", [sys.executable, "-m", "bot"], work / "bot.out",
                         env=bot_environment(self.settings))
        self.url = f"http://127.0.0.1:{self.web_port}"
        self._http = None

    async def _get(self, path: str) -> tuple[int, str]:
        import aiohttp

        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        async with self._http.get(self.url + path) as resp:
            return resp.status, await resp.text()

    async def healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise RuntimeError(f"the bot exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                if (await self._get("/healthz"))[0] == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the bot's /healthz not 200 after {timeout:.0f} s:\n"
                                   f"{self.tail()}")
            await asyncio.sleep(0.1)

    async def metrics(self) -> "Metrics":
        status, text = await self._get("/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return Metrics.parse(text)

    async def close_http(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


class Metrics(dict):
    """Prometheus text as {(sample name, sorted labels): value}."""

    @classmethod
    def parse(cls, text: str) -> "Metrics":
        from prometheus_client.parser import text_string_to_metric_families

        out = cls()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def get_value(self, name: str, **labels) -> float:
        key = tuple(sorted(labels.items()))
        for n in (name, name + "_total"):
            if (n, key) in self:
                return self[(n, key)]
        return 0.0

    @property
    def sessions_live(self) -> int:
        return int(self.get_value("bot_sessions_live"))

    @property
    def transfers_active(self) -> int:
        return int(self.get_value("bot_transfers_active"))

    @property
    def queue_waiting(self) -> int:
        return int(self.get_value("bot_queue_waiting"))

    def jobs(self, status: str) -> int:
        return int(self.get_value("bot_jobs", status=status))


# RSS sampling ------------------------------------------------------------------------------
@dataclass
class Sample:
    t: float
    rss: int
    phase: str


@dataclass
class RssSampler:
    """A thread that reads one process's RSS every `every` s, each sample tagged with the
    current phase; and once a second the space used under each of `dirs` (peaks kept)."""

    pid: int
    every: float = 0.1
    dirs: dict[str, Path] = field(default_factory=dict)
    phase: str = "start"
    samples: list[Sample] = field(default_factory=list)
    space_peak: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self._proc = psutil.Process(self.pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._disk_at = 0.0

    def start(self) -> "RssSampler":
        self.sample()
        self._thread.start()
        return self

    def sample(self) -> int | None:
        try:
            rss = self._proc.memory_info().rss
        except psutil.Error:
            return None
        self.samples.append(Sample(time.monotonic(), rss, self.phase))
        return rss

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            if self.sample() is None:
                return
            if self.dirs and time.monotonic() - self._disk_at >= 1.0:
                self._disk_at = time.monotonic()
                for name, path in self.dirs.items():
                    self.space_peak[name] = max(self.space_peak.get(name, 0), disk_usage(path))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)

    def since(self, t0: float, t1: float | None = None) -> list[int]:
        return [s.rss for s in self.samples if s.t >= t0 and (t1 is None or s.t <= t1)]

    def peak(self, t0: float = 0.0, t1: float | None = None) -> int:
        return max(self.since(t0, t1), default=0)

    async def settled(self, seconds: float = 1.0) -> int:
        """The median RSS over the next `seconds`: one reading can catch a passing spike."""
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        values = self.since(t0) or [self.sample() or 0]
        return int(statistics.median(values))


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    if len({x for x, _ in points}) < 2:
        return 0.0
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    return (sum((x - mx) * (y - my) for x, y in points)
            / sum((x - mx) ** 2 for x, _ in points))


# simulated users ---------------------------------------------------------------------------
_JOB_END = re.compile(r"Job #(\d+) (failed|cancelled)")
_REFUSED = re.compile(r"(\d+) link\(s\) (?:refused|over today's allowance)")


async def sign_in(address: tuple[str, int] | dict[int, tuple[str, int]], key_path: Path | str,
                  phone: str, name: str, code: str = LOGIN_CODE, **client_kw):
    """A real client signed in (or up) through the code flow, started for updates; `address`
    is DC 2's, or the server's DC table."""
    from pyrogram import Client, types

    from helpers.telegram_server import client_options

    label = "u" + phone.lstrip("+")
    client = Client(label, api_id=API_ID, api_hash=API_HASH,
                    **client_options(label, address, key_path), **client_kw)
    await client.connect()
    try:
        sent = await client.send_code(phone)
        result = await client.sign_in(phone, sent.phone_code_hash, code)
        if not isinstance(result, types.User):
            await client.sign_up(phone, sent.phone_code_hash, name)
        client.me = await client.get_me()
        await client.initialize()
    except BaseException:
        with contextlib.suppress(Exception):
            await client.disconnect()
        raise
    return client


class SimUser:
    """One person talking to the bot: a conversation inbox for /login, and counters of what
    came back for jobs (media by caption, failed or cancelled jobs, refused links)."""

    def __init__(self, client, phone: str, bot_id: int, bot_username: str):
        from pyrogram import filters

        self.client, self.phone = client, phone
        self.bot_username = bot_username
        self.inbox: asyncio.Queue = asyncio.Queue(maxsize=200)
        self.media: list = []
        self.ended: dict[int, str] = {}
        self.refused = 0
        self.changed = asyncio.Condition()
        from_bot = filters.private & filters.user(bot_id)
        client.on_message(from_bot)(self._seen)
        client.on_edited_message(from_bot)(self._seen)

    @property
    def id(self) -> int:
        return self.client.me.id

    async def _seen(self, _, message) -> None:
        text = message.text or message.caption or ""
        if message.media and not message.edit_date:
            self.media.append(message)
        elif text:
            for job_id, how in _JOB_END.findall(text):
                self.ended[int(job_id)] = how
            for n in _REFUSED.findall(text):
                self.refused += int(n)
        with contextlib.suppress(asyncio.QueueFull):
            self.inbox.put_nowait(message)
        async with self.changed:
            self.changed.notify_all()

    async def say(self, text: str):
        return await self.client.send_message(self.bot_username, text)

    async def expect_text(self, fragment: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply containing {fragment!r} within {timeout:.0f} s")
            msg = await asyncio.wait_for(self.inbox.get(), left)
            if fragment in (msg.text or ""):
                return msg

    async def login_to_bot(self) -> None:
        """The /login conversation, as a person types it (the code with spaces)."""
        while not self.inbox.empty():
            self.inbox.get_nowait()
        await self.say("/login")
        await self.expect_text("phone number")
        await self.say(self.phone)
        await self.expect_text("login code")
        await self.say(" ".join(LOGIN_CODE))
        await self.expect_text("Logged in as")

    def delivered(self, caption: str) -> list:
        return [m for m in self.media if (m.caption or "") == caption]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        async with self.changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait_for(predicate), timeout)
        return predicate()

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.stop(), 15)


def link(chat_id: int, msg_id: int) -> str:
    return f"https://t.me/c/{str(chat_id).removeprefix('-100')}/{msg_id}"


async def gather_limited(coros, limit: int = 6) -> list:
    sem = asyncio.Semaphore(limit)

    async def one(c):
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


# the harness -------------------------------------------------------------------------------
class Harness:
    """tgsim + the bot as processes, the bot's RSS sampled, users and an owner in here.
    Use as `async with Harness(...) as h:`; leaving stops users, the bot (SIGTERM, wait),
    then tgsim, and removes the work directory unless keep. tgsim_dir puts tgsim's store
    elsewhere (a tmpfs, say); it is always removed, since it may hold gigabytes of RAM."""

    def __init__(self, work: Path, settings: dict[str, object], *, keep: bool = False,
                 every: float = 0.1, tgsim_args: list[str] = (), track_space: bool = False,
                 tgsim_dir: Path | None = None):
        self.work, self.settings, self.keep = work, settings, keep
        self.every, self.tgsim_args, self.track_space = every, list(tgsim_args), track_space
        self.tgsim_dir = tgsim_dir
        self.sim: TgsimProcess | None = None
        self.bot: BotProcess | None = None
        self.sampler: RssSampler | None = None
        self.users: list[SimUser] = []
        self.owner: SimUser | None = None
        self.bot_rc: int | None = None
        self.last_send_s = 0.0  # how long tgsim took to answer the last post's send call
        self._log_handler: logging.Handler | None = None

    async def __aenter__(self) -> "Harness":
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        # The users' client logs (reconnections, retries) go to a file, not the table.
        self._log_handler = logging.FileHandler(self.work / "harness.log")
        self._log_handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
        pyrogram_log = logging.getLogger("pyrogram")
        pyrogram_log.addHandler(self._log_handler)
        pyrogram_log.setLevel(logging.INFO)
        store = self.tgsim_dir or self.work / "tgsim"
        self.sim = TgsimProcess(store, self.work / "tgsim.log", self.tgsim_args)
        self.sim.start()
        await self.sim.ready()
        self.bot = BotProcess(self.work / "bot", self.sim, self.settings)
        self.bot.start()
        dirs = {}
        if self.track_space:
            dirs = {"work": self.work, **({"tgsim": store} if self.tgsim_dir else {})}
        self.sampler = RssSampler(self.bot.pid, self.every, dirs=dirs).start()
        await self.bot.healthy()

    @property
    def bot_id(self) -> int:
        return int(self.sim.bot_token.split(":", 1)[0])

    async def person(self, phone: str, name: str) -> SimUser:
        client = await sign_in(self.sim.dc_table, self.sim.key_path, phone, name)
        return SimUser(client, phone, self.bot_id, self.sim.bot_username)

    async def add_users(self, n: int, prefix: str = "+1555") -> list[SimUser]:
        start = len(self.users)
        made = await gather_limited(
            self.person(f"{prefix}{i:07d}", f"User{i}") for i in range(start + 1, start + n + 1))
        self.users.extend(made)
        return made

    async def login_all(self, users: list[SimUser]) -> None:
        await gather_limited((u.login_to_bot() for u in users), limit=5)

    async def private_channel(self, members: list[SimUser], title: str = "Vault",
                              protected: bool = True) -> int:
        """A private channel (protected unless told) the owner posts in and members read."""
        c = (await self._owner()).client
        ch = await c.create_channel(title, "")
        if protected:
            await self.protect(ch.id)
        # Members join by invite link: the owner never saw them, and Telegram only lets an
        # account add a user whose access_hash it was given (core.telegram.org/api/peers).
        link = await c.export_chat_invite_link(ch.id)
        await gather_limited(u.client.join_chat(link) for u in members)
        return ch.id

    async def protect(self, chat_id: int) -> None:
        await (await self._owner()).client.set_chat_protected_content(chat_id, True)

    async def public_channel(self, username: str) -> int:
        """A public protected channel: the bot reads it with its own client and must
        download and re-upload (no copy), so no user session comes up."""
        c = (await self._owner()).client
        ch = await c.create_channel(username, "")
        await c.set_chat_username(ch.id, username)
        await c.set_chat_protected_content(ch.id, True)
        return ch.id

    async def _owner(self) -> SimUser:
        if self.owner is None:
            self.owner = await self.person("+19990000001", "Owner")
        return self.owner

    async def post(self, chat_id: int, path: Path, caption: str, copies: int = 1) -> list[int]:
        """The file once, then `copies - 1` more posts of the same stored media (no re-upload),
        so many jobs can have distinct messages without many copies on disk."""
        from pyrogram import errors, raw

        c = self.owner.client
        size = path.stat().st_size
        uploaded = await c.save_file(str(path))
        # tgsim joins the parts inside the send call, in its event loop: for a big file that
        # can outlast the client's 15 s default, and a retry finds the parts gone. So: one
        # try with a long timeout, and if its answer is lost, look for the post itself.
        t0 = time.monotonic()
        first_id = None
        try:
            r = await c.invoke(raw.functions.messages.SendMedia(
                peer=await c.resolve_peer(chat_id), message=caption, random_id=c.rnd_id(),
                media=raw.types.InputMediaUploadedDocument(
                    file=uploaded, mime_type="application/octet-stream", force_file=True,
                    attributes=[raw.types.DocumentAttributeFilename(file_name=path.name)])),
                retries=1, timeout=120)
            first_id = next(u.message.id for u in r.updates
                            if isinstance(u, (raw.types.UpdateNewChannelMessage,
                                              raw.types.UpdateNewMessage)))
        except (TimeoutError, errors.FilePartsInvalid):
            async for msg in c.get_chat_history(chat_id, limit=5):
                if msg.caption == caption and msg.document and msg.document.file_size == size:
                    first_id = msg.id
                    break
            if first_id is None:
                raise
        self.last_send_s = time.monotonic() - t0
        ids = [first_id]
        if copies > 1:
            file_id = (await c.get_messages(chat_id, first_id)).document.file_id
            for _ in range(copies - 1):
                ids.append((await c.send_cached_media(chat_id, file_id, caption=caption)).id)
        return ids

    async def wait_idle(self, live: int | None = None, timeout: float = 30.0) -> "Metrics":
        """Until no transfer runs, nothing waits and (if given) `live` sessions are up."""
        deadline = time.monotonic() + timeout
        while True:
            m = await self.bot.metrics()
            if (m.transfers_active == 0 and m.queue_waiting == 0
                    and (live is None or m.sessions_live == live)):
                return m
            if time.monotonic() > deadline:
                raise RuntimeError(f"bot not idle with {live} live sessions after {timeout:.0f}"
                                   f" s: live {m.sessions_live}, running {m.transfers_active},"
                                   f" waiting {m.queue_waiting}")
            await asyncio.sleep(0.1)

    async def session_curve(self, users: list[SimUser], chat_id: int, msg_id: int,
                            caption: str, at: Callable[[int], bool] = lambda k: True,
                            settle: float = 1.0) -> list[tuple[int, int]]:
        """(live sessions, settled RSS) as each user in turn runs one small private job,
        which brings their session up; the live count is the bot's own, from /metrics."""
        m = await self.wait_idle()
        base = m.sessions_live
        points = [(base, await self.sampler.settled(settle))] if at(base) else []
        for user in users:
            want = len(user.delivered(caption)) + 1
            await user.say(link(chat_id, msg_id))
            if not await user.wait_for(lambda: len(user.delivered(caption)) >= want
                                       or user.ended, 120):
                raise RuntimeError(f"no delivery for {user.phone} within 120 s")
            if user.ended:
                raise RuntimeError(f"a warm-up job of {user.phone} ended: {user.ended}")
            m = await self.wait_idle()
            if at(m.sessions_live):
                points.append((m.sessions_live, await self.sampler.settled(settle)))
        return points

    async def close(self) -> None:
        for u in self.users + ([self.owner] if self.owner else []):
            await u.stop()
        if self.bot is not None:
            await self.bot.close_http()
            self.bot_rc = await asyncio.to_thread(self.bot.stop, 60)
        if self.sampler is not None:
            self.sampler.stop()
        if self.sim is not None:
            await asyncio.to_thread(self.sim.stop, 15)
        if self.tgsim_dir is not None:
            shutil.rmtree(self.tgsim_dir, ignore_errors=True)
        if self._log_handler is not None:
            logging.getLogger("pyrogram").removeHandler(self._log_handler)
            self._log_handler.close()
        if not self.keep:
            shutil.rmtree(self.work, ignore_errors=True)


# python -m bot rehearse --users N --jobs M --file-mb S --concurrency C ------------------------
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
        want = await asyncio.to_thread(write_random, src, size)
        ping = work / "ping.bin"
        write_random(ping, 64 * 1024)
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
                identical += await asyncio.to_thread(sha256_file, Path(path)) == want
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
    need = size * (4 + 2 * a.concurrency + a.users * a.jobs) + 256 * MIB
    free = shutil.disk_usage(base).free
    if free < need:
        print(f"not enough disk in {base}: {free / MB:.0f} MB free, about {need / MB:.0f} MB "
              f"needed", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bot-load-", dir=base))

    async def main() -> int:
        task = asyncio.current_task()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await rehearse_load(a, work)

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line, whatever broke (an RPC error too)
        print(f"rehearsal failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        if a.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
