"""Real pyrogram clients pointed at a tgsim through the library's own hooks."""

from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path

from pyrogram import Client, types

from bot.rehearsal_load import free_port  # noqa: F401 - re-exported for the tests
from helpers.session_manager import stop_dc_sessions
from helpers.telegram_server import client_options

API_ID = 12345
API_HASH = "0123456789abcdef0123456789abcdef"
_names = itertools.count()


class SimClients:
    def __init__(self, sim):
        self.sim = sim
        self.started: list[Client] = []

    def new(self, session_string: str | None = None, **kw) -> Client:
        name = f"c{next(_names)}"
        opts = client_options(name, self.sim.dc_table, self.sim.public_key_path,
                              session_string)
        return Client(name, api_id=API_ID, api_hash=API_HASH, **opts, **kw)

    async def bot(self, username: str = "simbot", **kw) -> Client:
        acc = self.sim.world.add_bot(username)
        client = self.new(bot_token=acc.bot_token, **kw)
        await client.start()
        self.started.append(client)
        return client

    async def user(self, phone: str, first_name: str = "User", password: str | None = None,
                   **kw) -> Client:
        """Sign up (or in) through the real code flow, then run as a started client."""
        if password is not None and self.sim.world.account_by_phone(phone.lstrip("+")) is None:
            self.sim.world.add_user(phone.lstrip("+"), first_name=first_name, password=password)
        client = self.new(**kw)
        await client.connect()
        sent = await client.send_code(phone)
        try:
            result = await client.sign_in(phone, sent.phone_code_hash, self.sim.world.login_code)
        except Exception as e:  # SessionPasswordNeeded
            if password is None or "SESSION_PASSWORD_NEEDED" not in str(e):
                raise
            result = await client.check_password(password)
        if not isinstance(result, types.User):  # False or TermsOfService: no account yet
            await client.sign_up(phone, sent.phone_code_hash, first_name)
        client.me = await client.get_me()
        await client.initialize()
        self.started.append(client)
        return client

    async def stop_all(self) -> None:
        for client in self.started:
            try:
                if client.is_connected:
                    await client.stop()
                await stop_dc_sessions(client)  # those on other DCs, which stop() leaves
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
        self.started.clear()


def write_random(path, size: int) -> Path:
    """A file of random bytes, written in 1 MB chunks (never whole in memory)."""
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            f.write(chunk)
            left -= len(chunk)
    return Path(path)


def file_digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

