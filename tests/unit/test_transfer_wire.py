"""helpers.transfer_wire: a server packet as tgsim packs it is opened and parsed, a packet
that fails any MTProto check is refused, and frames are cut right however the socket
splits them."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import struct

import pytest
import tgcrypto
from pyrogram import raw
from pyrogram.crypto.mtproto import kdf as library_kdf
from pyrogram.raw.core import Int, Long
from pyrogram.raw.core.primitives import Bytes

from helpers import transfer_wire as wire
from tgsim.crypto import pack_server

AUTH_KEY = bytes((i * 37 + 11) & 0xFF for i in range(256))
KEY_ID = hashlib.sha1(AUTH_KEY).digest()[-8:]
SESSION = b"\x01\x02\x03\x04\x05\x06\x07\x08"
MSG_ID = (1_700_000_000 << 32) | 0x1235  # odd: a server's
REQ = 0x1234_5678_9ABC_DEF0


def file_body(data: bytes, req: int = REQ, cdn: bool = False) -> bytes:
    if cdn:
        answer = raw.types.upload.CdnFile(bytes=data)
    else:
        answer = raw.types.upload.File(type=raw.types.storage.FilePartial(), mtime=77,
                                       bytes=data)
    return Int(raw.types.RpcResult.ID, False) + Long(req) + answer.write()


def packet(body: bytes, *, msg_id: int = MSG_ID, session: bytes = SESSION) -> bytes:
    return pack_server(AUTH_KEY, KEY_ID, 0, session, msg_id, 1, body)


def pack_with(body: bytes, padding: bytes, msg_id: int = MSG_ID, length: int | None = None
              ) -> bytes:
    """A server packet with chosen padding (and declared length), correctly keyed."""
    n = len(body) if length is None else length
    plain = Long(0) + SESSION + Long(msg_id) + Int(1) + Int(n) + body + padding
    msg_key = hashlib.sha256(AUTH_KEY[96:128] + plain).digest()[8:24]
    key, iv = library_kdf(AUTH_KEY, msg_key, False)
    return KEY_ID + msg_key + tgcrypto.ige256_encrypt(plain, key, iv)


def in_pieces(pkt: bytes) -> wire.Pieces:
    """As AbridgedFrames hands a large frame over: the 24-byte head plus PIECE, then PIECE."""
    view = memoryview(pkt)
    cuts = [0, min(len(pkt), 24 + wire.PIECE)]
    while cuts[-1] < len(pkt):
        cuts.append(min(len(pkt), cuts[-1] + wire.PIECE))
    return wire.Pieces(view[a:b] for a, b in zip(cuts, cuts[1:]))


def open_(pkt, **kw):
    return wire.open_message(pkt, SESSION, AUTH_KEY, KEY_ID, tgcrypto.ige256_decrypt, **kw)


def test_kdf_is_mtproto_2():
    msg_key = bytes(range(16))
    for outgoing in (True, False):
        assert wire.kdf(AUTH_KEY, msg_key, outgoing) == library_kdf(AUTH_KEY, msg_key, outgoing)


@pytest.mark.parametrize("size", [0, 1, 253, 254, 4096, wire.PIECE - 60, 300_001,
                                  1024 * 1024])
@pytest.mark.parametrize("split", [False, True])
def test_a_file_answer_packed_as_tgsim_does_is_read_back(size, split):
    data = os.urandom(size)
    pkt = packet(file_body(data))
    message = open_(in_pieces(pkt) if split else pkt)
    assert message.msg_id == MSG_ID and message.seq_no == 1
    answer = wire.file_answer(message.body)
    assert answer is not None and answer.req_msg_id == REQ
    assert answer.constructor == wire.UPLOAD_FILE == raw.types.upload.File.ID
    assert answer.file_type == raw.types.storage.FilePartial.ID and answer.mtime == 77
    assert len(answer.data) == size and bytes(answer.data) == data


def test_a_cdn_file_answer_is_read_back():
    data = os.urandom(200_000)
    answer = wire.file_answer(open_(in_pieces(packet(file_body(data, cdn=True)))).body)
    assert answer.constructor == wire.UPLOAD_CDN_FILE == raw.types.upload.CdnFile.ID
    assert bytes(answer.data) == data


def test_other_answers_are_left_to_the_library():
    error = Int(raw.types.RpcResult.ID, False) + Long(REQ) + raw.types.RpcError(
        error_code=400, error_message="LIMIT_INVALID").write()
    assert wire.file_answer(open_(packet(error)).body) is None
    pong = raw.types.Pong(msg_id=1, ping_id=2).write()
    assert wire.file_answer(open_(packet(pong)).body) is None
    # upload.file with bytes after it: not exactly one answer
    assert wire.file_answer(open_(packet(file_body(b"abcd") + b"\0" * 4)).body) is None
    # a container holding a file answer: declined after one piece, nothing let go of
    inner = file_body(os.urandom(300_000))
    container = (Int(0x73F1F8DC, False) + Int(1) + Long(MSG_ID) + Int(1) + Int(len(inner))
                 + inner)
    pkt = packet(container)
    frame = in_pieces(pkt)
    assert open_(frame, wanted=wire.looks_like_file_answer) is None
    assert bytes(frame) == pkt  # the library gets it whole


def test_decrypted_piece_buffers_go_back_for_reuse():
    pkt = packet(file_body(os.urandom(500_000)))
    owned = []
    for a, b in ((0, 24 + wire.PIECE), *((x, x + wire.PIECE) for x in
                                          range(24 + wire.PIECE, len(pkt), wire.PIECE))):
        buf = bytearray(24 + wire.PIECE)
        chunk = pkt[a:b]
        buf[:len(chunk)] = chunk
        owned.append(memoryview(buf)[:len(chunk)])
    back = []
    message = open_(wire.Pieces(owned), recycle=back.append)
    assert wire.file_answer(message.body) is not None
    assert [id(b) for b in back] == [id(v.obj) for v in owned]


def _refused(pkt, **kw):
    with pytest.raises(wire.Refused):
        open_(pkt, **kw)


def test_a_tampered_msg_key_or_ciphertext_is_refused():
    pkt = bytearray(packet(file_body(os.urandom(300_000))))
    for at in (8, 23, 24, 30_000, 200_000, len(pkt) - 1):  # msg_key, blocks, padding
        bad = bytearray(pkt)
        bad[at] ^= 0x40
        _refused(bytes(bad))
        _refused(in_pieces(bytes(bad)))


def test_another_session_or_key_is_refused():
    _refused(packet(file_body(b"x" * 64), session=b"\x09" * 8))
    pkt = packet(file_body(b"x" * 64))
    _refused(b"\x00" * 8 + pkt[8:])  # auth_key_id of another key


def _body_padded_by(padding: int) -> bytes:
    """A file answer whose message, with `padding` bytes after it, is whole AES blocks."""
    for n in range(1000, 1016):
        body = file_body(b"y" * n)
        if (32 + len(body) + padding) % 16 == 0:
            return body
    raise AssertionError(padding)


def test_bad_padding_length_and_msg_id_are_refused():
    for padding in (12, 16, 1020, 1024):  # within 12..1024: fine
        assert open_(pack_with(_body_padded_by(padding), os.urandom(padding))) is not None
    for padding in (0, 4, 8, 1028, 1040):  # fewer than 12, more than 1024
        _refused(pack_with(_body_padded_by(padding), os.urandom(padding)))
    body = _body_padded_by(32)
    assert open_(pack_with(body, os.urandom(32))) is not None
    _refused(pack_with(body, os.urandom(32), length=len(body) + 2))  # not a multiple of 4
    _refused(pack_with(body, os.urandom(32), length=len(body) + 4000))  # past the end
    _refused(pack_with(body, os.urandom(32), length=-4))
    _refused(pack_with(body, os.urandom(32), msg_id=MSG_ID - 1))  # even: a client's
    _refused(b"\x00" * 40)  # too short
    _refused(packet(body)[:-8])  # not whole AES blocks


def test_write_at_writes_pieces_at_their_offset(tmp_path):
    path = tmp_path / "f.bin"
    data = os.urandom(3 * 4096 + 17)
    pieces = wire.Pieces([memoryview(data)[:5000], b"", memoryview(data)[5000:]])
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, 100 + len(data))
        wire.write_at(fd, pieces, 100)
        wire.write_at(fd, b"head", 0)
    finally:
        os.close(fd)
    got = path.read_bytes()
    assert got[:4] == b"head" and got[100:] == data


# frames --------------------------------------------------------------------------------------

class FakeTransport:
    def __init__(self):
        self.paused = False
        self.pauses = 0

    def pause_reading(self):
        self.paused = True
        self.pauses += 1

    def resume_reading(self):
        self.paused = False

    def get_extra_info(self, name, default=None):
        return default  # no socket: frames come as the socket hands them over


class FakeInner(asyncio.Protocol):
    def __init__(self):
        self.calls = []

    def connection_lost(self, exc):
        self.calls.append(("lost", exc))

    def eof_received(self):
        self.calls.append(("eof",))
        return False

    def pause_writing(self):
        self.calls.append(("pause_writing",))

    def resume_writing(self):
        self.calls.append(("resume_writing",))


def abridged(payload: bytes) -> bytes:
    words = len(payload) // 4
    head = bytes([words]) if words < 0x7F else b"\x7f" + words.to_bytes(3, "little")
    return head + payload


def feed(frames: wire.AbridgedFrames, stream: bytes, sizes) -> None:
    """Deliver `stream` as a socket would, at most the next size of `sizes` per read."""
    at, i = 0, 0
    while at < len(stream):
        buf = frames.get_buffer(-1)
        assert len(buf) > 0
        n = min(len(buf), sizes[i % len(sizes)], len(stream) - at)
        buf[:n] = stream[at:at + n]
        frames.buffer_updated(n)
        at += n
        i += 1


@pytest.mark.parametrize("sizes", [[1], [3, 7], [65536], [1 << 20], [100_000, 1, 5]])
async def test_frames_are_cut_right_however_the_socket_splits_them(sizes):
    payloads = [b"\x01\x02\x03\x04", os.urandom(400), os.urandom(16 * 1024),
                os.urandom(16 * 1024 + 4), os.urandom(300_000), b"\x6c\xfe\xff\xff",
                os.urandom(1024 * 1024 + 48)]
    transport = FakeTransport()
    frames = wire.AbridgedFrames(FakeInner(), transport, max_large=100)
    feed(frames, b"".join(abridged(p) for p in payloads), sizes)
    for p in payloads:
        got = await frames.recv(5)
        assert bytes(got) == p
        # small frames come as bytes, large ones in pieces laid out for open_message
        assert isinstance(got, wire.Pieces) == (len(p) > wire.AbridgedFrames.SMALL)
        if isinstance(got, wire.Pieces):
            assert len(got.buffers[0]) == min(len(p), 24 + wire.PIECE)
            assert all((len(b) - (24 if i == 0 else 0)) % 16 == 0 or i == len(got.buffers) - 1
                       for i, b in enumerate(got.buffers))
            frames.release()


async def test_leftover_bytes_come_first():
    frames = wire.AbridgedFrames(FakeInner(), FakeTransport(), leftover=abridged(b"abcd"))
    feed(frames, abridged(b"efgh"), [2])
    assert await frames.recv(5) == b"abcd" and await frames.recv(5) == b"efgh"


async def test_reading_pauses_while_large_frames_wait_and_resumes_on_release():
    transport = FakeTransport()
    frames = wire.AbridgedFrames(FakeInner(), transport, max_large=2)
    big = abridged(os.urandom(200_000))
    feed(frames, big, [1 << 20])
    assert not transport.paused
    feed(frames, big, [1 << 20])
    assert transport.paused  # two large frames held: the next waits in the kernel
    await frames.recv(5)
    await frames.recv(5)
    frames.release()
    assert not transport.paused
    frames.release()


async def test_piece_buffers_are_reused_and_let_go_of_when_quiet(monkeypatch):
    frames = wire.AbridgedFrames(FakeInner(), FakeTransport())
    spare = bytearray(24 + wire.PIECE)
    frames.recycle(spare)
    frames.recycle(bytearray(10))  # not a piece buffer: not kept
    feed(frames, abridged(os.urandom(50_000)), [1 << 20])
    got = await frames.recv(5)
    assert got.buffers[0].obj is spare
    frames.release()
    frames.recycle(spare)
    monkeypatch.setattr(wire.AbridgedFrames, "SPARE_IDLE_S", 0.05)
    assert await frames.recv(0.2) is None  # nothing came: idle, and the spares are gone
    assert not frames._spare


async def test_close_and_eof_end_recv_and_reach_the_stream_protocol():
    inner = FakeInner()
    frames = wire.AbridgedFrames(inner, FakeTransport())
    waiting = asyncio.ensure_future(frames.recv(5))
    await asyncio.sleep(0)
    frames.pause_writing()
    frames.resume_writing()
    frames.eof_received()
    frames.connection_lost(None)
    assert await asyncio.wait_for(waiting, 1) is None
    assert inner.calls == [("pause_writing",), ("resume_writing",), ("eof",), ("lost", None)]


def test_pieces_slice_and_head():
    p = wire.Pieces([b"abc", b"", b"defg", b"hi"])
    assert len(p) == 9 and bytes(p) == b"abcdefghi" and p.head(5) == b"abcde"
    assert bytes(p.slice(2, 8)) == b"cdefgh" and bytes(p.slice(3, 7)) == b"defg"
    assert bytes(p.slice(0, 0)) == b"" and p.head(20) == b"abcdefghi"


def test_the_wire_constants_are_the_schemas():
    from pyrogram.raw.core import MsgContainer
    from pyrogram.raw.core.primitives.bool import BoolFalse, BoolTrue
    from pyrogram.raw.core.primitives.vector import Vector

    assert wire.RPC_RESULT == raw.types.RpcResult.ID
    assert wire.BOOLS == {BoolTrue.ID: True, BoolFalse.ID: False}
    assert wire.MSGS_ACK == raw.types.MsgsAck.ID and wire.VECTOR == Vector.ID
    assert wire.MSG_CONTAINER == MsgContainer.ID
    assert struct.calcsize("<8s8sqii") == 32
    assert Bytes(b"x" * 300)[:4] == b"\xfe" + (300).to_bytes(3, "little")


class CountingFrames(wire.AbridgedFrames):
    reads = 0

    def buffer_updated(self, nbytes: int) -> None:
        self.reads += 1
        super().buffer_updated(nbytes)


@contextlib.asynccontextmanager
async def tcp_frames(cls=wire.AbridgedFrames):
    """A real loopback TCP connection with `cls` installed on the client's transport, as
    the adapter installs it; yields (frames, the server's writer)."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future = loop.create_future()

    async def serve(reader, writer):
        accepted.set_result(writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, inner = await loop.create_connection(FakeInner, "127.0.0.1", port)
    writer = await asyncio.wait_for(accepted, 5)
    frames = cls(inner, transport)
    transport.set_protocol(frames)
    try:
        yield frames, writer
    finally:
        transport.close()
        writer.close()
        server.close()
        await server.wait_closed()


async def test_a_large_frame_dribbling_in_over_tcp_wakes_the_reader_about_once():
    """On a real TCP socket the low-water mark holds readiness until the frame is whole:
    a 1 MiB frame sent in 20 pieces is read in a few wakeups, and the small frame after
    it is not held back (the mark is one byte again between frames)."""
    large, small = os.urandom(1024 * 1024 + 48), b"\x6c\xfe\xff\xff"
    head = abridged(large)
    async with tcp_frames(CountingFrames) as (frames, writer):
        chunk = len(head) // 20 + 1
        for at in range(0, len(head), chunk):
            writer.write(head[at:at + chunk])
            await writer.drain()
            await asyncio.sleep(0.005)  # a slow link: each piece arrives on its own
        writer.write(abridged(small))
        got = await frames.recv(5)
        assert bytes(got) == large
        frames.release()
        assert await frames.recv(5) == small
        assert frames.reads <= 6, f"{frames.reads} reads for a frame sent in 20 pieces"


async def test_a_silent_peer_mid_frame_still_times_out_over_tcp():
    """Bytes held back by the low-water mark count as life, none at all do not."""
    async with tcp_frames() as (frames, writer):
        writer.write(abridged(os.urandom(200_000))[:150_000])  # then nothing more
        await writer.drain()
        assert await asyncio.wait_for(frames.recv(0.3), 5) is None


def _message(body: bytes, msg_id: int = MSG_ID, seq_no: int = 1) -> wire.Message:
    return wire.Message(msg_id, seq_no, wire.Pieces([body]))


def _inner(msg_id: int, seq_no: int, body: bytes) -> bytes:
    return struct.pack("<qii", msg_id, seq_no, len(body)) + body


def test_simple_messages_read_acks_and_bool_results_alone_or_in_a_container():
    true_result = struct.pack("<IqI", raw.types.RpcResult.ID, REQ, 0x997275B5)  # boolTrue
    false_result = struct.pack("<IqI", raw.types.RpcResult.ID, REQ + 4, 0xBC799737)
    ack = raw.types.MsgsAck(msg_ids=[11, 12, 13]).write()
    assert wire.simple_messages(_message(true_result)) == [
        wire.Simple(MSG_ID, 1, REQ, True)]
    assert wire.simple_messages(_message(ack, seq_no=0)) == [wire.Simple(MSG_ID, 0, None, None)]
    container = (struct.pack("<II", wire.MSG_CONTAINER, 3) + _inner(101, 0, ack)
                 + _inner(105, 1, true_result) + _inner(109, 3, false_result))
    assert wire.simple_messages(_message(container, seq_no=0)) == [
        wire.Simple(101, 0, None, None), wire.Simple(105, 1, REQ, True),
        wire.Simple(109, 3, REQ + 4, False)]


@pytest.mark.parametrize("body", [
    raw.types.RpcResult(req_msg_id=REQ, result=raw.types.RpcError(
        error_code=420, error_message="FLOOD_WAIT_3")).write(),
    raw.types.BadServerSalt(bad_msg_id=REQ, bad_msg_seqno=1, error_code=48,
                            new_server_salt=7).write(),
    raw.types.Pong(msg_id=REQ, ping_id=1).write(),
    raw.types.MsgsAck(msg_ids=[1, 2]).write()[:-4],  # cut short
    b"\x01\x02",
])
def test_anything_else_is_left_to_the_library(body):
    assert wire.simple_messages(_message(body)) is None
    # nor in a container, next to a simple one
    ack = raw.types.MsgsAck(msg_ids=[1]).write()
    container = (struct.pack("<II", wire.MSG_CONTAINER, 2) + _inner(101, 0, ack)
                 + _inner(105, 1, body))
    assert wire.simple_messages(_message(container)) is None
    # and a container whose count or lengths lie
    lying = struct.pack("<II", wire.MSG_CONTAINER, 3) + _inner(101, 0, ack)
    assert wire.simple_messages(_message(lying)) is None


async def test_a_frame_that_claims_more_than_it_brings_holds_only_what_came():
    """The length is the peer's word: 64 MiB claimed, 300 KB sent, about 300 KB held."""
    frames = wire.AbridgedFrames(FakeInner(), FakeTransport())
    words = (64 * 1024 * 1024 - 4) // 4
    head = b"\x7f" + words.to_bytes(3, "little")
    feed(frames, head + os.urandom(300_000), [65536])
    held = sum(len(p) for p in frames._pieces)
    assert 300_000 <= held <= 300_000 + 2 * (wire.PIECE + 24)
