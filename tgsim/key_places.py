"""Two rules that matter once a bot runs as several processes.

AUTH_KEY_DUPLICATED (406): "The same authorization key (session file) was used in more than
one place simultaneously" (core.telegram.org/api/errors, 406 NOT_ACCEPTABLE; the client
library's errors list gives that text): Telegram then invalidates the key, and every
request on it gets the error until the user logs in again. One process may open several
connections on one key (its media sessions do); two processes may not. On loopback the
"place" of a connection is the process that owns its client socket (found with psutil);
from elsewhere, its address.

RANDOM_ID_DUPLICATE (400): messages.sendMessage, sendMedia, sendMultiMedia and
forwardMessages carry a random_id, "Unique client message ID required to prevent message
resending" (core.telegram.org/method/messages.sendMedia, /api/updates "updateMessageID"); a
send that repeats one an account already used is refused with RANDOM_ID_DUPLICATE
(core.telegram.org/method/messages.sendMessage, Possible errors) and posts nothing.
"""

from __future__ import annotations

import collections
import logging

import psutil

from tgsim.server import RpcFail

log = logging.getLogger("tgsim")

_LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
RANDOM_IDS_KEPT = 200_000  # per simulator; oldest forgotten first


def place_of(conn) -> str | None:
    """The process (pid:N) or host a connection comes from; None if it cannot be told."""
    cached = getattr(conn, "place", None)
    if cached is not None:
        return cached
    try:
        peer = conn.writer.get_extra_info("peername")
        local = conn.writer.get_extra_info("sockname")
    except Exception:  # noqa: BLE001 - a closed transport
        return None
    if not peer or not local:
        return None
    host, port = peer[0], peer[1]
    if host not in _LOOPBACK:
        conn.place = host
        return host
    try:
        for c in psutil.net_connections("tcp"):
            if c.laddr and c.raddr and c.laddr.port == port and c.raddr.port == local[1]:
                if c.pid is not None:
                    conn.place = f"pid:{c.pid}"
                    return conn.place
    except (psutil.Error, OSError):
        return None
    return None


def check_duplicate(sim, conn) -> None:
    """Called when a connection first presents its key: another live connection on the same
    key from another place kills the key (both sides get AUTH_KEY_DUPLICATED from now on)."""
    auth = conn.auth
    if auth is None or auth.user_id is None:
        return
    others = [c for c in sim.connections
              if c is not conn and not c.closed and c.auth is auth]
    if not others:
        return
    here = place_of(conn)
    if here is None:
        return
    for other in others:
        there = place_of(other)
        if there is not None and there != here:
            auth.duplicated = True
            sim.stats["auth_key_duplicated"] += 1
            sim.duplicated_accounts.add(auth.user_id)
            log.warning("auth key of account %s used from %s and %s at once: "
                        "AUTH_KEY_DUPLICATED", auth.user_id, here, there)
            return


def refuse_if_duplicated(auth) -> None:
    if auth is not None and getattr(auth, "duplicated", False):
        raise RpcFail(406, "AUTH_KEY_DUPLICATED")


def places_by_account(sim) -> dict[int, set[str]]:
    """Account -> the places its live, authorised connections come from (for sampling)."""
    out: dict[int, set[str]] = collections.defaultdict(set)
    for c in list(sim.connections):
        if c.closed or c.auth is None or c.auth.user_id is None:
            continue
        where = place_of(c)
        if where is not None:
            out[c.auth.user_id].add(where)
    return dict(out)


class RandomIds:
    """random_ids each account has sent with, bounded."""

    def __init__(self, cap: int = RANDOM_IDS_KEPT):
        self.cap = cap
        self._seen: collections.OrderedDict[tuple[int, int], None] = collections.OrderedDict()

    def check(self, account: int, random_ids) -> None:
        """Before posting: all or nothing, as the send is."""
        for rid in random_ids:
            if rid is not None and (account, rid) in self._seen:
                raise RpcFail(400, "RANDOM_ID_DUPLICATE")

    def record(self, account: int, random_ids) -> None:
        for rid in random_ids:
            if rid is None:
                continue
            self._seen[(account, rid)] = None
            if len(self._seen) > self.cap:
                self._seen.popitem(last=False)
