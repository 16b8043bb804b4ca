"""Runs before every other handler: a banned user gets one clear refusal per message."""

from pyrogram import Client, filters

BANNED = "You are banned from using this bot."


@Client.on_message(filters.private & filters.incoming, group=-2)
async def refuse_banned(client: Client, message):
    user = message.from_user
    if user is None or client.app.is_admin(user.id):
        return
    if await client.app.is_banned(user.id):
        await message.reply(BANNED)
        message.stop_propagation()

@Client.on_callback_query(group=-2)
async def refuse_banned_buttons(client: Client, query):
    if client.app.is_admin(query.from_user.id):
        return
    if await client.app.is_banned(query.from_user.id):
        await query.answer(BANNED, show_alert=True)
        query.stop_propagation()
