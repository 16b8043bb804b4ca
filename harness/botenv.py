"""The real bot (App) in this process against tgsim, with logged-in people whose messages
from the bot land in per-person inboxes. The end-to-end tests use it through the `env`
fixture (tests/conftest.py) or bot_env."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import time
from pathlib import Path

from pyrogram import filters

from bot.app import App
from bot.config import Settings, load_settings
from harness.signin import API_HASH, API_ID
from harness.waits import wait_until  # noqa: F401 - tests take it from here too
from helpers.secrets import generate_key

_phones = itertools.count(1)
READER = "Downloader bot reader"  # the device_model of the bot's user clients


def sim_settings(base: Settings, sim, bot_token: str, workdir: Path) -> Settings:
    """Settings that point the bot at a running tgsim, with every file under workdir."""
    return dataclasses.replace(
        base, api_id=API_ID, api_hash=API_HASH, bot_token=bot_token,
        telegram_server=("127.0.0.1", sim.port), telegram_server_key=str(sim.public_key_path),
        telegram_dcs=tuple((dc, h, p) for dc, (h, p) in sim.dc_table.items() if dc != 2),
        database_path=str(workdir / "bot.db"), assets_dir=str(workdir / "Assets"),
        log_file=str(workdir / "logs.txt"), port=0, progress_interval_s=3.0)


class Person:
    """One simulated Telegram user talking to the bot."""

    def __init__(self, env: "Env", client, inbox: asyncio.Queue, phone: str):
        self.env, self.client, self.inbox, self.phone = env, client, inbox, phone

    @property
    def id(self) -> int:
        return self.client.me.id

    async def say(self, text: str):
        return await self.client.send_message(self.env.bot_username, text)

    async def expect(self, predicate, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("expected reply did not arrive")
            try:
                msg = await asyncio.wait_for(self.inbox.get(), left)
            except TimeoutError:
                raise AssertionError("expected reply did not arrive") from None
            if predicate(msg):
                return msg

    async def expect_text(self, fragment: str, timeout: float = 30):
        return await self.expect(lambda m: fragment in (m.text or ""), timeout)

    async def expect_media(self, timeout: float = 60):
        return await self.expect(lambda m: m.media is not None, timeout)

    async def ask(self, text: str, fragment: str, timeout: float = 30):
        await self.say(text)
        return await self.expect_text(fragment, timeout)

    async def settle(self, timeout: float = 30) -> list:
        """Everything the bot sent this person before now, once it is idle for them: a /status
        round trip, since one chat's messages arrive in the order they were sent. Fails if the
        person still has jobs (the reply is then not the idle one)."""
        await self.say("/status")
        out = []
        while True:
            msg = await self.expect(lambda m: True, timeout)
            if (msg.text or "").startswith("You have no jobs in progress"):
                return out
            out.append(msg)

    def drain(self) -> list:
        out = []
        while not self.inbox.empty():
            out.append(self.inbox.get_nowait())
        return out


async def login(env: "Env", person: Person, password: str | None = None) -> list[int]:
    """The whole /login conversation, the code typed with spaces; returns the ids of the
    messages that held secrets."""
    await person.ask("/login", "phone number")
    secret_ids = [(await person.say(person.phone)).id]
    await person.expect_text("login code")
    secret_ids.append((await person.say(" ".join(env.sim.world.login_code))).id)
    if password:
        await person.expect_text("two-step verification")
        secret_ids.append((await person.say(password)).id)
    await person.expect_text("Logged in as")
    return secret_ids


class Env:
    def __init__(self, sim, clients, app, bot_acc, work):
        self.sim, self.clients, self.app, self.work = sim, clients, app, work
        self.bot_acc = bot_acc
        self.bot_username = bot_acc.username
        self.people: list[Person] = []

    async def person(self, first_name: str = "Tester", password: str | None = None,
                     phone: str | None = None) -> Person:
        phone = phone or f"+1666{next(_phones):07d}"
        client = await self.clients.user(phone, first_name, password=password)
        inbox: asyncio.Queue = asyncio.Queue()

        @client.on_message(filters.private & filters.user(self.bot_acc.id))
        async def collect(_, message):
            await inbox.put(message)

        @client.on_edited_message(filters.private & filters.user(self.bot_acc.id))
        async def collect_edit(_, message):
            await inbox.put(message)

        p = Person(self, client, inbox, phone)
        self.people.append(p)
        return p

    # The first person, for tests that need only one.
    @property
    def user(self):
        return self.people[0].client

    @property
    def inbox(self):
        return self.people[0].inbox

    async def say(self, text: str):
        return await self.people[0].say(text)

    async def expect(self, predicate, timeout: float = 30):
        return await self.people[0].expect(predicate, timeout)

    async def expect_text(self, fragment: str, timeout: float = 30):
        return await self.people[0].expect_text(fragment, timeout)

    async def expect_media(self, timeout: float = 60):
        return await self.people[0].expect_media(timeout)


@contextlib.asynccontextmanager
async def bot_env(sim, clients, tmp_path, clock=None, **overrides):
    """Start the bot on tgsim with `overrides` applied to its settings, and one person;
    clock: the wall clock of the bot's database (App's clock)."""
    bot_acc = sim.world.add_bot("dl_test_bot", "Downloader")
    settings = sim_settings(load_settings(environ={}, env_file=None), sim, bot_acc.bot_token,
                            tmp_path / "bot")
    overrides.setdefault("session_key", generate_key())
    settings = dataclasses.replace(settings, **overrides)
    app = App(settings, clock=clock)
    await app.start()
    env = Env(sim, clients, app, bot_acc, tmp_path)
    try:
        await env.person()
        yield env
    finally:
        await env.app.stop()  # the one running now: a test that restarts it stops the first
