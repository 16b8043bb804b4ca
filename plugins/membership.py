"""The bot was added to (or promoted in) a chat: keep the access_hash the update carried.

Telegram introduces a private chat to a bot only in this update (pyrogram has already stored
the chat from it); if the bot crashed before its peer database was next committed, it would
never be able to open that chat again (helpers/peers.py)."""

from pyrogram import Client, raw

from helpers import peers
from plugins import order

_MEMBERSHIP = (raw.types.UpdateChannel, raw.types.UpdateChannelParticipant,
               raw.types.UpdateChatParticipant, raw.types.UpdateChatParticipants)


@Client.on_raw_update(group=order.MEMBERSHIP)
async def membership(client: Client, update, users, chats):
    if isinstance(update, _MEMBERSHIP):
        await peers.keep(client)
