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

- the transfer path: pooled media connections, one request sent on a chosen connection
  without the library's copies, file parts received without them, watching that connection,
  a CDN DC's key and its RSA key (see the sections "the transfer path" and "the receive
  path" below).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from pyrogram import Client, errors, raw, utils
from pyrogram.connection.transport import TCP, TCPAbridged, TCPIntermediate
from pyrogram.crypto import aes, rsa
from pyrogram.file_id import FileId, FileType
from pyrogram.session import Auth, Session
from pyrogram.session.session import AuthKeyNotFound
from pyrogram.session.session import Result as _Result
from pyrogram.storage import SQLiteStorage, UpdateState
from pyrogram.storage.sqlite_storage import get_input_peer

from helpers import transfer_frames as frames
from helpers import transfer_wire as wire

log = logging.getLogger(__name__)

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


# the transfer path ----------------------------------------------------------------------
# The transfer path's door to the client library's internals (kurigram 2.2, imported as pyrogram).
#
# Everything helpers/transfer*.py and helpers/cdn.py need beyond the library's documented API is
# here, and tests/unit/test_client_adapter_contract_transfer.py pins exactly what it relies on, so an
# upgrade that renames one of them fails that test instead of a transfer in production.
#
# A pooled media connection is what `Client.get_session(dc, is_media=True, temporary=True,
# export_authorization=False)` makes, but of our Session subclass (LeanMediaSession, below):
# it shares the key of the client's own session for that DC (authorized there once, by the
# library's single auth.exportAuthorization / importAuthorization; an authorization belongs to
# the key, not the connection: core.telegram.org/api/datacenter), and exports nothing itself.
# What has no public form: sending one request on a chosen connection without the library's
# copies (`send`), receiving file parts without them (LeanMediaSession), watching that
# connection, making a CDN DC's key, trusting a CDN's RSA key.

ctr256_decrypt = aes.ctr256_decrypt  # AES-256-CTR as the library runs it (tgcrypto)


class Broken(ConnectionError):
    """The media session under a request restarted, stopped or never came up."""


class Resend(Exception):
    """The server asked for the request again (new salt): not a failure."""


# client -> {dc_id: lock}: the library does not guard against two callers making the
# client's session for a foreign DC at once (two sessions, two exports)
_home_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# client -> {dc_id: (monotonic deadline, the 420)}: an export Telegram answered with a wait is
# not tried again before it is over, by this connection or any other (never export in a loop)
_export_floods: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def open_media_session(client, dc_id: int, address: str, port: int) -> Session:
    """A started media session of our own to `dc_id`, to pool and stop ourselves.

    On a foreign DC the client's own session there is made first, once, under a lock: that
    is the library's one export/import for the DC, and every media session shares its key."""
    lock = _home_locks.setdefault(client, {}).setdefault(dc_id, asyncio.Lock())
    floods = _export_floods.setdefault(client, {})
    async with lock:
        until, flood = floods.get(dc_id, (0.0, None))
        if flood is not None and time.monotonic() < until:
            # the same 420 with what is left of it: the caller's policy waits that out
            raise type(flood)(max(1, int(until - time.monotonic() + 0.999)),
                              "auth.ExportAuthorization")
        try:
            home = await client.get_session(dc_id)  # cached by the library after the first call
        except Exception as e:
            # the library caches that session before it exports, and keeps it when the
            # export fails: unauthorized, every later media session would share a dead key
            # (401 AUTH_KEY_UNREGISTERED). Forget it, so the next attempt exports afresh.
            broken = client.sessions.pop(dc_id, None)
            if broken is not None:
                with contextlib.suppress(Exception):
                    await broken.stop()
            if isinstance(e, (errors.FloodWait, errors.FloodPremiumWait)):
                floods[dc_id] = (time.monotonic() + float(e.value or 0), e)
            raise
    # what get_session(dc_id, is_media=True, temporary=True, export_authorization=False)
    # makes, of our class: the home session's key, started, not cached by the library
    session = LeanMediaSession(client, dc_id, address, port, home.auth_key,
                               await client.storage.test_mode(), is_media=True)
    await session.start()
    return session


