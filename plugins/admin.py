"""Admin commands, for OWNER_ID and ADMINS only: tiers, bans, broadcast, stats."""

import asyncio
import logging
import time

from pyrogram import Client, enums, filters

from helpers.broadcast import broadcast
from plugins import order

log = logging.getLogger("admin")

ADMIN_COMMANDS = ["addpremium", "rmpremium", "ban", "unban", "broadcast", "stats", "memstats"]
USAGE = {
    "addpremium": "/addpremium <user id> <days>",
    "rmpremium": "/rmpremium <user id>",
    "ban": "/ban <user id>",
    "unban": "/unban <user id>",
}


async def _reply(message, text: str) -> None:
    await message.reply(text, parse_mode=enums.ParseMode.DISABLED)


def _user_id_arg(message) -> int | None:
    if len(message.command) < 2:
        return None
    arg = message.command[1]
    return int(arg) if arg.isdigit() and 0 < int(arg) < 1 << 53 else None


@Client.on_message(filters.private & filters.command(ADMIN_COMMANDS), group=order.ADMIN_ONLY)
async def admins_only(client: Client, message):
    uid = message.from_user.id
    if client.services.gate.is_admin(uid):
        return
    log.warning("Refused admin command /%s from user %s", message.command[0], uid)
    await _reply(message, "Sorry, that command is for the bot's admins only.")
    message.stop_propagation()


@Client.on_message(filters.private & filters.command("addpremium"))
async def add_premium(client: Client, message):
    target = _user_id_arg(message)
    days = message.command[2] if len(message.command) > 2 else ""
    if target is None or not days.isdigit() or not 1 <= int(days) <= 3650:
        await _reply(message, f"Usage: {USAGE['addpremium']} (days from 1 to 3650)")
        return
    until = time.time() + int(days) * 86400
    admin = client.services.admin
    await admin.set_premium(target, until)
    log.info("Admin %s gave premium to %s for %s days", message.from_user.id, target, days)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(until))
    await _reply(message, f"User {target} is premium until {stamp}.")
    await admin.notify(target, f"You now have premium until {stamp}: more jobs per day, "
                                    "bigger batches, and your jobs go first.")


@Client.on_message(filters.private & filters.command("rmpremium"))
async def rm_premium(client: Client, message):
    target = _user_id_arg(message)
    if target is None:
        await _reply(message, f"Usage: {USAGE['rmpremium']}")
        return
    await client.services.admin.remove_premium(target)
    log.info("Admin %s removed premium from %s", message.from_user.id, target)
    await _reply(message, f"User {target} is back on the free tier.")


@Client.on_message(filters.private & filters.command(["ban", "unban"]))
async def ban(client: Client, message):
    command = message.command[0].lower()
    target = _user_id_arg(message)
    if target is None:
        await _reply(message, f"Usage: {USAGE[command]}")
        return
    admin = client.services.admin
    if command == "ban" and admin.is_admin(target):
        await _reply(message, "Admins cannot be banned.")
        return
    if command == "ban":
        cancelled = await admin.ban(target)
        log.info("Admin %s banned %s (%d jobs cancelled)", message.from_user.id, target,
                 cancelled)
        await _reply(message, f"User {target} is banned; {cancelled} of their jobs cancelled.")
    else:
        await admin.unban(target)
        log.info("Admin %s unbanned %s", message.from_user.id, target)
        await _reply(message, f"User {target} is unbanned.")


@Client.on_message(filters.private & filters.command("broadcast"))
async def broadcast_cmd(client: Client, message):
    admin = client.services.admin
    source = message.reply_to_message
    text = message.text.split(maxsplit=1)[1] if len(message.command) > 1 else ""
    if source is None and not text:
        await _reply(message, "Usage: /broadcast <text>, or reply /broadcast to the message "
                              "to send to every user.")
        return
    if not admin.begin_broadcast():  # before any await: a second one meanwhile is refused
        await _reply(message, "A broadcast is already running; wait for its report.")
        return
    try:
        total = await admin.count_users()
        await _reply(message, f"Broadcasting to {total} user(s)…")
    except BaseException:
        admin.end_broadcast()
        raise

    async def send(uid: int):
        if source is not None:
            return await source.copy(uid)
        return await client.send_message(uid, text, parse_mode=enums.ParseMode.DISABLED)

    async def run():
        try:
            result = await broadcast(admin.user_ids(), send,
                                     skip=lambda uid: uid == message.from_user.id)
            log.info("Broadcast by %s: %d delivered, %d failed", message.from_user.id,
                     result.delivered, result.failed)
            await _reply(message, f"Broadcast finished: {result.delivered} delivered, "
                                  f"{result.failed} failed.")
        finally:
            admin.end_broadcast()

    admin.spawn(run(), "broadcast")
    await asyncio.sleep(0)


@Client.on_message(filters.private & filters.command("stats"))
async def stats(client: Client, message):
    await _reply(message, await client.services.admin.stats())
