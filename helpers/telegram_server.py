"""Point the client library at a self-hosted Telegram-compatible server (such as tgsim).

Two of the library's own extension points are used and none of its methods is patched: its
table of trusted server keys gains the server's RSA key, and a storage engine pins the stored
server address, so the first connection and every reconnection go to that server. The server's
help.getConfig names itself for every DC, so media sessions follow.
"""

from __future__ import annotations

from pathlib import Path

from pyrogram.crypto import rsa
from pyrogram.storage import SQLiteStorage

from tgsim.crypto import load_public_pem, rsa_fingerprint


def install_server_key(pem_path: str | Path) -> int:
    """Trust the server's public key; returns its fingerprint. Idempotent."""
    n, e = load_public_pem(Path(pem_path).read_bytes())
    fingerprint = rsa_fingerprint(n, e)
    rsa.server_public_keys[fingerprint] = rsa.PublicKey(m=n, e=e)
    return fingerprint


class PinnedStorage(SQLiteStorage):
    """Session storage whose server address is always the configured one. In memory unless a
    workdir is given (the bot keeps its peers across restarts there)."""

    def __init__(self, name: str, host: str, port: int, session_string: str | None = None,
                 workdir: Path | None = None):
        super().__init__(name, workdir=Path(workdir or "."), session_string=session_string,
                         in_memory=workdir is None or session_string is not None)
        self._host = host
        self._port = port

    async def server_address(self, value=object):
        if value is object:
            return self._host
        return await super().server_address(self._host)

    async def port(self, value=object):
        if value is object:
            return self._port
        return await super().port(self._port)


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, got {address!r}")
    return host, int(port)


def client_options(name: str, server: tuple[str, int] | None, key_path: str | Path | None,
                   session_string: str | None = None, workdir: Path | None = None) -> dict:
    """Keyword arguments for pyrogram.Client: storage in memory (or in workdir), pinned to the
    configured server when there is one."""
    if server is None:
        if session_string:
            return {"session_string": session_string}
        return {"workdir": str(workdir)} if workdir else {"in_memory": True}
    if key_path is None:
        raise ValueError("TELEGRAM_SERVER_KEY is required with TELEGRAM_SERVER")
    install_server_key(key_path)
    return {"storage_engine": PinnedStorage(name, server[0], server[1], session_string,
                                            workdir)}