async def open_cdn_session(client, dc_id: int, address: str, port: int, test_mode: bool,
                           key: bytes | None) -> tuple[Session, bytes]:
    """A session with a CDN DC (core.telegram.org/cdn): a key of its own, made with the CDN's
    RSA key and never authorized; no initConnection (`is_cdn`). Returns it unstarted, with
    the key to reuse for the next connection."""
    if key is None:
        key = await Auth(client, dc_id, address, port, test_mode).create()
    return LeanMediaSession(client, dc_id, address, port, key, test_mode, is_media=True,
                            is_cdn=True), key


def is_up(session: Session) -> bool:
    return session.is_started.is_set()


async def wait_up(session: Session, timeout: float) -> None:
    await asyncio.wait_for(session.is_started.wait(), timeout)


async def stop(session: Session) -> None:
    await session.stop()


def add_server_key(fingerprint: int, n: int, e: int) -> bool:
    """Trust one more server RSA key (the library's table of them); False if known."""
    if fingerprint in rsa.server_public_keys:
        return False
    trust_server_key(fingerprint, n, e)
    return True


def pack_parts(body: bytes, msg_id: int, seq_no: int, salt: int, session_id: bytes,
               auth_key: bytes, auth_key_id: bytes) -> tuple[bytes, bytes]:
    """An encrypted MTProto 2.0 message (core.telegram.org/mtproto/description) around a
    serialized body, as (auth_key_id + msg_key, ciphertext): as the library's mtproto.pack
    makes it but with one copy of the payload instead of about eight (it serializes the body
    twice and concatenates it four times): the plain text is joined once, hashed and
    encrypted, and the two pieces go to the socket as they are (`_write_packet`)."""
    header = frames.MESSAGE_HEAD.pack(salt, session_id, msg_id, seq_no, len(body))
    padding = os.urandom(-(len(header) + len(body) + 12) % 16 + 12)
    plain = b"".join((header, body, padding))
    msg_key = frames.msg_key(auth_key, plain)
    aes_key, aes_iv = wire.kdf(auth_key, msg_key, True)
    return auth_key_id + msg_key, aes.ige256_encrypt(plain, aes_key, aes_iv)


def pack(body: bytes, msg_id: int, seq_no: int, salt: int, session_id: bytes,
         auth_key: bytes, auth_key_id: bytes) -> bytes:
    """`pack_parts` as one packet."""
    return b"".join(pack_parts(body, msg_id, seq_no, salt, session_id, auth_key, auth_key_id))


# a request this small (upload.getFile is about 60 bytes) is encrypted on the event loop: the
# crypto thread's round trip (a queue, a futex, the loop's wake-up pipe) costs more CPU than
# the crypto, once per part
INLINE_PACK = 4096

# packets being built or waiting for the wire: two per connection (transfer_pool's slots)
_packet_buffers = frames.Buffers(keep=8)


class Packet(NamedTuple):
    """An upload part's packet, `buf[PLAIN_AT - 24:PLAIN_AT + length]` (auth_key_id, msg_key,
    ciphertext), with room for the transport's length before it."""

    buf: bytearray
    length: int  # from auth_key_id to the end of the ciphertext


def pack_part(part: frames.FilePart, msg_id: int, seq_no: int, salt: int,
              session_id: bytes, auth_key: bytes, auth_key_id: bytes) -> Packet:
    """An upload part's encrypted message, built from the file in one reused buffer
    (helpers/transfer_frames.py): read from disk into its place, hashed, encrypted in place;
    no new 512 KiB anywhere."""
    buf = _packet_buffers.take()
    try:
        n = frames.build_plain(buf, part, salt, session_id, msg_id, seq_no, frames.PLAIN_AT)
        with memoryview(buf) as whole, whole[frames.PLAIN_AT:frames.PLAIN_AT + n] as plain:
            msg_key = frames.msg_key(auth_key, plain)
            aes_key, aes_iv = wire.kdf(auth_key, msg_key, True)
            frames.ige_in_place(plain, lambda data, iv: aes.ige256_encrypt(data, aes_key, iv),
                                aes_iv)
            whole[frames.PLAIN_AT - 24:frames.PLAIN_AT] = auth_key_id + msg_key
    except BaseException:
        _packet_buffers.give(buf)
        raise
    return Packet(buf, n + 24)


