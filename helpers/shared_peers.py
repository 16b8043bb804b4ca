"""The bot account's access hashes, kept in the bot's database as well as in the client
library's own session file.

Telegram gives the bot a private chat's access_hash only in passing (the update that adds
it to the chat) and accepts it from any session of the same account
(core.telegram.org/api/peers). The library keeps them in its session file on the local disk;
a process that never saw that update (a worker beside the front, or the bot after a deploy on
a host whose disk is wiped) would not know the chat. So every peer the library stores is also
written to `bot_peers` (Database.save_bot_peers), and a peer the library does not know is
looked up there before the library gives up. This is the library's own extension point (a
storage engine, `Client(storage_engine=...)`); none of its methods is patched.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from pyrogram.storage.sqlite_storage import get_input_peer

log = logging.getLogger("peers")

_WRITTEN_MAX = 5000  # peers whose row is known to be current, to skip rewriting them
_PENDING_MAX = 5000  # peers waiting to be written; past it the oldest wait for a later update
_CLOSE_WAIT_S = 10.0  # at close, how long the last peers may take to reach the database


class SharedPeersMixin:
    """Mixed into the library's SQLiteStorage (or a subclass of it).

    The library stores peers while it handles an update; writing them through to the
    database on that path would hold every update behind a database round trip (or, on
    SQLite, behind another process's lock for up to LOCKED_RETRY_S). So they are queued
    and written by one background task, and close() waits for the last of them."""

    def share_peers_with(self, store) -> None:
        """store: a helpers.database.Database."""
        self._peer_store = store
        self._written: OrderedDict[int, tuple[int, str]] = OrderedDict()
        self._pending: OrderedDict[int, tuple[int, str]] = OrderedDict()
        self._flusher: asyncio.Task | None = None

    async def update_peers(self, peers):
        peers = list(peers)
        await super().update_peers(peers)
        if getattr(self, "_peer_store", None) is None:
            return
        for pid, h, t, _phone in peers:
            if h is None or self._written.get(pid) == (h, t):
                continue
            self._pending[pid] = (h, t)
            self._pending.move_to_end(pid)
        while len(self._pending) > _PENDING_MAX:
            self._pending.popitem(last=False)
        if self._pending and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.get_running_loop().create_task(self._flush(),
                                                                   name="bot peers")

    async def _flush(self) -> None:
        while self._pending:
            batch = list(self._pending.items())[:500]
            for pid, _ in batch:
                del self._pending[pid]
            try:
                await self._peer_store.save_bot_peers([(pid, h, t) for pid, (h, t) in batch])
            except Exception:  # noqa: BLE001 - never fails an update; re-sent by a later one
                log.warning("could not store %d of the bot's peers", len(batch), exc_info=True)
                return
            for pid, value in batch:
                self._written[pid] = value
                self._written.move_to_end(pid)
            while len(self._written) > _WRITTEN_MAX:
                self._written.popitem(last=False)

    async def flush(self) -> None:
        """Wait (bounded) for the peers learned so far to be in the database."""
        task = getattr(self, "_flusher", None)
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=_CLOSE_WAIT_S)

    async def save(self):
        """The library's commit (helpers.peers.keep calls it when a job will depend on a
        peer): the database gets the peers too before the job can be taken elsewhere."""
        await super().save()
        await self.flush()

    async def close(self):
        await self.flush()
        await super().close()

    async def get_peer_by_id(self, peer_id: int):
        try:
            return await super().get_peer_by_id(peer_id)
        except KeyError:
            store = getattr(self, "_peer_store", None)
            if store is None:
                raise
            try:
                row = await store.get_bot_peer(peer_id)
            except Exception:  # noqa: BLE001 - the library's own answer stands
                log.warning("could not read the bot's stored peers", exc_info=True)
                row = None
            if row is None:
                raise
            await super().update_peers([(row[0], row[1], row[2], None)])
            self._written[row[0]] = (row[1], row[2])
            return get_input_peer(*row)


_classes: dict[type, type] = {}


def shared_storage_class(base: type) -> type:
    """`base` (the library's SQLiteStorage or a subclass) with its peers shared."""
    cls = _classes.get(base)
    if cls is None:
        cls = _classes[base] = type(f"SharedPeers{base.__name__}", (SharedPeersMixin, base), {})
    return cls
