"""Send one message to every user at a steady rate, counting what was delivered.

Paced below Telegram's ~30 messages/s bot limit; a FloodWait pauses the whole run for the
time Telegram asks (one policy, no retry storm) and the message is retried once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable

from pyrogram import errors

from helpers import floodwait

log = logging.getLogger("broadcast")

# The recipient cannot get messages from the bot: count and move on.
_UNREACHABLE = (errors.UserIsBlocked, errors.InputUserDeactivated, errors.PeerIdInvalid,
                errors.UserDeactivated, errors.ChatWriteForbidden, errors.UserIsBot)


@dataclass
class BroadcastResult:
    delivered: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.delivered + self.failed


async def broadcast(recipients: AsyncIterator[int], send: Callable[[int], Awaitable[object]],
                    *, per_second: float = 20.0, max_flood_wait: float = 300.0,
                    skip: Callable[[int], bool] = lambda _uid: False) -> BroadcastResult:
    result = BroadcastResult()
    gap = 1.0 / per_second
    async with contextlib.aclosing(recipients) as users:
        async for uid in users:
            if skip(uid):
                continue
            for attempt in (1, 2):
                try:
                    await send(uid)
                    result.delivered += 1
                    break
                except floodwait.FAMILY as e:
                    wait = floodwait.record(floodwait.seconds_of(e), "broadcast")
                    if attempt == 2 or wait > max_flood_wait:
                        result.failed += 1
                        break
                    log.warning("broadcast: FloodWait %.0fs, pausing", wait)
                    await asyncio.sleep(wait)
                except _UNREACHABLE:
                    result.failed += 1
                    break
                except errors.RPCError as e:
                    log.info("broadcast to %s failed: %s", uid, type(e).__name__)
                    result.failed += 1
                    break
            await asyncio.sleep(gap)
    return result
