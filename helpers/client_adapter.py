"""The one door to the client library's private internals.

Everything that touches a private attribute or class of pyrogram lives here, so an upgrade of
the library breaks in one place, and the contract tests in tests/unit pin what this module relies
on. Prefer the public API where it exists.

What the library offers no public way to do, and the product needs (kurigram 2.2.26):

- connections: stop the per-DC sessions (``Client.sessions``) that ``stop()`` leaves open,
  the media sessions and the main session of a client whose start failed half-way;
- the session storage (``Client.storage``, a ``Storage``): commit it, read and write the
  peers and update states it keeps, close it; a storage that answers the server address of
  its DC from a table (the storage_engine extension point, with SQLiteStorage's accessors);
- the dispatcher: whether an update waits or a handler runs;
- the message cache: its size and a way to empty it;
- parsing: ``utils.parse_messages`` (get_messages without its hidden FloodWait sleep),
  ``utils.get_channel_id``, ``Client.fetch_peers`` (store the peers of an answer);
- the table of trusted server keys (``crypto.rsa.server_public_keys``);
- the TL objects' type names and fields (``QUALNAME``, ``__slots__``), for log redaction.

The transfer path's internals (Session.send, Auth, file ids, CDN) are in
helpers/client_adapter_transfer.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from pyrogram import Client, utils
from pyrogram.crypto import rsa
from pyrogram.storage import SQLiteStorage, UpdateState
from pyrogram.storage.sqlite_storage import get_input_peer

# connections ------------------------------------------------------------------------------


async def stop_dc_sessions(client: Client) -> None:
    """Stop the per-DC sessions pyrogram keeps outside terminate()'s reach (``sessions``, for
    files on other DCs) and the media sessions; never raises. Without it each closed user
    client leaks a connection and a reader task."""
    for pool in (client.sessions, client.media_sessions):
        for session in list(pool.values()):
            with contextlib.suppress(Exception):
                await session.stop()
        pool.clear()


async def stop_main_session(client: Client) -> None:
    """Stop the client's main session if it has one (a start cut short leaves it running:
    disconnect() refuses a client that is half-initialised)."""
    if client.session is not None:
        await client.session.stop()


async def close_storage(client: Client) -> None:
    """Close the session storage (the Storage API's close(); for SQLiteStorage, the sqlite
    connection). Raises if it was never opened: callers suppress."""
    await client.storage.close()


# the session storage ----------------------------------------------------------------------


async def commit_storage(client: Client) -> None:
    """Commit the peer database now: the library commits it only at start and stop."""
    await client.storage.save()


async def stored_peer(client: Client, peer_id: int):
    """The InputPeer the storage holds for a pyrogram peer id; KeyError when it holds none
    (unlike resolve_peer, never a network call)."""
    return await client.storage.get_peer_by_id(peer_id)


async def store_peers(client: Client, rows: Iterable[tuple[int, int, str]]) -> None:
    """Write (pyrogram peer id, access_hash, peer type) rows to the storage, no phone."""
    await client.storage.update_peers([(pid, ah, kind, None) for pid, ah, kind in rows])


async def learn_peers(client: Client, chats: list) -> None:
    """Store the users/chats of an answer the library did not look into itself."""
    await client.fetch_peers(chats)


def channel_chat_id(channel_id: int) -> int:
    """A raw channel id -> the -100… id the library takes for that channel."""
    return utils.get_channel_id(channel_id)


class UpdateStateRow(NamedTuple):
    """One row of the library's update state: id 0 is the account's, others a channel's."""

    id: int
    pts: int | None
    qts: int | None
    date: int | None
    seq: int | None


async def update_states(client: Client, ids: int | Iterable[int] | None = None
                        ) -> list[UpdateStateRow]:
    """The update states the library stored (all, or those of `ids`), oldest date first."""
    return [UpdateStateRow(s.id, s.pts, s.qts, s.date, s.seq)
            for s in await client.storage.get_update_states(ids)]


async def set_update_state(client: Client, state_id: int, pts: int | None, qts: int | None,
                           date: int | None, seq: int | None) -> None:
    """Write one update state (a None field keeps the stored value)."""
    await client.storage.set_update_state(UpdateState(state_id, pts, qts, date, seq))


async def delete_update_states(client: Client, ids: Iterable[int]) -> None:
    await client.storage.delete_update_state(list(ids))


class RoutedStorage(SQLiteStorage):
    """SQLite session storage that answers its server address and port from ``route(dc_id)``
    (``dc_id`` None before the session has one) instead of from its row; writes go to the row
    as usual. Relies on SQLiteStorage's accessors: called with no value they read, with one
    they write (the sentinel is ``object``)."""

    def __init__(self, name: str, route: Callable[[int | None], tuple[str, int]], *,
                 session_string: str | None = None, workdir: Path | None = None,
                 in_memory: bool = True):
        super().__init__(name, workdir=Path(workdir or "."), session_string=session_string,
                         in_memory=in_memory)
        self._route = route

    async def server_address(self, value=object):
        if value is object:
            return self._route(await self.dc_id())[0]
        return await super().server_address(value)

    async def port(self, value=object):
        if value is object:
            return self._route(await self.dc_id())[1]
        return await super().port(value)


