"""Simulated people talking to the bot from this process: real clients with an inbox for
conversations and counters of what came back for their jobs."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import Callable

from harness.signin import LOGIN_CODE

_JOB_END = re.compile(r"Job #(\d+) (failed|cancelled)")
_REFUSED = re.compile(r"(\d+) link\(s\) (?:refused|over today's allowance)")


class SimUser:
    """One person talking to the bot: a conversation inbox for /login, and counters of what
    came back for jobs (media by caption, failed or cancelled jobs, refused links)."""

    def __init__(self, client, phone: str, bot_id: int, bot_username: str):
        from pyrogram import filters

        self.client, self.phone = client, phone
        self.bot_username = bot_username
        self.inbox: asyncio.Queue = asyncio.Queue(maxsize=200)
        self.media: list = []
        self.ended: dict[int, str] = {}
        self.refused = 0
        self.changed = asyncio.Condition()
        from_bot = filters.private & filters.user(bot_id)
        client.on_message(from_bot)(self._seen)
        client.on_edited_message(from_bot)(self._seen)

    @property
    def id(self) -> int:
        return self.client.me.id

    async def _seen(self, _, message) -> None:
        text = message.text or message.caption or ""
        if message.media and not message.edit_date:
            self.media.append(message)
        elif text:
            for job_id, how in _JOB_END.findall(text):
                self.ended[int(job_id)] = how
            for n in _REFUSED.findall(text):
                self.refused += int(n)
        with contextlib.suppress(asyncio.QueueFull):
            self.inbox.put_nowait(message)
        async with self.changed:
            self.changed.notify_all()

    async def say(self, text: str):
        return await self.client.send_message(self.bot_username, text)

    async def expect_text(self, fragment: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply containing {fragment!r} within {timeout:.0f} s")
            msg = await asyncio.wait_for(self.inbox.get(), left)
            if fragment in (msg.text or ""):
                return msg

    async def login_to_bot(self) -> None:
        """The /login conversation, as a person types it (the code with spaces)."""
        while not self.inbox.empty():
            self.inbox.get_nowait()
        await self.say("/login")
        await self.expect_text("phone number")
        await self.say(self.phone)
        await self.expect_text("login code")
        await self.say(" ".join(LOGIN_CODE))
        await self.expect_text("Logged in as")

    def delivered(self, caption: str) -> list:
        return [m for m in self.media if (m.caption or "") == caption]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        async with self.changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait_for(predicate), timeout)
        return predicate()

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.stop(), 15)


async def gather_limited(coros, limit: int = 6) -> list:
    sem = asyncio.Semaphore(limit)

    async def one(c):
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))
