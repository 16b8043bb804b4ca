"""Links and /batch: parse, check tier and caps, queue, answer with the positions. Invite
links are joined through the user's own account, only after they press Join."""

import secrets

from pyrogram import Client, enums, errors, filters, types
from pyrogram.raw.functions.messages import CheckChatInvite, ImportChatInvite
from pyrogram.raw.types import ChatInviteAlready
from pyrogram.raw.types.messages import ChatInviteJoinResultWebView

from helpers import floodwait, peers
from helpers.catchup import asks_for_jobs
from helpers.chat_access import LOGIN_FOR_INVITES
from helpers.links import LinkError, LinkRef, parse, parse_batch
from helpers.queue_manager import JobError, SubmitRefused
from helpers.services import AlreadyHandled
from helpers.storage_errors import StorageBusy


def _refs(links: list[LinkRef]) -> list[tuple[str, int, int | None]]:
    out = []
    for link in links:
        chat = str(link.chat_id)
        out.extend((chat, mid, link.topic_id) for mid in link.ids())
    return out


async def _reply(message, text: str, **kw) -> None:
    await message.reply(text, parse_mode=enums.ParseMode.DISABLED, **kw)


async def _first_time(client: Client, message) -> bool:
    """Mark a message that gets no job handled; False if it was (a caught-up repeat). One
    without a link was marked before any handler ran (plugins/catchup.py)."""
    if not asks_for_jobs(message.text):
        return True
    return await client.services.jobs.handled(message.chat.id, message.id)


async def _submit(client: Client, message, links: list[LinkRef]) -> None:
    jobs_service = client.services.jobs
    user_id = message.from_user.id
    jobs = [link for link in links if link.kind != "invite"]
    if not jobs and not await _first_time(client, message):
        return
    for link in [link for link in links if link.kind == "invite"][:3]:
        await _offer_join(client, message, link)
    links = jobs
    if not links:
        return
    quota = await jobs_service.allowance(user_id)
    if quota.room == 0:
        if await _first_time(client, message):
            await _reply(message, quota.refusal())
        return
    refs = _refs(links)
    over_quota = max(0, len(refs) - quota.room)
    refs = refs[:quota.room]
    await peers.keep(client)  # the job will need this user's (and chat's) hash after a crash
    try:
        # marked handled with its jobs, in one transaction: a crash keeps both or neither
        result = await jobs_service.submit(user_id, refs, quota.premium,
                                           source=(message.chat.id, message.id)
                                           if asks_for_jobs(message.text) else None)
    except AlreadyHandled:
        return
    except SubmitRefused as e:
        if await _first_time(client, message):
            await _reply(message, str(e))
        return
    lines = [f"Job #{job_id} queued at position {pos}." for job_id, pos in result.accepted[:10]]
    if len(result.accepted) > 10:
        lines.append(f"…and {len(result.accepted) - 10} more.")
    if result.refused:
        lines.append(f"{result.refused} link(s) refused: {result.reason}")
    if over_quota:
        lines.append(f"{over_quota} link(s) over today's allowance of {quota.limit} were "
                     "not queued; they reset at 00:00 UTC.")
    await _reply(message, "\n".join(lines))


async def _offer_join(client: Client, message, link: LinkRef) -> None:
    accounts = client.services.accounts
    user_id = message.from_user.id
    if not await accounts.can_use_own_session(user_id):
        await _reply(message, LOGIN_FOR_INVITES)
        return
    try:
        async with accounts.own_session(user_id) as session:
            invite = await session.invoke(CheckChatInvite(hash=link.invite_hash))
            await accounts.remember(user_id, session, await peers.learn(session, invite))
    except JobError as e:
        await _reply(message, str(e))
        return
    except (errors.InviteHashExpired, errors.InviteHashInvalid, errors.InviteHashEmpty):
        await _reply(message, "That invite link is invalid or has expired.")
        return
    except floodwait.FAMILY as e:
        await _reply(message, f"Telegram asks to wait {e.value} s before checking invite "
                              "links. Please try again then.")
        return
    already = isinstance(invite, ChatInviteAlready)
    title = (invite.chat.title if already else invite.title) or "that chat"
    if already:
        await _reply(message, f"Your account is already a member of «{title}»: send me links "
                              "to its messages.")
        return
    token = secrets.randbelow(1 << 31)
    accounts.offer_invite(token, (user_id, link.invite_hash, title))
    sign = client.services.buttons.sign
    markup = types.InlineKeyboardMarkup([[
        types.InlineKeyboardButton("Join", callback_data=sign("join", token, user_id)),
        types.InlineKeyboardButton("No", callback_data=sign("nojoin", token, user_id)),
    ]])
    await _reply(message, f"Join «{title}» with your account so I can read it?",
                 reply_markup=markup)


@Client.on_callback_query(filters.regex(r"^(join|nojoin):"))
async def join_button(client: Client, query):
    accounts = client.services.accounts
    user_id = query.from_user.id
    checked = client.services.buttons.verify(query.data or "", user_id)
    offer = accounts.take_invite(checked[1]) if checked else None
    if offer is None or offer[0] != user_id:
        await query.answer("This button has expired. Send the invite link again.",
                           show_alert=True)
        return
    _, invite_hash, title = offer
    if checked[0] == "nojoin":
        await query.answer("Not joined.")
        await query.message.edit_text(f"Not joined «{title}».")
        return
    try:
        async with accounts.own_session(user_id) as session:
            joined = await session.invoke(ImportChatInvite(hash=invite_hash))
            await accounts.remember(user_id, session, await peers.learn(session, joined))
        text = f"Joined «{title}». Send me links to its messages now."
        if isinstance(joined, ChatInviteJoinResultWebView):
            text = (f"«{title}» asks new members to pass a check first: join it in Telegram, "
                    "then send me links to its messages.")
    except errors.UserAlreadyParticipant:
        text = f"Your account is already in «{title}»."
    except errors.InviteRequestSent:
        text = f"A request to join «{title}» was sent; its admins must approve it first."
    except (errors.InviteHashExpired, errors.InviteHashInvalid):
        text = "That invite link has expired."
    except errors.ChannelsTooMuch:
        text = "Your account is in too many channels to join another one."
    except JobError as e:
        text = str(e)
    await query.answer()
    await query.message.edit_text(text, parse_mode=enums.ParseMode.DISABLED)


async def _cap(client: Client, user_id: int) -> int:
    return await client.services.jobs.batch_cap(user_id)


@Client.on_message(filters.private & filters.command("batch"))
async def batch(client: Client, message):
    args = message.text.split(maxsplit=1)[1] if len(message.command) > 1 else ""
    try:
        link = parse_batch(args, await _cap(client, message.from_user.id))
    except LinkError as e:
        if await _first_time(client, message):
            await _reply(message, str(e))
        return
    await _submit(client, message, [link])


@Client.on_message(filters.private & filters.text & ~filters.regex(r"^/"))
async def links(client: Client, message):
    try:
        found = parse(message.text, max_range=await _cap(client, message.from_user.id))
    except LinkError as e:
        if await _first_time(client, message):
            await _reply(message, str(e))
        return
    try:
        await client.services.accounts.ensure_user(message.from_user.id)
        await _submit(client, message, found)
    except StorageBusy:
        try:
            await _first_time(client, message)
        except StorageBusy:
            pass  # then a restart may fetch it again; the user is asked to resend anyway
        await _reply(message, "I am too busy to queue that right now. Please send it again "
                              "in a minute.")