# the plain (unobfuscated, unproxied) framings whose length prefix we write ourselves
_PREFIXES = {TCPAbridged: frames.abridged_prefix, TCPIntermediate: frames.intermediate_prefix}


async def _write_packet(connection, packet: Packet | tuple[bytes, bytes]) -> None:
    """One packet on the connection's socket. The transport's own send joins its length
    prefix to the packet, one more copy of a 512 KiB part; on a plain abridged or
    intermediate TCP transport the packet is written as it lies, under the transport's lock
    (one packet at a time, as its send does), and an upload part's buffer goes back for the
    next part once the socket took it all. Anything else (obfuscation, a proxy, another
    framing) goes through the transport's send."""
    protocol = connection.protocol
    prefix = _PREFIXES.get(type(protocol))
    if isinstance(packet, Packet):
        buf, start = packet.buf, frames.PLAIN_AT - 24
        length = packet.length
    else:
        buf, start, length = None, 0, len(packet[0]) + len(packet[1])
    if (prefix is None or protocol._encrypt is not None or protocol._records is not None
            or protocol._web_carrier is not None or not protocol.marker_event.is_set()):
        if buf is None:
            await connection.send(packet[0] + packet[1])
        else:
            data = bytes(buf[start:start + length])
            _packet_buffers.give(buf)
            await connection.send(data)
        return
    reuse = False
    try:
        async with protocol.lock:
            writer = protocol.writer
            if writer is None or writer.is_closing():
                raise Broken("connection closed")
            length_prefix = prefix(length)
            try:
                if buf is None:
                    writer.write(length_prefix + packet[0])
                    writer.write(packet[1])
                else:
                    at = start - len(length_prefix)
                    buf[at:start] = length_prefix
                    writer.write(memoryview(buf)[at:start + length])
                    # all of it in the kernel: nothing refers to the buffer any more
                    reuse = writer.transport.get_write_buffer_size() == 0
                await writer.drain()
            except OSError as e:
                raise Broken(f"send failed: {e!r}") from e
    finally:
        if reuse:
            _packet_buffers.give(buf)


class _OurResult(_Result):
    """The slot of one of our requests in `session.results`; `lost` once its session
    stopped or restarted under it (LeanMediaSession._stop): its answer will never come.
    `sink`: see WithSink."""

    __slots__ = ("lost", "sink")

    def __init__(self, sink=None):
        super().__init__()
        self.lost = False
        self.sink = sink


class WithSink(NamedTuple):
    """A upload.getFile and where its bytes go: `sink(data) -> bool` is called on the
    decrypting thread with the checked answer's bytes (Pieces), and True means it wrote
    them; the answer's `bytes` is then a `Written` of their length. This spares a part a
    second thread hop (to the disk thread and back); False leaves the bytes in the answer."""

    query: Any
    sink: Callable[[Any], bool]


class Written(int):
    """A file answer's bytes that its sink wrote: only their length is left."""

    def __len__(self) -> int:
        return int(self)


