"""The receive side of a download part on the wire, without the client library's copies.

The library assembles each 1 MiB frame by repeated concatenation of ~64 KiB reads (quadratic
copying), then decrypts and parses it with five more copies of the payload; under a pinned
mmap threshold (helpers/allocator.py) every copy is a fresh mapping with 256 page faults.
Here a frame is read from the socket straight into its own buffer (`AbridgedFrames`), decrypted
once, checked as MTProto 2.0 demands (`open_message`: core.telegram.org/mtproto/description and
/security_guidelines: auth_key_id, msg_key = SHA-256 of the plaintext, session_id, length,
12..1024 bytes of padding, odd msg_id), and a lone rpc_result carrying upload.file or
upload.cdnFile is parsed to a view into the plaintext (`file_answer`), written to disk from there.

Knows nothing of the client library: helpers/client_adapter.py wires it into a media session
and hands everything else to the library.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import struct
import time
from typing import Callable, NamedTuple

RPC_RESULT = 0xF35C6D01
UPLOAD_FILE = 0x096A18D5  # upload.file type:storage.FileType mtime:int bytes:bytes
UPLOAD_CDN_FILE = 0xA99FCA4F  # upload.cdnFile bytes:bytes
_HEAD = struct.Struct("<8s8sqii")  # salt, session_id, msg_id, seq_no, length
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_Q64 = struct.Struct("<q")


class Refused(Exception):
    """A packet that fails one of MTProto's checks: it is dropped, never parsed."""


class Message(NamedTuple):
    """One decrypted, checked MTProto message: its header and its body as a view."""

    msg_id: int
    seq_no: int
    body: memoryview


def kdf(auth_key: bytes, msg_key: bytes, outgoing: bool) -> tuple[bytes, bytes]:
    """AES key and IV of MTProto 2.0 (core.telegram.org/mtproto/description#defining-aes-key-and-initialization-vector)."""
    x = 0 if outgoing else 8
    a = hashlib.sha256(msg_key + auth_key[x:x + 36]).digest()
    b = hashlib.sha256(auth_key[x + 40:x + 76] + msg_key).digest()
    return a[:8] + b[8:24] + a[24:32], b[:8] + a[8:24] + b[24:32]


def open_message(packet, session_id: bytes, auth_key: bytes, auth_key_id: bytes,
                 ige_decrypt: Callable[[memoryview, bytes, bytes], bytes]) -> Message:
    """Decrypt and check one server packet (auth_key_id, msg_key, ciphertext): one copy, the
    plaintext, which the returned body views. Raises Refused on any failed check."""
    view = memoryview(packet)
    if len(view) < 24 + 32 + 12 or (len(view) - 24) % 16:
        raise Refused("packet too short or not whole AES blocks")
    if view[:8] != auth_key_id:
        raise Refused("auth_key_id is not this session's")
    msg_key = bytes(view[8:24])
    aes_key, aes_iv = kdf(auth_key, msg_key, False)
    plain = ige_decrypt(view[24:], aes_key, aes_iv)
    # msg_key is the middle of SHA-256 over auth_key[96:128] and the whole plaintext
    h = hashlib.sha256(auth_key[96:128])
    h.update(plain)
    if h.digest()[8:24] != msg_key:
        raise Refused("msg_key does not match the plaintext")
    _salt, sid, msg_id, seq_no, length = _HEAD.unpack_from(plain)
    if sid != session_id:
        raise Refused("session_id is not this session's")
    padding = len(plain) - 32 - length
    if length < 0 or length % 4 or not 12 <= padding <= 1024:
        raise Refused("message length or padding out of bounds")
    if msg_id % 2 == 0:
        raise Refused("a server's msg_id is odd")
    return Message(msg_id, seq_no, memoryview(plain)[32:32 + length])


class FileAnswer(NamedTuple):
    """rpc_result -> upload.file / upload.cdnFile, the bytes a view into the plaintext."""

    req_msg_id: int
    constructor: int  # UPLOAD_FILE or UPLOAD_CDN_FILE
    file_type: int  # upload.file's storage.FileType constructor (0 for a CDN file)
    mtime: int
    data: memoryview


def _tl_bytes(body: memoryview, at: int) -> tuple[memoryview, int]:
    """A TL `bytes` at `at`: (its view, where the next field starts); ValueError if cut."""
    first = body[at]
    if first <= 253:
        start, n = at + 1, first
    else:
        start, n = at + 4, int.from_bytes(body[at + 1:at + 4], "little")
    end = start + n
    nxt = end + (-(end - at) % 4)
    if nxt > len(body):
        raise ValueError("bytes run past the message")
    return body[start:end], nxt


