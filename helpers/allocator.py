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
import logging
import os
import platform

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
MMAP_THRESHOLD = 128 * 1024
# The largest buffer the transfer paths keep (a received piece, an encrypted chunk) that still
# comes from the heap under the pinned threshold, with room for an object's header; a
# multiple of 16 (AES blocks).
HEAP_BLOCK = 112 * 1024


def pin_mmap_threshold(nbytes: int = MMAP_THRESHOLD) -> bool:
    """Pin glibc's mmap threshold; True when set. A no-op (False) off glibc, and when the
    operator chose a threshold already (MALLOC_MMAP_THRESHOLD_ or GLIBC_TUNABLES)."""
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
    return ok
