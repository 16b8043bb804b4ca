"""Each account's and each channel's recent update history, the way Telegram keeps it.

Telegram does not replay to a new session what happened while a client was offline: the
client asks, from the state it stored, with updates.getDifference (its common pts/qts/date
sequence: private chats) and updates.getChannelDifference (one pts sequence per channel), and
the server answers from the history it still has. Past that history it answers
updates.differenceTooLong / updates.channelDifferenceTooLong and the client must start again
from the state given (core.telegram.org/api/updates, "Recovering gaps" and "Update
sequences"). This module is that history: every change of a pts is recorded here with the
update that made it, bounded per owner (the log's horizon), and served back as a difference.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Iterable

from pyrogram import raw

# One getDifference answer carries at most this many events; the rest come as
# updates.differenceSlice with an intermediate_state the client asks again from.
DIFFERENCE_SLICE = 100
# getChannelDifference: Telegram caps `limit` at 100 for users and 100000 for bots
# (core.telegram.org/method/updates.getChannelDifference).
CHANNEL_LIMIT_USER = 100
CHANNEL_LIMIT_BOT = 100000


@dataclass
class Entry:
    pts: int
    pts_count: int
    date: int
    update: object
    users: list
    chats: list


class UpdateLog:
    """Per owner ("user" or "channel", id): the last `size` pts events, oldest first."""

    def __init__(self, size: int = 1000):
        self.size = max(1, int(size))
        self._logs: dict[tuple[str, int], collections.deque] = {}

    def record(self, kind: str, owner, update, users: Iterable = (), chats: Iterable = ()) -> None:
        """Log `update` (its pts/pts_count already set) for an Account or a Channel."""
        key = (kind, owner.id)
        log = self._logs.get(key)
        if log is None or log.maxlen != self.size:
            log = self._logs[key] = collections.deque(log or (), maxlen=self.size)
        log.append(Entry(pts=update.pts, pts_count=update.pts_count, date=int(time.time()),
                         update=update, users=list(users), chats=list(chats)))

    def entries(self, kind: str, owner_id: int) -> collections.deque:
        return self._logs.get((kind, owner_id)) or collections.deque()

    @staticmethod
    def _horizon(log, current_pts: int) -> int:
        """The oldest pts a client may still ask from: anything before it was dropped."""
        if not log:
            return current_pts
        return log[0].pts - log[0].pts_count

    # updates.getState / getDifference: the account's common sequence ---------------------
    @staticmethod
    def state(acc, date: int | None = None) -> raw.types.updates.State:
        # qts counts secret-chat and some bot events, which tgsim has none of
        return raw.types.updates.State(pts=acc.pts, qts=0, date=date or int(time.time()),
                                       seq=acc.seq, unread_count=0)

    def difference(self, acc, pts: int, date: int, pts_total_limit: int | None,
                   channel_news: list) -> object:
        """The account's events after `pts` (core.telegram.org/method/updates.getDifference).

        `channel_news` is [(raw Channel, pts)] of channels the account is in that changed since
        `date`: Telegram does not put channel messages in getDifference but an
        updateChannelTooLong per channel, for the client to call getChannelDifference.
        """
        now = int(time.time())
        log = self.entries("user", acc.id)
        if pts >= acc.pts and not channel_news:
            return raw.types.updates.DifferenceEmpty(date=now, seq=acc.seq)
        if pts < self._horizon(log, acc.pts) or (
                pts_total_limit and pts + pts_total_limit < acc.pts):
            return raw.types.updates.DifferenceTooLong(pts=acc.pts)
        pending = [e for e in log if e.pts > pts]
        chunk = pending[:DIFFERENCE_SLICE]
        new_messages, other, users, chats = [], [], {}, {}
        for e in chunk:
            if isinstance(e.update, raw.types.UpdateNewMessage):
                new_messages.append(e.update.message)
            else:
                other.append(e.update)
            users.update({u.id: u for u in e.users})
            chats.update({c.id: c for c in e.chats})
        if len(pending) > len(chunk):
            last = chunk[-1]
            return raw.types.updates.DifferenceSlice(
                new_messages=new_messages, new_encrypted_messages=[], other_updates=other,
                chats=list(chats.values()), users=list(users.values()),
                intermediate_state=raw.types.updates.State(
                    pts=last.pts, qts=0, date=last.date, seq=acc.seq, unread_count=0))
        for ch, ch_pts in channel_news:
            other.append(raw.types.UpdateChannelTooLong(channel_id=ch.id, pts=ch_pts))
            chats[ch.id] = ch
        return raw.types.updates.Difference(
            new_messages=new_messages, new_encrypted_messages=[], other_updates=other,
            chats=list(chats.values()), users=list(users.values()), state=self.state(acc, now))

    def channels_changed_since(self, channel_ids: Iterable[int], date: int) -> list[int]:
        return [cid for cid in channel_ids
                if (log := self.entries("channel", cid)) and log[-1].date > date]

    # updates.getChannelDifference: one channel's sequence -----------------------------------
    def channel_difference(self, ch, pts: int, limit: int, is_bot: bool, msg_filter,
                           dialog_of, latest_messages) -> object:
        """One channel's events after `pts`; past the horizon channelDifferenceTooLong with the
        channel's dialog (its current pts) and latest messages, as Telegram answers."""
        log = self.entries("channel", ch.id)
        if pts >= ch.pts:
            return raw.types.updates.ChannelDifferenceEmpty(pts=ch.pts, final=True)
        if pts < self._horizon(log, ch.pts):
            msgs, users, chats = latest_messages()
            return raw.types.updates.ChannelDifferenceTooLong(
                final=True, dialog=dialog_of(), messages=msgs, chats=chats, users=users)
        cap = CHANNEL_LIMIT_BOT if is_bot else CHANNEL_LIMIT_USER
        limit = max(1, min(int(limit or cap), cap))
        pending = [e for e in log if e.pts > pts]
        chunk = pending[:limit]
        ranges = getattr(msg_filter, "ranges", None)
        new_messages, other, users, chats = [], [], {}, {}
        for e in chunk:
            if isinstance(e.update, raw.types.UpdateNewChannelMessage):
                mid = e.update.message.id
                if ranges is not None and not any(r.min_id <= mid <= r.max_id for r in ranges):
                    continue
                new_messages.append(e.update.message)
            elif ranges is None:
                other.append(e.update)
            else:
                continue
            users.update({u.id: u for u in e.users})
            chats.update({c.id: c for c in e.chats})
        final = len(pending) == len(chunk)
        return raw.types.updates.ChannelDifference(
            final=final, pts=ch.pts if final else chunk[-1].pts, new_messages=new_messages,
            other_updates=other, chats=list(chats.values()), users=list(users.values()))
