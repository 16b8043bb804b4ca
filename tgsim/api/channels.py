"""channels.*: create, name, join, invite, admins, read, topics."""

from __future__ import annotations

import re

from pyrogram import raw
from pyrogram.raw.core.primitives import Bool

from tgsim.api import Call, handles
from tgsim.api.convert import Bundle, channel, message, user
from tgsim.api.messages import post
from tgsim.server import RpcFail
from tgsim.world import Topic

_USERNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{3,31}$")


def _chats_updates(call: Call, ch, updates=None):
    return raw.types.Updates(updates=updates or [], users=[], chats=[channel(ch, call.me.id)],
                             date=call.now(), seq=0)


@handles("channels.CreateChannel")
async def create_channel(call: Call, q):
    if not q.title.strip():
        raise RpcFail(400, "CHAT_TITLE_EMPTY")
    ch = call.world.add_channel(call.me.id, q.title, broadcast=bool(q.broadcast),
                                megagroup=bool(q.megagroup), forum=bool(q.forum),
                                about=q.about or "")
    return _chats_updates(call, ch)


@handles("channels.UpdateUsername")
async def update_username(call: Call, q):
    ch = call.channel_from_input(q.channel, need_member=True)
    if call.me.id not in ch.admins:
        raise RpcFail(400, "CHAT_ADMIN_REQUIRED")
    name = q.username or None
    if name and not _USERNAME.match(name):
        raise RpcFail(400, "USERNAME_INVALID")
    taken = call.world.by_username.get(name.lower()) if name else None
    if taken and taken != ("channel", ch.id):
        raise RpcFail(400, "USERNAME_OCCUPIED")
    call.world.set_username(ch, name)
    return Bool(True)


@handles("channels.JoinChannel")
async def join_channel(call: Call, q):
    ch = call.channel_from_input(q.channel)
    if ch.username is None and call.me.id not in ch.members:
        raise RpcFail(400, "CHANNEL_PRIVATE")
    call.world.add_member(ch, call.me.id, call.me.id)
    return _chats_updates(call, ch)


@handles("channels.LeaveChannel")
async def leave_channel(call: Call, q):
    ch = call.channel_from_input(q.channel, need_member=True)
    ch.members.discard(call.me.id)
    ch.admins.discard(call.me.id)
    return _chats_updates(call, ch)


@handles("channels.InviteToChannel")
async def invite_to_channel(call: Call, q):
    ch = call.channel_from_input(q.channel, need_member=True)
    if call.me.id not in ch.admins:
        raise RpcFail(400, "CHAT_ADMIN_REQUIRED")
    for u in q.users:
        call.world.add_member(ch, call.user_from_input(u).id, call.me.id)
    return raw.types.messages.InvitedUsers(updates=_chats_updates(call, ch), missing_invitees=[])


@handles("channels.EditAdmin")
async def edit_admin(call: Call, q):
    ch = call.channel_from_input(q.channel, need_member=True)
    if call.me.id != ch.creator_id:
        raise RpcFail(400, "CHAT_ADMIN_REQUIRED")
    target = call.user_from_input(q.user_id)
    rights = q.admin_rights
    call.world.add_member(ch, target.id, call.me.id,
                          admin=any(getattr(rights, f, False) for f in rights.__slots__))
    return _chats_updates(call, ch)


@handles("channels.GetChannels")
async def get_channels(call: Call, q):
    chats = []
    for item in q.id:
        try:
            chats.append(channel(call.channel_from_input(item), call.me.id))
        except RpcFail:
            continue
    return raw.types.messages.Chats(chats=chats)


@handles("channels.GetFullChannel")
async def get_full_channel(call: Call, q):
    ch = call.channel_from_input(q.channel, need_member=True)
    top = max(ch.messages) if ch.messages else 0
    full = raw.types.ChannelFull(
        id=ch.id, about=ch.about, read_inbox_max_id=top, read_outbox_max_id=top, unread_count=0,
        chat_photo=raw.types.PhotoEmpty(id=0), notify_settings=raw.types.PeerNotifySettings(),
        bot_info=[], pts=ch.pts, participants_count=len(ch.members),
        admins_count=len(ch.admins), can_view_participants=True)
    return raw.types.messages.ChatFull(full_chat=full, chats=[channel(ch, call.me.id)], users=[])


