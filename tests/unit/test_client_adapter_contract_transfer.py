"""What helpers/client_adapter.py relies on in the client library, pinned exactly.

A library upgrade that renames or reshapes one of these fails here, loudly, instead of in a
transfer in production. Each check names the adapter function that needs it.
"""

from __future__ import annotations

import hashlib
import inspect
import re

import pyrogram
from pyrogram.connection.transport.tcp import tcp
from pyrogram.crypto import aes, rsa
from pyrogram.session import Auth, Session
from pyrogram.session import session as session_module
from pyrogram.session.internals import MsgFactory

from helpers import client_adapter as adapter


def _params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _assigned(cls) -> set[str]:
    """Attributes a class's __init__ sets on self."""
    return set(re.findall(r"self\.(\w+)\s*(?::[^=\n]+)?=", inspect.getsource(cls.__init__)))


def test_open_media_session_makes_what_get_session_makes():
    params = _params(pyrogram.Client.get_session)
    for name in ("dc_id", "is_media", "export_authorization", "server_address", "port",
                 "temporary"):
        assert name in params, name
    assert inspect.iscoroutinefunction(pyrogram.Client.get_session)
    # a media session of our class, as get_session(is_media=True, temporary=True) makes one:
    # the key of the client's own session for that DC, the storage's test mode, started
    source = inspect.getsource(pyrogram.Client.get_session)
    assert "auth_key = (await self.get_session(dc_id)).auth_key" in source
    assert "await session.start()" in source and "is_media=is_media" in source
    assert "test_mode" in source
    # a foreign DC's session the library caches there even when its export failed
    assert "sessions" in _assigned(pyrogram.Client)
    assert "sessions[dc_id] = session" in inspect.getsource(pyrogram.Client.get_session)
    # the pool asks the address once per DC (transfer_pool.Pools._open)
    assert _params(pyrogram.Client.get_dc_option)[:5] == ["self", "dc_id", "is_media",
                                                         "is_cdn", "ipv6"]


def test_open_cdn_session_makes_a_key_and_a_cdn_session():
    assert _params(Auth.__init__)[:6] == ["self", "client", "dc_id", "server_address", "port",
                                          "test_mode"]
    assert inspect.iscoroutinefunction(Auth.create)
    assert _params(Session.__init__) == ["self", "client", "dc_id", "server_address", "port",
                                         "auth_key", "test_mode", "is_media", "is_cdn"]


def test_send_relies_on_these_session_internals():
    attrs = _assigned(Session)
    for name in ("connection", "msg_factory", "results", "salt", "session_id", "auth_key",
                 "auth_key_id", "is_started"):
        assert name in attrs, name
    assert _assigned(session_module.Result) >= {"value", "event"}
    assert inspect.iscoroutinefunction(MsgFactory.allocate_message_identity)
    assert _params(MsgFactory.allocate_message_sequence) == ["self", "is_content_related"]
    assert callable(aes.ige256_encrypt)
    # the transport's executor the library packs on, reached as connection.protocol
    assert "crypto_executor" in _assigned(tcp.TCP)
    assert "protocol" in inspect.getsource(pyrogram.connection.Connection)
    assert inspect.iscoroutinefunction(Session.start) and inspect.iscoroutinefunction(
        Session.stop)


def test_write_packet_relies_on_the_plain_tcp_transports():
    """_write_packet writes an upload part's packet under the transport's lock, with the
    length prefix the transport's own send would put before it, only when the transport
    neither obfuscates, nor wraps in fake-TLS records, nor goes through a web proxy."""
    from pyrogram.connection.transport import TCPAbridged, TCPIntermediate

    from helpers import transfer_frames as frames

    attrs = _assigned(tcp.TCP)
    for name in ("lock", "writer", "marker_event", "_encrypt", "_records", "_web_carrier"):
        assert name in attrs, name
    send = inspect.getsource(tcp.TCP.send)
    for needle in ("async with self.lock", "self._encrypt", "self._records",
                   "self._web_carrier", "self.marker_event", "self.writer.write(data)"):
        assert needle in send, needle
    # the prefixes: the same bytes as the transports' own send for packets big and small
    abridged = inspect.getsource(TCPAbridged.send)
    assert 'b"\\x7f" + length.to_bytes(3, "little")' in abridged and "length <= 126" in abridged
    assert frames.abridged_prefix(126 * 4) == bytes([126])
    assert frames.abridged_prefix(127 * 4) == b"\x7f" + (127).to_bytes(3, "little")
    assert 'pack("<i", len(data))' in inspect.getsource(TCPIntermediate.send)
    assert frames.intermediate_prefix(9) == (9).to_bytes(4, "little")
    assert callable(aes.ige256_encrypt)


def test_cdn_keys_and_cipher():
    assert isinstance(rsa.server_public_keys, dict)
    assert _params(rsa.PublicKey)[:2] in (["m", "e"], ["self", "m"])
    assert callable(aes.ctr256_decrypt) and adapter.ctr256_decrypt is aes.ctr256_decrypt


