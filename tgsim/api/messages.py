"""messages.*: sending, editing, deleting, reading, forwarding, media, callbacks, invites."""

from __future__ import annotations

import asyncio
import os

from pyrogram import raw
from pyrogram.raw.core.primitives import Bool

from tgsim import limits
from tgsim.api import Call, handles
from tgsim.api.convert import Bundle, channel, message, user
from tgsim.file_refs import checked
from tgsim.server import RpcFail
from tgsim.world import Account, Channel, Media, Msg

CALLBACK_TIMEOUT = 10.0


def _updates(call: Call, updates: list, bundle: Bundle):
    return raw.types.Updates(updates=updates, users=bundle.users(), chats=bundle.chats(),
                             date=call.now(), seq=0)


def _push(call: Call, account_id: int, update, users: list) -> None:
    """Deliver one update to the other side of a private chat (or to a bot)."""
    call.sim.push(account_id, raw.types.Updates(updates=[update], users=users, chats=[],
                                                date=call.now(), seq=0))


def _log(call: Call, kind: str, owner, update, bundle: Bundle | None = None) -> None:
    """Every pts change goes into the owner's update log, which getDifference serves."""
    call.sim.updates.record(kind, owner, update, bundle.users() if bundle else (),
                            bundle.chats() if bundle else ())


def _reply_ids(ch: Channel | None, reply_to) -> tuple[int | None, int | None]:
    """(reply_to_msg_id, topic id) from an InputReplyTo, as forums thread them."""
    if reply_to is None or not isinstance(reply_to, raw.types.InputReplyToMessage):
        return None, None
    rid = reply_to.reply_to_msg_id
    top = getattr(reply_to, "top_msg_id", None)
    if ch is not None and ch.forum:
        if top is None and rid in ch.topics:
            return None, rid
        if top is None and rid in ch.messages:
            top = ch.messages[rid].top_id
        return (None if rid == top else rid), top
    return rid, None


def post(call: Call, target: tuple[str, object], *, text: str = "", entities=None,
         media: Media | None = None, reply_to=None, reply_markup=None, grouped_id=None,
         fwd_from=None, random_id: int | None = None, bundle: Bundle | None = None,
         action=None) -> list:
    """Store a new message from the caller and return the caller's updates for it.
    The other side of a private chat gets its copy pushed."""
    me = call.me
    bundle = bundle or Bundle(call.world, me.id)
    kind, obj = target
    text = text or ""
    if fwd_from is None:
        # What the sender posts as its own is checked, lengths in UTF-16 units and longer
        # captions for premium senders (core.telegram.org/api/entities, /api/config). A
        # forward with its header keeps the original as it is; one without the author
        # (drop_author) is the forwarder's own message and is held to the forwarder's limit,
        # the stricter reading where the docs say nothing.
        limits.check_text(text, entities, media=media is not None, premium=me.premium)
    if not text and media is None and action is None:
        raise RpcFail(400, "MESSAGE_EMPTY")
    out: list = []
    if kind == "channel":
        ch: Channel = obj
        if me.id not in ch.members:
            raise RpcFail(403, "CHAT_WRITE_FORBIDDEN")
        if ch.broadcast and me.id not in ch.admins:
            raise RpcFail(403, "CHAT_ADMIN_REQUIRED")
        rid, top = _reply_ids(ch, reply_to)
        msg = Msg(id=ch.new_msg_id(), peer=("channel", ch.id), date=call.now(), text=text,
                  from_id=me.id, entities=entities, media=media, grouped_id=grouped_id,
                  reply_to=rid, top_id=top, reply_markup=reply_markup, fwd_from=fwd_from,
                  action=action)
        ch.messages[msg.id] = msg
        ch.pts += 1
        bundle.add_msg(msg)
        if random_id is not None:
            out.append(raw.types.UpdateMessageID(id=msg.id, random_id=random_id))
        up = raw.types.UpdateNewChannelMessage(message=message(msg, None, ch), pts=ch.pts,
                                               pts_count=1)
        _log(call, "channel", ch, up)
        out.append(up)
        return out
    other: Account = obj
    if other.bot and me.bot:
        raise RpcFail(400, "USER_IS_BOT")
    rid, _ = _reply_ids(None, reply_to)
    mine = Msg(id=me.new_msg_id(), peer=("user", other.id), date=call.now(), text=text,
               from_id=me.id, entities=entities, media=media, grouped_id=grouped_id,
               reply_to=rid, reply_markup=reply_markup, fwd_from=fwd_from, action=action)
    me.box[mine.id] = mine
    me.pts += 1
    bundle.add_msg(mine)
    if random_id is not None:
        out.append(raw.types.UpdateMessageID(id=mine.id, random_id=random_id))
    up = raw.types.UpdateNewMessage(message=message(mine, me.id), pts=me.pts, pts_count=1)
    _log(call, "user", me, up, bundle)
    out.append(up)
    if other.id != me.id:
        twin_reply = me.box[rid].twin[1] if rid in me.box and me.box[rid].twin else None
        theirs = Msg(id=other.new_msg_id(), peer=("user", me.id), date=mine.date, text=text,
                     from_id=me.id, entities=entities, media=media, grouped_id=grouped_id,
                     reply_to=twin_reply, reply_markup=reply_markup, fwd_from=fwd_from,
                     action=action, twin=(me.id, mine.id))
        mine.twin = (other.id, theirs.id)
        other.box[theirs.id] = theirs
        other.pts += 1
        ob = Bundle(call.world, other.id)
        ob.add_msg(theirs)
        up = raw.types.UpdateNewMessage(message=message(theirs, other.id), pts=other.pts,
                                        pts_count=1)
        _log(call, "user", other, up, ob)
        _push(call, other.id, up, ob.users())
    return out


