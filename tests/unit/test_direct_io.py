"""helpers/direct_io.py: parts past the page cache, the same bytes as through it."""

from __future__ import annotations

import errno
import os

import pytest

from helpers import direct_io
from helpers.direct_io import ALIGN, DirectFile
from helpers.transfer_frames import PartSource
from helpers.transfer_wire import Pieces

MIB = 1024 * 1024


def _direct_or_skip(path) -> None:
    fd = direct_io.open_direct(str(path), os.O_WRONLY | os.O_CREAT)
    if fd is None:
        pytest.skip(f"this filesystem refuses O_DIRECT ({path.parent})")
    os.close(fd)


def _pieces(data: bytes, cut: int) -> Pieces:
    """`data` as memoryviews at odd offsets of bigger buffers, as open_message leaves it."""
    views = []
    for at in range(0, len(data), cut):
        holder = bytearray(b"\x00" * 60 + data[at:at + cut] + b"\x00" * 7)
        views.append(memoryview(holder)[60:60 + len(data[at:at + cut])])
    return Pieces(views)


@pytest.mark.parametrize("size", [MIB, 3 * MIB + 5000, 4096, 100])
def test_parts_written_direct_read_back_the_same(tmp_path, size):
    path = tmp_path / "out.bin"
    _direct_or_skip(path)
    data = os.urandom(size)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    out = DirectFile(str(path), fd, os.O_WRONLY)
    assert out.direct is not None
    for offset in list(range(0, size, MIB))[::-1]:  # out of order, as parallel parts land
        out.write(_pieces(data[offset:offset + MIB], 112 * 1024 + 3), offset)
    assert out.direct is not None  # nothing was refused on the way
    out.close()
    assert path.read_bytes() == data


def test_unaligned_offsets_and_bytes_go_through_the_cache(tmp_path):
    path = tmp_path / "out.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    out = DirectFile(str(path), fd, os.O_WRONLY)
    out.write(b"abc", 0)
    out.write(b"x" * (2 * ALIGN), 3)  # not on a block boundary
    out.close()
    assert path.read_bytes() == b"abc" + b"x" * (2 * ALIGN)


def test_disabled_means_no_second_descriptor(tmp_path):
    path = tmp_path / "out.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    out = DirectFile(str(path), fd, os.O_WRONLY, enabled=False)
    assert out.direct is None
    out.write(b"y" * MIB, 0)
    out.close()
    assert path.read_bytes() == b"y" * MIB


def test_a_refused_write_falls_back_to_the_cache_for_good(tmp_path, monkeypatch):
    path = tmp_path / "out.bin"
    _direct_or_skip(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    out = DirectFile(str(path), fd, os.O_WRONLY)
    real = os.pwrite
    direct_fd = out.direct

    def pwrite(f, data, offset):
        if f == direct_fd:  # a device that wants more alignment than 4 KiB
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(f, data, offset)

    monkeypatch.setattr(direct_io.os, "pwrite", pwrite)
    data = os.urandom(2 * MIB)
    out.write(data[:MIB], 0)
    assert out.direct is None
    out.write(data[MIB:], MIB)
    out.close()
    assert path.read_bytes() == data


@pytest.mark.parametrize("size", [512 * 1024 * 3, 512 * 1024 * 2 + 777, 10])
def test_upload_parts_read_direct_are_the_file(tmp_path, size):
    path = tmp_path / "src.bin"
    data = os.urandom(size)
    path.write_bytes(data)  # still in the page cache, dirty: a direct read must see it
    _direct_or_skip(tmp_path / "probe.bin")
    source = PartSource(str(path), direct_io=True)
    assert source._file.direct is not None
    got = bytearray()
    part = 512 * 1024
    for offset in range(0, size, part):
        n = min(part, size - offset)
        buf = bytearray(n + 9)
        source.read_into(memoryview(buf)[5:5 + n], offset)  # a view at an odd place
        got += buf[5:5 + n]
    source.close()
    assert bytes(got) == data


def test_write_if_open_writes_until_closed_and_close_is_once(tmp_path):
    """A part written from the decrypting thread: never into a closed (maybe reused) fd."""
    path = tmp_path / "out.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    out = DirectFile(str(path), fd, os.O_WRONLY)
    part = os.urandom(MIB)
    assert out.write_if_open(_pieces(part, 112 * 1024), 0)
    out.close()
    assert out.closed and not out.write_if_open(part, MIB)
    out.close()  # a second close is nothing (and does not close a reused descriptor)
    assert path.read_bytes() == part
    with pytest.raises(OSError):
        os.fstat(fd)


def test_upload_parts_come_from_the_page_cache_when_it_holds_them(tmp_path):
    """A part the cache holds is copied from there; one it does not is read past it (and
    not pulled in): both are the file."""
    path = tmp_path / "src.bin"
    data = os.urandom(3 * 512 * 1024)
    path.write_bytes(data)
    _direct_or_skip(tmp_path / "probe.bin")
    part = 512 * 1024

    def read_all() -> bytes:
        source = PartSource(str(path), direct_io=True)
        got = bytearray()
        for offset in range(0, len(data), part):
            buf = bytearray(part)
            source.read_into(memoryview(buf), offset)
            got += buf
        source.close()
        return bytes(got)

    before = dict(direct_io.reads)
    assert read_all() == data
    if not direct_io._cachestat["ok"]:
        pytest.skip("no cachestat(2) on this kernel: every part is read past the cache")
    assert direct_io.reads["cache"] - before["cache"] == 3
    fd = os.open(path, os.O_RDONLY)
    try:  # written back and dropped: the cache no longer holds the file
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    before = dict(direct_io.reads)
    assert read_all() == data
    assert direct_io.reads["direct"] - before["direct"] == 3
