"""The receive side of a download part on the wire, without the client library's copies.

The library assembles each 1 MiB frame by repeated concatenation of ~64 KiB reads (quadratic
copying), then decrypts and parses it with five more copies of the payload; under a pinned
mmap threshold (helpers/allocator.py) every copy is a fresh mapping with 256 page faults.
Here a frame is read from the socket straight into heap-sized pieces (`AbridgedFrames`),
decrypted once, piece by piece, and checked as MTProto 2.0 demands (`open_message`:
core.telegram.org/mtproto/description and /security_guidelines: auth_key_id, msg_key =
SHA-256 of the plaintext, session_id, length, 12..1024 bytes of padding, odd msg_id); a lone
rpc_result carrying upload.file or upload.cdnFile is parsed to views into the plaintext
(`file_answer`), written to disk from there (`write_at`).

Knows nothing of the client library: helpers/client_adapter.py wires it into a media session
and hands everything else to the library.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import os
import socket
import struct
import time
from typing import Callable, NamedTuple

from helpers.allocator import HEAP_BLOCK

RPC_RESULT = 0xF35C6D01
UPLOAD_FILE = 0x096A18D5  # upload.file type:storage.FileType mtime:int bytes:bytes
UPLOAD_CDN_FILE = 0xA99FCA4F  # upload.cdnFile bytes:bytes
_HEAD = struct.Struct("<8s8sqii")  # salt, session_id, msg_id, seq_no, length
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_Q64 = struct.Struct("<q")


class Refused(Exception):
    """A packet that fails one of MTProto's checks: it is dropped, never parsed."""


# Large frames and their plaintext are held in pieces below glibc's mmap threshold (128 KiB,
# pinned by helpers/allocator.py): a 1 MiB buffer is a fresh mapping that costs 256 page
# faults to fill and a munmap to free, three of them per part (the frame, tgcrypto's output
# and its copy into bytes); pieces come from the heap, warm.
PIECE = HEAP_BLOCK


class Pieces:
    """Bytes held as a sequence of buffers: len(), bytes(), iterate, write with pwritev."""

    __slots__ = ("buffers", "length")

    def __init__(self, buffers):
        self.buffers = list(buffers)
        self.length = sum(len(b) for b in self.buffers)

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        return iter(self.buffers)

    def __bytes__(self) -> bytes:
        return b"".join(self.buffers)

    def head(self, n: int) -> bytes:
        """The first n bytes (fewer if shorter), copied."""
        out = bytearray()
        for b in self.buffers:
            if len(out) >= n:
                break
            out += memoryview(b)[:n - len(out)]
        return bytes(out)

    def slice(self, start: int, end: int) -> "Pieces":
        """Views of the bytes in [start, end), no copy."""
        out, at = [], 0
        for b in self.buffers:
            n = len(b)
            lo, hi = max(start - at, 0), min(end - at, n)
            if lo < hi:
                out.append(memoryview(b)[lo:hi])
            at += n
            if at >= end:
                break
        return Pieces(out)


def as_pieces(data) -> Pieces:
    return data if isinstance(data, Pieces) else Pieces([data])


def write_at(fd: int, data, offset: int) -> None:
    """Write bytes or Pieces at `offset`, whole (one pwritev for Pieces, partial writes
    resumed)."""
    views = [memoryview(b) for b in as_pieces(data) if len(b)]
    while views:
        n = os.pwritev(fd, views, offset)
        offset += n
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if n:
            views[0] = views[0][n:]


class Message(NamedTuple):
    """One decrypted, checked MTProto message: its header and its body (views)."""

    msg_id: int
    seq_no: int
    body: Pieces


def kdf(auth_key: bytes, msg_key: bytes, outgoing: bool) -> tuple[bytes, bytes]:
    """AES key and IV of MTProto 2.0 (core.telegram.org/mtproto/description#defining-aes-key-and-initialization-vector)."""
    x = 0 if outgoing else 8
    a = hashlib.sha256(msg_key + auth_key[x:x + 36]).digest()
    b = hashlib.sha256(auth_key[x + 40:x + 76] + msg_key).digest()
    return a[:8] + b[8:24] + a[24:32], b[:8] + a[8:24] + b[24:32]