async def media_from_input(call: Call, m, index: int | None = None) -> Media:
    """`index`: the item's place in a sendMultiMedia, which names it in reference errors."""
    world = call.world
    if isinstance(m, raw.types.InputMediaUploadedDocument):
        path, size = await _finish(call, m.file)
        attrs = list(m.attributes or [])
        if not any(isinstance(a, raw.types.DocumentAttributeFilename) for a in attrs):
            attrs.append(raw.types.DocumentAttributeFilename(file_name=m.file.name or "file"))
        thumb_path, thumb_size = (None, 0)
        if m.thumb is not None:
            thumb_path, thumb_size = await _finish(call, m.thumb)
        return world.new_media("document", path, size, mime_type=m.mime_type or
                               "application/octet-stream", attributes=attrs,
                               thumb_path=thumb_path, thumb_size=thumb_size,
                               album_kind=limits.upload_kind(m),
                               dc_id=call.dc_id)  # stored where it was uploaded
    if isinstance(m, raw.types.InputMediaUploadedPhoto):
        path, size = await _finish(call, m.file)
        return world.new_media("photo", path, size, mime_type="image/jpeg", dc_id=call.dc_id)
    if isinstance(m, (raw.types.InputMediaDocument, raw.types.InputMediaPhoto)):
        ref = m.id
        media = world.media.get(getattr(ref, "id", None))
        if media is None or media.access_hash != ref.access_hash:
            raise RpcFail(400, "MEDIA_INVALID")
        # re-sending by reference needs a fresh one (core.telegram.org/api/file_reference),
        # and one handed out in a protected chat may not be re-sent, as it may not be
        # forwarded (core.telegram.org/api/content-protection)
        origin = checked(call, media, ref.file_reference, index)
        source = world.channels.get(origin) if origin else None
        if source is not None and source.noforwards:
            call.sim.stats["chat_forwards_restricted"] += 1
            raise RpcFail(400, "CHAT_FORWARDS_RESTRICTED")
        return media
    raise RpcFail(400, "MEDIA_INVALID")


async def _finish(call: Call, input_file) -> tuple:
    if not isinstance(input_file, (raw.types.InputFile, raw.types.InputFileBig)):
        raise RpcFail(400, "FILE_PARTS_INVALID")
    big = isinstance(input_file, raw.types.InputFileBig)

    def check(up) -> None:
        if big and up.total_parts != input_file.parts:
            raise RpcFail(400, "FILE_PARTS_INVALID")
        limits.check_parts(up.sizes, input_file.parts, big)

    try:
        return await call.world.finish_upload(call.auth.key_id, input_file.id,
                                              input_file.parts, check)
    except LookupError as e:
        raise RpcFail(400, str(e) or "FILE_PARTS_INVALID") from None


@handles("messages.SendMessage")
async def send_message(call: Call, q):
    target = call.peer_from_input(q.peer)
    bundle = Bundle(call.world, call.me.id)
    call.sim.random_ids.check(call.me.id, [q.random_id])  # RANDOM_ID_DUPLICATE (key_places)
    ups = post(call, target, text=q.message, entities=q.entities, reply_to=q.reply_to,
               reply_markup=q.reply_markup, random_id=q.random_id, bundle=bundle)
    call.sim.random_ids.record(call.me.id, [q.random_id])
    return _updates(call, ups, bundle)


