"""/memstats for admins: the memory picture; `/memstats gc` forces a collection."""

from pyrogram import Client, enums, filters


@Client.on_message(filters.private & filters.command("memstats"))
async def memstats(client: Client, message):
    admin = client.services.admin
    if len(message.command) > 1 and message.command[1].lower() == "gc":
        text = await admin.force_gc()
    else:
        text = admin.memstats()
    await message.reply(text, parse_mode=enums.ParseMode.DISABLED)
