"""Runs before every other handler: banned users get one clear refusal per message, and
anyone sending faster than MESSAGES_PER_MINUTE is asked to slow down (admins exempt)."""

from pyrogram import Client, filters
from plugins import order

BANNED = "You are banned from using this bot."


def _slow_down(wait: float) -> str:
    return (f"You are sending messages too fast. Please wait {max(1, round(wait))} s; "
            "messages sent meanwhile are ignored.")


@Client.on_message(filters.private & filters.incoming, group=order.GATE)
async def gate(client: Client, message):
    user = message.from_user
    gate = client.services.gate
    if user is None or gate.is_admin(user.id):
        return
    if await gate.is_banned(user.id):
        await message.reply(BANNED)
        message.stop_propagation()
    allowed, wait = gate.hit(user.id)
    if not allowed:
        if wait is not None:
            await message.reply(_slow_down(wait))
        message.stop_propagation()


@Client.on_callback_query(group=order.GATE)
async def gate_buttons(client: Client, query):
    gate = client.services.gate
    if gate.is_admin(query.from_user.id):
        return
    if await gate.is_banned(query.from_user.id):
        await query.answer(BANNED, show_alert=True)
        query.stop_propagation()
    allowed, wait = gate.hit(query.from_user.id)
    if not allowed:
        await query.answer(_slow_down(wait or 5), show_alert=True)
        query.stop_propagation()