async def send(session: Session, query, timeout: float, on_sent: Callable[[], None]):
    """`Session.send`, minus what a parallel transfer cannot afford: it keeps the request
    and its encrypted copy referenced until the answer comes (two copies of every upload
    part in flight, for a whole round trip), it serializes the request twice and copies it
    several times more, and a cancelled call leaves its slot in `session.results`, where a
    late 1 MB answer would then stay for the session's life. `query` is a TL request, or an
    upload part still on disk (transfer_frames.FilePart), read and encrypted on the
    connection's crypto thread; its `admit`, if any, is awaited before it goes on the wire.
    Raises the RPC error, Resend (new salt), Broken, or TimeoutError."""
    connection = session.connection
    if connection is None:
        raise Broken("media session stopped")
    factory = session.msg_factory
    msg_id = await factory.allocate_message_identity()
    seq_no = await factory.allocate_message_sequence(True)  # file requests are content
    admit = sink = None
    if isinstance(query, WithSink):
        query, sink = query
    if isinstance(query, frames.FilePart):
        kind, build, what, admit = query.kind, pack_part, query, query.admit
    else:
        kind, build, what = type(query), pack_parts, query.write()
    del query
    slot = _OurResult(sink)
    session.results[msg_id] = slot
    ours = getattr(session, "ours", None)
    if ours is not None:
        ours.add(slot)
    try:
        if (getattr(session, "stopping", False) or not session.is_started.is_set()
                or session.connection is not connection):
            raise Broken("media session stopped")
        args = (what, msg_id, seq_no, session.salt, session.session_id, session.auth_key,
                session.auth_key_id)
        if build is pack_parts and len(what) <= INLINE_PACK:
            packet = pack_parts(*args)  # a getFile: microseconds, less than a thread's hop
        else:
            # an upload part on the one encrypting thread of all our sessions, not on its
            # connection's own: four of those threads and the loop on two CPUs held 4 more
            # MiB and moved 2-5 % less (measured interleaved, 256 MB at 150 ms)
            executor = _encrypt_thread() if build is pack_part else (
                connection.protocol.crypto_executor)
            packet = await asyncio.get_running_loop().run_in_executor(executor, build, *args)
        del what, args
        try:
            if admit is not None:
                await admit()
        except BaseException:
            if isinstance(packet, Packet):
                _packet_buffers.give(packet.buf)
            raise
        await _write_packet(connection, packet)
        del packet
        on_sent()
        async with asyncio.timeout(timeout):  # no task of its own, unlike wait_for
            await slot.event.wait()
    except TimeoutError:
        raise TimeoutError(f"no answer in {timeout:.0f} s") from None
    finally:
        session.results.pop(msg_id, None)
        if ours is not None:
            ours.discard(slot)
    if slot.lost:
        raise Broken("connection lost")
    value = slot.value
    if isinstance(value, raw.types.RpcError):
        errors.RPCError.raise_it(value, kind)
    if isinstance(value, raw.types.BadServerSalt):
        session.salt = value.new_server_salt
        raise Resend()
    if isinstance(value, raw.types.BadMsgNotification):
        raise Broken(f"bad message notification {value.error_code}")
    return value


# the receive path of our media sessions --------------------------------------------------
# The library reads each frame by concatenating ~64 KiB reads and unpacks it with about five
# copies of the payload (crypto/mtproto.py unpack); a 1 MiB part costs more CPU in copies and
# page faults than in its cryptography. Our pooled media and CDN sessions read frames into
# their own buffer (transfer_wire.AbridgedFrames) and open a large packet with one copy
# (transfer_wire.open_message); a lone rpc_result -> upload.file / upload.cdnFile is answered
# from a view into that plaintext. Every other packet, and every packet of a connection that
# is not plain abridged TCP (an MTProxy, fake TLS, a WEB proxy), goes the library's way.
# The message bookkeeping after the checks (server time, acks, stored msg_ids, the slot in
# `results`) is the library's Session.handle_packet for one message, kept in step with it by
# tests/unit/test_client_adapter_contract_transfer.py.

_FILE_TYPES = {cls.ID: cls for cls in vars(raw.types.storage).values()
               if isinstance(cls, type) and hasattr(cls, "ID")}
_lean_counts = {"parts": 0, "library": 0, "simple": 0, "written": 0}
# One thread decrypts the large answers of all our media sessions, not one per connection as
# the library does: the plaintexts then come from one malloc arena, not one per connection
# (each holding its freed parts), and fewer threads contend for the GIL. One thread opens
# about 150 MB/s, more than the links and CPUs this runs on.
# One more encrypts the upload parts of all of them (about 200 MB/s here).
_threads: dict[str, ThreadPoolExecutor] = {}


