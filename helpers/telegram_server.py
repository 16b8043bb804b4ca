"""Point the client library at a self-hosted Telegram-compatible server (such as tgsim).

Two of the library's own extension points are used and none of its methods is patched: its
table of trusted server keys gains the server's RSA key, and a storage engine answers the
server address of the session's DC from a DC table given here, as the library answers it from
Telegram's own table (storage/sqlite_storage.py, PROD[dc_id]). Telegram's DCs share no keys:
a session restored on DC 4 must connect to DC 4 (core.telegram.org/api/datacenter). Every other
address (media sessions, a DC a file lives on, a PHONE_MIGRATE) the library reads from the
server's help.getConfig, as it does on Telegram.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pyrogram.crypto import rsa
from pyrogram.storage import SQLiteStorage


def install_server_key(pem_path: str | Path) -> int:
    """Trust the server's public key; returns its fingerprint. Idempotent. The simulator's
    key helpers load only here, when a self-hosted server is configured: against Telegram
    the product never imports tgsim."""
    from tgsim.crypto import load_public_pem, rsa_fingerprint

    n, e = load_public_pem(Path(pem_path).read_bytes())
    fingerprint = rsa_fingerprint(n, e)
    rsa.server_public_keys[fingerprint] = rsa.PublicKey(m=n, e=e)
    return fingerprint


MAIN_DC = 2  # where the library starts a new session (client.py load_session)
DcTable = Mapping[int, tuple[str, int]]


def dc_table(server: tuple[str, int] | DcTable) -> dict[int, tuple[str, int]]:
    """{dc: (host, port)} from a table, or from one address taken as DC 2's."""
    if isinstance(server, Mapping):
        table = {int(dc): (str(host), int(port)) for dc, (host, port) in server.items()}
    else:
        table = {MAIN_DC: (str(server[0]), int(server[1]))}
    if MAIN_DC not in table:
        raise ValueError(f"the DC table needs DC {MAIN_DC}, where new sessions start")
    return table


class PinnedStorage(SQLiteStorage):
    """Session storage whose server address is the DC table's address of the session's DC
    (DC 2's for a DC the table does not list: a server that serves every DC on one address).
    In memory unless a workdir is given (the bot keeps its peers across restarts there)."""

    def __init__(self, name: str, server: tuple[str, int] | DcTable,
                 session_string: str | None = None, workdir: Path | None = None):
        super().__init__(name, workdir=Path(workdir or "."), session_string=session_string,
                         in_memory=workdir is None or session_string is not None)
        self._table = dc_table(server)

    async def _address(self) -> tuple[str, int]:
        dc = await self.dc_id()
        return self._table.get(dc or MAIN_DC, self._table[MAIN_DC])

    async def server_address(self, value=object):
        if value is object:
            return (await self._address())[0]
        return await super().server_address(value)

    async def port(self, value=object):
        if value is object:
            return (await self._address())[1]
        return await super().port(value)


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, got {address!r}")
    return host, int(port)


def client_options(name: str, server: tuple[str, int] | DcTable | None,
                   key_path: str | Path | None, session_string: str | None = None,
                   workdir: Path | None = None, peer_store=None) -> dict:
    """Keyword arguments for pyrogram.Client: storage in memory (or in workdir), with the
    configured server's DC table when there is one (one address: DC 2's).

    peer_store: a helpers.database.Database that also keeps the account's peers
    (helpers/shared_peers.py); for the bot, whose peers every process of it may need."""
    if server is None:
        if session_string:
            return {"session_string": session_string}
        if peer_store is None:
            return {"workdir": str(workdir)} if workdir else {"in_memory": True}
        from helpers.shared_peers import shared_storage_class
        storage = shared_storage_class(SQLiteStorage)(
            name, workdir=Path(workdir or "."), in_memory=workdir is None)
        storage.share_peers_with(peer_store)
        return {"storage_engine": storage}
    if key_path is None:
        raise ValueError("TELEGRAM_SERVER_KEY is required with TELEGRAM_SERVER")
    install_server_key(key_path)
    if peer_store is None:
        return {"storage_engine": PinnedStorage(name, server, session_string, workdir)}
    from helpers.shared_peers import shared_storage_class
    storage = shared_storage_class(PinnedStorage)(name, server, session_string, workdir)
    storage.share_peers_with(peer_store)
    return {"storage_engine": storage}
