"""User sessions under a lease in the database: one process at a time holds a user's
Telegram session, since Telegram invalidates an auth key used from two places at once
(406 AUTH_KEY_DUPLICATED, core.telegram.org/api/errors).

The lease is taken before the client connects and given back after it disconnected;
the owner renews it while the client is live (renew_all, from the worker's heartbeat), so a
killed worker's leases run out and another process may open the session.
"""

from __future__ import annotations

import asyncio
import logging
import time

from helpers.queue_manager import JobError
from helpers.session_manager import SessionManager, _Live

log = logging.getLogger("fleet")

_WAIT_STEP_S = 0.5


class LeasedSessions(SessionManager):
    def __init__(self, *args, store, owner: str, lease_s: float, wait_s: float = 60.0,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.store = store
        self.owner = owner
        self.lease_s = float(lease_s)
        self.wait_s = float(wait_s)
        self.job_users = None  # () -> user ids of the jobs held (set by the worker)

    async def _take_lease(self, user_id: int) -> None:
        deadline = time.monotonic() + self.wait_s
        while True:
            holder = await self.store.take_session(self.owner, user_id, self.lease_s)
            if holder is None:
                return
            if time.monotonic() >= deadline:
                raise JobError("Your account is busy with a transfer on another of the "
                               "bot's machines. Please send the link again in a minute.")
            await asyncio.sleep(_WAIT_STEP_S)

    async def _start(self, user_id: int) -> _Live:
        await self._take_lease(user_id)
        try:
            return await super()._start(user_id)
        except BaseException:
            await asyncio.shield(self._give_back(user_id))
            raise

    async def _close(self, entry: _Live, reason: str) -> None:
        try:
            await super()._close(entry, reason)
        finally:
            await asyncio.shield(self._give_back(entry.user_id))

    async def _give_back(self, user_id: int) -> None:
        try:
            await self.store.release_session(self.owner, user_id)
        except Exception:  # noqa: BLE001 - it runs out on its own
            log.warning("could not release the session lease of user %s", user_id,
                        exc_info=True)

    def held(self) -> list[int]:
        """Users whose lease this process keeps: live sessions, and (a worker) the users
        of the jobs it holds, whose leases it took with them."""
        users = set(self._live) | set(self._starting)
        if self.job_users is not None:
            users |= set(self.job_users())
        return sorted(users)

    async def renew_all(self) -> None:
        await self.store.renew_sessions(self.owner, self.held(), self.lease_s)

    async def logout(self, user_id: int) -> bool:
        """auth.logOut connects with the stored key too: under the lease like any use."""
        user_id = int(user_id)
        if user_id not in self._live:
            await self._take_lease(user_id)
        try:
            return await super().logout(user_id)
        finally:
            await asyncio.shield(self._give_back(user_id))
