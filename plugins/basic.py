"""/start and /help."""

from pyrogram import Client, enums, filters

from helpers.links import ACCEPTED_FORMS

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


@Client.on_message(filters.private & filters.command(["start", "help"]))
async def start_help(client: Client, message):
    await client.app.db.ensure_user(message.from_user.id)
    intro = "Hello! " if message.command[0] == "start" else ""
    await message.reply(intro + HELP, parse_mode=enums.ParseMode.DISABLED)


@Client.on_callback_query(~filters.regex(r"^(cancel|join|nojoin|set):"))
async def unknown_button(client: Client, query):
    await query.answer("This button is not valid.", show_alert=True)
