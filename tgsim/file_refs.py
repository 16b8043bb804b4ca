"""File references that expire and remember where they were handed out, as Telegram's do.

core.telegram.org/api/file_reference: every document and photo carries a `file_reference`;
Telegram rotates it, and a stale one is answered FILE_REFERENCE_EXPIRED on upload.getFile and
on re-sending by reference with messages.sendMedia (FILE_REFERENCE_%d_EXPIRED, with the
item's index, on messages.sendMultiMedia). The client must refetch the object from the
"origin context" it came from (the message) to get a fresh one. tgsim binds each reference to
the channel it was handed out in, so media seen in a chat with protected content cannot be
re-sent by reference, as it cannot be forwarded (core.telegram.org/api/content-protection:
protection "disables message forwards and limits the ability to save media").

Here a reference is `02 | epoch (4) | origin channel (8) | mac (8)`: the media's current epoch
advances every `ttl` seconds (or at once through `expire`), and the MAC makes a reference that
tgsim never issued, or one for another media, FILE_REFERENCE_INVALID rather than EXPIRED.
State is one small entry per media the world holds.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import time
from typing import Callable

DEFAULT_TTL_S = 3600.0
_PREFIX = b"\x02"
_BODY = struct.Struct("<Iq")  # epoch, origin channel id (0: a private chat or no message)
_MAC = 8
_LEN = 1 + _BODY.size + _MAC


class FileRefs:
    """The current reference of every media; `ttl` (seconds, 0 = never rotate) may be
    changed at any time and counts from each media's last rotation."""

    def __init__(self, ttl: float = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._secret = os.urandom(16)
        self._state: dict[int, list] = {}  # media id -> [epoch, rotated at]

    def _epoch(self, media_id: int) -> int:
        now = self.clock()
        st = self._state.get(media_id)
        if st is None:
            st = self._state[media_id] = [0, now]
        elif self.ttl and self.ttl > 0 and now - st[1] >= self.ttl:
            periods = int((now - st[1]) // self.ttl)
            st[0] += periods
            st[1] += periods * self.ttl
        return st[0]

    def _mac(self, media_id: int, body: bytes) -> bytes:
        return hmac.new(self._secret, struct.pack("<q", media_id) + body,
                        hashlib.sha256).digest()[:_MAC]

    def reference(self, media_id: int, origin: int = 0) -> bytes:
        """The reference a client gets with this media, seen in `origin` (a channel id)."""
        body = _BODY.pack(self._epoch(media_id), origin)
        return _PREFIX + body + self._mac(media_id, body)

    def check(self, media_id: int, ref: bytes) -> tuple[str | None, int]:
        """(error or None, origin channel) for a reference a client sent back."""
        ref = bytes(ref or b"")
        if not ref:
            return "FILE_REFERENCE_EMPTY", 0
        if len(ref) != _LEN or ref[:1] != _PREFIX:
            return "FILE_REFERENCE_INVALID", 0
        body = ref[1:1 + _BODY.size]
        if not hmac.compare_digest(ref[1 + _BODY.size:], self._mac(media_id, body)):
            return "FILE_REFERENCE_INVALID", 0
        epoch, origin = _BODY.unpack(body)
        if epoch != self._epoch(media_id):
            return "FILE_REFERENCE_EXPIRED", origin
        return None, origin

    def expire(self, media_id: int) -> None:
        """Rotate the media's reference now: every reference handed out so far is stale
        (a test hook, besides the TTL)."""
        self._epoch(media_id)
        st = self._state[media_id]
        st[0] += 1
        st[1] = self.clock()


def checked(call, media, ref: bytes, index: int | None = None) -> int:
    """The origin channel of a reference sent in an RPC, or the RpcFail Telegram answers:
    FILE_REFERENCE_EXPIRED (FILE_REFERENCE_<index>_EXPIRED in a multi-media call)."""
    from tgsim.server import RpcFail  # here: the server imports the world, which imports us

    error, origin = media.refs.check(media.id, ref) if media.refs else (None, 0)
    if error is None:
        return origin
    call.sim.stats[error.lower()] += 1
    if index is not None:
        error = error.replace("FILE_REFERENCE_", f"FILE_REFERENCE_{index}_", 1)
    raise RpcFail(400, error)
