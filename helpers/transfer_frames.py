"""An upload part's request, laid out straight into one reused buffer: the send-side wire format.

upload.saveBigFilePart / upload.saveFilePart (core.telegram.org/method/upload.saveBigFilePart)
inside an MTProto 2.0 message's plain text (core.telegram.org/mtproto/description):

    salt:8 session_id:8 msg_id:8 seq_no:4 length:4 | constructor:4 file_id:8 file_part:4
    [file_total_parts:4] TL bytes (prefix, the part read from disk, zeros to 4) | padding

The library builds that with about eight copies of the part, each a fresh 512 KiB mapping
(glibc's mmap threshold is pinned: helpers/allocator.py), so each costs page faults as well as
the copy. Here one buffer, kept for the next part, holds the whole packet: the transport's
length, auth_key_id and msg_key, then the plain text, the part read from disk into its place.
It is hashed there, then encrypted in place a chunk at a time (AES-256-IGE chains across
chunks: the next chunk's IV is the last cipher block and the last plain block of the one
before), each chunk's ciphertext a small heap block copied back over its plain text: no new
512 KiB mapping at all (measured: 1.6 CPU ms per MB of page faults and unmapping with one
fresh ciphertext per part). The cipher itself (AES-256-IGE, the KDF) is the library's, in
helpers/client_adapter.py.

MTProto's rules stay: msg_key is the middle 128 bits of SHA-256(auth_key[88:120] + plain text
with its padding); the padding is 12 to 1024 random bytes (here 12..27), making the plain
text a multiple of 16 bytes.
"""

from __future__ import annotations

import collections
import hashlib
import os
import struct
import threading
from contextlib import contextmanager

from pyrogram import raw

from helpers.allocator import HEAP_BLOCK
from helpers.direct_io import DirectFile
from helpers.transfer_budget import UPLOAD_PART

SAVE_BIG = raw.functions.upload.SaveBigFilePart
SAVE = raw.functions.upload.SaveFilePart

MESSAGE_HEAD = struct.Struct("<q8sqii")  # salt, session_id, msg_id, seq_no, body length
_BIG_HEAD = struct.Struct("<Iqii")  # constructor, file_id, file_part, file_total_parts
_SMALL_HEAD = struct.Struct("<Iqi")  # constructor, file_id, file_part
MIN_PADDING = 12
PREFIX_ROOM = 4  # the transport's length (abridged: 1 or 4 bytes, intermediate: 4)
PLAIN_AT = PREFIX_ROOM + 8 + 16  # then auth_key_id and msg_key, then the plain text
# a packet of the largest part: prefix, key id, msg_key, message head, TL head, bytes
# prefix, the part, TL and MTProto padding
CAPACITY = PLAIN_AT + MESSAGE_HEAD.size + _BIG_HEAD.size + 4 + UPLOAD_PART + 3 + MIN_PADDING + 15
# below glibc's pinned mmap threshold (helpers/allocator.py) with the bytes object's
# header, so each chunk's ciphertext is a heap block, reused chunk after chunk
ENCRYPT_CHUNK = HEAP_BLOCK


class SourceClosed(OSError):
    """The upload ended (cancelled or failed) while one of its parts was being read."""


class PartSource:
    """The open file of one upload, shared by its parts on any thread: `close()` closes it
    once the last read in progress is over, so a cancelled upload never closes (and the OS
    never reuses) a descriptor a crypto thread is still reading."""

    def __init__(self, path: str, direct_io: bool = False):
        self.fd = os.open(path, os.O_RDONLY)
        try:
            self.size = os.fstat(self.fd).st_size
            self._file = DirectFile(path, self.fd, os.O_RDONLY, direct_io)
        except BaseException:
            os.close(self.fd)
            raise
        self._lock = threading.Lock()
        self._users = 0
        self._closing = False

    @contextmanager
    def reading(self):
        """The descriptor, held open for the duration of the block."""
        with self._lock:
            if self._closing:
                raise SourceClosed("the upload's file is closed")
            self._users += 1
        try:
            yield self.fd
        finally:
            with self._lock:
                self._users -= 1
                last = self._closing and self._users == 0
            if last:
                self._file.close()

    def read_into(self, view: memoryview, offset: int) -> None:
        """Fill `view` from `offset`; a file that got shorter is an error, not a short part."""
        with self.reading():
            done = 0
            while done < len(view):
                n = self._file.read_into(view[done:], offset + done)
                if n <= 0:
                    raise SourceClosed(f"the file ended at {offset + done} bytes, "
                                       f"{len(view) - done} short of its part")
                done += n

    def close(self) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            now = self._users == 0
        if now:
            self._file.close()