class _MirroredPeers:
    """Mixed into a SQLiteStorage: every peer the library stores also goes to `mirror`
    (helpers.shared_peers.PeerMirror), and a peer it does not know is asked of the mirror
    before the library gives up. Relies on the storage's update_peers (4-tuples: id, hash,
    type, phone), get_peer_by_id (KeyError when unknown), save and close."""

    mirror = None

    async def update_peers(self, peers):
        peers = list(peers)
        await super().update_peers(peers)
        if self.mirror is not None:
            self.mirror.learned([(pid, h, t) for pid, h, t, _phone in peers])

    async def save(self):
        await super().save()
        if self.mirror is not None:
            await self.mirror.flush()

    async def close(self):
        if self.mirror is not None:
            await self.mirror.flush()
        await super().close()

    async def get_peer_by_id(self, peer_id: int):
        try:
            return await super().get_peer_by_id(peer_id)
        except KeyError:
            row = await self.mirror.lookup(peer_id) if self.mirror is not None else None
            if row is None:
                raise
            await super().update_peers([(row[0], row[1], row[2], None)])
            return get_input_peer(*row)


_mirrored: dict[type, type] = {}


def mirrored_storage_class(base: type) -> type:
    """`base` (SQLiteStorage or a subclass) whose peers are mirrored: set `.mirror` on it."""
    cls = _mirrored.get(base)
    if cls is None:
        cls = _mirrored[base] = type(f"Mirrored{base.__name__}", (_MirroredPeers, base), {})
    return cls


def random_id_source(client: Client) -> Callable[[], int]:
    """Where the client draws each request's random_id (messages.send*: Telegram drops a
    second send with the same one, RANDOM_ID_DUPLICATE)."""
    return client.rnd_id


def set_random_id_source(client: Client, pick: Callable[[], int]) -> None:
    """The library calls `client.rnd_id()` for every send's random_id; an instance
    attribute shadows its static method for this client only."""
    client.rnd_id = pick


# the dispatcher and the caches ------------------------------------------------------------


def dispatcher_is_idle(client: Client) -> bool:
    """No update waits in the dispatcher's queue and no handler runs (each handler worker
    holds its lock while it runs the handlers of one update)."""
    dispatcher = client.dispatcher
    return dispatcher.updates_queue.empty() and not any(
        lock.locked() for lock in dispatcher.locks_list)


def message_cache_size(client: Client) -> int:
    return len(client.message_cache)


def clear_message_cache(client: Client) -> int:
    """Empty the library's cache of recent messages (pure convenience); returns how many
    entries went. 0 when the cache is not the kind this knows."""
    store = getattr(client.message_cache, "_cache", None)
    if store is None:
        return 0
    dropped = len(store)
    store.clear()
    return dropped


# parsing ----------------------------------------------------------------------------------


async def parse_messages(client: Client, answer, replies: int = 1) -> list:
    """messages.Messages (or Updates) -> pyrogram Messages, as get_messages parses them."""
    return await utils.parse_messages(client, answer, replies=replies)


# server keys and TL objects ---------------------------------------------------------------


def server_key_fingerprint(n: int, e: int) -> int:
    """Lower 64 bits of SHA1 over the TL-serialised key (n, e as bytes), a signed long: how
    the client picks the key the server names (core.telegram.org/mtproto/auth_key)."""
    from hashlib import sha1

    from pyrogram.raw.core.primitives import Bytes

    serialised = b"".join(Bytes(v.to_bytes((v.bit_length() + 7) // 8, "big")) for v in (n, e))
    return int.from_bytes(sha1(serialised).digest()[-8:], "little", signed=True)


def trust_server_key(fingerprint: int, n: int, e: int) -> None:
    """Add an RSA key (modulus n, exponent e) to the keys the library accepts from a server."""
    rsa.server_public_keys[fingerprint] = rsa.PublicKey(m=n, e=e)


def is_tl_object(value: Any) -> bool:
    """A Telegram (TL) object of the library: a class with a QUALNAME and slotted fields."""
    return hasattr(type(value), "QUALNAME") and hasattr(type(value), "__slots__")


def tl_name(obj: Any) -> str:
    """The TL type name of an object (its class name for anything else)."""
    return getattr(type(obj), "QUALNAME", type(obj).__name__)


def tl_fields(obj: Any) -> Iterable[Any]:
    """The values of a TL object's fields (nothing for anything else)."""
    for slot in getattr(type(obj), "__slots__", ()):
        yield getattr(obj, slot, None)