def open_message(packet, session_id: bytes, auth_key: bytes, auth_key_id: bytes,
                 ige_decrypt: Callable[[memoryview, bytes, bytes], bytes],
                 wanted: Callable[[bytes], bool] | None = None,
                 recycle: Callable[[bytearray], None] | None = None) -> Message | None:
    """Decrypt and check one server packet (auth_key_id, msg_key, ciphertext), given whole
    or as Pieces whose ciphertext after the first 24 bytes splits on AES blocks. Each piece is
    decrypted on its own (IGE chains on: the next IV is the last ciphertext block, then the
    last plaintext block) into a plaintext piece the returned body views, and a ciphertext
    piece of Pieces is let go of once decrypted. `wanted`, given the first plaintext piece
    (unchecked), may decline the packet before anything is let go of: None is returned.
    `recycle` gets each decrypted ciphertext piece's buffer (Pieces of memoryviews) for reuse.
    Raises Refused on any failed check."""
    frame = as_pieces(packet)
    buffers, total = frame.buffers, frame.length
    if total < 24 + 32 + 12 or (total - 24) % 16 or not buffers or len(buffers[0]) < 24 + 32:
        raise Refused("packet too short or not whole AES blocks")
    first = memoryview(buffers[0])
    if first[:8] != auth_key_id:
        raise Refused("auth_key_id is not this session's")
    msg_key = bytes(first[8:24])
    aes_key, iv = kdf(auth_key, msg_key, False)
    h = hashlib.sha256(auth_key[96:128])  # msg_key: SHA-256 of this and the whole plaintext
    plain: list[bytes] = []
    for i in range(len(buffers)):
        cipher = first[24:] if i == 0 else memoryview(buffers[i])
        if len(cipher) % 16:
            raise Refused("a piece that does not split on AES blocks")
        out = ige_decrypt(cipher, aes_key, iv)
        iv = bytes(cipher[-16:]) + out[-16:]
        if i == 0:
            first = None
            if wanted is not None and not wanted(out):
                return None
        if recycle is not None and isinstance(buffers[i], memoryview):
            recycle(buffers[i].obj)
        buffers[i] = cipher = None  # the ciphertext piece goes as soon as it is decrypted
        h.update(out)
        plain.append(out)
    if h.digest()[8:24] != msg_key:
        raise Refused("msg_key does not match the plaintext")
    _salt, sid, msg_id, seq_no, length = _HEAD.unpack_from(plain[0])
    if sid != session_id:
        raise Refused("session_id is not this session's")
    padding = total - 24 - 32 - length
    if length < 0 or length % 4 or not 12 <= padding <= 1024:
        raise Refused("message length or padding out of bounds")
    if msg_id % 2 == 0:
        raise Refused("a server's msg_id is odd")
    return Message(msg_id, seq_no, Pieces(plain).slice(32, 32 + length))


def looks_like_file_answer(plain: bytes) -> bool:
    """The start of a plaintext (unchecked) holds rpc_result -> upload.file / cdnFile."""
    return (len(plain) >= 48 and _U32.unpack_from(plain, 32)[0] == RPC_RESULT
            and _U32.unpack_from(plain, 44)[0] in (UPLOAD_FILE, UPLOAD_CDN_FILE))


class FileAnswer(NamedTuple):
    """rpc_result -> upload.file / upload.cdnFile, the bytes views into the plaintext."""

    req_msg_id: int
    constructor: int  # UPLOAD_FILE or UPLOAD_CDN_FILE
    file_type: int  # upload.file's storage.FileType constructor (0 for a CDN file)
    mtime: int
    data: Pieces


