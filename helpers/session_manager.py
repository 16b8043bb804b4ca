"""Live user clients: at most MAX_SESSIONS connected, least recently used evicted first.

A user client exists only to read messages and files the bot cannot reach, so it is built
lean (in-memory storage, no updates, one worker, tiny caches, no reply/topic/story fetching)
and closed as soon as it has been idle for SESSION_IDLE_S. A client lent to a transfer is
never evicted: when every slot is busy, the next job waits here for one to free up.

Stopping a pyrogram client stops its main and media sessions but not the per-DC sessions it
opens to fetch files stored on other DCs (``client.sessions``); ``_close`` stops those too, or
each eviction would leak a connection and a reader task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable

from pyrogram import Client, errors, raw

from helpers import peers
from helpers.client_adapter import stop_dc_sessions
from helpers.queue_manager import JobError
from helpers.secrets import SecretKeyError, SessionCipher
from helpers.telegram_server import client_options
from helpers.tasks import cancel_and_wait

log = logging.getLogger("sessions")

# The account's authorisation is gone on Telegram's side: only a new /login helps.
AUTH_GONE = (errors.AuthKeyUnregistered, errors.AuthKeyDuplicated, errors.SessionRevoked,
             errors.UserDeactivated, errors.UserDeactivatedBan, errors.AuthKeyInvalid,
             errors.SessionExpired)

_REASONS = {
    "AuthKeyUnregistered": "your Telegram session is no longer valid (it was logged out or "
                           "terminated from another device)",
    "AuthKeyDuplicated": "Telegram saw your session used from two places at once and "
                         "invalidated it",
    "SessionRevoked": "your Telegram session was terminated (from Settings > Devices, or by "
                      "logging out everywhere)",
    "SessionExpired": "your Telegram session expired",
    "AuthKeyInvalid": "your Telegram session is no longer valid",
    "UserDeactivated": "your Telegram account was deleted or deactivated",
    "UserDeactivatedBan": "your Telegram account was banned by Telegram",
}


def gone_reason(exc: BaseException) -> str:
    return _REASONS.get(type(exc).__name__, "your Telegram session is no longer valid")


class NotLoggedIn(JobError):
    """The job needs the user's own account and there is none stored."""


class SessionGone(JobError):
    """The stored session was refused by Telegram; it has been deleted."""


@dataclass(frozen=True)
class LeanOptions:
    """What a read-only user client needs, and nothing more."""

    workers: int = 1
    max_message_cache_size: int = 8
    max_topic_cache_size: int = 8
    max_concurrent_transmissions: int = 2
    sleep_threshold: int = 0  # FloodWait goes to the bot's one policy, not a hidden sleep

    def kwargs(self) -> dict:
        return {
            "workers": self.workers, "no_updates": True, "skip_updates": True,
            "max_message_cache_size": self.max_message_cache_size,
            "max_topic_cache_size": self.max_topic_cache_size,
            "max_concurrent_transmissions": self.max_concurrent_transmissions,
            "sleep_threshold": self.sleep_threshold,
            "fetch_replies": False, "fetch_topics": False, "fetch_stories": False,
            "fetch_stickers": False, "device_model": "Downloader bot reader",
        }


@dataclass
class _Live:
    user_id: int
    client: Client
    refs: int = 0
    last_used: float = field(default_factory=time.monotonic)