@handles("messages.SendMedia")
async def send_media(call: Call, q):
    target = call.peer_from_input(q.peer)
    bundle = Bundle(call.world, call.me.id)
    media = await media_from_input(call, q.media)
    call.sim.random_ids.check(call.me.id, [q.random_id])
    ups = post(call, target, text=q.message, entities=q.entities, media=media,
               reply_to=q.reply_to, reply_markup=q.reply_markup, random_id=q.random_id,
               bundle=bundle)
    call.sim.random_ids.record(call.me.id, [q.random_id])
    return _updates(call, ups, bundle)


@handles("messages.UploadMedia")
async def upload_media(call: Call, q):
    media = await media_from_input(call, q.media)
    from tgsim.api.convert import media as tl_media
    return tl_media(media)


@handles("messages.SendMultiMedia")
async def send_multi_media(call: Call, q):
    target = call.peer_from_input(q.peer)
    bundle = Bundle(call.world, call.me.id)
    limits.check_album(q.multi_media)
    # every item is checked before any is posted: Telegram sends an album whole or not at all
    medias = [await media_from_input(call, single.media, i)
              for i, single in enumerate(q.multi_media)]
    limits.check_album_kinds([limits.media_kind(m) for m in medias])
    group = int.from_bytes(os.urandom(7), "little")
    call.sim.random_ids.check(call.me.id, [s.random_id for s in q.multi_media])
    ups = []
    for single, media in zip(q.multi_media, medias):
        ups += post(call, target, text=single.message, entities=single.entities, media=media,
                    reply_to=q.reply_to, grouped_id=group, random_id=single.random_id,
                    bundle=bundle)
    call.sim.random_ids.record(call.me.id, [s.random_id for s in q.multi_media])
    return _updates(call, ups, bundle)


def _find(call: Call, target, msg_id: int) -> tuple[Msg, Channel | None]:
    kind, obj = target
    box = obj.messages if kind == "channel" else call.me.box
    msg = box.get(msg_id)
    if msg is None or (kind == "user" and msg.peer != ("user", obj.id)):
        raise RpcFail(400, "MESSAGE_ID_INVALID")
    return msg, (obj if kind == "channel" else None)


@handles("messages.EditMessage")
async def edit_message(call: Call, q):
    me = call.me
    target = call.peer_from_input(q.peer)
    msg, ch = _find(call, target, q.id)
    if msg.from_id != me.id and not (ch and me.id in ch.admins):
        raise RpcFail(403, "MESSAGE_AUTHOR_REQUIRED")
    new_text = msg.text if q.message is None else q.message
    new_media = (await media_from_input(call, q.media) if q.media is not None
                 else msg.media)
    if q.message is not None:
        limits.check_text(new_text, q.entities, media=new_media is not None,
                          premium=me.premium)
    if (new_text == msg.text and new_media is msg.media and q.reply_markup == msg.reply_markup
            and (q.entities or None) == (msg.entities or None)):
        raise RpcFail(400, "MESSAGE_NOT_MODIFIED")
    changed = [msg]
    if msg.twin:
        other = call.world.accounts[msg.twin[0]]
        if msg.twin[1] in other.box:
            changed.append(other.box[msg.twin[1]])
    for m in changed:
        m.text, m.media, m.edit_date = new_text, new_media, call.now()
        m.entities = q.entities if q.message is not None else m.entities
        m.reply_markup = q.reply_markup
    bundle = Bundle(call.world, me.id)
    bundle.add_msg(msg)
    if ch is not None:
        ch.pts += 1
        up = raw.types.UpdateEditChannelMessage(message=message(msg, None, ch), pts=ch.pts,
                                                pts_count=1)
        _log(call, "channel", ch, up)
        return _updates(call, [up], bundle)
    me.pts += 1
    if len(changed) > 1:
        other = call.world.accounts[msg.twin[0]]
        other.pts += 1
        ob = Bundle(call.world, other.id)
        ob.add_msg(changed[1])
        their_up = raw.types.UpdateEditMessage(message=message(changed[1], other.id),
                                               pts=other.pts, pts_count=1)
        _log(call, "user", other, their_up, ob)
        _push(call, other.id, their_up, ob.users())
    up = raw.types.UpdateEditMessage(message=message(msg, me.id), pts=me.pts, pts_count=1)
    _log(call, "user", me, up, bundle)
    return _updates(call, [up], bundle)