def file_answer(body: Pieces) -> FileAnswer | None:
    """The body of one message, if it is exactly rpc_result carrying upload.file or
    upload.cdnFile; None for anything else (containers, gzip_packed, rpc_error, ...)."""
    head = body.head(28)
    if len(head) < 20 or _U32.unpack_from(head)[0] != RPC_RESULT:
        return None
    req_msg_id = _Q64.unpack_from(head, 4)[0]
    kind = _U32.unpack_from(head, 12)[0]
    file_type = mtime = 0
    if kind == UPLOAD_FILE and len(head) >= 28:
        file_type = _U32.unpack_from(head, 16)[0]
        mtime = _I32.unpack_from(head, 20)[0]
        at = 24
    elif kind == UPLOAD_CDN_FILE:
        at = 16
    else:
        return None
    first = head[at]  # a TL `bytes`: a length byte, or 254 and three bytes of length
    if first <= 253:
        start, n = at + 1, first
    else:
        start, n = at + 4, int.from_bytes(head[at + 1:at + 4], "little")
    end = start + n
    if end + (-(end - at) % 4) != len(body):
        return None  # not the whole message: let the full parser decide
    return FileAnswer(req_msg_id, kind, file_type, mtime, body.slice(start, end))


MSG_CONTAINER = 0x73F1F8DC  # msg_container#73f1f8dc messages:vector<%Message>
MSGS_ACK = 0x62D6B459  # msgs_ack#62d6b459 msg_ids:Vector<long>
VECTOR = 0x1CB5C415
BOOLS = {0x997275B5: True, 0xBC799737: False}  # boolTrue, boolFalse
_INNER = struct.Struct("<qii")  # a container's message: msg_id, seqno, bytes


class Simple(NamedTuple):
    """An rpc_result carrying a Bool (req_msg_id, value), or a msgs_ack (both None)."""

    msg_id: int
    seq_no: int
    req_msg_id: int | None
    value: bool | None


def _simple(msg_id: int, seq_no: int, body) -> Simple | None:
    n = len(body)
    if n < 4:
        return None
    kind = _U32.unpack_from(body)[0]
    if kind == RPC_RESULT and n == 16:
        value = BOOLS.get(_U32.unpack_from(body, 12)[0])
        if value is not None:
            return Simple(msg_id, seq_no, _Q64.unpack_from(body, 4)[0], value)
    elif (kind == MSGS_ACK and n >= 12 and _U32.unpack_from(body, 4)[0] == VECTOR
          and n == 12 + 8 * _U32.unpack_from(body, 8)[0]):
        return Simple(msg_id, seq_no, None, None)
    return None


def simple_messages(message: Message) -> list[Simple] | None:
    """What an upload part's answer is made of (core.telegram.org/mtproto/service_messages):
    msgs_ack and rpc_result -> Bool, alone or in a msg_container. None for anything else,
    which is the library's to parse."""
    body = bytes(message.body)
    if len(body) >= 8 and _U32.unpack_from(body)[0] == MSG_CONTAINER:
        count, at, out = _U32.unpack_from(body, 4)[0], 8, []
        for _ in range(count):
            if at + _INNER.size > len(body):
                return None
            msg_id, seq_no, length = _INNER.unpack_from(body, at)
            at += _INNER.size
            if length < 0 or at + length > len(body):
                return None
            inner = _simple(msg_id, seq_no, memoryview(body)[at:at + length])
            if inner is None:
                return None
            out.append(inner)
            at += length
        return out if at == len(body) and out else None
    single = _simple(message.msg_id, message.seq_no, body)
    return None if single is None else [single]


