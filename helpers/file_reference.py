"""A file's reference, refreshed once for all the parts that find it expired.

Telegram rotates every document's and photo's file_reference; a stale one is answered
FILE_REFERENCE_EXPIRED, and the client must fetch the message it came from again to get a
fresh one (core.telegram.org/api/file_reference). A parallel download has K parts in flight
when that happens, and they all fail at once: the first to notice fetches the message, the
others wait for that same fetch (single flight), then every one retries with the new
reference, so the parts already on disk stay and only the failed ones are asked again.

A reference that fails again before any part succeeded with it is not refreshed in a loop:
the refresh re-arms once a part has come back with the fresh reference (it worked, so a
later expiry is a new rotation) or after REARM_S; MAX_REFRESHES bounds one file.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

from pyrogram import errors


class RefreshedLocation:
    """The location a file is fetched from, and its generation (+1 per refresh).

    fetch: a coroutine function returning a fresh location, or None when the file has no
    message to fetch again (then an expired reference fails the file).
    """

    REARM_S = 30.0
    MAX_REFRESHES = 32

    def __init__(self, location: Any, fetch: Callable[[], Awaitable[Any]] | None, *,
                 clock: Callable[[], float] = time.monotonic):
        self.location = location
        self.clock = clock
        self.generation = 0
        self.refreshes = 0
        self._fetch = fetch
        self._task: asyncio.Future | None = None
        self._proven = True  # the reference we started with is taken as good
        self._refreshed_at = float("-inf")
        self.cdn = None  # a CdnFile once the master DC redirected the file (helpers/cdn.py)

    def worked(self, generation: int) -> None:
        """A request made with `generation` succeeded: that reference is good."""
        if generation == self.generation:
            self._proven = True

    async def expired(self, generation: int) -> None:
        """A request made with `generation` was told its reference expired. Returns when a
        fresher location is there to retry with; raises FileReferenceExpired when the
        refresh may not run again (or the fetch's own error when it failed)."""
        if generation != self.generation:
            return  # refreshed since that request left: retry with the new reference
        if self._task is None:
            if (self._fetch is None or self.refreshes >= self.MAX_REFRESHES
                    or (not self._proven
                        and self.clock() - self._refreshed_at < self.REARM_S)):
                raise errors.FileReferenceExpired()
            self._task = asyncio.ensure_future(self._refresh())
            self._task.add_done_callback(_consume)
        await asyncio.shield(self._task)

    async def _refresh(self) -> None:
        try:
            location = await self._fetch()
            self.location = location
            self.generation += 1
            self.refreshes += 1
            self._proven = False
            self._refreshed_at = self.clock()
        finally:
            self._task = None


def _consume(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()
