"""helpers/transfer_frames.py and the adapter's pack_part: an upload part built straight from
disk is the message the library would send, as tgsim's unpack_client reads it."""

from __future__ import annotations

import os

import pytest
from pyrogram import raw

from helpers import client_adapter as adapter
from helpers import transfer_frames as frames
from helpers.transfer_budget import UPLOAD_PART
from tgsim import crypto


def _bytes(packet: adapter.Packet) -> bytes:
    """The packet pack_part built (auth_key_id, msg_key, ciphertext), out of its buffer."""
    start = frames.PLAIN_AT - 24
    return bytes(packet.buf[start:start + packet.length])


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(os.urandom(UPLOAD_PART * 2 + 1001))
    src = frames.PartSource(str(path))
    yield src, path.read_bytes()
    src.close()


@pytest.mark.parametrize("big", [True, False])
@pytest.mark.parametrize("part,size", [(0, UPLOAD_PART), (2, 1001), (2, 253), (2, 254),
                                       (2, 1), (1, 4)])
def test_a_packed_part_unpacks_to_the_same_request(source, big, part, size):
    src, data = source
    auth_key = os.urandom(256)
    key_id = crypto.auth_key_id(auth_key)
    offset = part * UPLOAD_PART
    fp = frames.FilePart(src, 0x1234567890, part, 3, big, offset, size)
    packet = _bytes(adapter.pack_part(fp, 0x5F00000000000004, 7, -42, b"S" * 8, auth_key,
                                      key_id))
    head, cipher = packet[:24], packet[24:]
    assert head[:8] == key_id and len(cipher) % 16 == 0
    salt, session_id, message = crypto.unpack_client(packet, auth_key)
    assert (salt, session_id, message.msg_id, message.seq_no) == (-42, b"S" * 8,
                                                                 0x5F00000000000004, 7)
    expected = (raw.functions.upload.SaveBigFilePart(
        file_id=0x1234567890, file_part=part, file_total_parts=3,
        bytes=data[offset:offset + size]) if big else raw.functions.upload.SaveFilePart(
        file_id=0x1234567890, file_part=part, bytes=data[offset:offset + size]))
    assert message.body.write() == expected.write()
    assert message.length == len(expected.write()) == fp.body_length()
    padding = len(cipher) - 32 - message.length
    assert 12 <= padding <= 1024  # MTProto 2.0's padding rule
    assert fp.kind is type(expected)


def test_padding_is_random(source):
    src, _ = source
    auth_key = os.urandom(256)
    fp = frames.FilePart(src, 1, 0, 3, True, 0, UPLOAD_PART)
    buf1, buf2 = bytearray(frames.CAPACITY), bytearray(frames.CAPACITY)
    n1 = frames.build_plain(buf1, fp, 0, b"s" * 8, 4, 1)
    n2 = frames.build_plain(buf2, fp, 0, b"s" * 8, 4, 1)
    assert n1 <= frames.CAPACITY - frames.PLAIN_AT
    body = 32 + fp.body_length()
    assert n1 == n2 and buf1[:body] == buf2[:body] and buf1[body:n1] != buf2[body:n1]
    assert _bytes(adapter.pack_part(fp, 4, 1, 0, b"s" * 8, auth_key, b"k" * 8)) != _bytes(
        adapter.pack_part(fp, 4, 1, 0, b"s" * 8, auth_key, b"k" * 8))


def test_pack_parts_is_the_library_message(source):
    """The TL path (pack_parts) unpacks to its request too."""
    auth_key = os.urandom(256)
    q = raw.functions.upload.GetFile(location=raw.types.InputDocumentFileLocation(
        id=1, access_hash=2, file_reference=b"r", thumb_size=""), offset=0, limit=4096)
    head, cipher = adapter.pack_parts(q.write(), 8, 3, 5, b"x" * 8, auth_key, b"k" * 8)
    _, _, message = crypto.unpack_client(head + cipher, auth_key)
    assert message.body.write() == q.write()


@pytest.mark.parametrize("size", [16, 4096, frames.ENCRYPT_CHUNK, UPLOAD_PART + 80])
def test_ige_in_place_is_one_ige_over_the_whole(size):
    from pyrogram.crypto import aes

    key, iv, data = os.urandom(32), os.urandom(32), os.urandom(size)
    buf = bytearray(data)
    frames.ige_in_place(memoryview(buf), lambda d, v: aes.ige256_encrypt(d, key, v), iv,
                        chunk=4096)
    assert bytes(buf) == aes.ige256_encrypt(data, key, iv)
    assert aes.ige256_decrypt(bytes(buf), key, iv) == data


def test_a_file_shorter_than_its_part_is_an_error(source):
    src, _ = source
    fp = frames.FilePart(src, 1, 2, 3, True, 2 * UPLOAD_PART, 2000)  # only 1001 bytes there
    with pytest.raises(frames.SourceClosed):
        frames.build_plain(bytearray(frames.CAPACITY), fp, 0, b"s" * 8, 4, 1)


def test_close_waits_for_the_read_in_progress(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    src = frames.PartSource(str(path))
    with src.reading() as fd:
        src.close()
        assert os.pread(fd, 10, 0) == b"x" * 10  # still open: a read was in progress
    with pytest.raises(OSError):
        os.fstat(fd)  # closed by the last reader
    with pytest.raises(frames.SourceClosed):
        src.read_into(memoryview(bytearray(1)), 0)


def test_parts_out_of_range_are_refused(source):
    src, _ = source
    for size in (0, UPLOAD_PART + 1):
        with pytest.raises(ValueError):
            frames.FilePart(src, 1, 0, 1, True, 0, size)


def test_buffers_are_reused_and_bounded():
    pool = frames.Buffers(keep=2, capacity=16)
    a, b, c = pool.take(), pool.take(), pool.take()
    for buf in (a, b, c):
        pool.give(buf)
    assert pool.idle == 2
    assert pool.take() in (a, b) and pool.take() in (a, b)


def test_transport_prefixes():
    assert frames.abridged_prefix(4 * 126) == bytes([126])
    assert frames.abridged_prefix(4 * 127) == b"\x7f" + (127).to_bytes(3, "little")
    assert frames.intermediate_prefix(524376) == (524376).to_bytes(4, "little")
