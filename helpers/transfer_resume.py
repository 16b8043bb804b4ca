"""Resuming a download: the sidecar of finished parts beside its target.

A restart (cancel, crash, deploy) fetches only the parts the sidecar does not list; a part is
listed only after its bytes are written, so a part lost from it is fetched again, never wrongly
skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

SIDECAR_SUFFIX = ".parts"


def sidecar_path(path: str | os.PathLike) -> str:
    """Where a download keeps its list of finished parts."""
    return os.fspath(path) + SIDECAR_SUFFIX


def remove_partial(path: str | os.PathLike) -> None:
    """Remove a download's target and its sidecar (a cancelled job that will not resume)."""
    for p in (os.fspath(path), sidecar_path(path), sidecar_path(path) + ".tmp"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(p)


class Sidecar:
    """A bitmap of finished parts next to the target, replaced atomically, so a restart
    re-fetches only what is missing. Saved at most once a second and on exit: a part lost
    from it is merely fetched again, never wrongly skipped (a bit is set only after its bytes
    are written)."""

    SAVE_EVERY_S = 1.0

    def __init__(self, path: str, key: str, size: int, part: int, parts: int):
        self.path = sidecar_path(path)
        self.key, self.size, self.part, self.parts = key, size, part, parts
        self.bits = bytearray((parts + 7) // 8)
        self.done = 0
        self.saved_at = 0.0
        self.dirty = False

    def has(self, i: int) -> bool:
        return bool(self.bits[i >> 3] & (1 << (i & 7)))

    def mark(self, i: int) -> None:
        if not self.has(i):
            self.bits[i >> 3] |= 1 << (i & 7)
            self.done += 1
            self.dirty = True
        if time.monotonic() - self.saved_at >= self.SAVE_EVERY_S:
            self.save()

    def load(self, target: str) -> bool:
        """Adopt the parts a previous run finished, if it was the same file to the same
        target; False (start over) on any doubt."""
        try:
            with open(self.path, encoding="ascii") as f:
                state = json.load(f)
            if (state.get("v") != 1 or state.get("key") != self.key
                    or state.get("size") != self.size or state.get("part") != self.part
                    or os.path.getsize(target) != self.size):
                return False
            bits = bytes.fromhex(state["done"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if len(bits) != len(self.bits):
            return False
        self.bits[:] = bits
        self.done = sum(1 for i in range(self.parts) if self.has(i))
        return True

    def save(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            json.dump({"v": 1, "key": self.key, "size": self.size, "part": self.part,
                       "done": self.bits.hex()}, f)
        os.replace(tmp, self.path)
        self.saved_at = time.monotonic()
        self.dirty = False

    def remove(self) -> None:
        for p in (self.path, self.path + ".tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(p)
