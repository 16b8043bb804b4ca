"""/memstats for admins: the memory picture; `/memstats gc` forces a collection."""

from pyrogram import Client, enums, filters


@Client.on_message(filters.private & filters.command("memstats"))
async def memstats(client: Client, message):
    app = client.app
    if len(message.command) > 1 and message.command[1].lower() == "gc":
        text = await app.monitor.force_gc()
    else:
        text = app.monitor.memstats_text()
        fleet = getattr(app, "fleet_text", None)  # the front of the scaled layout
        if fleet is not None:
            text = f"{text}\n\n{fleet()}"
    await message.reply(text, parse_mode=enums.ParseMode.DISABLED)