def file_answer(body: memoryview) -> FileAnswer | None:
    """The body of one message, if it is exactly rpc_result carrying upload.file or
    upload.cdnFile; None for anything else (containers, gzip_packed, rpc_error, ...)."""
    if len(body) < 16 or _U32.unpack_from(body)[0] != RPC_RESULT:
        return None
    req_msg_id = _Q64.unpack_from(body, 4)[0]
    kind = _U32.unpack_from(body, 12)[0]
    try:
        if kind == UPLOAD_FILE and len(body) >= 25:
            file_type = _U32.unpack_from(body, 16)[0]
            mtime = _I32.unpack_from(body, 20)[0]
            data, end = _tl_bytes(body, 24)
        elif kind == UPLOAD_CDN_FILE and len(body) >= 17:
            file_type, mtime = 0, 0
            data, end = _tl_bytes(body, 16)
        else:
            return None
    except ValueError:
        return None
    if end != len(body):
        return None  # not the whole message: let the full parser decide
    return FileAnswer(req_msg_id, kind, file_type, mtime, data)


class AbridgedFrames(asyncio.BufferedProtocol):
    """Frames of the abridged TCP transport (core.telegram.org/mtproto/mtproto-transports),
    read by the socket into their own buffer: a large frame costs no copy in user space.

    Installed on a connected transport in place of its asyncio StreamReaderProtocol, which
    keeps getting what a writer needs (pause/resume_writing for drain, connection_lost, eof).
    Small frames and headers land in a staging buffer; a frame larger than SMALL gets a
    bytearray of its exact length. Reading pauses while `max_queued` frames wait for recv().
    """

    STAGE = 64 * 1024
    SMALL = 16 * 1024

    def __init__(self, inner: asyncio.BaseProtocol, transport: asyncio.Transport,
                 max_queued: int = 8, leftover: bytes = b""):
        self._inner = inner
        self._transport = transport
        self._stage = bytearray(self.STAGE)
        self._view = memoryview(self._stage)
        self._start = self._end = 0
        self._body: bytearray | None = None
        self._body_view: memoryview | None = None
        self._got = 0
        self._frames: collections.deque = collections.deque()
        self._waiter: asyncio.Future | None = None
        self._closed = False
        self._paused = False
        self._max_queued = max_queued
        self.last_byte = time.monotonic()
        if leftover:
            self._feed(leftover)

    # asyncio.BufferedProtocol ------------------------------------------------------------
    def get_buffer(self, sizehint: int) -> memoryview:
        if self._body is not None:
            return self._body_view[self._got:]
        return self._view[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        self.last_byte = time.monotonic()
        if self._body is not None:
            self._got += nbytes
            if self._got == len(self._body):
                body, self._body, self._body_view = self._body, None, None
                self._push(body)
            return
        self._end += nbytes
        self._parse()

    def eof_received(self):
        self._close()
        return self._inner.eof_received()

    def connection_lost(self, exc) -> None:
        self._close()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # the reader's side -------------------------------------------------------------------
    async def recv(self, idle_timeout: float) -> bytearray | bytes | None:
        """The next frame; None once the connection is closed, or when no byte came for
        `idle_timeout` seconds (a dead peer: the library's transport gives up the same way)."""
        while not self._frames:
            if self._closed:
                return None
            if time.monotonic() - self.last_byte >= idle_timeout:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait({self._waiter}, timeout=idle_timeout)
            finally:
                self._waiter = None
        frame = self._frames.popleft()
        if self._paused and len(self._frames) <= self._max_queued // 2 and not self._closed:
            self._paused = False
            self._transport.resume_reading()
        return frame

    # parsing -----------------------------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        """Bytes that arrived before this protocol was installed."""
        view = memoryview(data)
        while view:
            buf = self.get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            view = view[n:]
            self.buffer_updated(n)

    def _parse(self) -> None:
        stage = self._stage
        while True:
            avail = self._end - self._start
            if avail < 1:
                break
            first = stage[self._start]
            head = 4 if first == 0x7F else 1
            if avail < head:
                break
            if head == 4:
                words = int.from_bytes(stage[self._start + 1:self._start + 4], "little")
            else:
                words = first
            length = words * 4
            at = self._start + head
            if avail >= head + length:
                self._start = at + length
                self._push(bytes(self._view[at:at + length]))
                continue
            if length > self.SMALL:  # its own buffer, filled by the socket from here on
                have = self._end - at
                self._body = bytearray(length)
                self._body_view = memoryview(self._body)
                self._body_view[:have] = self._view[at:self._end]
                self._got = have
                self._start = self._end = 0
                return
            break
        # a partial header or small frame waits at the front of the stage
        rest = self._end - self._start
        if self._start:
            stage[:rest] = stage[self._start:self._end]  # a copy first: the two may overlap
        self._start, self._end = 0, rest

    def _push(self, frame) -> None:
        self._frames.append(frame)
        self._wake()
        if not self._paused and len(self._frames) >= self._max_queued and not self._closed:
            self._paused = True
            self._transport.pause_reading()

    def _close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
