"""Logging the bot in to Telegram at start-up, telling the operator's mistakes from outages.

A refused token or API key never gets better by retrying, so it ends start-up at once with
one line and exit code 2 (the operator must fix it). A server that cannot be reached may come
back, so it is retried a bounded number of times with a growing pause, each attempt bounded
in time, and then start-up ends with exit code 1 so a supervisor restarts the process later.
Every attempt uses a fresh client: a failed one is closed whole, so nothing it opened stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Callable

from pyrogram import Client, errors

from helpers import floodwait
from helpers.client_adapter import close_storage, stop_dc_sessions, stop_main_session

log = logging.getLogger("bot")

EXIT_CONFIG = 2  # the operator must change something
EXIT_UNREACHABLE = 1  # may pass: a supervisor should start the bot again later
MAX_BACKOFF_S = 60.0

# Errors of auth.importBotAuthorization and initConnection that name the operator's setting.
# https://core.telegram.org/method/auth.importBotAuthorization (ACCESS_TOKEN_INVALID,
# ACCESS_TOKEN_EXPIRED, API_ID_INVALID, API_ID_PUBLISHED_FLOOD)
_REFUSED = (
    ((errors.AccessTokenInvalid, errors.AccessTokenExpired), "BOT_TOKEN was refused by Telegram"),
    ((errors.ApiIdInvalid, errors.ApiIdPublishedFlood),
     "API_ID / API_HASH were refused by Telegram"),
)


class StartupError(Exception):
    """Start-up cannot go on; ``str(err)`` is the one line for logs.txt and stderr."""

    def __init__(self, line: str, exit_code: int):
        super().__init__(line)
        self.exit_code = exit_code


def _error_name(e: BaseException) -> str:
    return getattr(e, "ID", None) or type(e).__name__


def refusal_line(e: BaseException) -> str | None:
    """The operator's line for an error that only a change of settings can fix."""
    for kinds, what in _REFUSED:
        if isinstance(e, kinds):
            return f"{what}: {_error_name(e)} (check it and start again)"
    if isinstance(e, errors.BadRequest):
        return (f"Telegram refused the bot's login: {_error_name(e)} "
                "(check BOT_TOKEN, API_ID and API_HASH)")
    return None


async def close_client(client: Client) -> None:
    """Close whatever a started, half-started or cancelled client holds; never raises."""
    try:
        if client.is_initialized:
            await client.stop()
    except Exception:  # noqa: BLE001 - closing regardless; the rest below still runs
        log.warning("bot client stop failed", exc_info=True)
    with contextlib.suppress(Exception):
        if client.is_connected:
            await client.disconnect()
    await stop_dc_sessions(client)
    with contextlib.suppress(Exception):
        await stop_main_session(client)
    with contextlib.suppress(Exception):
        await close_storage(client)


async def login_bot(make_client: Callable[[], Client], *, retries: int, attempt_timeout_s: float,
                    backoff_s: float = 2.0, session_file: Path | None = None) -> Client:
    """A started bot client, or StartupError. Cancelling the caller closes the attempt in
    flight and returns within a moment, whatever stage the login is at."""
    attempts = retries + 1
    reset = False
    attempt = 0
    while True:
        attempt += 1
        client = make_client()
        log.info("Connecting to Telegram (attempt %d of %d)", attempt, attempts)
        try:
            async with asyncio.timeout(attempt_timeout_s):
                await client.start()
            return client
        except BaseException as e:
            await close_client(client)
            if not isinstance(e, Exception):
                raise  # cancelled (SIGTERM) or interpreter exit
            error = e
        line = refusal_line(error)
        if line is not None:
            raise StartupError(line, EXIT_CONFIG) from None
        if isinstance(error, errors.Unauthorized) and not reset and session_file is not None \
                and session_file.exists():
            # The stored login of the bot was revoked (a new token from @BotFather): the
            # token itself decides, so sign in with it afresh, once.
            log.warning("Telegram refused the bot's stored session (%s); signing in again "
                        "with BOT_TOKEN", _error_name(error))
            session_file.unlink(missing_ok=True)
            reset = True
            attempt -= 1
            continue
        if isinstance(error, errors.Unauthorized):
            raise StartupError(f"BOT_TOKEN was refused by Telegram: {_error_name(error)} "
                               "(check it and start again)", EXIT_CONFIG) from None
        if not isinstance(error, (OSError, TimeoutError, errors.InternalServerError,
                                  errors.FloodWait)):
            raise error
        why = "no answer in time" if isinstance(error, TimeoutError) else _error_name(error)
        wait = 0.0
        if isinstance(error, errors.FloodWait):
            wait = floodwait.record(floodwait.seconds_of(error), "bot login")
        if attempt >= attempts or not floodwait.worth_waiting(wait):
            raise StartupError(f"Telegram could not be reached after {attempt} attempt(s) "
                               f"({why}); giving up, start the bot again later",
                               EXIT_UNREACHABLE) from None
        pause = max(wait, min(MAX_BACKOFF_S, backoff_s * 2 ** (attempt - 1)))
        log.warning("Telegram could not be reached (%s); retrying in %.0f s (attempt %d of %d "
                    "next)", why, pause, attempt + 1, attempts)
        await asyncio.sleep(pause)
