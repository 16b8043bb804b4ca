"""glibc malloc tuned for a process that moves a stream of large, short-lived buffers.

glibc serves a block of at least M_MMAP_THRESHOLD (128 KiB at start) from its own mapping,
returned to the OS on free, but each time such a block is freed it raises the threshold to
that block's size (up to 32 MiB). After the first transfer every part buffer (256 KiB
received, decrypted, written, then freed) therefore comes from the heaps of the main and
the threads' arenas instead, and the holes they leave between longer-lived small objects
stay resident. bench/memory_profile.py --quick measured it: the bot idle with 5 live
sessions at 99.4 MiB before three 128 MB transfers and 116.2 MiB a minute after them
(+16.4 MiB; +22 with the default threshold and +15.2 with MALLOC_ARENA_MAX=2 alone), against
+2.4 MiB with the threshold pinned at 128 KiB, and the peak under load went from 130 to
112 MiB. Setting the threshold explicitly also turns glibc's dynamic raise off.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
MMAP_THRESHOLD = 128 * 1024


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