class AbridgedFrames(asyncio.BufferedProtocol):
    """Frames of the abridged TCP transport (core.telegram.org/mtproto/mtproto-transports),
    read by the socket straight into their buffers: a large frame costs no copy in user space.

    Installed on a connected transport in place of its asyncio StreamReaderProtocol, which
    keeps getting what a writer needs (pause/resume_writing for drain, connection_lost, eof).
    Small frames and headers land in a staging buffer, as bytes; a frame larger than SMALL is
    read into pieces laid out for open_message (the first 24 bytes plus PIECE, then PIECE
    each) and handed over as Pieces. Once `max_large` large frames are read and not yet
    `release()`d, reading pauses and the rest waits in the kernel's socket buffer: what a
    connection holds is bounded however many parts are in flight.

    A large frame is of no use until it is whole, so on a TCP socket its readiness is held
    back until the rest of the frame is in (SO_RCVLOWAT, man 7 socket: Linux's tcp_poll
    honours it, and still wakes early when the receive window is nearly shut or the peer
    closed), and one readv then takes all of it into its pieces: a 1 MiB part costs one
    wakeup and two reads, not a wakeup and a read for every ~64 KiB that arrived (11 of
    each per part, measured, each a turn of the event loop).
    """

    STAGE = 64 * 1024
    SMALL = 16 * 1024
    SPARES = 10  # piece buffers kept for reuse: one frame of 1 MiB
    SPARE_IDLE_S = 2.0  # no frame for this long: the spares are let go of
    LOWAT_MAX = 2 * 1024 * 1024  # the most a wakeup waits for (a part is 1 MiB and a bit)

    def __init__(self, inner: asyncio.BaseProtocol, transport: asyncio.Transport,
                 max_large: int = 1, leftover: bytes = b""):
        self._inner = inner
        self._transport = transport
        self._stage = bytearray(self.STAGE)
        self._view = memoryview(self._stage)
        self._start = self._end = 0
        self._pieces: list[memoryview] | None = None  # the large frame being read
        self._sizes: list[int] = []  # the sizes of all its pieces, taken as bytes come
        self._index = 0  # which of them is being filled
        self._piece: memoryview | None = None
        self._got = 0  # bytes in the current piece
        self._left = 0  # bytes of the large frame still to come
        self._frames: collections.deque = collections.deque()
        self._waiter: asyncio.Future | None = None
        self._closed = False
        self._paused = False
        self._large = 0
        self._max_large = max_large
        self._spare: list[bytearray] = []  # decrypted pieces' buffers, for the next frames
        self.last_byte = time.monotonic()
        self._sock = None  # a TCP socket: the low-water mark and readv are used on it
        self._lowat = 1
        sock = transport.get_extra_info("socket")
        if (sock is not None and sock.type == socket.SOCK_STREAM
                and sock.family in (socket.AF_INET, socket.AF_INET6)):
            self._sock = sock
        if leftover:
            self._feed(leftover)

    # asyncio.BufferedProtocol ------------------------------------------------------------
    def get_buffer(self, sizehint: int) -> memoryview:
        if self._pieces is not None:
            return self._piece[self._got:]
        return self._view[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        self.last_byte = time.monotonic()
        if self._pieces is not None:
            self._large_bytes(nbytes)
        else:
            self._end += nbytes
            self._parse()
        self._rest_of_frame()

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
    async def recv(self, idle_timeout: float):
        """The next frame (bytes, or Pieces for a large one); None once the connection is
        closed, or when no byte came for `idle_timeout` seconds while reading (a dead peer:
        the library's transport gives up the same way)."""
        while not self._frames:
            if self._closed:
                return None
            if not self._paused and time.monotonic() - self.last_byte >= idle_timeout:
                self._rest_of_frame()  # bytes the low-water mark kept quiet are life too
                if self._frames:
                    break
                if time.monotonic() - self.last_byte >= idle_timeout:
                    return None
            self._waiter = asyncio.get_running_loop().create_future()
            wait = min(idle_timeout, self.SPARE_IDLE_S) if self._spare else idle_timeout
            try:
                done, _ = await asyncio.wait({self._waiter}, timeout=wait)
            finally:
                self._waiter = None
            if not done:
                self._spare.clear()  # quiet: the spare buffers go back to the allocator
        return self._frames.popleft()

    def recycle(self, buffer: bytearray) -> None:
        """A piece's buffer that is done with (its ciphertext decrypted): the next large frame
        is read into it, which spares a fresh zero-filled allocation (and its page faults)."""
        if len(self._spare) < self.SPARES and not self._closed and len(buffer) == PIECE + 24:
            self._spare.append(buffer)

    def release(self) -> None:
        """A large frame handed out by recv() is done with (decrypted, or dropped)."""
        self._large -= 1
        if self._paused and self._large < self._max_large and not self._closed:
            self._paused = False
            self.last_byte = time.monotonic()  # the idle clock runs only while reading
            self._transport.resume_reading()

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
            if length > self.SMALL:  # read into pieces, by the socket from here on
                have = min(self._end - at, length)
                self._start_large(length)
                self._start = at
                while have:  # what the stage holds of it already
                    n = min(have, len(self._piece) - self._got)
                    self._piece[self._got:self._got + n] = self._view[self._start:self._start + n]
                    self._start += n
                    have -= n
                    self._large_bytes(n)
                if self._pieces is not None:
                    self._start = self._end = 0  # the rest of the stage was its bytes
                    return
                continue
            if avail >= head + length:
                self._start = at + length
                self._push(bytes(self._view[at:at + length]))
                continue
            break
        # a partial header or small frame waits at the front of the stage
        rest = self._end - self._start
        if self._start:
            stage[:rest] = stage[self._start:self._end]  # a copy first: the two may overlap
        self._start, self._end = 0, rest

    def _large_bytes(self, n: int) -> None:
        """n more bytes of the large frame landed in its pieces, from the current one on."""
        self._got += n
        self._left -= n
        while self._got >= len(self._piece):
            self._got -= len(self._piece)
            self._index += 1
            if self._index == len(self._sizes):
                self._frame_done()
                return
            self._piece = self._piece_at(self._index)

    def _start_large(self, length: int) -> None:
        sizes, rest = [], length
        while rest:
            sizes.append(min(rest, PIECE + 24 if not sizes else PIECE))
            rest -= sizes[-1]
        self._sizes, self._pieces = sizes, []
        self._index, self._got, self._left = 0, 0, length
        self._piece = self._piece_at(0)

    def _piece_at(self, i: int) -> memoryview:
        """Piece i of the frame, its buffer taken when first needed: a frame that claims
        more than it brings (the length is the peer's word) holds no more than came."""
        while len(self._pieces) <= i:
            self._pieces.append(self._new_piece(self._sizes[len(self._pieces)]))
        return self._pieces[i]

    def _new_piece(self, size: int) -> memoryview:
        buffer = self._spare.pop() if self._spare else bytearray(PIECE + 24)
        return memoryview(buffer)[:size]

    def _rest_of_frame(self) -> None:
        """Read what the kernel holds of the large frame being read, in one readv, and
        set the socket's low-water mark: the rest of that frame, or one byte between frames."""
        if self._sock is None:
            return
        if self._pieces is not None:
            # the pieces for at most the low-water mark's worth: what one wakeup can bring
            views, room, i = [self._piece[self._got:]], len(self._piece) - self._got, self._index
            while room < min(self._left, self.LOWAT_MAX) and i + 1 < len(self._sizes):
                i += 1
                views.append(self._piece_at(i))
                room += len(views[-1])
            try:
                n = os.readv(self._sock.fileno(), views)
            except OSError:  # nothing there yet (EAGAIN), or an error its transport will see
                n = 0
            del views
            if n > 0:
                self.last_byte = time.monotonic()
                self._large_bytes(n)
        want = 1 if self._pieces is None else min(self._left, self.LOWAT_MAX)
        if want != self._lowat:
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, want)
                self._lowat = want
            except OSError:  # not for this socket: read as it comes
                self._sock = None

    def _frame_done(self) -> None:
        frame, self._pieces, self._piece = Pieces(self._pieces), None, None
        self._large += 1
        if self._large >= self._max_large and not self._paused and not self._closed:
            self._paused = True
            self._transport.pause_reading()
        self._push(frame)

    def _push(self, frame) -> None:
        self._frames.append(frame)
        self._wake()

    def _close(self) -> None:
        self._closed = True
        self._spare.clear()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
