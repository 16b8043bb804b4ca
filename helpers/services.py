"""What plugins may use, one small service per concern, set up by the composition root.

Plugins parse, call a service, reply (the design card): each service holds exactly what its
handlers need, so a plugin cannot reach the database, the queue or the app as a whole, and the
storage behind a service can change (SQLite, PostgreSQL) without a plugin noticing. Storage
errors reach plugins only as helpers.storage_errors.StorageBusy.

Who uses what: gate.py -> gate; catchup.py -> catchup; account.py, basic.py -> accounts;
links.py -> jobs, accounts, buttons; jobs.py -> jobs, buttons; settings.py -> settings;
admin.py -> gate, admin; memstats.py -> admin.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable

from helpers.chat_access import ChatAccess, Session
from helpers.database import AlreadyHandled  # noqa: F401 - for plugins, which import no storage
from helpers.storage_errors import as_storage_busy
from helpers.tiers import Allowance, allowance
from helpers.user_settings import normalize


class GateService:
    """The outer gate, asked on every update: is it an admin, a banned user, a flood?"""

    def __init__(self, is_admin: Callable[[int], bool],
                 is_banned: Callable[[int], Awaitable[bool]], rate):
        self.is_admin = is_admin
        self.is_banned = is_banned
        self._rate = rate

    def hit(self, user_id: int) -> tuple[bool, float | None]:
        """(allowed, seconds to wait or None when already told) for one more message."""
        return self._rate.hit(user_id)


class AccountService:
    """Users, their logins and their own sessions (the reader of their private chats)."""

    def __init__(self, db, sessions, logins, admit: Callable[[], Awaitable[bool]],
                 access: ChatAccess, invites):
        self._db = db
        self._sessions = sessions
        self.logins = logins  # helpers.login.LoginDesk: the /login conversation
        self._admit = admit
        self._access = access
        self._invites = invites  # token -> (user_id, invite hash, title) behind a Join button

    async def ensure_user(self, user_id: int) -> None:
        with as_storage_busy():
            await self._db.ensure_user(user_id)

    @property
    def logins_enabled(self) -> bool:
        return self._sessions.enabled

    async def has_session(self, user_id: int) -> bool:
        return await self._sessions.has_session(user_id)

    async def logout(self, user_id: int) -> bool:
        return await self._sessions.logout(user_id)

    async def memory_allows_login(self) -> bool:
        return await self._admit()

    async def can_use_own_session(self, user_id: int) -> bool:
        """Whether the user's own account can act for them (join an invite, read a chat)."""
        return await self._access.session(user_id) is Session.READY

    @contextlib.asynccontextmanager
    async def own_session(self, user_id: int) -> AsyncIterator:
        async with self._sessions.use(user_id) as client:
            yield client

    async def remember(self, user_id: int, client, peer_ids) -> None:
        await self._sessions.remember(user_id, client, peer_ids)

    def offer_invite(self, token: int, offer: tuple[int, str, str]) -> None:
        self._invites.set(token, offer)

    def take_invite(self, token: int) -> tuple[int, str, str] | None:
        return self._invites.pop(token)


class JobsService:
    """Submitting, listing and cancelling jobs. The queue is attached once it exists (after
    the bot has logged in), before any handler past the once-only check runs."""

    def __init__(self, db, settings, catchup):
        self._db = db
        self._settings = settings
        self._catchup = catchup
        self._queue = None

    def attach_queue(self, queue) -> None:
        self._queue = queue

    async def allowance(self, user_id: int) -> Allowance:
        with as_storage_busy():
            return await allowance(self._db, self._settings, user_id)

    async def batch_cap(self, user_id: int) -> int:
        s = self._settings
        with as_storage_busy():
            premium = await self._db.is_premium(user_id)
        return s.premium_batch_cap if premium else s.free_batch_cap

    async def handled(self, chat_id: int, msg_id: int) -> bool:
        """Mark a message that got no job handled; False if it was already."""
        with as_storage_busy():
            return await self._catchup.done(chat_id, msg_id)

    async def submit(self, user_id: int, refs, premium: bool, source=None):
        with as_storage_busy():
            return await self._queue.submit(user_id, refs, premium, source=source)

    async def user_jobs(self, user_id: int):
        return await self._queue.user_jobs(user_id)

    async def cancel(self, user_id: int, job_id: int | None = None) -> int:
        return await self._queue.cancel(user_id, job_id)


