"""Settings from the environment and ``config.env``.

Everything the bot can be tuned by lives here, validated once at start-up so a typo
fails fast with one line naming the variable instead of surfacing hours later as a
crash deep in a job. The *constrained* profile (a 512 MB Render instance, detected by
``RENDER`` / ``RENDER_EXTERNAL_URL``) picks smaller defaults; every value can still be
overridden explicitly.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, fields
from typing import Mapping

__all__ = ["ConfigError", "Settings", "load_settings"]

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f"})
_INT_RE = re.compile(r"\+?[0-9]{1,18}", re.ASCII)
_BOT_TOKEN_RE = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{1,200}", re.ASCII)
_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", re.ASCII)
# Set by hosting platforms, never on a laptop: with one of them, missing credentials are a
# configuration error instead of the newcomer's rehearsal (Render, Heroku, Fly.io, Railway,
# Cloud Run).
DEPLOYMENT_MARKERS = ("RENDER", "RENDER_EXTERNAL_URL", "RENDER_SERVICE_ID", "DYNO",
                      "FLY_APP_NAME", "RAILWAY_ENVIRONMENT", "K_SERVICE")
_SECRET_FIELDS = frozenset({"api_hash", "bot_token", "session_key", "metrics_token",
                            "database_url"})


class ConfigError(Exception):
    """A setting is malformed; ``str(err)`` is one line fit to print before exiting."""


def _database_url(value: str | None) -> str:
    """Only PostgreSQL URLs: anything else is a typo that would otherwise silently fall
    back to a SQLite file nobody else can see. The value is never echoed (it holds a
    password)."""
    if value is None:
        return ""
    if not value.startswith(("postgresql://", "postgres://")):
        raise ConfigError("DATABASE_URL must be a PostgreSQL URL "
                          "(postgresql://user:password@host:port/dbname)")
    return value


@dataclass(frozen=True, repr=False)
class Settings:
    """Validated, immutable settings; built by :func:`load_settings`."""

    api_id: int | None = None
    api_hash: str = ""
    bot_token: str = ""
    owner_ids: tuple[int, ...] = ()
    admin_ids: tuple[int, ...] = ()
    session_key: str = ""
    database_path: str = "data/bot.db"
    # postgresql://user:password@host:port/db: all state in PostgreSQL; empty: SQLite at
    # database_path (which still holds the bot's own pyrogram session file beside it)
    database_url: str = ""
    assets_dir: str = "Assets"
    log_file: str = "logs.txt"
    max_concurrent_downloads: int = 4
    max_queue: int = 20
    max_jobs_per_user: int = 5
    max_sessions: int = 5
    session_idle_s: int = 600
    telegram_server: tuple[str, int] | None = None  # DC 2, where a new session starts
    telegram_server_key: str | None = None
    # the server's other DCs, ((dc, host, port), ...): a session living on DC 4 connects there
    telegram_dcs: tuple[tuple[int, str, int], ...] = ()
    memory_limit_mb: int = 1024
    memory_warn_mb: int = 800
    spike_mb: int = 50
    memory_check_interval: int = 300
    port: int = 8080
    progress_interval_s: float = 5.0
    janitor_max_age_s: int = 1800
    job_history_days: int = 30
    free_daily_jobs: int = 50
    premium_daily_jobs: int = 1000
    free_batch_cap: int = 20
    premium_batch_cap: int = 200
    constrained: bool = False
    log_level: str = "INFO"
    metrics_token: str = ""
    transfer_connections: int = 4
    transfer_parts_in_flight: int = 32
    transfer_account_inflight: int = 16
    transfer_upload_parts_in_flight: int = 16
    transfer_big_files: int = 2
    transfer_direct_io: bool = True
    split_mb: int = 0
    messages_per_minute: int = 20
    startup_retries: int = 5
    startup_timeout_s: int = 30
    deployed: bool = False
    catchup_max_age_s: int = 86400

    @property
    def owner_id(self) -> int | None:
        """The primary owner (first of OWNER_ID), who gets operator-only replies."""
        return self.owner_ids[0] if self.owner_ids else None

    @property
    def telegram_servers(self) -> dict[int, tuple[str, int]] | None:
        """{dc: (host, port)} of the configured server, None for Telegram itself."""
        if self.telegram_server is None:
            return None
        return {2: self.telegram_server, **{dc: (h, p) for dc, h, p in self.telegram_dcs}}

    @property
    def has_telegram_credentials(self) -> bool:
        return not self.missing_credentials()

    def missing_credentials(self) -> list[str]:
        """Names of the env vars still needed to talk to Telegram, for the start-up hint."""
        missing = []
        if self.api_id is None:
            missing.append("API_ID")
        if not self.api_hash:
            missing.append("API_HASH")
        if not self.bot_token:
            missing.append("BOT_TOKEN")
        return missing

    def is_admin(self, user_id: int) -> bool:
        return user_id in self.admin_ids

    def __repr__(self) -> str:
        # Settings end up in logs and tracebacks; never let secrets ride along.
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS:
                parts.append(f"{f.name}={'***' if value else ''!r}")
            else:
                parts.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(parts)})"

    __str__ = __repr__


class _Reader:
    """Typed accessors over the merged mapping; each raises a one-line ConfigError."""

    def __init__(self, values: Mapping[str, str]):
        self._values = values

    def raw(self, name: str) -> str | None:
        """The stripped value, or None when unset or blank (``API_ID=`` means unset)."""
        value = self._values.get(name)
        if value is None:
            return None
        value = str(value).strip()
        return value or None

    def int(self, name: str, default: int | None, *, minimum: int = 1,
            maximum: int | None = None) -> int | None:
        value = self.raw(name)
        if value is None:
            return default
        bound = f"an integer >= {minimum}" if minimum != 1 else "a positive integer"
        if maximum is not None:
            bound = f"an integer between {minimum} and {maximum}"
        if not _INT_RE.fullmatch(value):
            raise ConfigError(f"{name} must be {bound}, got {value!r}")
        number = int(value)
        if number < minimum or (maximum is not None and number > maximum):
            raise ConfigError(f"{name} must be {bound}, got {value!r}")
        return number

    def float(self, name: str, default: float, *, minimum: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < minimum:
            raise ConfigError(f"{name} must be a number >= {minimum:g}, got {value!r}")
        return number

    def bool(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(f"{name} must be true or false, got {value!r}")

    def path(self, name: str, default: str) -> str:
        value = self.raw(name)
        if value is None:
            return default
        if "\x00" in value or any(ord(ch) < 32 for ch in value):
            raise ConfigError(f"{name} must be a file system path, got {value!r}")
        return value

    def id_list(self, name: str) -> tuple[int, ...]:
        value = self.raw(name)
        if value is None:
            return ()
        ids: list[int] = []
        for token in re.split(r"[,\s]+", value):
            if not token:
                continue
            if not _INT_RE.fullmatch(token) or int(token) <= 0:
                raise ConfigError(
                    f"{name} must be a comma or space separated list of positive "
                    f"Telegram user ids, got {token!r}"
                )
            if int(token) not in ids:
                ids.append(int(token))
        return tuple(ids)


def _parse_servers(value: str) -> tuple[tuple[str, int], tuple[tuple[int, str, int], ...]]:
    """'host:port[,N=host:port...]': DC 2's address, then the other DCs' (what pyrogram's own
    DC table is for Telegram)."""
    entries = [e.strip() for e in value.split(",") if e.strip()]
    main: tuple[str, int] | None = None
    others: dict[int, tuple[str, int]] = {}
    for entry in entries:
        dc_text, sep, address = entry.partition("=")
        if not sep:
            dc_text, address = "2", entry
        if not re.fullmatch(r"[1-9][0-9]{0,2}", dc_text.strip()):
            raise ConfigError(f"TELEGRAM_SERVER entries are host:port or N=host:port "
                              f"(N a DC number), got {entry!r}")
        dc, parsed = int(dc_text), _parse_server(address.strip())
        if dc == 2:
            if main is not None:
                raise ConfigError("TELEGRAM_SERVER names DC 2 twice")
            main = parsed
        else:
            others[dc] = parsed
    if main is None:
        raise ConfigError("TELEGRAM_SERVER must name DC 2 (its first host:port), got "
                          f"{value!r}")
    return main, tuple((dc, *others[dc]) for dc in sorted(others))


def _parse_server(value: str) -> tuple[str, int]:
    err = ConfigError(f"TELEGRAM_SERVER must be host:port (e.g. 127.0.0.1:8443), got {value!r}")
    if value.startswith("["):  # [::1]:443
        host, sep, port = value[1:].partition("]:")
        if not sep or not host or not re.fullmatch(r"[0-9A-Fa-f:.]+", host):
            raise err
    else:
        host, sep, port = value.rpartition(":")
        if not sep or not _HOST_RE.fullmatch(host):
            raise err
    if not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
        raise err
    return host, int(port)


def _merged(environ: Mapping[str, str] | None, env_file: str | None) -> dict[str, str]:
    merged: dict[str, str] = {}
    if env_file and os.path.isfile(env_file):
        from dotenv import dotenv_values

        try:
            file_values = dotenv_values(env_file)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {env_file}: {exc}") from None
        merged.update({k: v for k, v in file_values.items() if v is not None})
    merged.update(os.environ if environ is None else environ)
    return merged


def load_settings(environ: Mapping[str, str] | None = None,
                  env_file: str | None = "config.env") -> Settings:
    """Build Settings from ``environ`` (default ``os.environ``) over ``env_file``.

    The environment wins over the file so a deployment can override a committed
    config.env. Credentials are optional here: without them the entry point prints
    what to set (or runs against the simulator); when present they must be well formed.
    """
    r = _Reader(_merged(environ, env_file))

    detected = bool(r.raw("RENDER") or r.raw("RENDER_EXTERNAL_URL"))
    constrained = r.bool("CONSTRAINED", detected)

    api_id = r.int("API_ID", None)
    bot_token = r.raw("BOT_TOKEN") or ""
    if bot_token and not _BOT_TOKEN_RE.fullmatch(bot_token):
        # Deliberately not echoing the value: it is a secret.
        raise ConfigError("BOT_TOKEN must look like '123456:ABC-DEF...' (from @BotFather)")
    api_hash = r.raw("API_HASH") or ""
    if api_hash and not re.fullmatch(r"[A-Za-z0-9]{1,128}", api_hash):
        raise ConfigError("API_HASH must be the alphanumeric hash from my.telegram.org")

    owner_ids = r.id_list("OWNER_ID")
    admin_ids = owner_ids + tuple(i for i in r.id_list("ADMINS") if i not in owner_ids)

    server_raw = r.raw("TELEGRAM_SERVER")
    server, dcs = _parse_servers(server_raw) if server_raw else (None, ())
    key = r.raw("TELEGRAM_SERVER_KEY")
    if key is not None:
        key = r.path("TELEGRAM_SERVER_KEY", key)
    if server and key is None:
        raise ConfigError("TELEGRAM_SERVER_KEY must be set to the server's RSA public key "
                          "file when TELEGRAM_SERVER is set")
    if key is not None and not server:
        raise ConfigError("TELEGRAM_SERVER_KEY is set but TELEGRAM_SERVER is not; "
                          "set both or neither")
    if key is not None and not os.path.isfile(key):
        raise ConfigError(f"TELEGRAM_SERVER_KEY file does not exist: {key!r}")

    limit = r.int("MEMORY_LIMIT_MB", 512 if constrained else 1024, minimum=64)
    warn = r.int("MEMORY_WARN_MB", None)
    if warn is None:
        warn = min(400 if constrained else 800, max(1, limit * 4 // 5))
    if warn >= limit:
        raise ConfigError(f"MEMORY_WARN_MB must be below MEMORY_LIMIT_MB ({limit}), got {warn}")

    level = (r.raw("LOG_LEVEL") or "INFO").upper()
    if level not in _LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, "
                          f"got {r.raw('LOG_LEVEL')!r}")

    return Settings(
        api_id=api_id,
        api_hash=api_hash,
        bot_token=bot_token,
        owner_ids=owner_ids,
        admin_ids=admin_ids,
        session_key=r.raw("SESSION_KEY") or "",
        database_path=r.path("DATABASE_PATH", "data/bot.db"),
        database_url=_database_url(r.raw("DATABASE_URL")),
        assets_dir=r.path("ASSETS_DIR", "Assets"),
        log_file=r.path("LOG_FILE", "logs.txt"),
        max_concurrent_downloads=r.int("MAX_CONCURRENT_DOWNLOADS", 2 if constrained else 4,
                                       maximum=64),
        max_queue=r.int("MAX_QUEUE", 20, maximum=100_000),
        max_jobs_per_user=r.int("MAX_JOBS_PER_USER", 5, maximum=10_000),
        max_sessions=r.int("MAX_SESSIONS", 3 if constrained else 5, maximum=1000),
        session_idle_s=r.int("SESSION_IDLE_S", 600),
        telegram_server=server,
        telegram_server_key=key,
        telegram_dcs=dcs,
        memory_limit_mb=limit,
        memory_warn_mb=warn,
        spike_mb=r.int("SPIKE_MB", 50),
        memory_check_interval=r.int("MEMORY_CHECK_INTERVAL", 300),
        port=r.int("PORT", 8080, maximum=65535),
        progress_interval_s=r.float("PROGRESS_INTERVAL", 5.0, minimum=3.0),
        janitor_max_age_s=r.int("JANITOR_MAX_AGE", 1800),
        job_history_days=r.int("JOB_HISTORY_DAYS", 30, maximum=3650),
        free_daily_jobs=r.int("FREE_DAILY_JOBS", 50, minimum=0),
        premium_daily_jobs=r.int("PREMIUM_DAILY_JOBS", 1000, minimum=0),
        free_batch_cap=r.int("FREE_BATCH_CAP", 20),
        premium_batch_cap=r.int("PREMIUM_BATCH_CAP", 200),
        constrained=constrained,
        log_level=level,
        metrics_token=r.raw("METRICS_TOKEN") or "",
        split_mb=r.int("SPLIT_MB", 0, minimum=0, maximum=4000),
        transfer_connections=r.int("TRANSFER_CONNECTIONS", 2 if constrained else 4, maximum=16),
        # 12 of 1 MiB: Telegram limits the file requests one account keeps in flight (16 in
        # tgsim/file_limits.py), and Transfers gates all files of one account together
        transfer_parts_in_flight=r.int("TRANSFER_PARTS_IN_FLIGHT", 12, maximum=64),
        # 16 of 512 KiB, as Telegram Desktop keeps per account (1 MiB on each of up to 8
        # upload sessions, storage/file_upload.cpp)
        transfer_upload_parts_in_flight=r.int("TRANSFER_UPLOAD_PARTS_IN_FLIGHT", 16, maximum=64),
        # file requests in flight per account, all its jobs together (helpers/transfer_budget.py)
        transfer_account_inflight=r.int("TRANSFER_ACCOUNT_INFLIGHT", 16, maximum=64),
        transfer_big_files=r.int("TRANSFER_BIG_FILES", 2, maximum=16),
        # parts past the page cache where the filesystem allows (helpers/direct_io.py)
        transfer_direct_io=r.bool("TRANSFER_DIRECT_IO", True),
        messages_per_minute=r.int("MESSAGES_PER_MINUTE", 20, maximum=10_000),
        startup_retries=r.int("STARTUP_RETRIES", 5, minimum=0, maximum=1000),
        startup_timeout_s=r.int("STARTUP_TIMEOUT", 30, maximum=3600),
        deployed=any(r.raw(name) for name in DEPLOYMENT_MARKERS),
        catchup_max_age_s=r.int("CATCHUP_MAX_AGE", 86400, maximum=30 * 86400),
    )
