"""Links and /batch: parse, check caps and tier, queue, answer with the positions."""

from pyrogram import Client, enums, filters

from helpers.links import LinkError, LinkRef, parse, parse_batch
from helpers.queue_manager import SubmitRefused


def _refs(links: list[LinkRef]) -> list[tuple[str, int, int | None]]:
    out = []
    for link in links:
        chat = str(link.chat_id)
        out.extend((chat, mid, link.topic_id) for mid in link.ids())
    return out


async def _submit(client: Client, message, links: list[LinkRef]) -> None:
    app = client.app
    user_id = message.from_user.id
    if any(link.kind == "invite" for link in links):
        await message.reply("Invite links need your own account: log in first, then send the "
                            "invite link again.", parse_mode=enums.ParseMode.DISABLED)
        links = [link for link in links if link.kind != "invite"]
        if not links:
            return
    premium = await app.db.is_premium(user_id)
    try:
        result = await app.queue.submit(user_id, _refs(links), premium)
    except SubmitRefused as e:
        await message.reply(str(e), parse_mode=enums.ParseMode.DISABLED)
        return
    lines = [f"Job #{job_id} queued at position {pos}." for job_id, pos in result.accepted[:10]]
    if len(result.accepted) > 10:
        lines.append(f"…and {len(result.accepted) - 10} more.")
    if result.refused:
        lines.append(f"{result.refused} link(s) refused: {result.reason}")
    await message.reply("\n".join(lines), parse_mode=enums.ParseMode.DISABLED)


async def _cap(client: Client, user_id: int) -> int:
    s = client.app.settings
    return s.premium_batch_cap if await client.app.db.is_premium(user_id) else s.free_batch_cap


@Client.on_message(filters.private & filters.command("batch"))
async def batch(client: Client, message):
    args = message.text.split(maxsplit=1)[1] if len(message.command) > 1 else ""
    try:
        link = parse_batch(args, await _cap(client, message.from_user.id))
    except LinkError as e:
        await message.reply(str(e), parse_mode=enums.ParseMode.DISABLED)
        return
    await _submit(client, message, [link])


@Client.on_message(filters.private & filters.text & ~filters.regex(r"^/"))
async def links(client: Client, message):
    app = client.app
    await app.db.ensure_user(message.from_user.id)
    if await app.db.is_banned(message.from_user.id):
        await message.reply("You are banned from using this bot.")
        return
    try:
        found = parse(message.text, max_range=await _cap(client, message.from_user.id))
    except LinkError as e:
        await message.reply(str(e), parse_mode=enums.ParseMode.DISABLED)
        return
    await _submit(client, message, found)