class SessionManager:
    # How long a user's client may take to connect and start. Telegram answers a key it has
    # dropped with transport error -404, which kurigram 2.2.26 raises in a background task
    # while start() waits on: without a bound the job (and its session slot) hangs for
    # minutes with no word to the user.
    start_timeout_s = 60.0

    def __init__(self, db, cipher: SessionCipher | None, *, api_id: int, api_hash: str,
                 server: tuple[str, int] | None = None, server_key: str | None = None,
                 max_sessions: int = 5, idle_s: float = 600, lean: LeanOptions = LeanOptions(),
                 rss_mb: Callable[[], float] | None = None,
                 admission: Callable[[], Awaitable[bool]] | None = None,
                 before_close: Callable[[Client], Awaitable[None]] | None = None):
        if max_sessions < 1:
            raise ValueError("max_sessions must be >= 1")
        self.db = db
        self.cipher = cipher
        self.api_id, self.api_hash = api_id, api_hash
        self.server, self.server_key = server, server_key
        self.max_sessions = int(max_sessions)
        self.idle_s = float(idle_s)
        self.lean = lean
        self._rss_mb = rss_mb or (lambda: 0.0)
        self._admission = admission
        self._before_close = before_close
        self._live: OrderedDict[int, _Live] = OrderedDict()  # oldest use first
        self._starting: set[int] = set()
        self._cond = asyncio.Condition()
        self._reaper: asyncio.Task | None = None
        self._closed = False
        self._peers_lock = asyncio.Lock()
        self.created_count = 0
        self.evicted_count = 0
        self.peak_live = 0

    # ------------------------------------------------------------------ state

    @property
    def live_count(self) -> int:
        return len(self._live)

    @property
    def busy_count(self) -> int:
        return sum(1 for e in self._live.values() if e.refs)

    def is_live(self, user_id: int) -> bool:
        return int(user_id) in self._live

    def describe(self, limit: int = 50) -> list[dict]:
        """Rows for the status page (user ids are masked there without METRICS_TOKEN)."""
        now = time.monotonic()
        return [{"user_id": e.user_id, "busy": e.refs > 0, "idle_s": round(now - e.last_used)}
                for e in list(self._live.values())[:limit]]

    @property
    def enabled(self) -> bool:
        return self.cipher is not None

    async def has_session(self, user_id: int) -> bool:
        return await self.db.load_session(user_id) is not None

    # ------------------------------------------------------------------ lending

    @contextlib.asynccontextmanager
    async def use(self, user_id: int,
                  on_wait: Callable[[str], Awaitable[None]] | None = None
                  ) -> AsyncIterator[Client]:
        """Lend the user's client for the body; a refusal of the session inside the body
        deletes it and becomes SessionGone, so the job fails with that reason."""
        user_id = int(user_id)
        entry = await self._acquire(user_id, on_wait)
        try:
            yield entry.client
        except AUTH_GONE as e:
            await self.drop(user_id, gone_reason(e))
            raise SessionGone(f"{gone_reason(e).capitalize()}. Send /login to log in "
                              "again.") from None
        finally:
            async with self._cond:
                entry.refs -= 1
                entry.last_used = time.monotonic()
                self._cond.notify_all()

    async def _acquire(self, user_id: int, on_wait) -> _Live:
        told = False
        while True:
            victim = None
            async with self._cond:
                if self._closed:
                    raise JobError("The bot is shutting down; your job will resume after "
                                   "the restart.")
                entry = self._live.get(user_id)
                if entry is not None:
                    entry.refs += 1
                    self._live.move_to_end(user_id)
                    return entry
                if user_id not in self._starting:
                    if len(self._live) + len(self._starting) < self.max_sessions:
                        self._starting.add(user_id)
                        break
                    victim = self._oldest_idle()
                    if victim is not None:
                        del self._live[victim.user_id]
                        self._starting.add(user_id)
                        break
                if not told and on_wait is not None and user_id not in self._starting:
                    told = True
                    busy = len(self._live) + len(self._starting)
                    with contextlib.suppress(Exception):
                        await on_wait(f"waiting for a free session slot ({busy} of "
                                      f"{self.max_sessions} busy)")
                await self._cond.wait()
        try:
            if victim is not None:
                self.evicted_count += 1
                await self._close(victim, "evicted for another user")
            entry = await self._start(user_id)
        except BaseException:
            async with self._cond:
                self._starting.discard(user_id)
                self._cond.notify_all()
            raise
        async with self._cond:
            self._starting.discard(user_id)
            entry.refs = 1
            self._live[user_id] = entry
            self.peak_live = max(self.peak_live, len(self._live))
            self._cond.notify_all()
        self.created_count += 1
        log.info("Session Created: user %s (live %d/%d, RSS %.1f MB)", user_id,
                 len(self._live), self.max_sessions, self._rss_mb())
        return entry

    def _oldest_idle(self) -> _Live | None:
        for entry in self._live.values():
            if entry.refs == 0:
                return entry
        return None

    async def _start(self, user_id: int) -> _Live:
        if self.cipher is None:
            raise NotLoggedIn("Private chats need your own account, and logins are disabled "
                              "on this bot (the operator has not set SESSION_KEY).")
        blob = await self.db.load_session(user_id)
        if blob is None:
            raise NotLoggedIn("That chat is private or protected: log in with /login so I "
                              "can read it through your account.")
        try:
            session_string = self.cipher.decrypt(blob)
        except SecretKeyError:
            await self.db.delete_session(user_id)
            raise SessionGone("Your stored session could not be decrypted (the bot's key "
                              "changed). Send /login to log in again.") from None
        if self._admission is not None:
            while not await self._admission():
                await asyncio.sleep(1.0)
        client = self.new_client(f"reader{user_id}", session_string)
        del session_string
        try:
            await self._start_bounded(client)
        except AUTH_GONE as e:
            await self._stop_client(client)
            await self.db.delete_session(user_id)
            raise SessionGone(f"{gone_reason(e).capitalize()}. Send /login to log in "
                              "again.") from None
        except BaseException:
            await self._stop_client(client)
            raise
        await self.db.touch_session(user_id)
        try:
            await peers.install(client, await self._stored_peers(user_id))
        except Exception:  # noqa: BLE001 - without them the job scans dialogs, no worse
            log.warning("could not load the kept peers of user %s", user_id, exc_info=True)
        return _Live(user_id, client)

    async def _start_bounded(self, client: Client) -> None:
        """client.start(), or JobError after start_timeout_s. The start runs as its own task
        and is never awaited past the bound: a start stuck inside the library may not end on
        a cancel at once, and closing the client (the caller's job) is what ends it."""
        task = asyncio.ensure_future(client.start())
        try:
            done, _ = await asyncio.wait({task}, timeout=self.start_timeout_s)
        except BaseException:
            task.cancel()
            raise
        if not done:
            task.cancel()
            task.add_done_callback(_consume)
            raise JobError("Telegram did not answer while I was opening your session. "
                           "Please send the link again in a few minutes.")
        task.result()

    # ------------------------------------------------------------------ peers

    async def _stored_peers(self, user_id: int) -> list[peers.Row]:
        blob = await self.db.load_session_peers(user_id)
        if blob is None or self.cipher is None:
            return []
        try:
            return peers.unpack(self.cipher.decrypt(blob, peers.aad(user_id)))
        except SecretKeyError:
            return []  # only a cache: the next remember() writes a good one

    async def remember(self, user_id: int, client: Client, peer_ids) -> None:
        """Keep the access hashes `client` holds for `peer_ids` (most recent first, capped)
        beside the user's session, so its next cold start needs no dialog scan."""
        if self.cipher is None:
            return
        user_id = int(user_id)
        try:
            rows = await peers.export(client, peer_ids)
            if not rows:
                return
            async with self._peers_lock:
                old = await self._stored_peers(user_id)
                merged = peers.merge(old, rows)
                if merged != old:
                    blob = self.cipher.encrypt(peers.pack(merged), peers.aad(user_id))
                    await self.db.save_session_peers(user_id, blob)
        except Exception:  # noqa: BLE001 - a cache write must not fail the job
            log.warning("could not keep the peers of user %s", user_id, exc_info=True)

    def new_client(self, name: str, session_string: str | None = None) -> Client:
        """A lean client; the login conversation uses it too, with no session yet."""
        opts = client_options(name, self.server, self.server_key, session_string)
        if "storage_engine" not in opts and not session_string:
            opts["in_memory"] = True
        return Client(name, api_id=self.api_id, api_hash=self.api_hash,
                      **opts, **self.lean.kwargs())

    # ------------------------------------------------------------------ closing

    async def _close(self, entry: _Live, reason: str) -> None:
        await self._stop_client(entry.client)
        log.info("Session Disconnected: user %s, %s (live %d/%d, RSS %.1f MB)", entry.user_id,
                 reason, len(self._live), self.max_sessions, self._rss_mb())

    async def _stop_client(self, client: Client) -> None:
        if self._before_close is not None:
            with contextlib.suppress(Exception):
                await self._before_close(client)
        try:
            if client.is_initialized:
                await client.stop()
            elif client.is_connected:
                await client.disconnect()
        except Exception:  # noqa: BLE001 - the connection may already be dead
            log.debug("client stop failed", exc_info=True)
        finally:
            await stop_dc_sessions(client)

    async def drop(self, user_id: int, reason: str) -> None:
        """Forget a session Telegram refused: close the client (once idle) and delete it."""
        user_id = int(user_id)
        await self.db.delete_session(user_id)
        entry = self._live.get(user_id)
        if entry is not None:
            # Other jobs may still hold it; they fail on their next call the same way.
            async with self._cond:
                self._live.pop(user_id, None)
                self._cond.notify_all()
            await self._close(entry, f"dropped: {reason}")
        log.warning("Session of user %s dropped: %s", user_id, reason)

    async def logout(self, user_id: int) -> bool:
        """Revoke the session on Telegram (auth.logOut) and delete it; True if one existed."""
        user_id = int(user_id)
        blob = await self.db.load_session(user_id)
        if blob is None:
            return False
        entry = self._live.get(user_id)
        async with self._cond:
            self._live.pop(user_id, None)
            self._cond.notify_all()
        client = entry.client if entry is not None else None
        try:
            if client is None and self.cipher is not None:
                client = self.new_client(f"logout{user_id}", self.cipher.decrypt(blob))
                await client.connect()
            if client is not None:
                # Not client.log_out(): it insists on stopping an initialised client.
                await client.invoke(raw.functions.auth.LogOut())
        except (SecretKeyError, *AUTH_GONE):
            pass  # already unusable on one side or the other: deleting it is enough
        except Exception:  # noqa: BLE001 - never keep a session the user asked to remove
            log.warning("logout of user %s: server call failed", user_id, exc_info=True)
        finally:
            if client is not None:
                await self._stop_client(client)
            await self.db.delete_session(user_id)
        log.info("Session Disconnected: user %s, logged out (live %d/%d, RSS %.1f MB)",
                 user_id, len(self._live), self.max_sessions, self._rss_mb())
        return True

    async def evict_idle(self, older_than: float = 0.0) -> int:
        """Close clients nobody is using (idle at least `older_than` s); returns how many."""
        now = time.monotonic()
        async with self._cond:
            victims = [e for e in self._live.values()
                       if e.refs == 0 and now - e.last_used >= older_than]
            for e in victims:
                del self._live[e.user_id]
            self._cond.notify_all()
        for e in victims:
            self.evicted_count += 1
            await self._close(e, "idle" if older_than else "evicted to free memory")
        return len(victims)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap(), name="session-reaper")

    async def _reap(self) -> None:
        period = max(0.5, min(30.0, self.idle_s / 4))
        while True:
            await asyncio.sleep(period)
            try:
                await self.evict_idle(self.idle_s)
            except Exception:  # noqa: BLE001 - the reaper must outlive one bad close
                log.exception("session reaper failed")

    async def stop(self) -> None:
        self._closed = True
        if self._reaper is not None:
            reaper, self._reaper = self._reaper, None
            await cancel_and_wait(reaper)
        async with self._cond:
            entries = list(self._live.values())
            self._live.clear()
            self._cond.notify_all()
        for e in entries:
            await self._close(e, "shutdown")


def _consume(task: asyncio.Future) -> None:
    """Read a finished task's outcome, so an abandoned start logs no 'never retrieved'."""
    if not task.cancelled():
        task.exception()
