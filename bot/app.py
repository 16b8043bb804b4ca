"""Composition root: builds every part, starts them in order and stops them in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
import urllib.parse
from pathlib import Path
from typing import Callable

from pyrogram import Client, enums, types
from pyrogram.types import BotCommand

from bot.config import ConfigError, Settings
from bot.server import WebServer
from bot.startup import StartupError, close_client, login_bot
from helpers import floodwait
from helpers.allocator import pin_mmap_threshold
from helpers.cache import TTLCache
from helpers.catchup import Catchup
from helpers.chat_access import ChatAccess
from helpers.client_adapter import clear_message_cache, message_cache_size
from helpers.database import Database, StorageRefused, StorageUnavailable
from helpers.janitor import Janitor
from helpers.login import LoginDesk
from helpers.logs import register_secret, setup_logging
from helpers.memory_monitor import MemoryMonitor
from helpers.pipeline import Pipeline
from helpers.queue_manager import QueueManager
from helpers.rate_limit import RateLimiter
from helpers.secrets import SecretKeyError, SessionCipher, check_key_against
from helpers.services import (
    AccountService, AdminService, ButtonsService, GateService, JobsService, Services,
    SettingsService,
)
from helpers.session_manager import SessionManager
from helpers.transfer import Transfers
from helpers.telegram_server import client_options

log = logging.getLogger("bot")

_NOTIFY_MAX_WAIT_S = 10.0  # a notice waits out a short flood; the queue bounds it at 15 s

COMMANDS = [
    ("start", "Welcome and how to use the bot"),
    ("help", "Every command and the accepted link forms"),
    ("status", "Your jobs and their places in the queue"),
    ("canceldownload", "Cancel your queued and running jobs"),
    ("batch", "Download a run of messages: /batch <link> <count>"),
    ("login", "Log in with your account to read private and protected chats"),
    ("logout", "Revoke and delete your stored session"),
    ("settings", "Caption, file names, thumbnail and delivery chat"),
]


class App:
    """The running bot. Plugins reach only its services, as `client.services`."""

    def __init__(self, settings: Settings, clock: Callable[[], float] | None = None):
        """clock: the wall clock of what the database stores (job history, daily caps);
        time.time unless a test lives through weeks in seconds."""
        self.settings = settings
        self.clock = clock
        self.started_at = time.time()
        self.db: Database | None = None
        self.bot: Client | None = None
        self.queue: QueueManager | None = None
        self.web: WebServer | None = None
        self.cipher: SessionCipher | None = None
        self.sessions: SessionManager | None = None
        self.logins: LoginDesk | None = None
        self.catchup: Catchup | None = None
        self.services: Services | None = None
        self._tasks: set[asyncio.Task] = set()
        self._bans: TTLCache[int, bool] = TTLCache(maxsize=5000, ttl=60)
        self.rate = RateLimiter(settings.messages_per_minute)
        # token -> (user_id, invite hash, title) behind a Join button
        self.invites: TTLCache[int, tuple[int, str, str]] = TTLCache(maxsize=500, ttl=900)
        self.bytes_transferred = 0
        pin_mmap_threshold()  # part buffers back to the OS when freed (helpers/allocator.py)
        self.monitor = MemoryMonitor(settings.memory_limit_mb, settings.memory_warn_mb,
                                     settings.spike_mb, settings.memory_check_interval)
        self.transfers = Transfers(reserve=self.monitor.try_reserve,
                                   max_connections=settings.transfer_connections,
                                   max_inflight=settings.transfer_parts_in_flight,
                                   upload_inflight=settings.transfer_upload_parts_in_flight,
                                   account_inflight=settings.transfer_account_inflight,
                                   big_files=settings.transfer_big_files,
                                   direct_io=settings.transfer_direct_io)
        self.janitor = Janitor(settings.assets_dir, max_age_s=settings.janitor_max_age_s,
                               owned=self._owned_dirs)
        # user_id -> the text input a settings button asked for (a caption, a name pattern...)
        self.prompts: TTLCache[int, str] = TTLCache(maxsize=1000, ttl=600)
        secret = (settings.session_key or settings.bot_token or "tgsim").encode()
        self._callback_key = hashlib.sha256(b"callback:" + secret).digest()

    # parts ------------------------------------------------------------------------------
    def _make_bot(self) -> Client:
        s = self.settings
        workdir = Path(s.database_path).parent
        workdir.mkdir(parents=True, exist_ok=True)
        opts = client_options("bot", s.telegram_servers, s.telegram_server_key, workdir=workdir,
                              peer_store=self.db)
        # skip_updates: the library would catch up inside start(), before the queue exists and
        # from a state it stores ahead of the handlers; helpers/catchup.py does it instead
        client = Client("bot", api_id=s.api_id, api_hash=s.api_hash, bot_token=s.bot_token,
                        plugins={"root": "plugins"}, workers=8, max_message_cache_size=200,
                        skip_updates=True, **opts)
        client.services = self.services  # all plugins may use (helpers/services.py)
        self.bot = client  # the attempt in flight: stop() closes it if start-up is cut short
        return client

    def _services(self, access: ChatAccess) -> Services:
        """The narrow services plugins get, each holding only what its handlers need."""
        jobs = JobsService(self.db, self.settings, self.catchup)
        return Services(
            gate=GateService(self.is_admin, self.is_banned, self.rate),
            catchup=self.catchup,
            accounts=AccountService(self.db, self.sessions, self.logins, self.monitor.admit,
                                    access, self.invites),
            jobs=jobs,
            buttons=ButtonsService(self.sign, self.verify),
            settings=SettingsService(self.db, self.prompts),
            admin=AdminService(self.db, is_admin=self.is_admin, set_banned=self.set_banned,
                               jobs=jobs, notify=self.notify, spawn=self.spawn,
                               stats=self.stats_text, monitor=self.monitor,
                               fleet=getattr(self, "fleet_text", None)))

    def _make_sessions(self, *args, **kwargs) -> SessionManager:
        """The fleet's roles (bot/fleet.py) put user sessions under a database lease."""
        return SessionManager(*args, **kwargs)

    def _make_queue(self, pipeline: Pipeline) -> QueueManager:
        """The front (bot/fleet.py) admits jobs here and leaves running them to workers."""
        s = self.settings
        return QueueManager(self.db, pipeline.run, max_concurrent=s.max_concurrent_downloads,
                            max_queue=s.max_queue, max_per_user=s.max_jobs_per_user,
                            admission=self.monitor.admit, notify=self.notify,
                            announce_start=False)

    def _owned_dirs(self) -> set[str]:
        return {str(j) for j in (self.queue.active_job_ids() if self.queue else ())}

    def is_admin(self, user_id: int) -> bool:
        return self.settings.is_admin(user_id)

    async def is_banned(self, user_id: int) -> bool:
        """Asked on every message, so answered from a short cache."""
        banned = self._bans.get(user_id)
        if banned is None:
            banned = await self.db.is_banned(user_id)
            self._bans.set(user_id, banned)
        return banned

    async def set_banned(self, user_id: int, banned: bool) -> None:
        await self.db.set_banned(user_id, banned)
        self._bans.set(user_id, banned)

    def spawn(self, coro, name: str) -> asyncio.Task:
        """A background task the app owns: kept referenced, cancelled at stop."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stats_text(self) -> str:
        st = await self.db.stats()
        jobs = st["jobs"]
        return "\n".join([
            f"Users: {st['users']}",
            "Jobs: " + ", ".join(f"{k} {v}" for k, v in jobs.items()),
            f"Bytes transferred: {st['total_bytes'] / 1048576:.1f} MB",
            f"Stored sessions: {st['sessions']}; live {self.sessions.live_count}/"
            f"{self.sessions.max_sessions} (busy {self.sessions.busy_count})",
            f"Queue: {self.queue.waiting} waiting, {self.queue.running} running",
            f"RSS: {self.monitor.rss_mb:.1f} MB (peak {self.monitor.peak_mb:.1f} MB, "
            f"limit {self.settings.memory_limit_mb} MB)",
        ])

    # callback data is signed so a forged or replayed button cannot name another job ----------
    def sign(self, action: str, job_id: int, user_id: int) -> str:
        mac = hmac.new(self._callback_key, f"{action}:{job_id}:{user_id}".encode(), "sha256")
        return f"{action}:{job_id}:{mac.hexdigest()[:16]}"

    def verify(self, data: str, user_id: int) -> tuple[str, int] | None:
        try:
            action, job_s, mac = data.split(":")
            job_id = int(job_s)
        except ValueError:
            return None
        good = self.sign(action, job_id, user_id).rsplit(":", 1)[1]
        return (action, job_id) if hmac.compare_digest(good, mac) else None

    def cancel_markup(self, job: dict) -> types.InlineKeyboardMarkup:
        return types.InlineKeyboardMarkup([[types.InlineKeyboardButton(
            "Cancel", callback_data=self.sign("cancel", job["id"], job["user_id"]))]])

    async def notify(self, user_id: int, text: str) -> None:
        try:
            await floodwait.patiently(lambda: self.bot.send_message(
                user_id, text, parse_mode=enums.ParseMode.DISABLED), "notify",
                max_wait=_NOTIFY_MAX_WAIT_S)
        except floodwait.GaveUp as e:
            log.warning("notify skipped: FloodWait %.0fs", e.seconds)

    async def _count_bytes(self, job_id: int, n: int) -> None:
        self.bytes_transferred += n
        await self.db.add_bytes(job_id, n)

    def status(self) -> dict:
        q = self.queue
        return {
            "sessions_live": self.sessions.live_count if self.sessions else 0,
            "session_evictions": self.sessions.evicted_count if self.sessions else 0,
            "queue_waiting": q.waiting if q else 0,
            "transfers_active": q.running if q else 0,
            "bytes_transferred": self.bytes_transferred,
            "floodwaits": floodwait.STATS.count,
            "sessions": self.sessions.describe() if self.sessions else [],
            "queue": q.describe() if q else [],
            "jobs": {"done": q.done_count, "failed": q.failed_count,
                     "cancelled": q.cancelled_count} if q else {},
        }

    def _caches(self) -> dict:
        return {"prompts": self.prompts, "invites": self.invites, "bans": self._bans}

    def _cache_items(self) -> int:
        return sum(len(c) for c in self._caches().values()) + message_cache_size(self.bot)

    def _trim_caches(self) -> str:
        dropped = sum(c.purge_expired() for c in self._caches().values())
        dropped += len(self._bans)
        self._bans.clear()  # re-read from the DB on demand
        dropped += clear_message_cache(self.bot)  # pyrogram's own: pure convenience
        return f"{dropped} cache entries dropped"

    async def _sweep_orphans(self) -> None:
        """Files of jobs that ended while the bot was down (given up, delivered before a
        crash) go now; a waiting job keeps its folder for the parts it can resume from."""
        keep: set[str] = set()
        async with contextlib.aclosing(
                self.db.iter_jobs_with_status(("queued", "running"))) as rows:
            async for row in rows:
                keep.add(str(row["id"]))
        await asyncio.to_thread(self.janitor.sweep, keep, None, 0)

    async def _evict_sessions(self) -> str:
        return f"{await self.sessions.evict_idle()} idle session(s) closed"

    async def _open_cipher(self) -> None:
        """No key: logins off (public links still work). A bad or wrong key: refuse to start,
        since every stored session would fail at a user's first private link instead."""
        if not self.settings.session_key:
            log.warning("SESSION_KEY is not set: /login is disabled until it is "
                        "(python -m bot genkey prints one)")
            return
        try:
            self.cipher = SessionCipher(self.settings.session_key)
            await check_key_against(self.db, self.cipher)
        except SecretKeyError as e:
            await self.db.close()
            self.db = None
            raise ConfigError(str(e)) from None

    # lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        setup_logging(s.log_file, s.log_level)
        for value in (s.api_hash, s.bot_token, s.session_key, s.metrics_token):
            if value:
                register_secret(value, pinned=True)
        if s.database_url:  # the URL and, in case a driver error quotes it alone, its password
            register_secret(s.database_url, pinned=True)
            register_secret(urllib.parse.urlsplit(s.database_url).password or "", pinned=True)
        try:
            self.db = await Database.open(s.database_url or s.database_path, clock=self.clock)
        except StorageRefused as e:
            raise ConfigError(str(e)) from None
        except StorageUnavailable as e:
            raise StartupError(str(e), 1) from None
        self.janitor.db, self.janitor.history_s = self.db, s.job_history_days * 86400
        await self._open_cipher()
        self.sessions = self._make_sessions(
            self.db, self.cipher, api_id=s.api_id, api_hash=s.api_hash,
            server=s.telegram_servers, server_key=s.telegram_server_key,
            max_sessions=s.max_sessions, idle_s=s.session_idle_s, rss_mb=lambda: self.monitor.rss_mb,
            admission=self.monitor.admit, before_close=self.transfers.close_client)
        self.logins = LoginDesk(self.sessions.new_client, self.db.save_session,
                                lambda: self.cipher)
        # made before the login, whose handlers may run at once and wait for it; its
        # client is the one the login ends with
        self.catchup = Catchup(None, self.db, max_age_s=s.catchup_max_age_s)
        access = ChatAccess(self.sessions)  # one choice of reader, for pipeline and plugins
        self.services = self._services(access)
        self.bot = await login_bot(self._make_bot, retries=s.startup_retries,
                                   attempt_timeout_s=s.startup_timeout_s,
                                   session_file=Path(s.database_path).parent / "bot.session")
        self.catchup.client = self.bot
        log.info("Bot started as @%s", self.bot.me.username)
        await self.bot.set_bot_commands([BotCommand(c, d) for c, d in COMMANDS])
        pipeline = Pipeline(self.bot, self.janitor, self.monitor,
                            progress_interval=s.progress_interval_s,
                            cancel_markup=self.cancel_markup, on_bytes=self._count_bytes,
                            sessions=self.sessions, settings_of=self.db.get_settings,
                            on_delivered=self.db.mark_delivered, transfers=self.transfers,
                            keep_partial=lambda: bool(self.queue and self.queue.stopping),
                            split_bytes=s.split_mb * 1024 * 1024,
                            save_settings=self.db.set_settings, access=access)
        self.queue = self._make_queue(pipeline)
        self.services.jobs.attach_queue(self.queue)
        self.monitor.register_gauge("queue length", lambda: self.queue.waiting)
        self.monitor.register_gauge("active downloads", lambda: self.queue.running)
        self.monitor.register_gauge("live sessions", lambda: self.sessions.live_count)
        self.monitor.register_gauge("pending logins", lambda: len(self.logins))
        self.monitor.register_gauge("cache items", self._cache_items)
        self.monitor.register_gauge("floodwaits", lambda: floodwait.STATS.count)
        self.monitor.register_action("trim caches", self._trim_caches)
        self.monitor.register_action("evict idle user sessions", self._evict_sessions)
        self.sessions.start()
        await self.queue.start()
        await self._sweep_orphans()
        self.web = WebServer(s.port, is_connected=lambda: bool(self.bot and self.bot.is_connected),
                             monitor=self.monitor, status=self.status,
                             metrics_token=s.metrics_token or None)
        await self.web.start()
        self.monitor.start()
        self.janitor.start()
        self.monitor.snapshot("startup", {"port": self.web.bound_port})
        self.spawn(self._catch_up(), "catch-up")

    async def _catch_up(self) -> None:
        """What arrived while the bot was down, then the checkpoint kept moving."""
        try:
            await self.catchup.recover()
        except Exception:  # noqa: BLE001 - the bot serves live updates regardless
            log.exception("catching up on missed updates failed")
        while True:
            await asyncio.sleep(15)
            try:
                await self.catchup.tick()
            except Exception:  # noqa: BLE001 - retried at the next tick
                log.exception("update checkpoint failed")

    async def stop(self) -> None:
        """Stop taking jobs, let running ones go back to the queue, persist, close."""
        log.info("Shutting down")
        if self.queue:
            await self.queue.stop(timeout=20)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:  # a broadcast, a notice: done before the database they write to closes
            await asyncio.wait(tasks, timeout=5)
        if self.logins:
            await self.logins.stop()
        if self.sessions:
            await self.sessions.stop()
        await self.transfers.close()
        await self.janitor.stop()
        await self.monitor.stop()
        if self.web:
            await self.web.stop()
        if self.catchup and not self.catchup.ready:
            self.catchup.release()
        if self.bot is not None and self.bot.is_connected and self.catchup \
                and self.catchup.client is self.bot:
            try:
                await self.catchup.checkpoint_at_stop()
            except Exception:  # noqa: BLE001 - the next start fetches a little more
                log.exception("saving the update state failed")
        if self.bot is not None:
            await close_client(self.bot)
        if self.db:
            await self._before_db_close()
            await self.db.close()
        log.info("Stopped")

    async def _before_db_close(self) -> None:
        """The last writes of a role, after everything else stopped (bot/fleet.py's worker
        gives back its leases here)."""

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Start, serve until `stop` is set, stop. A stop during start-up cuts the start
        short at whatever stage it is; whatever start opened is closed either way."""
        try:
            if stop.is_set():
                return
            starting = asyncio.create_task(self.start(), name="start")
            stopping = asyncio.create_task(stop.wait(), name="stop-wait")
            try:
                await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                if not starting.done():
                    log.info("Stop requested during start-up")
                # Again until it lands: on Python 3.11 a cancel that meets a finishing
                # asyncio.wait_for inside the client library is lost (CPython gh-86296).
                while not starting.done():
                    starting.cancel()
                    await asyncio.wait({starting}, timeout=0.5)
            if starting.cancelled():
                return
            try:
                starting.result()
            except (StartupError, ConfigError) as e:
                log.error("%s", e)
                raise
            await stop.wait()
        finally:
            await self.stop()