def _one_thread(name: str) -> ThreadPoolExecutor:
    """The process's one thread of that name, started on first use."""
    executor = _threads.get(name)
    if executor is None:
        executor = _threads[name] = ThreadPoolExecutor(1, thread_name_prefix=name)
    return executor


def _decrypt_thread() -> ThreadPoolExecutor:
    return _one_thread("transfer-decrypt")


def _encrypt_thread() -> ThreadPoolExecutor:
    return _one_thread("transfer-encrypt")


def lean_receive_counts() -> dict[str, int]:
    """Large packets our media sessions answered from their own path / left to the library,
    small ones of acks and Bool results answered on the loop ("simple"), and file answers
    their sink wrote from the decrypting thread ("written")."""
    return dict(_lean_counts)


def _open_file_answer(packet, session_id: bytes, auth_key: bytes, auth_key_id: bytes,
                      recycle, results=None):
    """On the decrypting thread: the checked message, its file answer and whether the
    request's sink wrote its bytes (`results`: the session's slots, read here, written only
    on the loop); None when the packet is something else (the library then unpacks it
    again, rare)."""
    message = wire.open_message(packet, session_id, auth_key, auth_key_id, aes.ige256_decrypt,
                                wire.looks_like_file_answer, recycle)
    answer = None if message is None else wire.file_answer(message.body)
    if answer is None or (answer.constructor == wire.UPLOAD_FILE
                          and answer.file_type not in _FILE_TYPES):
        return None
    # the bytes are the server's own answer to that request (msg_key checked), so they may
    # go to disk before the loop's msg_id checks: a repeat would write the same bytes again
    sink = getattr(results.get(answer.req_msg_id), "sink", None) if results else None
    written = (answer.constructor == wire.UPLOAD_FILE and sink is not None
               and sink(answer.data))
    return message, answer, written


def _lean_frames(connection) -> wire.AbridgedFrames | None:
    """Put our frame reader on a plain abridged TCP connection; None for anything else."""
    transport_obj = getattr(connection, "protocol", None)
    if (type(transport_obj) is not TCPAbridged or transport_obj._encrypt is not None
            or transport_obj._records is not None or transport_obj._web_carrier is not None
            or transport_obj.writer is None or transport_obj.reader is None):
        return None
    transport = transport_obj.writer.transport
    if transport is None or transport.is_closing() or not hasattr(transport, "set_protocol"):
        return None
    buffered = transport_obj.reader._buffer  # asyncio's: bytes that came before us, if any
    leftover = bytes(buffered)
    buffered.clear()
    frames = wire.AbridgedFrames(transport.get_protocol(), transport, leftover=leftover)
    transport.set_protocol(frames)
    return frames