def test_the_adapter_is_the_only_transfer_module_touching_internals():
    """No private import or attribute of the library on the transfer path outside it."""
    import pathlib

    root = pathlib.Path(adapter.__file__).parent
    private = re.compile(r"from pyrogram\.(session|crypto|connection)|\.(msg_factory|results|"
                         r"auth_key_id|session_id|crypto_executor|server_public_keys|"
                         r"is_started)\b")
    for name in ("transfer.py", "transfer_budget.py", "transfer_pool.py",
                 "transfer_resume.py", "transfer_retry.py", "transfer_wire.py", "cdn.py",
                 "file_reference.py"):
        text = (root / name).read_text()
        assert not private.search(text), (name, private.search(text).group(0))


# the receive path of our media sessions (adapter.LeanMediaSession) ---------------------------

# The library's methods the lean receive path stands in for, as read when it was written: its
# bookkeeping after the checks (server time, acks, stored msg_ids, results) is theirs for one
# message. A change here means re-reading them and bringing LeanMediaSession in step.
_READ = {
    "handle_packet": "fc55f4b1d71bb7b9",
    "recv_worker": "e7676196d9fa218f",
}


def _digest(fn) -> str:
    return hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:16]


def test_the_library_code_the_lean_path_mirrors_is_unchanged():
    for name, digest in _READ.items():
        assert _digest(getattr(Session, name)) == digest, (
            f"Session.{name} changed: re-read it against adapter.LeanMediaSession")
    assert issubclass(adapter.LeanMediaSession, Session)
    for name in ("recv_worker", "handle_packet", "restart", "send"):
        assert inspect.iscoroutinefunction(getattr(Session, name)), name
    assert _params(Session.send) == ["self", "data", "wait_response", "timeout"]
    assert callable(Session._create_tracked_task)
    assert _params(Session._create_tracked_task) == ["self", "coroutine"]


def test_the_session_state_the_lean_path_keeps():
    attrs = _assigned(Session)
    for name in ("pending_acks", "stored_msg_ids", "recent_msg_ids", "ignore_count",
                 "results", "session_id", "auth_key", "auth_key_id", "connection", "client",
                 "msg_factory", "is_started"):
        assert name in attrs, name
    for name in ("STORED_MSG_IDS_MAX_SIZE", "ACKS_THRESHOLD", "MAX_CONSECUTIVE_IGNORED"):
        assert isinstance(getattr(Session, name), int), name
    assert _params(pyrogram.Client._set_server_time) == ["self", "msg_id"]
    assert issubclass(session_module.AuthKeyNotFound, Exception)
    source = inspect.getsource(Session.handle_packet)
    # what it answers a request with: the rpc_result's result, in the request's slot
    assert 'getattr(msg.body, "result", msg.body)' in source


def test_the_transport_the_lean_frames_replace():
    from pyrogram.connection.transport import TCP, TCPAbridged
    attrs = _assigned(TCP)
    for name in ("reader", "writer", "_encrypt", "_records", "_web_carrier", "proxy"):
        assert name in attrs, name
    assert isinstance(TCP.TIMEOUT, (int, float))
    # abridged framing: a length byte, or 0x7f and three bytes, counted in 4-byte words
    source = inspect.getsource(TCPAbridged.recv)
    assert 'b"\\x7f"' in source and "* 4" in source
    assert inspect.signature(pyrogram.Client.__init__).parameters[
        "protocol_factory"].default is TCPAbridged
    # asyncio: a socket transport swaps in a BufferedProtocol; a StreamReader buffers in _buffer
    from asyncio import selector_events, streams
    assert "BufferedProtocol" in inspect.getsource(
        selector_events._SelectorSocketTransport.set_protocol)
    assert "_buffer" in _assigned(streams.StreamReader)


def test_the_answers_the_lean_path_builds():
    from pyrogram import raw

    from helpers import transfer_wire as wire
    assert raw.types.upload.File.ID == wire.UPLOAD_FILE
    assert raw.types.upload.CdnFile.ID == wire.UPLOAD_CDN_FILE
    assert raw.types.RpcResult.ID == wire.RPC_RESULT
    assert _params(raw.types.upload.File.__init__) == ["self", "type", "mtime", "bytes"]
    assert _params(raw.types.upload.CdnFile.__init__) == ["self", "bytes"]
    # every storage.FileType is a bare constructor, made with no arguments
    types = adapter._FILE_TYPES
    assert len(types) >= 10
    assert all(_params(cls.__init__) == ["self"] for cls in types.values())


def test_what_fails_our_waiting_requests_and_checks_msg_ids_relies_on():
    """LeanMediaSession._stop marks our slots lost: stop() and restart() both go through
    Session._stop, and start() is what a restart ends with. _admit's clock is the client's
    server_time, which the library's msg_id is made from. An answer's Bool is what the
    library hands a request (Bool.read -> True/False)."""
    assert inspect.iscoroutinefunction(Session._stop) and _params(Session._stop) == ["self"]
    assert "await self._stop()" in inspect.getsource(Session.stop)
    restart = inspect.getsource(Session.restart)
    assert "await self._stop()" in restart and "await self.start()" in restart
    assert isinstance(inspect.getattr_static(pyrogram.Client, "server_time"), property)
    assert "self.client.server_time" in inspect.getsource(
        session_module.MsgFactory.allocate_message_identity)
    from pyrogram.raw.core.primitives.bool import BoolFalse, BoolTrue
    assert BoolTrue.read(None) is True and BoolFalse.read(None) is False
    assert session_module.Result.__slots__ == ("value", "event")
