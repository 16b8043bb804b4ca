"""help.*, updates.*, users.*, contacts.*, bots.*: the calls a client makes around the edges."""

from __future__ import annotations

import time

from pyrogram import raw
from pyrogram.raw.core.primitives import Bool, Vector

from tgsim.api import Call, handles
from tgsim.api.convert import Bundle, channel, user
from tgsim.server import RpcFail
from tgsim.world import DC_ID


@handles("help.GetConfig")
async def get_config(call: Call, q):
    # every DC on its own port, plain and media-only: the list a client finds the other DCs
    # in (core.telegram.org/api/datacenter)
    options = []
    for dc, (host, port) in call.sim.dc_table.items():
        options.append(raw.types.DcOption(id=dc, ip_address=host, port=port))
        options.append(raw.types.DcOption(id=dc, ip_address=host, port=port, media_only=True))
    options += call.sim.cdn.dc_options()  # the CDN DC, on a port of its own (tgsim/cdn.py)
    now = int(time.time())
    return raw.types.Config(
        date=now, expires=now + 3600, test_mode=False, this_dc=call.dc_id, dc_options=options,
        dc_txt_domain_name="tgsim.invalid", chat_size_max=200, megagroup_size_max=200000,
        forwarded_count_max=100, online_update_period_ms=210000, offline_blur_timeout_ms=5000,
        offline_idle_timeout_ms=30000, online_cloud_timeout_ms=300000,
        notify_cloud_delay_ms=30000, notify_default_delay_ms=1500, push_chat_period_ms=60000,
        push_chat_limit=2, edit_time_limit=172800, revoke_time_limit=172800,
        revoke_pm_time_limit=2147483647, rating_e_decay=2419200, stickers_recent_limit=200,
        channels_read_media_period=604800, call_receive_timeout_ms=20000,
        call_ring_timeout_ms=90000, call_connect_timeout_ms=30000, call_packet_timeout_ms=10000,
        me_url_prefix="https://t.me/", caption_length_max=1024, message_length_max=4096,
        webfile_dc_id=4)


@handles("help.GetNearestDc")
async def nearest_dc(call: Call, q):
    return raw.types.NearestDc(country="ZZ", this_dc=call.dc_id, nearest_dc=DC_ID)


@handles("updates.GetState")
async def get_state(call: Call, q):
    """The account's real state, which a client stores and later asks getDifference from."""
    return call.sim.updates.state(call.me)


@handles("updates.GetDifference")
async def get_difference(call: Call, q):
    """What happened after the client's pts, from the account's bounded update log; past its
    horizon updates.differenceTooLong (core.telegram.org/api/updates, "Recovering gaps").
    Channels the account is in that changed since `date` come as updateChannelTooLong, for
    getChannelDifference, as Telegram sends them."""
    me = call.me
    member_of = [ch for ch in call.world.channels.values() if me.id in ch.members]
    changed = set(call.sim.updates.channels_changed_since((ch.id for ch in member_of), q.date))
    news = [(channel(ch, me.id), ch.pts) for ch in member_of if ch.id in changed]
    return call.sim.updates.difference(me, q.pts, q.date, q.pts_total_limit, news)


@handles("updates.GetChannelDifference")
async def get_channel_difference(call: Call, q):
    """One channel's updates after `pts` (core.telegram.org/method/updates.getChannelDifference):
    members only (CHANNEL_PRIVATE otherwise), channelDifferenceTooLong past the log's horizon."""
    me = call.me
    ch = call.channel_from_input(q.channel, need_member=True)
    from tgsim.api.convert import message as tl_message

    def extras(msgs) -> tuple[list, list]:
        bundle = Bundle(call.world, me.id)
        bundle.channel_ids.add(ch.id)
        for m in msgs:
            uid = getattr(getattr(m, "from_id", None), "user_id", None)
            if uid in call.world.accounts:
                bundle.user_ids.add(uid)
        return bundle.users(), bundle.chats()

    def dialog():
        top = max(ch.messages) if ch.messages else 0
        return raw.types.Dialog(
            peer=raw.types.PeerChannel(channel_id=ch.id), top_message=top,
            read_inbox_max_id=top, read_outbox_max_id=top, unread_count=0,
            unread_mentions_count=0, unread_reactions_count=0, unread_poll_votes_count=0,
            notify_settings=raw.types.PeerNotifySettings(), pts=ch.pts)

    def latest():
        msgs = [tl_message(ch.messages[i], None, ch) for i in sorted(ch.messages)[-10:]]
        users, chats = extras(msgs)
        return msgs, users, chats

    diff = call.sim.updates.channel_difference(ch, q.pts, q.limit, me.bot, q.filter,
                                               dialog, latest)
    if isinstance(diff, raw.types.updates.ChannelDifference):
        diff.users, diff.chats = extras(diff.new_messages)
    return diff