class LeanMediaSession(Session):
    """A media (or CDN) session whose file answers skip the library's copies; see above."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ours: set[_OurResult] = set()  # our requests waiting for an answer (send)
        self.stopping = False  # from _stop until the next start: send refuses
        self._acking = False  # a MsgsAck of pending_acks is on its way

    async def start(self) -> None:
        self.stopping = False
        await super().start()

    async def _stop(self) -> None:
        """Stopping (or restarting) ends the connection our waiting requests were sent on:
        their answers will never come, so they fail now rather than at their timeout."""
        self.stopping = True
        for slot in list(self.ours):
            slot.lost = True
            slot.event.set()
        await super()._stop()

    async def recv_worker(self):
        frames = _lean_frames(self.connection)
        if frames is None:
            return await super().recv_worker()
        while True:
            packet = await frames.recv(TCP.TIMEOUT)
            if packet is None or len(packet) == 4:
                self._transport_failed(packet)
                break
            if not (isinstance(packet, bytes) and self._simple_answer(packet)):
                self._create_tracked_task(self._handle_frame(frames, packet))
            del packet

    def _simple_answer(self, packet: bytes) -> bool:
        """A small packet of acks and Bool results (an upload part's answer), handled here
        on the loop: decrypted and checked as a large one is, then as the library's
        handle_packet would (msg_id rules, acks, the request's slot), without its thread
        hop, its parse into objects and its task per ack. False: the library's to handle."""
        if len(packet) > INLINE_PACK:
            return False
        try:
            message = wire.open_message(packet, self.session_id, self.auth_key,
                                        self.auth_key_id, aes.ige256_decrypt)
        except wire.Refused:
            return False  # the library's to judge: it restarts the session on such a packet
        simple = wire.simple_messages(message)
        if simple is None:
            return False
        _lean_counts["simple"] += 1
        for m in simple:
            if not self._admit(m.msg_id, m.seq_no):
                return True  # as the library: the rest of the packet goes with it
            if m.req_msg_id is not None:
                slot = self.results.get(m.req_msg_id)
                if slot is not None:
                    slot.value = m.value
                    slot.event.set()
        self._ack_if_due()
        return True

    def _ack_if_due(self) -> None:
        """Acknowledge what is pending once there are ACKS_THRESHOLD of them, as the
        library's handle_packet does; one MsgsAck on its way at a time."""
        if len(self.pending_acks) >= self.ACKS_THRESHOLD and not self._acking:
            self._acking = True
            self._create_tracked_task(self._send_acks())

    async def _send_acks(self) -> None:
        try:
            acks = list(self.pending_acks)
            await self.send(raw.types.MsgsAck(msg_ids=acks), False)
        except OSError:
            pass
        else:
            self.pending_acks.difference_update(acks)
        finally:
            self._acking = False

    async def _handle_frame(self, frames: wire.AbridgedFrames, packet) -> None:
        if isinstance(packet, wire.Pieces):
            return await self._handle_large(frames, packet)
        return await self.handle_packet(packet)  # small: the library's, as it comes

    def _transport_failed(self, packet) -> None:
        """As the library's recv_worker: a 404 ends the worker with AuthKeyNotFound, any
        other transport error, a closed or silent connection restarts a started session."""
        if packet:
            code = -int.from_bytes(packet, "little", signed=True)
            if code == 404:
                raise AuthKeyNotFound("Auth key not found in the system")
            log.warning("Server sent transport error: %s", code)
        if self.is_started.is_set():
            log.info("Restarting media session: %s", "transport error" if packet
                     else "connection closed or silent")
            self.client.loop.create_task(self.restart())

    async def _handle_large(self, frames: wire.AbridgedFrames, packet: wire.Pieces) -> None:
        """A large frame: decrypted and checked in pieces on the decrypting thread;
        a file answer is handled here, anything else is the library's to unpack again."""
        try:
            found = await self.client.loop.run_in_executor(
                _decrypt_thread(), _open_file_answer, packet,
                self.session_id, self.auth_key, self.auth_key_id, frames.recycle, self.results)
            if found is None:
                packet = bytes(packet)
        except wire.Refused as e:
            # as the library's unpack does (it raises into the void): the packet is dropped,
            # never parsed; its request gets no answer and the part is fetched elsewhere
            log.warning("Discarding packet: %s", e)
            return
        finally:
            frames.release()  # its ciphertext is gone (or copied): the next may be read
        if found is None:
            _lean_counts["library"] += 1
            return await self.handle_packet(packet)
        del packet
        _lean_counts["parts"] += 1
        message, answer, written = found
        if not self._admit(message.msg_id, message.seq_no):
            return
        slot = self.results.get(answer.req_msg_id)
        if slot is not None:
            if answer.constructor == wire.UPLOAD_CDN_FILE:
                slot.value = raw.types.upload.CdnFile(bytes=bytes(answer.data))  # decrypted whole
            else:
                data = Written(len(answer.data)) if written else answer.data
                _lean_counts["written"] += bool(written)
                slot.value = raw.types.upload.File(type=_FILE_TYPES[answer.file_type](),
                                                   mtime=answer.mtime, bytes=data)
            slot.event.set()
        self._ack_if_due()

    def _admit(self, msg_id: int, seq_no: int) -> bool:
        """A received message against MTProto's msg_id rules (core.telegram.org/mtproto/
        security_guidelines#checking-msg-id): never seen on this session, not older than
        the oldest one kept, at most 300 s old and 30 s ahead. The history is the session's
        own (the library's lists), so its path and ours judge against the same record; a
        run of refusals restarts the session, as the library's does. A content message is
        acknowledged even when refused, so the server stops sending it again."""
        if seq_no == 0:
            self.client._set_server_time(msg_id)
        if seq_no % 2:
            if msg_id in self.pending_acks:
                return False  # a repeat of one already waiting for our ack
            self.pending_acks.add(msg_id)
        problem = self._msg_id_problem(msg_id)
        if problem is not None:
            log.info("Discarding packet: %s", problem)
            self.ignore_count += 1
            if self.ignore_count >= self.MAX_CONSECUTIVE_IGNORED:
                self.client.loop.create_task(self.restart())
            return False
        self.ignore_count = 0
        bisect.insort(self.stored_msg_ids, msg_id)
        return True

    def _msg_id_problem(self, msg_id: int) -> str | None:
        if msg_id in self.recent_msg_ids:  # a message of the connection before this one
            self.recent_msg_ids.remove(msg_id)
            return "msg_id of an earlier connection"
        kept = self.stored_msg_ids
        if len(kept) > Session.STORED_MSG_IDS_MAX_SIZE:
            del kept[:Session.STORED_MSG_IDS_MAX_SIZE // 2]  # bounded: forget the oldest
        if not kept:
            return None  # nothing to compare with yet (the library's rule too)
        if msg_id < kept[0]:
            return "msg_id older than every one kept"
        at = bisect.bisect_left(kept, msg_id)
        if at < len(kept) and kept[at] == msg_id:
            return "msg_id seen before"
        # against the client's server time, as the library's check is (it takes a fresh
        # msg_id for it, which is that time to within 4 ticks)
        ahead_s = msg_id / 2**32 - self.client.server_time
        if ahead_s > 30:
            return f"msg_id {ahead_s:.0f} s ahead of our clock"
        if ahead_s < -300:
            return f"msg_id {-ahead_s:.0f} s behind our clock"
        return None


# files, ids and the client's own DC ------------------------------------------------------


def decode_file_id(file_id: str) -> FileId:
    """A message's file_id string as the library's FileId (dc_id, media_id, reference...)."""
    return FileId.decode(file_id)


def file_location(file_id: FileId):
    """The InputFileLocation the library's get_file builds for the same file id."""
    if file_id.file_type == FileType.CHAT_PHOTO:
        raise ValueError("chat photos are small: download them with download_media")
    if file_id.file_type == FileType.PHOTO:
        return raw.types.InputPhotoFileLocation(
            id=file_id.media_id, access_hash=file_id.access_hash,
            file_reference=file_id.file_reference, thumb_size=file_id.thumbnail_size)
    return raw.types.InputDocumentFileLocation(
        id=file_id.media_id, access_hash=file_id.access_hash,
        file_reference=file_id.file_reference, thumb_size=file_id.thumbnail_size)


def next_random_id(client: Client) -> int:
    """A fresh random_id (or upload file id) from the client's source (set_random_id_source)."""
    return client.rnd_id()


async def home_dc(client: Client) -> int:
    """The DC the client's session lives on."""
    return await client.storage.dc_id()


async def is_test_mode(client: Client) -> bool:
    return await client.storage.test_mode()


async def dc_option(client: Client, dc_id: int, **kind):
    """help.getConfig's address of a DC (kind: is_media=True or is_cdn=True), as the library
    caches it."""
    return await client.get_dc_option(dc_id, ipv6=client.ipv6, **kind)


async def parse_text_entities(client: Client, text: str, mode, entities) -> dict:
    """message= and entities= for a raw send, parsed as the library's send methods do."""
    return await utils.parse_text_entities(client, text, mode, entities)
