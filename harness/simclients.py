"""Real pyrogram clients for an in-process tgsim, pointed at it through the library's own
hooks (its server key table and a storage engine with tgsim's DC table); stopped together."""

from __future__ import annotations

import itertools

from pyrogram import Client

from harness.signin import API_HASH, API_ID, sign_in
from helpers.session_manager import stop_dc_sessions
from helpers.telegram_server import client_options

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
        client = await sign_in(self.sim.dc_table, self.sim.public_key_path, phone, first_name,
                               self.sim.world.login_code, password=password,
                               client_name=f"c{next(_names)}", **kw)
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
