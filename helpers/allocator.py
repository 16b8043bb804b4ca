"""glibc malloc tuned for a process that moves a stream of large, short-lived buffers.

glibc serves a block of at least M_MMAP_THRESHOLD (128 KiB at start) from its own mapping,
returned to the OS on free, but each time such a block is freed it raises the threshold to
that block's size (up to 32 MiB). After the first transfer every part buffer (256 KiB
received, decrypted, written, then freed) therefore comes from the heaps of the main and
the threads' arenas instead, and the holes they leave between longer-lived small objects
stay resident. bench/memory_profile.py --big-mb 512 --small-mb 128 (20 live sessions) measured
it: 12.3 MiB still held a minute after the load with the dynamic threshold, 3.6 MiB with it
pinned at 128 KiB, and the peak under load 143.2 MiB against 126.9 (--quick: +16.4 against
+2.4; MALLOC_ARENA_MAX=2 alone: +15.2). Setting the threshold also turns the dynamic raise off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
import sys
from typing import Any

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
M_TRIM_THRESHOLD = -1
MMAP_THRESHOLD = 128 * 1024
# Free memory at the top of a heap that is kept for the next allocation rather than handed
# back at once. A download's plaintext, ten heap blocks a part, is freed and taken again every
# part; given back each time (glibc's 128 KiB), the next part faults most of its pages in again,
# which on a VM whose host takes freed pages back is 0.2-0.4 CPU ms per MB (a 256 MB
# download, interleaved runs: 6.87 against 6.48-6.64). Transfers call trim() once idle, so
# this is held only while they run.
TRIM_THRESHOLD = 2 * 1024 * 1024
# The largest buffer the transfer paths keep (a received piece, an encrypted chunk) that still
# comes from the heap under the pinned threshold, with room for an object's header; a
# multiple of 16 (AES blocks).
HEAP_BLOCK = 112 * 1024


def pin_mmap_threshold(nbytes: int = MMAP_THRESHOLD) -> bool:
    """Pin glibc's mmap threshold, and set its trim threshold; True when the first is set.
    A no-op (False) off glibc, and when the operator chose a threshold already
    (MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ or GLIBC_TUNABLES)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "mmap_threshold" in os.environ.get(
            "GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, int(nbytes)))
    log.debug("mallopt(M_MMAP_THRESHOLD, %d): %s", nbytes, ok)
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ and "trim_threshold" not in os.environ.get(
            "GLIBC_TUNABLES", ""):
        trimmed = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        log.debug("mallopt(M_TRIM_THRESHOLD, %d): %s", TRIM_THRESHOLD, trimmed)
    return ok


_MALLOC_TRIM_UNSET = object()
_malloc_trim_fn: Any = _MALLOC_TRIM_UNSET


def trim() -> bool | None:
    """Return glibc's freed heap pages to the OS; CPython's gc alone rarely lowers RSS.

    Returns True/False from malloc_trim, or None where it does not exist (musl, macOS).
    """
    global _malloc_trim_fn
    if _malloc_trim_fn is _MALLOC_TRIM_UNSET:
        _malloc_trim_fn = None
        if sys.platform.startswith("linux"):
            for lib in ("libc.so.6", ctypes.util.find_library("c")):
                if not lib:
                    continue
                try:
                    fn = ctypes.CDLL(lib).malloc_trim
                except (OSError, AttributeError):
                    continue
                fn.argtypes = [ctypes.c_size_t]
                fn.restype = ctypes.c_int
                _malloc_trim_fn = fn
                break
    if _malloc_trim_fn is None:
        return None
    try:
        return bool(_malloc_trim_fn(0))
    except Exception:  # pragma: no cover - defensive: never let trimming kill a relief
        return None
