"""The scaled layout's two roles over PostgreSQL: `python -m bot front` and
`python -m bot worker` (any number of workers, on any number of machines).

front   the bot's updates and commands, the web face, and the queue's admission (caps,
        positions, tiers): jobs are rows in PostgreSQL (helpers/fleet_front.py)
worker  claims jobs and transfers them with its own memory governor, session cap
        (MAX_SESSIONS) and MAX_CONCURRENT_DOWNLOADS slots (helpers/fleet_worker.py); its
        bot client takes no updates, so only the front answers users

Settings of the roles (environment): FLEET_LEASE_S (30: how long a job or a user session
stays held by a worker that stopped renewing it), HEARTBEAT_S (5), WORKER_NAME (default
host-pid).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import socket
import urllib.parse
from pathlib import Path
from typing import Iterable

from prometheus_client.core import GaugeMetricFamily
from pyrogram import Client

from bot.app import App
from bot.config import ConfigError
from bot.startup import login_bot
from helpers import peers
from helpers.database import Database
from helpers.fleet_front import FrontQueue, fleet_lines
from helpers.fleet_pipeline import FleetPipeline
from helpers.fleet_sessions import LeasedSessions
from helpers.fleet_store import FleetStore, every
from helpers.fleet_worker import FleetWorker
from helpers.logs import register_secret, setup_logging
from helpers.telegram_server import client_options

log = logging.getLogger("fleet")

VERSION = "15.0"
ROLES = ("front", "worker")


def _setting(name: str) -> str:
    """The environment first, then the config file, as bot/config.py reads them."""
    if name in os.environ:
        return os.environ[name].strip()
    path = os.environ.get("CONFIG_ENV", "config.env")
    if path and os.path.isfile(path):
        from dotenv import dotenv_values

        return (dotenv_values(path).get(name) or "").strip()
    return ""


def _env_float(name: str, default: float, low: float) -> float:
    raw = _setting(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < low:
        raise ConfigError(f"{name} must be at least {low:g}")
    return value


class FleetSettings:
    def __init__(self) -> None:
        self.lease_s = _env_float("FLEET_LEASE_S", 30.0, 1.0)
        self.heartbeat_s = _env_float("HEARTBEAT_S", 5.0, 0.2)
        self.name = (_setting("WORKER_NAME")
                     or f"{socket.gethostname()}-{os.getpid()}")
        # who holds a lease: the name plus this start's own mark, so a worker restarted under
        # the same name never takes its dead predecessor's leases for its own (that one's
        # connections may still be open on Telegram's side for a while)
        self.owner = f"{self.name}.{secrets.token_hex(3)}"

    @property
    def stale_s(self) -> float:
        return max(3 * self.heartbeat_s, self.lease_s)


def check_role(settings, role: str) -> str | None:
    """The one line a misconfigured role exits with (code 2), or None."""
    if not settings.database_url:
        return (f"python -m bot {role} needs DATABASE_URL=postgresql://... (front and workers "
                "share the queue through PostgreSQL); without it run python -m bot")
    if not settings.has_telegram_credentials:
        return (f"{', '.join(settings.missing_credentials())} not set (python -m bot {role} "
                "runs only with real credentials; see config.env.example)")
    return None


def _id_secret(settings) -> bytes:
    """The key of the delivery id sequences: the same in every process of one deployment."""
    seed = settings.session_key or settings.bot_token or "fleet"
    return hashlib.sha256(b"delivery-ids:" + seed.encode()).digest()


def _register_database_url(settings) -> None:
    """The URL and, in case a driver error quotes it alone, its password (as App.start)."""
    register_secret(settings.database_url, pinned=True)
    register_secret(urllib.parse.urlsplit(settings.database_url).password or "", pinned=True)


class FleetCollector:
    """/metrics on the front: each worker's last heartbeat, read at scrape time from what the
    front's tick last fetched."""

    def __init__(self, front: "FrontApp"):
        self.front = front

    def collect(self) -> Iterable:
        workers = self.front.queue.workers if self.front.queue else []
        families = {
            "rss": GaugeMetricFamily("bot_worker_rss_bytes", "worker RSS", labels=["worker"]),
            "peak": GaugeMetricFamily("bot_worker_rss_peak_bytes", "worker peak RSS",
                                      labels=["worker"]),
            "sessions": GaugeMetricFamily("bot_worker_sessions_live", "worker live sessions",
                                          labels=["worker"]),
            "transfers": GaugeMetricFamily("bot_worker_transfers_active",
                                           "worker transfers in progress", labels=["worker"]),
            "age": GaugeMetricFamily("bot_worker_heartbeat_age_seconds",
                                     "seconds since the worker's last heartbeat",
                                     labels=["worker"]),
        }
        for w in workers:
            label = [str(w["name"])]
            families["rss"].add_metric(label, float(w["rss_mb"]) * 1048576)
            families["peak"].add_metric(label, float(w["peak_mb"]) * 1048576)
            families["sessions"].add_metric(label, float(w["sessions"]))
            families["transfers"].add_metric(label, float(w["transfers"]))
            families["age"].add_metric(label, float(w["age_s"]))
        yield GaugeMetricFamily("bot_workers_live", "workers heard from within the stale limit",
                                value=sum(1 for w in workers
                                          if w["age_s"] <= self.front.fleet_settings.stale_s))
        yield from families.values()