@handles("messages.DeleteMessages")
async def delete_messages(call: Call, q):
    me = call.me
    removed = []
    for mid in q.id:
        msg = me.box.pop(mid, None)
        if msg is None:
            continue
        removed.append(mid)
        if msg.twin and (q.revoke or me.bot):
            other = call.world.accounts.get(msg.twin[0])
            if other and other.box.pop(msg.twin[1], None) is not None:
                other.pts += 1
                up = raw.types.UpdateDeleteMessages(messages=[msg.twin[1]], pts=other.pts,
                                                    pts_count=1)
                _log(call, "user", other, up)
                _push(call, other.id, up, [])
    me.pts += len(removed)
    if removed:
        _log(call, "user", me, raw.types.UpdateDeleteMessages(
            messages=removed, pts=me.pts, pts_count=len(removed)))
    return raw.types.messages.AffectedMessages(pts=me.pts, pts_count=len(removed))


def _input_ids(ids) -> list[int]:
    out = []
    for item in ids:
        if isinstance(item, int):
            out.append(item)
        elif isinstance(item, raw.types.InputMessageID):
            out.append(item.id)
    return out


@handles("messages.GetMessages")
async def get_messages(call: Call, q):
    me = call.me
    bundle = Bundle(call.world, me.id)
    msgs = []
    for mid in _input_ids(q.id)[:200]:
        msg = me.box.get(mid)
        if msg is None:
            msgs.append(raw.types.MessageEmpty(id=mid))
            continue
        bundle.add_msg(msg)
        msgs.append(message(msg, me.id))
    return raw.types.messages.Messages(messages=msgs, topics=[], chats=bundle.chats(),
                                       users=bundle.users())


@handles("messages.GetHistory")
async def get_history(call: Call, q):
    me = call.me
    kind, obj = call.peer_from_input(q.peer)
    bundle = Bundle(call.world, me.id)
    if kind == "channel":
        pool = obj.messages
        ids = sorted(pool, reverse=True)
    else:
        pool = me.box
        ids = sorted((i for i, m in pool.items() if m.peer == ("user", obj.id)), reverse=True)
    start = 0
    if q.offset_id:
        start = next((i for i, mid in enumerate(ids) if mid < q.offset_id), len(ids))
    start = max(0, start + q.add_offset)
    limit = max(0, min(q.limit or 100, 100))
    picked = []
    for mid in ids[start:start + limit]:
        if q.max_id and mid >= q.max_id:
            continue
        if q.min_id and mid <= q.min_id:
            continue
        picked.append(mid)
    msgs = []
    for mid in picked:
        bundle.add_msg(pool[mid])
        msgs.append(message(pool[mid], None if kind == "channel" else me.id,
                            obj if kind == "channel" else None))
    if kind == "channel":
        bundle.channel_ids.add(obj.id)
        return raw.types.messages.ChannelMessages(pts=obj.pts, count=len(ids), messages=msgs,
                                                  topics=[], chats=bundle.chats(),
                                                  users=bundle.users())
    bundle.user_ids.add(obj.id)
    return raw.types.messages.MessagesSlice(count=len(ids), messages=msgs, topics=[],
                                            chats=bundle.chats(), users=bundle.users())


@handles("messages.ForwardMessages")
async def forward_messages(call: Call, q):
    me = call.me
    src = call.peer_from_input(q.from_peer)
    dst = call.peer_from_input(q.to_peer)
    if src[0] == "channel" and src[1].noforwards:
        raise RpcFail(400, "CHAT_FORWARDS_RESTRICTED")
    bundle = Bundle(call.world, me.id)
    call.sim.random_ids.check(me.id, q.random_id)
    groups: dict[int, int] = {}
    ups = []
    reply_to = None
    if getattr(q, "top_msg_id", None):
        reply_to = raw.types.InputReplyToMessage(reply_to_msg_id=q.top_msg_id,
                                                 top_msg_id=q.top_msg_id)
    for mid, rnd in zip(q.id, q.random_id):
        msg, ch = _find(call, src, mid)
        if msg.action is not None:
            continue
        fwd = None
        if not q.drop_author:
            fwd = raw.types.MessageFwdHeader(
                date=msg.date,
                from_id=raw.types.PeerChannel(channel_id=ch.id) if ch else
                raw.types.PeerUser(user_id=msg.from_id),
                channel_post=msg.id if ch else None)
            if ch:
                bundle.channel_ids.add(ch.id)
        group = None
        if msg.grouped_id:
            group = groups.setdefault(msg.grouped_id, int.from_bytes(os.urandom(7), "little"))
        text = "" if (q.drop_media_captions and msg.media) else msg.text
        ups += post(call, dst, text=text, entities=None if not text else msg.entities,
                    media=msg.media, grouped_id=group, fwd_from=fwd, random_id=rnd,
                    reply_to=reply_to, bundle=bundle)
    call.sim.random_ids.record(me.id, q.random_id)
    return _updates(call, ups, bundle)


