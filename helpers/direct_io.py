"""A transfer's file I/O past the page cache (O_DIRECT), where the filesystem allows it.

Written through the page cache, each part is copied into freshly allocated cache pages. On a
virtual machine whose host backs a guest page only when it is first used, and takes freed
pages back after a few seconds (virtio-balloon free page reporting), those copies cost the
kernel 1.2-2.2 ms of CPU per MB each way. That is about a quarter of a download's CPU, the
largest cost after the crypto (bench/disk_io.py measures it). The cache pages also count
against the container's memory cgroup: a 2 GB job fills a 512 MB instance's cgroup with cache
the kernel must reclaim under pressure. With O_DIRECT the device reads our buffer, and nothing
is left behind in the page cache.

O_DIRECT wants the offset, the length and the buffer's address aligned to the device's
logical block size. Parts start at multiples of 4 KiB (download parts are powers of two from
4 KiB, upload parts are 512 KiB), so a part goes through one page-aligned staging buffer per
thread, and only the bytes after a file's last 4 KiB boundary go through the cache. Where
O_DIRECT is refused, at open or at the first read or write (tmpfs before Linux 6.6, some FUSE
and network filesystems), the file falls back to ordinary I/O. An upload part that the page
cache holds whole already (cachestat(2)) is read from there: a copy from memory is cheaper than
the device's read.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
import sys
import threading

from helpers.transfer_wire import as_pieces, write_at

log = logging.getLogger("transfer")

ALIGN = 4096  # a multiple of every logical block size in use (512 B, 4 KiB)
STAGING = 1024 * 1024  # the largest part either way (a download part: 1 MiB)
_O_DIRECT = getattr(os, "O_DIRECT", 0)  # Linux; 0 elsewhere: no direct I/O
reads = {"cache": 0, "direct": 0}  # upload parts read from the page cache / past it


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _CacheStat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")]


_SYS_CACHESTAT = 451  # cachestat(2), Linux 6.5+, one number on every architecture
_cachestat = {"call": None, "ok": sys.platform.startswith("linux")}


def cached(fd: int, offset: int, length: int) -> bool:
    """Whether the page cache holds all of [offset, offset + length) of the file, asked
    with cachestat(2), which (unlike a read with RWF_NOWAIT, which starts readahead on a
    miss) leaves the cache as it is. False where it cannot be asked (older kernels)."""
    if not _cachestat["ok"]:
        return False
    call = _cachestat["call"]
    if call is None:
        try:
            call = ctypes.CDLL(None, use_errno=True).syscall
        except (OSError, AttributeError):
            _cachestat["ok"] = False
            return False
        call.restype = ctypes.c_long
        _cachestat["call"] = call
    stat = _CacheStat()
    # syscall(2) is variadic: every argument goes as a long, as the kernel reads them
    if call(ctypes.c_long(_SYS_CACHESTAT), ctypes.c_long(fd),
            ctypes.byref(_Range(offset, length)), ctypes.byref(stat), ctypes.c_long(0)):
        _cachestat["ok"] = False  # ENOSYS, EPERM: not here, and it will not be
        return False
    return stat.nr_cache * mmap.PAGESIZE >= length

_local = threading.local()
_refused_logged = False


def _staging(size: int) -> mmap.mmap:
    """This thread's page-aligned buffer (anonymous mmap) of at least `size` bytes: one per
    thread that does disk or packing work, as large as its largest part (1 MiB on the disk
    thread, 512 KiB on an upload's crypto threads), bounded by the few threads transfers run."""
    buf = getattr(_local, "buf", None)
    if buf is None or len(buf) < size:
        if buf is not None:
            buf.close()
        buf = _local.buf = mmap.mmap(-1, size + (-size % ALIGN))
    return buf


def _refused(path: str, e: OSError) -> None:
    global _refused_logged
    if not _refused_logged:  # once per process: the filesystem does not change per file
        _refused_logged = True
        log.info("direct I/O refused on %s (%s): transfers use the page cache there",
                 os.path.dirname(path) or ".", e.strerror or e)


def open_direct(path: str, flags: int) -> int | None:
    """A second descriptor of `path` with O_DIRECT, or None where it is not to be had."""
    if not _O_DIRECT:
        return None
    try:
        return os.open(path, flags | _O_DIRECT)
    except OSError as e:  # EINVAL where refused; anything else: the cache still works
        _refused(path, e)
        return None


class DirectFile:
    """One open file of a transfer: `fd` (ordinary, for everything else: truncate, allocate,
    tails) and, where allowed, its O_DIRECT twin. Thread-safe as far as its users are: each
    read or write is self-contained (pread/pwrite), and a refusal just drops the twin."""

    def __init__(self, path: str, fd: int, flags: int, enabled: bool = True):
        self.path = path
        self.fd = fd
        self.direct = open_direct(path, flags) if enabled else None
        self._lock = threading.Lock()  # write_if_open against close, across threads
        self.closed = False

    def _drop(self, e: OSError) -> None:
        dfd, self.direct = self.direct, None
        if dfd is not None:
            _refused(self.path, e)
            os.close(dfd)

    def write(self, data, offset: int) -> None:
        """Write `data` (bytes or a part's Pieces) at `offset`: its aligned head past the
        cache, the rest (a file's last bytes) through it."""
        dfd = self.direct
        n = len(data)
        head = n - n % ALIGN
        if dfd is None or offset % ALIGN or not head or n > STAGING:
            write_at(self.fd, data, offset)
            return
        buf = _staging(n)
        at = 0
        for piece in as_pieces(data):
            k = len(piece)
            buf[at:at + k] = piece
            at += k
        try:
            with memoryview(buf) as whole:
                done = 0
                while done < head:
                    done += os.pwrite(dfd, whole[done:head], offset + done)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            self._drop(e)  # this device wants more alignment than we give: the cache, then
            write_at(self.fd, data, offset)
            return
        if head < n:
            with memoryview(buf) as whole:
                write_at(self.fd, whole[head:n], offset + head)

    def read_into(self, view: memoryview, offset: int) -> int:
        """Read up to len(view) bytes at `offset` into `view`; returns how many (fewer only at
        the end of the file)."""
        dfd = self.direct
        n = len(view)
        if dfd is None or offset % ALIGN or n > STAGING:
            return os.preadv(self.fd, [view], offset)
        if cached(self.fd, offset, n):
            # a part the page cache holds already (a file written through it, or read
            # lately) is copied from there, which costs a third of reading it past the
            # cache (measured: 0.11 vs 0.21-0.33 CPU ms/MB); one that is not there (a file
            # we downloaded with O_DIRECT) is read past it, and not pulled into it
            reads["cache"] += 1
            return os.preadv(self.fd, [view], offset)
        reads["direct"] += 1
        want = n + (-n % ALIGN)
        buf = _staging(want)
        try:
            with memoryview(buf) as whole:
                got = os.preadv(dfd, [whole[:want]], offset)
                got = min(got, n)
                view[:got] = whole[:got]
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            self._drop(e)
            return os.preadv(self.fd, [view], offset)
        return got

    def write_if_open(self, data, offset: int) -> bool:
        """`write`, from any thread, unless the file is closed (or closing: close waits for
        it); False then, and on an error, which the caller's own write will meet again."""
        with self._lock:
            if self.closed:
                return False
            try:
                self.write(data, offset)
            except OSError:
                return False
            return True

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            dfd, self.direct = self.direct, None
            try:
                if dfd is not None:
                    os.close(dfd)
            finally:
                os.close(self.fd)