class FrontApp(App):
    """The all-in-one App minus the transfers: its queue admits and the workers run."""

    role = "front"

    def __init__(self, settings, clock=None):
        super().__init__(settings, clock)
        self.fleet_settings = FleetSettings()
        self.fleet: FleetStore | None = None

    def _make_sessions(self, *args, **kwargs):
        # the first hook after App.start opened the Database: the fleet's SQL runs on its pool
        self.fleet = FleetStore(self.db)
        return LeasedSessions(*args, store=self.fleet, owner=f"front:{self.fleet_settings.owner}",
                              lease_s=self.fleet_settings.lease_s, **kwargs)

    def _make_queue(self, pipeline):
        s = self.settings
        return FrontQueue(self.db, self.fleet, max_queue=s.max_queue,
                          max_per_user=s.max_jobs_per_user, lease_s=self.fleet_settings.lease_s,
                          notify=self.notify, bot_peers=lambda ids: peers.export(self.bot, ids))

    async def start(self) -> None:
        await super().start()
        self.web.registry.register(FleetCollector(self))
        log.info("front: admitting jobs for the workers (lease %.0f s)",
                 self.fleet_settings.lease_s)

    def fleet_text(self) -> str:
        return "\n".join(fleet_lines(self.queue.workers if self.queue else [],
                                     self.fleet_settings.stale_s))

    def status(self) -> dict:
        st = super().status()
        st["workers"] = [{"worker": w["name"], "rss_mb": round(w["rss_mb"], 1),
                          "peak_mb": round(w["peak_mb"], 1),
                          "sessions": f"{w['sessions']}/{w['max_sessions']}",
                          "transfers": f"{w['transfers']}/{w['max_transfers']}",
                          "version": w["version"], "heartbeat_age_s": round(w["age_s"], 1)}
                         for w in (self.queue.workers if self.queue else [])]
        return st

    async def stats_text(self) -> str:
        return await super().stats_text() + "\n" + self.fleet_text()