class ButtonsService:
    """Callback data signed per user, so a forged or replayed button names nothing."""

    def __init__(self, sign: Callable[[str, int, int], str],
                 verify: Callable[[str, int], "tuple[str, int] | None"]):
        self.sign = sign
        self.verify = verify


class SettingsService:
    """A user's /settings and the one-message prompt a settings button opened."""

    def __init__(self, db, prompts):
        self._db = db
        self._prompts = prompts  # user_id -> the field a prompt asked for (bounded, expires)

    async def load(self, user_id: int) -> dict:
        return normalize(await self._db.get_settings(user_id))

    async def save(self, user_id: int, settings: dict) -> None:
        await self._db.set_settings(user_id, normalize(settings))

    def ask(self, user_id: int, field: str) -> None:
        self._prompts.set(user_id, field)

    def asking(self, user_id: int) -> bool:
        return user_id in self._prompts

    def prompt(self, user_id: int) -> str | None:
        return self._prompts.get(user_id)

    def end_prompt(self, user_id: int) -> None:
        self._prompts.pop(user_id)


class AdminService:
    """What admin commands change or read: tiers, bans, broadcasts, stats, memory."""

    def __init__(self, db, *, is_admin: Callable[[int], bool],
                 set_banned: Callable[[int, bool], Awaitable[None]], jobs: JobsService,
                 notify: Callable[[int, str], Awaitable[None]],
                 spawn: Callable, stats: Callable[[], Awaitable[str]], monitor,
                 fleet: Callable[[], str] | None = None):
        self._db = db
        self.is_admin = is_admin
        self._set_banned = set_banned
        self._jobs = jobs
        self.notify = notify
        self.spawn = spawn  # a background task the app owns (a broadcast)
        self.stats = stats
        self._monitor = monitor
        self._fleet = fleet  # the scaled layout's front: one line per worker (bot/fleet.py)
        self._broadcasting = False

    async def set_premium(self, user_id: int, until: float) -> None:
        await self._db.set_premium(user_id, until)

    async def remove_premium(self, user_id: int) -> None:
        await self._db.set_premium(user_id, enabled=False)

    async def ban(self, user_id: int) -> int:
        """Ban and cancel the user's jobs; returns how many were cancelled."""
        await self._set_banned(user_id, True)
        return await self._jobs.cancel(user_id)

    async def unban(self, user_id: int) -> None:
        await self._set_banned(user_id, False)

    def begin_broadcast(self) -> bool:
        """False while one runs; called before any await, so a second one is refused."""
        if self._broadcasting:
            return False
        self._broadcasting = True
        return True

    def end_broadcast(self) -> None:
        self._broadcasting = False

    async def count_users(self) -> int:
        return await self._db.count_users()

    def user_ids(self) -> AsyncIterator[int]:
        return self._db.iter_user_ids()

    def memstats(self) -> str:
        text = self._monitor.memstats_text()
        return f"{text}\n\n{self._fleet()}" if self._fleet is not None else text

    def fleet_for(self, user_id: int) -> str:
        """The workers' lines for an admin's /status on the front; empty otherwise."""
        if self._fleet is None or not self.is_admin(user_id):
            return ""
        return f"\n\n{self._fleet()}"

    async def force_gc(self) -> str:
        return await self._monitor.force_gc()


@dataclass(frozen=True)
class Services:
    """Everything a plugin may reach, as `client.services`."""
    gate: GateService
    catchup: object  # helpers.catchup.Catchup: each message acted on once
    accounts: AccountService
    jobs: JobsService
    buttons: ButtonsService
    settings: SettingsService
    admin: AdminService