@handles("channels.GetMessages")
async def get_channel_messages(call: Call, q):
    ch = call.channel_from_input(q.channel, need_member=True)
    bundle = Bundle(call.world, call.me.id)
    bundle.channel_ids.add(ch.id)
    msgs = []
    for item in q.id[:200]:
        mid = item.id if isinstance(item, raw.types.InputMessageID) else None
        msg = ch.messages.get(mid) if mid else None
        if msg is None:
            msgs.append(raw.types.MessageEmpty(id=mid or 0))
            continue
        bundle.add_msg(msg)
        msgs.append(message(msg, None, ch))
    return raw.types.messages.ChannelMessages(pts=ch.pts, count=len(msgs), messages=msgs,
                                              topics=[], chats=bundle.chats(),
                                              users=bundle.users())


@handles("channels.DeleteMessages")
async def delete_channel_messages(call: Call, q):
    ch = call.channel_from_input(q.channel, need_member=True)
    removed = 0
    gone: list[int] = []
    for mid in q.id:
        msg = ch.messages.get(mid)
        if msg is None:
            continue
        if msg.from_id != call.me.id and call.me.id not in ch.admins:
            raise RpcFail(403, "MESSAGE_DELETE_FORBIDDEN")
        del ch.messages[mid]
        removed += 1
        gone.append(mid)
    ch.pts += removed
    if removed:
        call.sim.updates.record("channel", ch, raw.types.UpdateDeleteChannelMessages(
            channel_id=ch.id, messages=gone, pts=ch.pts, pts_count=removed))
    return raw.types.messages.AffectedMessages(pts=ch.pts, pts_count=removed)


@handles("channels.GetParticipant")
async def get_participant(call: Call, q):
    ch = call.channel_from_input(q.channel, need_member=True)
    target = call.user_from_input(q.participant)
    if target.id not in ch.members:
        raise RpcFail(400, "USER_NOT_PARTICIPANT")
    if target.id == ch.creator_id:
        part = raw.types.ChannelParticipantCreator(user_id=target.id,
                                                   admin_rights=raw.types.ChatAdminRights())
    elif target.id in ch.admins:
        part = raw.types.ChannelParticipantAdmin(
            user_id=target.id, promoted_by=ch.creator_id, date=ch.date,
            admin_rights=raw.types.ChatAdminRights(post_messages=True, edit_messages=True,
                                                   delete_messages=True))
    else:
        part = raw.types.ChannelParticipant(user_id=target.id, date=ch.date)
    users = [user(target, call.me.id)]
    if target.id != ch.creator_id and ch.creator_id in call.world.accounts:
        users.append(user(call.world.accounts[ch.creator_id], call.me.id))  # the promoter
    return raw.types.channels.ChannelParticipant(participant=part, chats=[], users=users)


@handles("channels.ReadHistory")
async def channel_read_history(call: Call, q):
    return Bool(True)


@handles("channels.CreateForumTopic")
async def create_forum_topic(call: Call, q):
    ch = call.channel_from_input(q.channel, need_member=True)
    if not ch.forum:
        raise RpcFail(400, "CHANNEL_FORUM_MISSING")
    bundle = Bundle(call.world, call.me.id)
    action = raw.types.MessageActionTopicCreate(title=q.title, icon_color=q.icon_color or 0)
    ups = post(call, ("channel", ch), action=action, random_id=q.random_id, bundle=bundle)
    topic_id = ups[-1].message.id
    ch.topics[topic_id] = Topic(id=topic_id, title=q.title, date=call.now())
    ch.messages[topic_id].top_id = None
    return raw.types.Updates(updates=ups, users=bundle.users(), chats=bundle.chats(),
                             date=call.now(), seq=0)