class WorkerApp(App):
    """Transfers only: a bot client without updates or handlers, the fleet's claim loop."""

    role = "worker"

    def __init__(self, settings, clock=None):
        super().__init__(settings, clock)
        self.fleet_settings = FleetSettings()
        self.fleet: FleetStore | None = None
        self._beat_stop = asyncio.Event()

    def _make_bot(self) -> Client:
        s = self.settings
        workdir = Path(s.database_path).parent
        workdir.mkdir(parents=True, exist_ok=True)
        # the bot's peers from the database (helpers/shared_peers.py): this client takes no
        # updates, so it learns no private chat itself
        opts = client_options("worker", s.telegram_servers, s.telegram_server_key,
                              workdir=workdir, peer_store=self.db)
        client = Client("worker", api_id=s.api_id, api_hash=s.api_hash, bot_token=s.bot_token,
                        no_updates=True, workers=2, max_message_cache_size=50, **opts)
        self.bot = client
        return client

    async def start(self) -> None:
        s, f = self.settings, self.fleet_settings
        setup_logging(s.log_file, s.log_level)
        for value in (s.api_hash, s.bot_token, s.session_key, s.metrics_token):
            if value:
                register_secret(value, pinned=True)
        _register_database_url(s)
        self.db = await Database.open(s.database_url, clock=self.clock)
        self.fleet = FleetStore(self.db)
        self.janitor.db, self.janitor.history_s = None, 0  # the front prunes the history
        await self._open_cipher()
        self.sessions = LeasedSessions(
            self.db, self.cipher, api_id=s.api_id, api_hash=s.api_hash,
            server=s.telegram_servers, server_key=s.telegram_server_key,
            max_sessions=s.max_sessions, idle_s=s.session_idle_s,
            rss_mb=lambda: self.monitor.rss_mb, admission=self.monitor.admit,
            before_close=self.transfers.close_client,
            store=self.fleet, owner=f.owner, lease_s=f.lease_s)
        self.bot = await login_bot(self._make_bot, retries=s.startup_retries,
                                   attempt_timeout_s=s.startup_timeout_s,
                                   session_file=Path(s.database_path).parent / "worker.session")
        pipeline = FleetPipeline(
            self.bot, self.janitor, self.monitor, progress_interval=s.progress_interval_s,
            cancel_markup=self.cancel_markup, on_bytes=self._count_bytes,
            sessions=self.sessions, settings_of=self.db.get_settings,
            on_delivered=self.db.mark_delivered, transfers=self.transfers,
            split_bytes=s.split_mb * 1024 * 1024, save_settings=self.db.set_settings,
            store=self.fleet, worker=f.owner, id_secret=_id_secret(s))
        self.pipeline = pipeline
        self.queue = FleetWorker(self.fleet, pipeline.run, name=f.owner,
                                 slots=s.max_concurrent_downloads, lease_s=f.lease_s,
                                 admission=self.monitor.admit, notify=self.notify,
                                 on_tick=self.sessions.renew_all, listen=self.db.listen)
        self.sessions.job_users = self.queue.user_ids
        self.monitor.register_gauge("active downloads", lambda: self.queue.running)
        self.monitor.register_gauge("live sessions", lambda: self.sessions.live_count)
        self.monitor.register_action("evict idle user sessions", self._evict_sessions)
        self.sessions.start()
        await asyncio.to_thread(self.janitor.sweep, set(), None, 0)  # nothing of ours runs yet
        await self.queue.start()
        self.monitor.start()
        self.janitor.start()
        self._beat_stop.clear()
        await self._beat()
        self.spawn(every(f.heartbeat_s, self._beat, "heartbeat", self._beat_stop), "heartbeat")
        self.monitor.snapshot("startup", {"worker": f.name})
        log.info("worker %s: claiming jobs (%d slots, %d sessions, lease %.0f s)", f.name,
                 s.max_concurrent_downloads, s.max_sessions, f.lease_s)

    async def _beat(self) -> None:
        q = self.queue
        await self.fleet.heartbeat(self.fleet_settings.name, {
            "host": socket.gethostname(), "pid": os.getpid(), "version": VERSION,
            "started": self.started_at, "rss_mb": self.monitor.rss_mb,
            "peak_mb": self.monitor.peak_mb,
            "sessions": self.sessions.live_count if self.sessions else 0,
            "max_sessions": self.settings.max_sessions,
            "transfers": q.running if q else 0, "max_transfers": q.slots if q else 0,
            "done": q.done_count if q else 0, "failed": q.failed_count if q else 0})

    async def stop(self) -> None:
        self._beat_stop.set()
        await super().stop()

    async def _before_db_close(self) -> None:
        """Everything of this worker has stopped; its leases and heartbeat go while the
        storage (whose pool the fleet's SQL uses) is still open."""
        if self.fleet is not None:
            try:
                await self.fleet.release_all(self.fleet_settings.owner)
                await self.fleet.forget_worker(self.fleet_settings.name)
            except Exception:  # noqa: BLE001 - they run out on their own
                log.warning("could not release the worker's leases", exc_info=True)


def app_for(role: str):
    return {"front": FrontApp, "worker": WorkerApp}[role]