# bots' inline buttons ----------------------------------------------------------------------
@handles("messages.GetBotCallbackAnswer")
async def get_bot_callback_answer(call: Call, q):
    me = call.me
    kind, bot = call.peer_from_input(q.peer)
    if kind != "user" or not bot.bot:
        raise RpcFail(400, "PEER_ID_INVALID")
    msg = me.box.get(q.msg_id)
    if msg is None or msg.twin is None or msg.twin[0] != bot.id:
        raise RpcFail(400, "MESSAGE_ID_INVALID")
    query_id = int.from_bytes(os.urandom(8), "little", signed=True)
    fut = asyncio.get_running_loop().create_future()
    call.sim.callback_waiters[query_id] = fut
    _push(call, bot.id, raw.types.UpdateBotCallbackQuery(
        query_id=query_id, user_id=me.id, peer=raw.types.PeerUser(user_id=me.id),
        msg_id=msg.twin[1], chat_instance=me.id ^ bot.id, data=q.data),
        [user(me, bot.id), user(bot, bot.id)])
    try:
        answer = await asyncio.wait_for(fut, CALLBACK_TIMEOUT)
    except asyncio.TimeoutError:
        raise RpcFail(400, "BOT_RESPONSE_TIMEOUT") from None
    finally:
        call.sim.callback_waiters.pop(query_id, None)
    return raw.types.messages.BotCallbackAnswer(
        message=answer.message, alert=answer.alert, url=answer.url,
        cache_time=answer.cache_time or 0)


@handles("messages.SetBotCallbackAnswer")
async def set_bot_callback_answer(call: Call, q):
    if not call.me.bot:
        raise RpcFail(400, "USER_BOT_REQUIRED")
    fut = call.sim.callback_waiters.get(q.query_id)
    if fut is None:
        raise RpcFail(400, "QUERY_ID_INVALID")
    if not fut.done():
        fut.set_result(q)
    return Bool(True)


# invites and protection --------------------------------------------------------------------
@handles("messages.CheckChatInvite")
async def check_chat_invite(call: Call, q):
    ch = call.world.channel_by_invite(q.hash)
    if ch is None:
        raise RpcFail(400, "INVITE_HASH_INVALID")
    if call.me.id in ch.members:
        return raw.types.ChatInviteAlready(chat=channel(ch, call.me.id))
    return raw.types.ChatInvite(title=ch.title, photo=raw.types.PhotoEmpty(id=0),
                                participants_count=len(ch.members), color=0, channel=True,
                                broadcast=ch.broadcast or None,
                                megagroup=ch.megagroup or None)


@handles("messages.ImportChatInvite")
async def import_chat_invite(call: Call, q):
    ch = call.world.channel_by_invite(q.hash)
    if ch is None:
        raise RpcFail(400, "INVITE_HASH_INVALID")
    if call.me.id in ch.members:
        raise RpcFail(400, "USER_ALREADY_PARTICIPANT")
    call.world.add_member(ch, call.me.id, call.me.id)
    return raw.types.Updates(updates=[], users=[], chats=[channel(ch, call.me.id)],
                             date=call.now(), seq=0)


@handles("messages.ExportChatInvite")
async def export_chat_invite(call: Call, q):
    kind, ch = call.peer_from_input(q.peer)
    if kind != "channel" or call.me.id not in ch.admins:
        raise RpcFail(400, "CHAT_ADMIN_REQUIRED")
    return raw.types.ChatInviteExported(link=f"https://t.me/+{ch.invite_hash}",
                                        admin_id=call.me.id, date=call.now())


@handles("messages.ToggleNoForwards")
async def toggle_no_forwards(call: Call, q):
    kind, ch = call.peer_from_input(q.peer)
    if kind != "channel" or call.me.id not in ch.admins:
        raise RpcFail(400, "CHAT_ADMIN_REQUIRED")
    if ch.noforwards == q.enabled:
        raise RpcFail(400, "CHAT_NOT_MODIFIED")
    ch.noforwards = q.enabled
    return raw.types.Updates(updates=[], users=[], chats=[channel(ch, call.me.id)],
                             date=call.now(), seq=0)


@handles("messages.ReadHistory")
async def read_history(call: Call, q):
    return raw.types.messages.AffectedMessages(pts=call.me.pts, pts_count=0)
