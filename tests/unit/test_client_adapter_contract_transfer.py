"""What helpers/client_adapter.py relies on in the client library, pinned exactly.

A library upgrade that renames or reshapes one of these fails here, loudly, instead of in a
transfer in production. Each check names the adapter function that needs it.
"""

from __future__ import annotations

import inspect
import re

import pyrogram
from pyrogram.connection.transport.tcp import tcp
from pyrogram.crypto import aes, mtproto, rsa
from pyrogram.session import Auth, Session
from pyrogram.session import session as session_module
from pyrogram.session.internals import MsgFactory

from helpers import client_adapter as adapter


def _params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _assigned(cls) -> set[str]:
    """Attributes a class's __init__ sets on self."""
    return set(re.findall(r"self\.(\w+)\s*(?::[^=\n]+)?=", inspect.getsource(cls.__init__)))


def test_open_media_session_uses_the_public_get_session():
    params = _params(pyrogram.Client.get_session)
    for name in ("dc_id", "is_media", "export_authorization", "server_address", "port",
                 "temporary"):
        assert name in params, name
    assert inspect.iscoroutinefunction(pyrogram.Client.get_session)
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
    assert _params(mtproto.kdf) == ["auth_key", "msg_key", "outgoing"]
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
                 "transfer_resume.py", "transfer_retry.py", "cdn.py", "file_reference.py"):
        text = (root / name).read_text()
        assert not private.search(text), (name, private.search(text).group(0))
