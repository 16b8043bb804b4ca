"""/start, /help, and the one-line answer to a command the bot does not know."""

import re

from pyrogram import Client, enums, filters

from helpers.links import ACCEPTED_FORMS
from plugins import order
from plugins.admin import ADMIN_COMMANDS

HELP = f"""I download media from Telegram links and send it back to you.

Send me one or more t.me links, or use a command:
/start - welcome
/help - this text
/status - your jobs and their places in the queue
/canceldownload - cancel your queued and running jobs
/batch <link> <count> - download <count> messages starting at <link>
/login - log in with your own account, to read private and protected chats
/logout - revoke and delete your stored session
/settings - caption, file names, thumbnail and the chat to deliver to
/cancel - leave a login or settings prompt (or cancel your jobs)

{ACCEPTED_FORMS}"""


# Every command /help lists, and the admins' ones: adding a command to HELP makes it known.
KNOWN_COMMANDS = frozenset(re.findall(r"^/(\w+)", HELP, re.M)) | frozenset(ADMIN_COMMANDS)


def command_name(text: str) -> str | None:
    """'/Help@my_bot args' -> 'help'; None when the text is not a command."""
    if not text.startswith("/") or len(text) < 2:
        return None
    return text.split()[0][1:].split("@")[0].lower()


def _unknown(_, __, message) -> bool:
    name = command_name(message.text or "")
    return name is not None and name not in KNOWN_COMMANDS


@Client.on_message(filters.private & filters.text & filters.create(_unknown),
                   group=order.UNKNOWN)
async def unknown_command(client: Client, message):
    name = command_name(message.text)[:32]
    await message.reply(f"I do not know the command /{name}. Send /help to see what I can do.",
                        parse_mode=enums.ParseMode.DISABLED)


@Client.on_message(filters.private & filters.command(["start", "help"]))
async def start_help(client: Client, message):
    await client.services.accounts.ensure_user(message.from_user.id)
    intro = "Hello! " if message.command[0] == "start" else ""
    await message.reply(intro + HELP, parse_mode=enums.ParseMode.DISABLED)


@Client.on_callback_query(~filters.regex(r"^(cancel|join|nojoin|set):"))
async def unknown_button(client: Client, query):
    await query.answer("This button is not valid.", show_alert=True)
