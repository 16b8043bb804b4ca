"""Chats a test or a benchmark sets up through a person's own client, and links to them."""

from __future__ import annotations

from pathlib import Path

from harness.files import file_digest, write_random
from harness.simusers import gather_limited


def link(chat_id: int, msg_id: int) -> str:
    """The t.me/c/ link of a message in a channel (chat_id as the client library gives it)."""
    return f"https://t.me/c/{str(chat_id).removeprefix('-100')}/{msg_id}"


def chat_link(ch, msg_id: int) -> str:
    return link(ch.id, msg_id)


async def private_channel(owner, title: str, *members, protected: bool = True):
    """A private channel (protected unless told) `owner` creates and `members` join; each of
    them is anything with a `.client`."""
    ch = await owner.client.create_channel(title, "")
    if protected:
        await owner.client.set_chat_protected_content(ch.id, True)
    # Members join by invite link: the owner never saw them, and Telegram only lets an
    # account add a user whose access_hash it was given (core.telegram.org/api/peers).
    if members:
        invite = await owner.client.export_chat_invite_link(ch.id)
        await gather_limited(m.client.join_chat(invite) for m in members)
    return ch


async def bot_channel(env, owner, title: str):
    """A protected channel the bot is a member of: the bot downloads and re-uploads."""
    ch = await owner.client.create_channel(title, "")
    await owner.client.set_chat_protected_content(ch.id, True)
    await owner.client.add_chat_members(ch.id, env.bot_username)
    return ch


async def post_random(owner, ch, path: Path, size: int, caption: str):
    """A document of `size` random bytes posted in ch; returns (message, sha256)."""
    src = write_random(path, size)
    post = await owner.client.send_document(ch.id, str(src), caption=caption)
    return post, file_digest(src)
