"""The transfer path's door to the client library's internals (kurigram 2.2, imported as pyrogram).

Everything helpers/transfer*.py and helpers/cdn.py need beyond the library's documented API is
here, and tests/unit/test_adapter_contract_transfer.py pins exactly what it relies on, so an
upgrade that renames one of them fails that test instead of a transfer in production. (The
lead folds this into helpers/client_adapter.py.)

Public API is used where it exists: a pooled media connection is
`Client.get_session(dc, is_media=True, temporary=True, export_authorization=False)`, which
shares the key of the client's own session for that DC (authorized there once, by the
library's single auth.exportAuthorization / importAuthorization; an authorization belongs to
the key, not the connection: core.telegram.org/api/datacenter), and exports nothing itself.
What has no public form: sending one request on a chosen connection without the library's
copies (`send`), watching that connection, making a CDN DC's key, trusting a CDN's RSA key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import struct
import time
import weakref
from typing import Callable

from pyrogram import errors, raw
from pyrogram.crypto import aes, mtproto, rsa
from pyrogram.session import Auth, Session
from pyrogram.session.session import Result as _Result

__all__ = ["Broken", "Resend", "Session", "open_media_session", "open_cdn_session", "send",
           "connection_of", "is_up", "wait_up", "stop", "add_server_key", "ctr256_decrypt"]

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
            await client.get_session(dc_id)  # cached by the library after the first call
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
    return await client.get_session(dc_id, is_media=True, temporary=True,
                                    export_authorization=False, server_address=address,
                                    port=port)


async def open_cdn_session(client, dc_id: int, address: str, port: int, test_mode: bool,
                           key: bytes | None) -> tuple[Session, bytes]:
    """A session with a CDN DC (core.telegram.org/cdn): a key of its own, made with the CDN's
    RSA key and never authorized; no initConnection (`is_cdn`). Returns it unstarted, with
    the key to reuse for the next connection."""
    if key is None:
        key = await Auth(client, dc_id, address, port, test_mode).create()
    return Session(client, dc_id, address, port, key, test_mode, is_media=True,
                   is_cdn=True), key


def connection_of(session: Session):
    """The transport under a session now: a new object after each reconnect."""
    return session.connection


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
    rsa.server_public_keys[fingerprint] = rsa.PublicKey(m=n, e=e)
    return True


_HEADER = struct.Struct("<q8sqii")  # salt, session_id, msg_id, seq_no, length (mtproto/description)


def pack(body: bytes, msg_id: int, seq_no: int, salt: int, session_id: bytes,
         auth_key: bytes, auth_key_id: bytes) -> bytes:
    """An encrypted MTProto 2.0 message (core.telegram.org/mtproto/description) around a
    serialized body, as the library's mtproto.pack makes it but with one copy of the payload
    instead of about eight (it serializes the body twice and concatenates it four times):
    the hash is fed in pieces, the plain text joined once."""
    header = _HEADER.pack(salt, session_id, msg_id, seq_no, len(body))
    padding = os.urandom(-(len(header) + len(body) + 12) % 16 + 12)
    h = hashlib.sha256(auth_key[88:120])
    h.update(header)
    h.update(body)
    h.update(padding)
    msg_key = h.digest()[8:24]
    aes_key, aes_iv = mtproto.kdf(auth_key, msg_key, True)
    plain = b"".join((header, body, padding))
    return auth_key_id + msg_key + aes.ige256_encrypt(plain, aes_key, aes_iv)


async def send(session: Session, query, timeout: float, on_sent: Callable[[], None]):
    """`Session.send`, minus what a parallel transfer cannot afford: it keeps the request
    and its encrypted copy referenced until the answer comes (two copies of every upload
    part in flight, for a whole round trip), it serializes the request twice and copies it
    several times more, and a cancelled call leaves its slot in `session.results`, where a
    late 1 MB answer would then stay for the session's life.
    Raises the RPC error, Resend (new salt), Broken, or TimeoutError."""
    connection = session.connection
    if connection is None:
        raise Broken("media session stopped")
    factory = session.msg_factory
    msg_id = await factory.allocate_message_identity()
    seq_no = await factory.allocate_message_sequence(True)  # file requests are content
    kind = type(query)
    body = query.write()
    del query
    slot = _Result()
    session.results[msg_id] = slot
    try:
        payload = await asyncio.get_running_loop().run_in_executor(
            connection.protocol.crypto_executor, pack, body, msg_id, seq_no, session.salt,
            session.session_id, session.auth_key, session.auth_key_id)
        del body
        await connection.send(payload)
        del payload
        on_sent()
        await asyncio.wait_for(slot.event.wait(), timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"no answer in {timeout:.0f} s") from None
    finally:
        session.results.pop(msg_id, None)
    value = slot.value
    if isinstance(value, raw.types.RpcError):
        errors.RPCError.raise_it(value, kind)
    if isinstance(value, raw.types.BadServerSalt):
        session.salt = value.new_server_salt
        raise Resend()
    if isinstance(value, raw.types.BadMsgNotification):
        raise Broken(f"bad message notification {value.error_code}")
    return value