class FilePart:
    """One upload.saveBigFilePart (big) or upload.saveFilePart request, described: its bytes
    stay on disk until the request is built (`build_plain`), on the thread that encrypts it."""

    __slots__ = ("admit", "big", "file_id", "offset", "part", "size", "source", "total")

    def __init__(self, source: PartSource, file_id: int, part: int, total: int, big: bool,
                 offset: int, size: int):
        if not 0 < size <= UPLOAD_PART:
            raise ValueError(f"an upload part is 1..{UPLOAD_PART} bytes, not {size}")
        self.source = source
        self.file_id = file_id
        self.part = part
        self.total = total
        self.big = big
        self.offset = offset
        self.size = size
        # awaited once the part is encrypted, before it goes on the wire: the account's
        # window of requests in flight (helpers/transfer.py), None for none
        self.admit = None

    @property
    def kind(self) -> type:
        """The TL function it is (for the error an answer raises)."""
        return SAVE_BIG if self.big else SAVE

    def body_length(self) -> int:
        n = self.size
        head = _BIG_HEAD.size if self.big else _SMALL_HEAD.size
        prefix = 1 if n <= 253 else 4
        return head + prefix + n + (-(prefix + n) % 4)

    def write_body(self, view: memoryview) -> int:
        """Write the TL-serialized request into `view`, the part read from disk into its
        place; returns its length."""
        if self.big:
            _BIG_HEAD.pack_into(view, 0, SAVE_BIG.ID, self.file_id, self.part, self.total)
            at = _BIG_HEAD.size
        else:
            _SMALL_HEAD.pack_into(view, 0, SAVE.ID, self.file_id, self.part)
            at = _SMALL_HEAD.size
        n = self.size
        if n <= 253:
            view[at] = n
            at += 1
        else:
            view[at:at + 4] = b"\xfe" + n.to_bytes(3, "little")
            at += 4
        self.source.read_into(view[at:at + n], self.offset)
        at += n
        pad = -at % 4  # the TL head is 4-aligned, so this pads prefix + bytes to 4
        view[at:at + pad] = bytes(pad)
        return at + pad


def build_plain(buf: bytearray, part: FilePart, salt: int, session_id: bytes, msg_id: int,
                seq_no: int, at: int = 0) -> int:
    """Lay out the MTProto plain text of `part` in `buf` from `at`: the message head, the
    request, random padding; returns its length (a multiple of 16)."""
    body = part.body_length()
    head = MESSAGE_HEAD.size
    padding = -(head + body + MIN_PADDING) % 16 + MIN_PADDING
    total = head + body + padding
    if at + total > len(buf):
        raise ValueError(f"a buffer of {len(buf)} bytes cannot hold {total} from {at}")
    with memoryview(buf) as whole, whole[at:at + total] as view:
        MESSAGE_HEAD.pack_into(view, 0, salt, session_id, msg_id, seq_no, body)
        written = part.write_body(view[head:head + body])
        if written != body:
            raise AssertionError(f"body of {written} bytes, planned {body}")
        view[head + body:total] = os.urandom(padding)
    return total


def ige_in_place(view: memoryview, encrypt, iv: bytes, chunk: int = ENCRYPT_CHUNK) -> None:
    """Encrypt `view` in place with `encrypt(data, iv) -> ciphertext` (AES-256-IGE), `chunk`
    bytes at a time; the same ciphertext as one call over the whole."""
    if chunk % 16 or len(view) % 16:
        raise ValueError("IGE works on whole 16-byte blocks")
    for start in range(0, len(view), chunk):
        piece = view[start:start + chunk]
        last_plain = bytes(piece[-16:])
        cipher = encrypt(piece, iv)
        piece[:] = cipher
        iv = cipher[-16:] + last_plain  # IGE's state: the last cipher and plain blocks


def msg_key(auth_key: bytes, plain: memoryview) -> bytes:
    """MTProto 2.0's msg_key of a client message: SHA-256(auth_key[88:120] + plain)[8:24]."""
    h = hashlib.sha256(auth_key[88:120])
    h.update(plain)
    return h.digest()[8:24]


def abridged_prefix(length: int) -> bytes:
    """The abridged transport's length of a packet (core.telegram.org/mtproto/mtproto-transports)."""
    words = length // 4
    return bytes((words,)) if words < 0x7F else b"\x7f" + words.to_bytes(3, "little")


def intermediate_prefix(length: int) -> bytes:
    return struct.pack("<I", length)


class Buffers:
    """Packet buffers for reuse, at most `keep` of them idle: a reused buffer's pages are
    already mapped, so building a part costs no page faults. Thread-safe."""

    def __init__(self, keep: int = 4, capacity: int = CAPACITY):
        self.keep = keep
        self.capacity = capacity
        self._idle: collections.deque[bytearray] = collections.deque()
        self._lock = threading.Lock()

    def take(self) -> bytearray:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return bytearray(self.capacity)

    def give(self, buf: bytearray) -> None:
        with self._lock:
            if len(self._idle) < self.keep:
                self._idle.append(buf)

    @property
    def idle(self) -> int:
        return len(self._idle)
