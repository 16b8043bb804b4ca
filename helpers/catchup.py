"""Catching up on what users sent while the bot was down, each message acted on once.

Telegram does not push to a restarted client what arrived while it was away: the client
asks with updates.getDifference from the update state (pts/qts/date/seq) it stored
(core.telegram.org/api/updates, "Recovering gaps"). The client library can do that
(`Client.recover_gaps`, from the state in its session storage), but the state it stores is
written as each update *arrives*, before any handler ran, and committed whenever the storage
happens to commit: after a kill -9 it may be ahead of what was handled (a link lost) or far
behind it (everything since the last start acted on again). So the bot keeps its own:

- `handled_messages` (helpers/database.py): an incoming message is marked handled in the same
  transaction as the jobs it asked for, or before acting on it when it asks for no job. A
  message fetched again is then recognised and dropped: nothing is acted on twice.
- `update_state`: a checkpoint that never runs ahead of what was handled. It is the library's
  state read while the dispatcher was idle (every update it had received was taken by a
  worker and no handler was running), committed only `lag_s` later, when the dispatcher is
  idle again, so any handler that was still parsing then has long finished.

On start the checkpoint is handed to the library and `recover_gaps` fetches and dispatches
everything after it, through the same handlers as live updates. Messages older than
`max_age_s` get a short "arrived while I was offline" reply instead of a job.
"""

from __future__ import annotations

import asyncio
import logging
import time

from helpers.client_adapter import (
    delete_update_states,
    dispatcher_is_idle,
    set_update_state,
    update_states,
)

log = logging.getLogger(__name__)

# What a link looks like before parsing: enough to tell "may ask for a job" from the rest.
_LINK_HOSTS = ("t.me/", "telegram.me/", "telegram.dog/")

NEW, SEEN, STALE = "new", "seen", "stale"


def asks_for_jobs(text: str | None) -> bool:
    """A message that may become jobs is marked handled with them, not before."""
    lowered = (text or "").lower()
    return any(host in lowered for host in _LINK_HOSTS)


def offline_note(age_s: float) -> str:
    hours = age_s / 3600
    when = f"{hours:.0f} h" if hours >= 1 else f"{max(1, round(age_s / 60))} min"
    return (f"This arrived while I was offline ({when} ago), so I did not queue it. "
            "Send the link again if you still want it.")