@handles("users.GetFullUser")
async def get_full_user(call: Call, q):
    acc = call.user_from_input(q.id)
    full = raw.types.UserFull(
        id=acc.id, settings=raw.types.PeerSettings(), notify_settings=raw.types.PeerNotifySettings(),
        common_chats_count=0,
        bot_info=raw.types.BotInfo(user_id=acc.id, commands=list(acc.bot_commands))
        if acc.bot else None)
    return raw.types.users.UserFull(full_user=full, chats=[], users=[user(acc, call.me.id)])


@handles("users.GetUsers")
async def get_users(call: Call, q):
    out = []
    for item in q.id:
        try:
            out.append(user(call.user_from_input(item), call.me.id))
        except RpcFail:
            continue
    return Vector(out)


@handles("contacts.ResolveUsername")
async def resolve_username(call: Call, q):
    found = call.world.by_username.get(q.username.lower())
    if found is None:
        raise RpcFail(400, "USERNAME_NOT_OCCUPIED")
    kind, pid = found
    me = call.me
    if kind == "user":
        return raw.types.contacts.ResolvedPeer(
            peer=raw.types.PeerUser(user_id=pid), chats=[],
            users=[user(call.world.accounts[pid], me.id)])
    return raw.types.contacts.ResolvedPeer(
        peer=raw.types.PeerChannel(channel_id=pid),
        chats=[channel(call.world.channels[pid], me.id)], users=[])


@handles("contacts.GetContacts")
async def get_contacts(call: Call, q):
    return raw.types.contacts.Contacts(contacts=[], saved_count=0, users=[])


@handles("bots.SetBotCommands")
async def set_bot_commands(call: Call, q):
    me = call.me
    if not me.bot:
        raise RpcFail(400, "USER_BOT_REQUIRED")
    me.bot_commands = list(q.commands)[:100]
    return Bool(True)


@handles("bots.GetBotCommands")
async def get_bot_commands(call: Call, q):
    return Vector(list(call.me.bot_commands))


@handles("bots.ResetBotCommands")
async def reset_bot_commands(call: Call, q):
    call.me.bot_commands = []
    return Bool(True)


@handles("account.UpdateStatus", "messages.SetTyping", "account.RegisterDevice")
async def accept(call: Call, q):
    return Bool(True)


@handles("messages.GetDialogs")
async def get_dialogs(call: Call, q):
    me = call.me
    bundle = Bundle(call.world, me.id)
    dialogs, messages = [], []
    from tgsim.api.convert import message as tl_message
    for ch in call.world.channels.values():
        if me.id not in ch.members:
            continue
        bundle.channel_ids.add(ch.id)
        top = max(ch.messages) if ch.messages else 0
        if top:
            messages.append(tl_message(ch.messages[top], None, ch))
        dialogs.append(raw.types.Dialog(
            peer=raw.types.PeerChannel(channel_id=ch.id), top_message=top,
            read_inbox_max_id=top, read_outbox_max_id=top, unread_count=0,
            unread_mentions_count=0, unread_reactions_count=0, unread_poll_votes_count=0,
            notify_settings=raw.types.PeerNotifySettings(), pts=ch.pts))
        if len(dialogs) >= 100:
            break
    return raw.types.messages.Dialogs(dialogs=dialogs, messages=messages,
                                      chats=bundle.chats(), users=bundle.users())
