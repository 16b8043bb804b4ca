"""What helpers/client_adapter.py relies on inside the client library, pinned.

The adapter reaches into pyrogram (kurigram 2.2.26) where it has no public API. An upgrade
that renames or reshapes one of those internals would otherwise break production quietly (a
session left connected, a cache never emptied, a catch-up that saves no state); here it fails
in CI, naming the internal. Each test pins one internal: that the attribute or class exists,
the parameter names the adapter calls it with, and, where it is cheap (a Client built in memory
and never started, an in-memory storage), that the adapter's function does what it says
against the real library.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import sqlite3
from collections import OrderedDict

import pytest
from pyrogram import Client, raw, utils
from pyrogram.crypto import rsa
from pyrogram.dispatcher import Dispatcher
from pyrogram.methods.auth.connect import Connect
from pyrogram.raw.core import TLObject
from pyrogram.session import Session
from pyrogram.storage import SQLiteStorage, Storage, UpdateState

from helpers import client_adapter as ca


def params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


@pytest.fixture
async def client():
    """A client that is never started: its storage opened in memory, nothing on the wire."""
    c = Client("contract", api_id=1, api_hash="0" * 32, in_memory=True)
    await c.storage.open()
    yield c
    with contextlib.suppress(Exception):
        await c.storage.close()


def _unstarted_session(c: Client, dc_id: int = 2) -> Session:
    return Session(c, dc_id, "127.0.0.1", 1, bytes(256), False)


# connections ------------------------------------------------------------------------------


def test_state_flags_the_product_reads_directly(client):
    """Not private, but not documented either: the product's stop paths read them."""
    assert client.is_connected is None and client.is_initialized is None


def test_session_pools_and_main_session_are_where_the_adapter_looks(client):
    assert client.session is None
    assert isinstance(client.sessions, dict) and isinstance(client.media_sessions, dict)
    assert params(Session.stop) == ["self"]
    assert inspect.iscoroutinefunction(Session.stop)


async def test_stop_dc_sessions_stops_and_forgets_both_pools(client):
    client.sessions[4] = _unstarted_session(client, 4)
    client.media_sessions[2] = _unstarted_session(client, 2)
    await ca.stop_dc_sessions(client)
    assert client.sessions == {} and client.media_sessions == {}


async def test_stop_main_session(client):
    await ca.stop_main_session(client)  # none: nothing to do
    client.session = _unstarted_session(client)
    await ca.stop_main_session(client)


async def test_close_storage_closes_the_sqlite_connection(client):
    assert params(Storage.close) == ["self"] and params(SQLiteStorage.close) == ["self"]
    conn = client.storage.conn
    await ca.close_storage(client)
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")


# the session storage ----------------------------------------------------------------------


def test_storage_methods_take_what_the_adapter_passes():
    for cls in (Storage, SQLiteStorage):
        assert params(cls.save) == ["self"]
        assert params(cls.get_peer_by_id) == ["self", "peer_id"]
        assert params(cls.update_peers) == ["self", "peers"]
        assert params(cls.get_update_states) == ["self", "ids"]
        assert params(cls.set_update_state) == ["self", "update_state"]
        assert params(cls.delete_update_state) == ["self", "state_id"]
    assert [f.name for f in dataclasses.fields(UpdateState)] == ["id", "pts", "qts", "date", "seq"]
    assert isinstance(Client("c", api_id=1, api_hash="0" * 32, in_memory=True).storage,
                      SQLiteStorage)


async def test_peers_round_trip_through_the_storage(client):
    channel_id = ca.channel_chat_id(777)
    assert channel_id == -1000000000777 and params(utils.get_channel_id) == ["peer_id"]
    await ca.store_peers(client, [(channel_id, 4242, "channel"), (55, 99, "user")])
    await ca.commit_storage(client)
    peer = await ca.stored_peer(client, channel_id)
    assert isinstance(peer, raw.types.InputPeerChannel)
    assert (peer.channel_id, peer.access_hash) == (777, 4242)
    user = await ca.stored_peer(client, 55)
    assert isinstance(user, raw.types.InputPeerUser) and user.access_hash == 99
    with pytest.raises(KeyError):
        await ca.stored_peer(client, 12345)