class Catchup:
    """Parameters:
        client: the bot's pyrogram Client (its storage holds the library's update state).
        db: helpers.database.Database.
        max_age_s: messages older than this at catch-up get the offline note, no job.
        lag_s: how long a checkpoint candidate waits before it is committed.
        keep_s: how long handled marks are kept (pruned beyond it).
        resync_s: how often to ask for a difference while running. Telegram keeps nothing
            for a connection that stayed down (and says nothing of a gap until the next
            update), so a client is expected to call getDifference now and then; the
            library's own watchdog does it every 15 min only with skip_updates=False.
    """

    def __init__(self, client, db, *, max_age_s: float, lag_s: float = 60.0,
                 keep_s: float = 7 * 86400, resync_s: float = 900.0):
        self.client = client
        self.db = db
        self.max_age_s = max_age_s
        self.lag_s = lag_s
        self.keep_s = max(keep_s, 2 * max_age_s)
        self._ready = asyncio.Event()
        self._candidate: tuple[float, tuple[int, int, int, int]] | None = None
        self._pruned = 0.0
        self._committed_at: float | None = None  # wall clock of this run's last checkpoint
        self._recovered = False  # the library's state is ours to checkpoint from now on
        self.resync_s = resync_s
        self._resynced = time.monotonic()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        """Handlers wait here until the checkpoint is handed to the library, so an update
        that comes during start-up is acted on (and marked) like any other."""
        await self._ready.wait()

    def release(self) -> None:
        """At stop before start-up finished: let waiting handlers run (or the dispatcher
        never drains); what they do not mark is fetched again next start."""
        self._ready.set()

    # the gate ---------------------------------------------------------------------------
    async def admit(self, chat_id: int, msg_id: int, date: float, text: str | None) -> str:
        """NEW: act on it (marked handled already unless it may ask for jobs, which are
        marked with them); SEEN: acted on before; STALE: too old, answer the offline note
        (marked handled: it is answered once)."""
        if asks_for_jobs(text):
            if await self.db.was_handled(chat_id, msg_id):
                return SEEN
            if time.time() - date > self.max_age_s:
                return STALE if await self.db.mark_handled(chat_id, msg_id) else SEEN
            return NEW
        return NEW if await self.db.mark_handled(chat_id, msg_id) else SEEN

    async def done(self, chat_id: int, msg_id: int) -> bool:
        """Mark a message that asked for jobs but got none (an error, a refusal) handled;
        False when another worker got there first."""
        return await self.db.mark_handled(chat_id, msg_id)

    # start and stop ---------------------------------------------------------------------
    async def recover(self) -> tuple[int, int]:
        """Hand our checkpoint to the library and fetch everything after it. Without one
        (first start) the library's own state stands: on a fresh session it is the server's
        state (updates.getState at sign-in), so nothing before the bot existed is fetched."""
        try:
            saved = await self.db.get_update_state()
            if saved is not None:
                pts, qts, date, seq = saved
                await set_update_state(self.client, 0, pts, qts, date, seq)
        finally:
            self._ready.set()
        counts = await self._recover_gaps()
        self._recovered = True
        log.info("Caught up: %s message(s), %s other update(s) since the last run", *counts)
        return counts

    async def checkpoint_at_stop(self, wait_s: float = 3.0) -> None:
        """At a clean stop: once the dispatcher is idle, what it received is handled.
        Anything that arrives after this is fetched again next start and dropped as SEEN."""
        if not self._recovered:
            return
        deadline = time.monotonic() + wait_s
        while not dispatcher_is_idle(self.client):
            if time.monotonic() > deadline:
                log.info("update state not saved at stop: handlers still busy")
                return
            await asyncio.sleep(0.05)
        state = await self._library_state()
        if state is not None:
            await self.db.set_update_state(*state)

    async def tick(self) -> None:
        """Advance the checkpoint (see the module docstring); prune old handled marks."""
        if not self._recovered:
            return
        now = time.monotonic()
        if not dispatcher_is_idle(self.client):
            self._candidate = None
            return
        if self._candidate is not None and now - self._candidate[0] >= self.lag_s:
            await self.db.set_update_state(*self._candidate[1])
            self._committed_at = time.time() - (now - self._candidate[0])
            self._candidate = None
        if self._candidate is None:
            state = await self._library_state()
            if state is not None:
                self._candidate = (now, state)
        if now - self._resynced >= self.resync_s and self.client.is_connected:
            self._resynced = now
            counts = await self._recover_gaps()
            if any(counts):
                log.info("Resync fetched %s message(s), %s other update(s)", *counts)
        if self._committed_at is not None and now - self._pruned > 3600:
            # never a mark that a catch-up from the checkpoint could still fetch again
            self._pruned = now
            await self.db.prune_handled(min(time.time() - self.keep_s,
                                            self._committed_at - 3600))

    async def _recover_gaps(self) -> tuple[int, int]:
        """The library's recover_gaps, minus the channel states it cannot use. A bot's
        updateChannelParticipant carries a channel_id and an (account-wide) qts but no pts
        (core.telegram.org/constructor/updateChannelParticipant), and kurigram 2.2.26 stores
        it as that channel's state with pts NULL; getChannelDifference(pts=None) then fails
        before it is sent, and with it the whole catch-up. Such a channel is simply asked
        from its next real state on."""
        states = await update_states(self.client)
        unusable = [s.id for s in states if s.id != 0 and s.pts is None]
        if unusable:
            await delete_update_states(self.client, unusable)
        return await self.client.recover_gaps()

    async def _library_state(self) -> tuple[int, int, int, int] | None:
        states = await update_states(self.client, 0)
        if not states or states[0].pts is None:
            return None
        s = states[0]
        return s.pts, s.qts or 0, s.date or 0, s.seq or 0
