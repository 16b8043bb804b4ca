"""Runs before every other handler: each incoming message is acted on once, across restarts
and the catch-up after them (helpers/catchup.py), and a link that waited longer than
CATCHUP_MAX_AGE while the bot was down gets a short note instead of a job."""

import time

from pyrogram import Client, enums, filters

from helpers.catchup import SEEN, STALE, offline_note
from plugins import order


@Client.on_message(filters.private, group=order.ONCE)
async def once(client: Client, message):
    catchup = client.services.catchup
    await catchup.wait_ready()
    if message.outgoing or message.from_user is None:
        message.stop_propagation()  # the bot's own messages come back in a difference
    sent = message.date.timestamp() if message.date else time.time()
    verdict = await catchup.admit(message.chat.id, message.id, sent, message.text)
    if verdict == SEEN:
        message.stop_propagation()
    if verdict == STALE:
        await message.reply(offline_note(time.time() - sent),
                            parse_mode=enums.ParseMode.DISABLED)
        message.stop_propagation()
