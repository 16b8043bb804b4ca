"""World records to TL objects, as one viewer sees them."""

from __future__ import annotations

from pyrogram import raw

from tgsim.access_hash import for_viewer
from tgsim.world import Account, Channel, Media, Msg, World

FILE_REFERENCE = b"\x01tgsim"  # only for media made outside World.add_media


def file_reference(m: Media, origin: int = 0) -> bytes:
    """The media's current reference, bound to the channel it is seen in (tgsim/file_refs.py)."""
    return m.refs.reference(m.id, origin) if m.refs is not None else FILE_REFERENCE


def user(acc: Account, viewer_id: int | None) -> raw.types.User:
    is_self = acc.id == viewer_id
    return raw.types.User(
        id=acc.id,
        is_self=is_self,
        bot=acc.bot,
        deleted=acc.deactivated,
        premium=acc.premium,
        access_hash=for_viewer(acc.access_hash, viewer_id),  # per account: api/peers
        first_name=acc.first_name,
        username=acc.username,
        phone=acc.phone if is_self else None,
        bot_info_version=1 if acc.bot else None,
        bot_nochats=False,
        status=raw.types.UserStatusRecently() if not acc.bot else None,
    )


def channel(ch: Channel, viewer_id: int | None) -> raw.types.Channel:
    member = viewer_id in ch.members
    admin = viewer_id in ch.admins
    rights = None
    if admin:
        rights = raw.types.ChatAdminRights(
            change_info=True, post_messages=True, edit_messages=True, delete_messages=True,
            ban_users=True, invite_users=True, pin_messages=True, manage_topics=ch.forum)
    return raw.types.Channel(
        id=ch.id,
        title=ch.title,
        photo=raw.types.ChatPhotoEmpty(),
        date=ch.date,
        creator=viewer_id == ch.creator_id,
        left=not member,
        broadcast=ch.broadcast,
        megagroup=ch.megagroup,
        forum=ch.forum,
        noforwards=ch.noforwards,
        access_hash=for_viewer(ch.access_hash, viewer_id),  # per account: api/peers
        username=ch.username,
        admin_rights=rights,
        participants_count=len(ch.members),
    )


def peer(p: tuple[str, int]):
    kind, pid = p
    if kind == "channel":
        return raw.types.PeerChannel(channel_id=pid)
    return raw.types.PeerUser(user_id=pid)


def document(m: Media, origin: int = 0) -> raw.types.Document:
    thumbs = None
    if m.thumb_path is not None:
        thumbs = [raw.types.PhotoSize(type="m", w=320, h=180, size=m.thumb_size)]
    return raw.types.Document(
        id=m.id, access_hash=m.access_hash, file_reference=file_reference(m, origin), date=m.date,
        mime_type=m.mime_type, size=m.size, dc_id=m.dc_id, attributes=list(m.attributes),
        thumbs=thumbs)


def photo(m: Media, origin: int = 0) -> raw.types.Photo:
    return raw.types.Photo(
        id=m.id, access_hash=m.access_hash, file_reference=file_reference(m, origin), date=m.date,
        sizes=[raw.types.PhotoSize(type="x", w=m.w, h=m.h, size=m.size)], dc_id=m.dc_id)


def media(m: Media | None, origin: int = 0):
    """`origin`: the channel the media is seen in, which its file reference remembers."""
    if m is None:
        return None
    if m.kind == "photo":
        return raw.types.MessageMediaPhoto(photo=photo(m, origin))
    is_video = any(isinstance(a, raw.types.DocumentAttributeVideo) for a in m.attributes)
    return raw.types.MessageMediaDocument(document=document(m, origin), video=is_video or None)


def message(msg: Msg, owner_id: int | None, ch: Channel | None = None):
    """`owner_id` is the account whose box holds a private message (None for channels)."""
    if msg.action is not None:
        return raw.types.MessageService(id=msg.id, peer_id=peer(msg.peer), date=msg.date,
                                        action=msg.action, out=msg.from_id == owner_id)
    reply_to = None
    if msg.reply_to or msg.top_id:
        reply_to = raw.types.MessageReplyHeader(
            reply_to_msg_id=msg.reply_to or msg.top_id,
            reply_to_top_id=msg.top_id if msg.reply_to and msg.top_id else None,
            forum_topic=bool(msg.top_id) or None)
    is_post = ch is not None and ch.broadcast
    from_id = None
    if msg.from_id is not None and not is_post:
        if ch is not None or msg.from_id != (msg.peer[1] if msg.peer[0] == "user" else None):
            from_id = raw.types.PeerUser(user_id=msg.from_id)
    return raw.types.Message(
        id=msg.id,
        peer_id=peer(msg.peer),
        date=msg.date,
        message=msg.text,
        out=owner_id is not None and msg.from_id == owner_id,
        post=is_post or None,
        from_id=from_id,
        media=media(msg.media, ch.id if ch is not None else 0),
        entities=msg.entities or None,
        grouped_id=msg.grouped_id,
        reply_to=reply_to,
        edit_date=msg.edit_date,
        reply_markup=msg.reply_markup,
        noforwards=(ch.noforwards if ch else None) or None,
        fwd_from=msg.fwd_from,
    )


class Bundle:
    """Collects the users and chats that a result mentions, for its users/chats vectors."""

    def __init__(self, world: World, viewer_id: int | None):
        self.world = world
        self.viewer_id = viewer_id
        self.user_ids: set[int] = set()
        self.channel_ids: set[int] = set()

    def add_msg(self, msg: Msg) -> None:
        if msg.from_id:
            self.user_ids.add(msg.from_id)
        kind, pid = msg.peer
        (self.channel_ids if kind == "channel" else self.user_ids).add(pid)

    def users(self) -> list:
        ids = self.user_ids | ({self.viewer_id} if self.viewer_id else set())
        return [user(self.world.accounts[i], self.viewer_id) for i in ids
                if i in self.world.accounts]

    def chats(self) -> list:
        return [channel(self.world.channels[i], self.viewer_id) for i in self.channel_ids
                if i in self.world.channels]
