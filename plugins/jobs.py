"""/status, /canceldownload and the Cancel button on progress messages."""

from pyrogram import Client, enums, filters


@Client.on_message(filters.private & filters.command("status"))
async def status(client: Client, message):
    jobs = await client.services.jobs.user_jobs(message.from_user.id)
    extra = client.services.admin.fleet_for(message.from_user.id)  # admins of the front
    if not jobs:
        await message.reply("You have no jobs in progress. Send me a t.me link to start one."
                            + extra, parse_mode=enums.ParseMode.DISABLED)
        return
    lines = []
    for job_id, state, pos in jobs:
        where = f"position {pos}" if pos else state
        lines.append(f"Job #{job_id}: {where}")
    await message.reply("\n".join(lines) + extra, parse_mode=enums.ParseMode.DISABLED)


@Client.on_message(filters.private & filters.command(["canceldownload", "cancel"]))
async def cancel(client: Client, message):
    count = await client.services.jobs.cancel(message.from_user.id)
    text = f"Cancelled {count} job(s)." if count else "You have no jobs to cancel."
    await message.reply(text)


@Client.on_callback_query(filters.regex(r"^cancel:"))
async def cancel_button(client: Client, query):
    checked = client.services.buttons.verify(query.data or "", query.from_user.id)
    if checked is None or checked[0] != "cancel":
        await query.answer("This button is not valid.", show_alert=True)
        return
    count = await client.services.jobs.cancel(query.from_user.id, checked[1])
    await query.answer("Cancelled." if count else "That job has already finished.")
