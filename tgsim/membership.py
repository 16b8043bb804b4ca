"""What Telegram tells an account that someone else added to a channel or group.

A user is sent updateChannel with the channel in `chats`; a bot also gets
updateChannelParticipant (core.telegram.org/constructor/updateChannelParticipant: "can only
be received by bots" for its basic-group twin; it is what the Bot API calls my_chat_member).
The channel constructor in `chats` carries the member's own access_hash, which is how a
running client learns a private chat it was never shown before (core.telegram.org/api/peers).
"""

from __future__ import annotations

import time

from pyrogram import raw

from tgsim.api.convert import channel, user
from tgsim.world import Channel


def _participant(ch: Channel, user_id: int, actor_id: int | None, admin: bool, date: int):
    if admin:
        return raw.types.ChannelParticipantAdmin(
            user_id=user_id, promoted_by=actor_id or ch.creator_id, date=date,
            admin_rights=raw.types.ChatAdminRights(
                change_info=True, post_messages=True, edit_messages=True,
                delete_messages=True, ban_users=True, invite_users=True, pin_messages=True),
            inviter_id=actor_id)
    return raw.types.ChannelParticipant(user_id=user_id, date=date)


def announce(sim, ch: Channel, user_id: int, actor_id: int | None,
             before: tuple[bool, bool]) -> None:
    """Push the membership change to `user_id` unless it made the change itself (it has the
    answer to its own call)."""
    world = sim.world
    acc = world.accounts.get(user_id)
    if acc is None or actor_id == user_id:
        return
    now = int(time.time())
    was_member, was_admin = before
    updates: list = [raw.types.UpdateChannel(channel_id=ch.id)]
    users = [user(acc, acc.id)]
    actor = world.accounts.get(actor_id or ch.creator_id)
    if actor is not None and actor.id != acc.id:
        users.append(user(actor, acc.id))
    if acc.bot:
        acc.qts += 1
        updates.append(raw.types.UpdateChannelParticipant(
            channel_id=ch.id, date=now, actor_id=actor_id or ch.creator_id, user_id=user_id,
            qts=acc.qts,
            prev_participant=_participant(ch, user_id, actor_id, was_admin, now)
            if was_member else None,
            new_participant=_participant(ch, user_id, actor_id, user_id in ch.admins, now)))
    sim.push(user_id, raw.types.Updates(updates=updates, users=users,
                                        chats=[channel(ch, user_id)], date=now, seq=0))
