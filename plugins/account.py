"""/login, /logout and the login conversation. Every message that holds a phone number, a
code or a password is deleted from the chat as soon as it has been read."""

import contextlib

from pyrogram import Client, enums, filters

from helpers.login import LoginReply
from plugins import order


async def _reply(message, text: str) -> None:
    await message.reply(text, parse_mode=enums.ParseMode.DISABLED)


async def _delete(message) -> None:
    with contextlib.suppress(Exception):  # gone already, or too old to delete: nothing to do
        await message.delete()


@Client.on_message(filters.private & filters.command("login"))
async def login(client: Client, message):
    accounts = client.services.accounts
    uid = message.from_user.id
    await accounts.ensure_user(uid)
    if not accounts.logins_enabled:
        await _reply(message, "Logins are disabled on this bot: the operator has not set "
                              "SESSION_KEY.")
        return
    if await accounts.has_session(uid):
        await _reply(message, "You are already logged in. Send /logout first to switch "
                              "accounts.")
        return
    if not await accounts.memory_allows_login():
        await _reply(message, "The bot is short of memory right now and is not taking new "
                              "logins. Please try again in a few minutes.")
        return
    try:
        prompt = await accounts.logins.begin(uid)
    except LoginReply as e:
        prompt = e.text
    await _reply(message, prompt)


def _in_login(_, client: Client, message) -> bool:
    return bool(message.from_user) and \
        client.services.accounts.logins.pending(message.from_user.id)


in_login = filters.create(_in_login)


@Client.on_message(filters.private & in_login, group=order.LOGIN)
async def conversation(client: Client, message):
    logins = client.services.accounts.logins
    uid = message.from_user.id
    text = message.text or ""
    if text.startswith("/"):
        command = text.split()[0][1:].split("@")[0].lower()
        if command in ("cancel", "canceldownload"):
            await logins.cancel(uid)
            await _reply(message, "Login cancelled. Nothing was saved.")
        elif command == "login":
            await _reply(message, await logins.begin(uid))
        else:
            step = logins.step(uid)
            await _reply(message, f"You are logging in: send your {step}, or /cancel first.")
        message.stop_propagation()
    await _delete(message)
    if not text:
        await _reply(message, "Send it as a text message, or /cancel.")
        message.stop_propagation()
    try:
        reply = await logins.handle(uid, text)
    except LoginReply as e:
        reply = e.text
    del text
    await _reply(message, reply)
    message.stop_propagation()


@Client.on_message(filters.private & filters.command("logout"))
async def logout(client: Client, message):
    if await client.services.accounts.logout(message.from_user.id):
        await _reply(message, "Logged out: the session is revoked on Telegram and deleted "
                              "here.")
    else:
        await _reply(message, "You are not logged in.")
