"""The one failure policy of a transfer part: per part and never per file.

A 420 of the family (FLOOD_WAIT, FLOOD_PREMIUM_WAIT; helpers/floodwait.py) pauses every part of
that client and DC for the given seconds, then retries, a bounded number of times per part and
per file; a dropped connection, a silent server or a 5xx retries the part with backoff, a bounded
number of times; FILE_MIGRATE moves to the named DC; an expired file reference refreshes once for
all the parts that met it (helpers/file_reference.py). So a flood is a pause, never a storm.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from pyrogram import errors

from helpers import floodwait
from helpers.client_adapter import Resend

log = logging.getLogger("transfer")

# Transient failures: the part is retried, on another connection when the one it used broke
# (Broken and TimeoutError are OSErrors).
TRANSIENT = (OSError, errors.InternalServerError, errors.ServiceUnavailable)
PART_RETRIES = 6  # transient failures of one part before the file fails
MAX_FLOODS_PER_PART = 20
MAX_FLOODS_PER_FILE = 60  # a 420 storm fails the file instead of retrying for ever
MAX_MIGRATIONS = 3


def backoff_s(attempt: int) -> float:
    return min(0.25 * 2 ** (attempt - 1), 4.0)


async def with_retries(invoke: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]],
                       on_flood: Callable[[Exception, int], None],
                       on_migrate: Callable[[int], None], query, check, what: str,
                       refresh=None, retries: int = PART_RETRIES):
    """`check(await invoke(query))`, retried as the policy says. `on_flood(e, floods)`
    schedules the pause (or re-raises e when the wait is not worth it or there were too many);
    `on_migrate(dc)` points the job at another DC."""
    attempt = floods = migrations = 0
    while True:
        try:
            return check(await invoke(query))
        except floodwait.FAMILY as e:
            floods += 1
            on_flood(e, floods)
        except errors.FileMigrate as e:
            migrations += 1
            if migrations > MAX_MIGRATIONS or not e.value:
                raise
            log.info("%s: file moved to DC%s", what, e.value)
            on_migrate(int(e.value))
        except (errors.FileReferenceExpired, errors.FileReferenceInvalid):
            if refresh is None:
                raise
            await refresh()
        except Resend:
            continue
        except TRANSIENT as e:
            attempt += 1
            if attempt > retries:
                raise
            log.info("%s: %s; retry %d", what, str(e) or type(e).__name__, attempt)
            await asyncio.sleep(backoff_s(attempt))
