"""Pooled media connections, per client and DC, shared by all that client's transfers.

The library keeps one media session per DC, which is what limits its transfers; here up to P of
our own per client and DC (`max_connections`), opened as a transfer needs them, reused by the
next one, kept warm for `idle_close_s` (minutes: a foreign DC's connection costs a handshake,
never an export, since every connection shares the key the library authorized once there) and
closed by us. A connection that broke, went silent or served a failed transfer is doomed: it
takes no new request and is closed when its last one has come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Any, Awaitable, Callable

from pyrogram import errors, raw

from helpers import client_adapter as adapter
from helpers.client_adapter import Broken
from helpers.tasks import cancel_and_wait
from helpers.transfer_retry import TRANSIENT

log = logging.getLogger("transfer")


class Conn:
    """One pooled media session. `inflight` counts our requests on it."""

    __slots__ = ("pool", "session", "opener", "inflight", "idle_since", "doomed", "unsent",
                 "closing")

    def __init__(self, pool: "Pool", unsent: int):
        self.pool = pool
        # requests packed but not yet on the wire: a request takes its bytes from disk only
        # when it gets one of these, so what waits in memory is bounded by connection, not
        # by how many parts are in flight (those awaiting an answer hold nothing)
        self.unsent = asyncio.Semaphore(unsent)
        self.session = None
        self.opener: asyncio.Task | None = None
        self.inflight = 0
        self.idle_since = time.monotonic()
        self.doomed = False
        self.closing = False


class Pool:
    """Media sessions of one client to one DC, plus the FloodWait pause they share."""

    def __init__(self, client, dc_id: int, cdn: bool = False):
        self.client = client
        self.dc_id = dc_id
        self.cdn = cdn  # a CDN DC: its own unauthorized key, upload.getCdnFile only
        self.conns: list[Conn] = []
        self.flood_until = 0.0
        self.info_lock = asyncio.Lock()


class Job:
    """One transfer: where it fetches from and which connections it touched."""

    def __init__(self, client, dc_id: int, connections: int, cdn: bool = False):
        self.client = client
        self.dc_id = dc_id
        self.connections = connections
        self.cdn = cdn
        self.used: set[Conn] = set()
        self.floods = 0  # 420s met by all parts of this transfer


def consume(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


class Pools:
    START_TIMEOUT_S = 10.0  # a media session that is not up in this long is given up
    # requests built and waiting for the wire, per connection: two, so the next part is read
    # and encrypted while one is on the wire (one left the link idle during every pack)
    UNSENT_PER_CONNECTION = 2

    def __init__(self, max_connections: int, idle_close_s: float):
        self.max_connections = max_connections
        self.idle_close_s = idle_close_s
        self._pools: dict[tuple[int, int], Pool] = {}
        self._closing: set[asyncio.Task] = set()
        self._reaper: asyncio.Task | None = None
        # (address, port, test_mode) per client and DC: help.getConfig once, not per connection
        self._dc_info: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def count(self, client=None) -> int:
        return sum(len(p.conns) for p in self._pools.values()
                   if client is None or p.client is client)

    def get(self, client, dc_id: int, cdn: bool = False) -> Pool:
        key = (id(client), dc_id)
        pool = self._pools.get(key)
        if pool is None or pool.client is not client:
            pool = self._pools[key] = Pool(client, dc_id, cdn)
        return pool

    async def invoke(self, job: Job, make_query: Callable[[], Awaitable[Any]],
                     timeout: float):
        """One request on the least busy connection of the job's DC. If that connection
        stops or restarts under the request, whose answer then never comes, the adapter
        raises Broken at once (no task or timer per request watches it)."""
        pool = self.get(job.client, job.dc_id, job.cdn)
        conn = self._acquire(pool, job)
        slot = False

        def sent() -> None:
            nonlocal slot
            if slot:
                slot = False
                conn.unsent.release()

        try:
            session = await self._ready(conn)
            await conn.unsent.acquire()
            slot = True
            try:
                return await adapter.send(session, await make_query(), timeout, sent)
            except TimeoutError:
                self.doom(conn)  # silent for the part timeout: do not trust it again
                raise
        finally:
            sent()
            self._release(conn)

    def _acquire(self, pool: Pool, job: Job) -> Conn:
        """An idle connection, else a new one while the job's P allows, else the least busy."""
        live = [c for c in pool.conns if not c.doomed]
        best = min(live, key=lambda c: c.inflight) if live else None
        if best is None or (best.inflight > 0 and len(live) < min(job.connections,
                                                                   self.max_connections)):
            best = Conn(pool, self.UNSENT_PER_CONNECTION)
            pool.conns.append(best)
            best.opener = asyncio.ensure_future(self._open(best))
            best.opener.add_done_callback(consume)
            self._ensure_reaper()
        best.inflight += 1
        job.used.add(best)
        return best

    def _release(self, conn: Conn) -> None:
        conn.inflight -= 1
        if conn.inflight == 0:
            conn.idle_since = time.monotonic()
            if conn.doomed:
                self._close_later(conn)

    def doom(self, conn: Conn, force: bool = False) -> None:
        if not conn.doomed:
            conn.doomed = True
            with contextlib.suppress(ValueError):
                conn.pool.conns.remove(conn)
            if conn.inflight == 0 or force:
                self._close_later(conn)

    def _close_later(self, conn: Conn) -> None:
        if conn.closing:
            return
        conn.closing = True
        task = asyncio.ensure_future(self._close(conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, conn: Conn) -> None:
        if conn.opener is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(conn.opener), self.START_TIMEOUT_S)
        session, conn.session = conn.session, None
        if session is not None:
            try:
                await asyncio.wait_for(adapter.stop(session), 10)
            except Exception as e:  # noqa: BLE001 - a connection that will not close cleanly
                log.debug("media session stop: %r", e)

    async def wait_closing(self, timeout: float | None) -> None:
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=timeout)

    async def _ready(self, conn: Conn):
        try:
            await asyncio.shield(conn.opener)
        except errors.Unauthorized:
            self.doom(conn)
            raise
        except (asyncio.CancelledError, Exception) as e:
            if isinstance(e, asyncio.CancelledError) and not conn.opener.done():
                raise  # we were cancelled, not the opener
            self.doom(conn)
            if isinstance(e, errors.RPCError) and not isinstance(e, TRANSIENT):
                raise
            raise Broken(f"media session did not start: {e!r}") from e
        session = conn.session
        if session is None:
            raise Broken("media session closed")
        if not adapter.is_up(session):
            try:
                await adapter.wait_up(session, self.START_TIMEOUT_S)
            except asyncio.TimeoutError:
                self.doom(conn)
                raise Broken("media session did not come back") from None
        return session

    async def _open(self, conn: Conn) -> None:
        pool = conn.pool
        client = pool.client
        if pool.cdn:
            conn.session = session = await self._cdn_session(pool)
            await session.start()
            return
        async with pool.info_lock:
            known = self._dc_info.setdefault(client, {})
            if pool.dc_id not in known:
                option = await adapter.dc_option(client, pool.dc_id, is_media=True)
                known[pool.dc_id] = (option.ip_address, option.port)
        address, port = known[pool.dc_id]
        # no export here: on a foreign DC every connection shares the key the library
        # authorized there once (core.telegram.org/api/datacenter); exporting per connection
        # floods (tgsim/file_limits.py)
        conn.session = await adapter.open_media_session(client, pool.dc_id, address, port)

    async def _cdn_session(self, pool: Pool):
        """One key per client and CDN DC, made once (core.telegram.org/cdn)."""
        from helpers.cdn import trust_cdn_keys

        client = pool.client
        async with pool.info_lock:
            known = self._dc_info.setdefault(client, {})
            entry = known.get(("cdn", pool.dc_id))
            if entry is None:
                trust_cdn_keys(await client.invoke(raw.functions.help.GetCdnConfig()))
                option = await adapter.dc_option(client, pool.dc_id, is_cdn=True)
                if not option.cdn:
                    raise Broken(f"no CDN DC{pool.dc_id} in help.getConfig")
                test_mode = await adapter.is_test_mode(client)
                session, key = await adapter.open_cdn_session(
                    client, pool.dc_id, option.ip_address, option.port, test_mode, None)
                known[("cdn", pool.dc_id)] = (option.ip_address, option.port, test_mode, key)
                return session
        address, port, test_mode, key = entry
        session, _ = await adapter.open_cdn_session(client, pool.dc_id, address, port,
                                                    test_mode, key)
        return session

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.ensure_future(self._reap())

    async def _reap(self) -> None:
        """Close connections idle longer than idle_close_s; ends when the pool is empty."""
        every = max(0.05, min(self.idle_close_s / 2, 10.0))
        while any(p.conns for p in self._pools.values()):
            await asyncio.sleep(every)
            now = time.monotonic()
            for key, pool in list(self._pools.items()):
                for conn in list(pool.conns):
                    if (conn.inflight == 0 and conn.opener is not None and conn.opener.done()
                            and now - conn.idle_since >= self.idle_close_s):
                        self.doom(conn)
                if not pool.conns and now >= pool.flood_until:
                    self._pools.pop(key, None)

    async def close_client(self, client) -> None:
        for key, pool in list(self._pools.items()):
            if pool.client is client:
                del self._pools[key]
                for conn in list(pool.conns):
                    self.doom(conn, force=True)
        self._dc_info.pop(client, None)
        await self.wait_closing(None)

    async def close(self) -> None:
        if self._reaper is not None:
            reaper, self._reaper = self._reaper, None
            try:
                await cancel_and_wait(reaper)
            except Exception:  # noqa: BLE001 - closing regardless
                log.exception("transfer reaper failed")
        for pool in list(self._pools.values()):
            for conn in list(pool.conns):
                self.doom(conn, force=True)
        self._pools.clear()
        await self.wait_closing(None)
