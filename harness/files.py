"""Files for transfers: random bytes written without holding them, their digests, disk use.

Units: MB = 1,000,000 bytes (file sizes, throughput), MiB = 2**20 bytes (RSS, MEMORY_LIMIT_MB).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

MB = 1000 * 1000
MIB = 1024 * 1024
FREE_UPLOAD_LIMIT = 2000 * MIB  # 4000 parts of 512 KiB: what a free account (and a bot) may send


def _write(path, size: int, digest, fsync: bool) -> None:
    with open(path, "wb") as f:
        left = size
        while left > 0:
            chunk = os.urandom(min(left, MB))
            if digest is not None:
                digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
        if fsync:  # a benchmark reads it back from disk, not from the page cache's dirty pages
            f.flush()
            os.fsync(f.fileno())


def write_random(path, size: int, *, fsync: bool = False) -> Path:
    """A file of random bytes, written 1 MB at a time (never whole in memory)."""
    _write(path, size, None, fsync)
    return Path(path)


def write_random_hashed(path, size: int) -> str:
    """write_random, and the sha256 of what was written (no second read)."""
    h = hashlib.sha256()
    _write(path, size, h, False)
    return h.hexdigest()


def file_digest(path) -> str:
    """sha256 of a file, read 4 MB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MB):
            h.update(chunk)
    return h.hexdigest()


def disk_usage(path: Path) -> int:
    """Bytes allocated under path (st_blocks), tolerant of files vanishing mid-walk."""
    total = 0
    stack = [str(path)]
    while stack:
        with contextlib.suppress(OSError):
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    with contextlib.suppress(OSError):
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
    return total