async def test_fetch_peers_stores_the_chats_of_an_answer(client):
    assert params(Client.fetch_peers) == ["self", "peers"]
    chat = raw.types.Channel(id=888, title="t", photo=raw.types.ChatPhotoEmpty(), date=0,
                             access_hash=31337)
    await ca.learn_peers(client, [chat])
    peer = await ca.stored_peer(client, ca.channel_chat_id(888))
    assert (peer.channel_id, peer.access_hash) == (888, 31337)


async def test_update_states_round_trip(client):
    await ca.set_update_state(client, 0, 10, 2, 1000, 3)
    await ca.set_update_state(client, -1000000000777, None, 5, 900, None)
    states = await ca.update_states(client)
    assert [tuple(s) for s in states] == [(-1000000000777, None, 5, 900, None), (0, 10, 2, 1000, 3)]
    assert (await ca.update_states(client, 0))[0].pts == 10
    await ca.set_update_state(client, 0, None, None, 1001, None)  # None keeps the stored value
    assert tuple((await ca.update_states(client, 0))[0]) == (0, 10, 2, 1001, 3)
    await ca.delete_update_states(client, [-1000000000777])
    assert [s.id for s in await ca.update_states(client)] == [0]


async def test_routed_storage_answers_the_address_from_its_route():
    init = params(SQLiteStorage.__init__)
    assert init[:5] == ["self", "name", "workdir", "session_string", "in_memory"]
    for accessor in (SQLiteStorage.server_address, SQLiteStorage.port, SQLiteStorage.dc_id):
        value = inspect.signature(accessor).parameters["value"]
        assert value.default is object, f"{accessor.__qualname__}: the read sentinel changed"
    # the library asks the storage for the main session's address (methods/auth/connect.py)
    assert "storage.server_address()" in inspect.getsource(Connect.connect)
    assert "storage.port()" in inspect.getsource(Connect.connect)
    seen = []
    storage = ca.RoutedStorage("routed", lambda dc: seen.append(dc) or ("10.0.0.%d" % dc, 400 + dc))
    await storage.open()
    try:
        await storage.dc_id(4)
        assert (await storage.server_address(), await storage.port()) == ("10.0.0.4", 404)
        assert seen == [4, 4]
        await storage.server_address("ignored.example")  # a write still goes to the row
        assert await SQLiteStorage.server_address(storage) == "ignored.example"
    finally:
        await storage.close()


# the dispatcher and the caches ------------------------------------------------------------


async def test_dispatcher_idleness(client):
    dispatcher = client.dispatcher
    assert isinstance(dispatcher, Dispatcher)
    assert isinstance(dispatcher.updates_queue, asyncio.Queue)
    assert isinstance(dispatcher.locks_list, list)
    assert params(Dispatcher.handler_worker) == ["self", "lock"]
    assert "async with lock" in inspect.getsource(Dispatcher.handler_worker)
    assert ca.dispatcher_is_idle(client)
    lock = asyncio.Lock()
    dispatcher.locks_list.append(lock)
    async with lock:
        assert not ca.dispatcher_is_idle(client)
    assert ca.dispatcher_is_idle(client)
    dispatcher.updates_queue.put_nowait(None)
    assert not ca.dispatcher_is_idle(client)


async def test_message_cache_size_and_clear(client):
    cache = client.message_cache
    assert isinstance(getattr(cache, "_cache", None), OrderedDict), \
        "Cache._cache is gone: clear_message_cache would silently clear nothing"
    await cache.set((1, 2), "message")
    await cache.set((1, 3), "message")
    assert ca.message_cache_size(client) == 2
    assert ca.clear_message_cache(client) == 2
    assert ca.message_cache_size(client) == 0


