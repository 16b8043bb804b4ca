"""tgsim and the real bot (`python -m bot`) as separate processes, the bot's RSS sampled from
outside, simulated users in this process: what the load rehearsal and bench/memory_profile.py
run on."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path
from typing import Callable

from harness.botprocess import BotProcess
from harness.chats import link, private_channel
from harness.metrics import Metrics
from harness.rss import RssSampler
from harness.signin import sign_in
from harness.simserver import TgsimProcess
from harness.simusers import SimUser, gather_limited


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
        self.bot = BotProcess(self.work / "bot", bot_token=self.sim.bot_token,
                              dc_table=self.sim.dc_table, key_path=self.sim.key_path,
                              settings=self.settings)
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
        ch = await private_channel(await self._owner(), title, *members, protected=protected)
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
