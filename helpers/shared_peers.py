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

import logging
from collections import OrderedDict

from pyrogram.storage.sqlite_storage import get_input_peer

log = logging.getLogger("peers")

_WRITTEN_MAX = 5000  # peers whose row is known to be current, to skip rewriting them


class SharedPeersMixin:
    """Mixed into the library's SQLiteStorage (or a subclass of it)."""

    def share_peers_with(self, store) -> None:
        """store: a helpers.database.Database."""
        self._peer_store = store
        self._written: OrderedDict[int, tuple[int, str]] = OrderedDict()

    async def update_peers(self, peers):
        peers = list(peers)
        await super().update_peers(peers)
        store = getattr(self, "_peer_store", None)
        if store is None:
            return
        fresh = [(pid, h, t) for pid, h, t, _phone in peers
                 if h is not None and self._written.get(pid) != (h, t)]
        if not fresh:
            return
        try:
            await store.save_bot_peers(fresh)
        except Exception:  # noqa: BLE001 - an update is never lost over this; re-sent later
            log.warning("could not store %d of the bot's peers", len(fresh), exc_info=True)
            return
        for pid, h, t in fresh:
            self._written[pid] = (h, t)
            self._written.move_to_end(pid)
        while len(self._written) > _WRITTEN_MAX:
            self._written.popitem(last=False)

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