# parsing, server keys, TL objects ---------------------------------------------------------


async def test_parse_messages(client):
    assert params(utils.parse_messages) == ["client", "messages", "replies"]
    empty = raw.types.messages.Messages(messages=[], topics=[], chats=[], users=[])
    assert await ca.parse_messages(client, empty, replies=0) == []


def test_trust_server_key():
    assert isinstance(rsa.server_public_keys, dict)
    assert [f.name for f in dataclasses.fields(rsa.PublicKey)] == ["m", "e"]
    fingerprint = -123456789
    try:
        ca.trust_server_key(fingerprint, 0xC0FFEE, 65537)
        key = rsa.server_public_keys[fingerprint]
        assert (key.m, key.e) == (0xC0FFEE, 65537)
    finally:
        rsa.server_public_keys.pop(fingerprint, None)


def test_server_key_fingerprint_serialises_with_the_library_bytes():
    from pyrogram.raw.core.primitives import Bytes

    assert Bytes(b"\x01") == b"\x01\x01\x00\x00"  # TL bytes: length byte, data, padding to 4
    assert isinstance(ca.server_key_fingerprint(0xC0FFEE, 65537), int)


def test_tl_objects_name_and_fields():
    assert hasattr(TLObject, "QUALNAME") and hasattr(TLObject, "__slots__")
    peer = raw.types.InputPeerChannel(channel_id=5, access_hash=6)
    assert ca.is_tl_object(peer) and not ca.is_tl_object("text")
    assert ca.tl_name(peer) == "types.InputPeerChannel" and ca.tl_name("x") == "str"
    assert list(ca.tl_fields(peer)) == [5, 6] and list(ca.tl_fields(3)) == []


def test_mirrored_storage_relies_on_the_storage_peer_methods():
    import inspect

    from pyrogram.storage import SQLiteStorage
    from pyrogram.storage.sqlite_storage import get_input_peer

    for name in ("update_peers", "get_peer_by_id", "save", "close"):
        assert inspect.iscoroutinefunction(getattr(SQLiteStorage, name)), name
    assert params(SQLiteStorage.update_peers) == ["self", "peers"]
    assert params(SQLiteStorage.get_peer_by_id) == ["self", "peer_id"]
    assert params(get_input_peer) == ["peer_id", "access_hash", "peer_type"]
    cls = ca.mirrored_storage_class(SQLiteStorage)
    assert issubclass(cls, SQLiteStorage) and ca.mirrored_storage_class(SQLiteStorage) is cls


def test_random_ids_come_from_the_client_rnd_id():
    client = Client("contract-rnd", api_id=1, api_hash="x" * 32, in_memory=True)
    assert callable(client.rnd_id) and isinstance(client.rnd_id(), int)
    ca.set_random_id_source(client, lambda: 42)
    assert ca.random_id_source(client)() == 42


def test_transfer_helpers_rely_on_these_library_names():
    from pyrogram.file_id import FileId, FileType

    assert params(Client.get_dc_option) == ["self", "dc_id", "is_media", "is_cdn", "ipv6"]
    assert params(utils.parse_text_entities) == ["client", "text", "parse_mode", "entities"]
    assert {"CHAT_PHOTO", "PHOTO", "DOCUMENT"} <= set(FileType.__members__)
    assert callable(FileId.decode)
    for name in ("dc_id", "test_mode"):
        assert inspect.iscoroutinefunction(getattr(SQLiteStorage, name)), name
    fid = FileId(file_type=FileType.DOCUMENT, dc_id=4, media_id=7, access_hash=8,
                 file_reference=b"r")
    decoded = ca.decode_file_id(fid.encode())
    assert (decoded.dc_id, decoded.media_id) == (4, 7)
    loc = ca.file_location(decoded)
    assert (loc.id, loc.access_hash, loc.file_reference) == (7, 8, b"r")
