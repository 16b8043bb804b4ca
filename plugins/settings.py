"""/settings: a summary with inline buttons, and the one-message prompts those buttons open.

Buttons act only on the settings of the user who pressed them, so their data needs no
signature. A pending prompt lives in the settings service (bounded, expires); the prompt handler
runs in group order.PROMPT so the answer never reaches the link handler.
"""

import logging

from pyrogram import Client, enums, errors, filters
from pyrogram.types import InlineKeyboardButton as Button
from pyrogram.types import InlineKeyboardMarkup

from helpers import floodwait
from helpers.user_settings import (
    MAX_RULES, SettingsError, add_rules, apply_name, check_caption, check_rename, describe,
    may_post, normalize, parse_rules, parse_target, thumb_file_id,
)
from plugins import order

log = logging.getLogger(__name__)
PLAIN = enums.ParseMode.DISABLED

LABELS = {"caption": "caption", "rename": "rename pattern", "replace": "word rules",
          "thumb": "thumbnail", "target": "delivery chat"}

ASK = {
    "caption": "Send me the caption to put on your files. {caption} is replaced by the "
               "original caption and {filename} by the file name.",
    "rename": "Send me a file name pattern. {name} is the original name without extension, "
              "{ext} the extension, {n} the message number. Without {ext} the original "
              "extension is kept. Example: {name} [{n}]",
    "replace": "Send me words to change in captions and file names, one per line: "
               "\"word => replacement\" replaces, a bare \"word\" deletes it "
               f"(at most {MAX_RULES}).",
    "thumb": "Send me a photo to use as the thumbnail of your files.",
    "target": "Send me the channel or group to deliver to: @username or -100… id, "
              "optionally with a topic (@channel/5 or a t.me/c/… topic link). You must be "
              "able to post there, and I must be an admin there.",
}


def _keyboard(s: dict) -> InlineKeyboardMarkup:
    rows = [
        [Button("Custom caption", callback_data="set:ask:caption"),
         Button("Caption on" if s["caption_off"] else "Caption off", callback_data="set:off")],
        [Button("Rename pattern", callback_data="set:ask:rename"),
         Button("Replace words", callback_data="set:ask:replace")],
        [Button("Thumbnail", callback_data="set:ask:thumb"),
         Button("Target chat", callback_data="set:ask:target")],
    ]
    resets = [Button(f"Reset {LABELS[k]}", callback_data=f"set:reset:{k}")
              for k in LABELS if s[k]]
    rows += [resets[i:i + 2] for i in range(0, len(resets), 2)]
    if resets or s["caption_off"]:
        rows.append([Button("Reset all", callback_data="set:reset:all")])
    return InlineKeyboardMarkup(rows)


@Client.on_message(filters.private & filters.command("settings"))
async def show(client: Client, message):
    s = await client.services.settings.load(message.from_user.id)
    await message.reply(describe(s), reply_markup=_keyboard(s), parse_mode=PLAIN)


async def _refresh(query, s: dict) -> None:
    try:
        await query.message.edit_text(describe(s), reply_markup=_keyboard(s), parse_mode=PLAIN)
    except errors.MessageNotModified:
        pass
    except errors.RPCError:
        pass  # the summary is only a view; the setting itself is saved


@Client.on_callback_query(filters.regex(r"^set:"))
async def button(client: Client, query):
    settings, uid = client.services.settings, query.from_user.id
    _, action, arg = (query.data + "::").split(":")[:3]
    if action == "ask" and arg in ASK:
        settings.ask(uid, arg)
        await query.answer()
        await client.send_message(uid, ASK[arg] + "\n/cancel to keep the current value.",
                                  parse_mode=PLAIN)
        return
    s = await settings.load(uid)
    if action == "off" and not arg:
        s["caption_off"] = not s["caption_off"]
        note = "Captions off." if s["caption_off"] else "Captions on."
    elif action == "reset" and (arg in LABELS or arg == "all"):
        for key in LABELS if arg == "all" else (arg,):
            s[key] = [] if key == "replace" else None
        if arg == "all":
            s["caption_off"] = False
        if arg == "thumb":
            s["thumb_msg"] = None
        note = "All settings reset." if arg == "all" else f"The {LABELS[arg]} is reset."
    else:
        await query.answer("This button is no longer valid; send /settings again.",
                           show_alert=True)
        return
    s = normalize(s)
    await settings.save(uid, s)
    await query.answer(note)
    await _refresh(query, s)


# ---------------------------------------------------------------------------- prompts

async def _has_prompt(_, client: Client, message) -> bool:
    return message.from_user is not None and \
        client.services.settings.asking(message.from_user.id)

has_prompt = filters.create(_has_prompt)


async def _member(client: Client, chat_id: int, user: int | str):
    """None when not a member (or hidden from the bot): both mean "may not post"."""
    try:
        return await client.get_chat_member(chat_id, user)
    except floodwait.FAMILY:
        raise
    except errors.RPCError:
        return None
    except (ValueError, KeyError):  # an answer the library could not parse
        log.exception("get_chat_member(%s, %s) failed", chat_id, user)
        raise SettingsError("I could not check who may post in that chat.") from None


async def _resolve_target(client: Client, uid: int, text: str) -> dict:
    chat_ref, topic = parse_target(text)
    try:
        chat = await client.get_chat(chat_ref)
    except floodwait.FAMILY:
        raise
    except (errors.UsernameNotOccupied, errors.UsernameInvalid):
        raise SettingsError(f"There is no chat called @{chat_ref}.") from None
    except (errors.RPCError, ValueError, KeyError):
        raise SettingsError("I cannot see that chat: add me to it as an admin first, then "
                            "send it again.") from None
    kinds = (enums.ChatType.CHANNEL, enums.ChatType.SUPERGROUP, enums.ChatType.GROUP,
             enums.ChatType.FORUM)
    if chat.type not in kinds:
        raise SettingsError("That is not a channel or group. Send a channel or group where "
                            "you can post.")
    if topic is not None and not chat.is_forum:
        raise SettingsError("That chat has no topics: send it without the topic number.")
    broadcast = chat.type == enums.ChatType.CHANNEL
    defaults = getattr(chat.permissions, "can_send_messages", None)
    if not may_post(await _member(client, chat.id, "me"), broadcast, defaults):
        where = "channel" if broadcast else "group"
        raise SettingsError(f"I cannot post there: add me to that {where} as an admin "
                            "(with the right to post messages) first, then send it again.")
    if not may_post(await _member(client, chat.id, uid), broadcast, defaults):
        raise SettingsError("You cannot post in that chat, so I will not deliver there for "
                            "you. Pick a chat where you are an admin or allowed to write.")
    return {"chat": chat.id, "topic": topic, "title": chat.title or str(chat.id)}


async def _take(client: Client, message, field: str, s: dict) -> str:
    """Store the answer in `s`; returns the confirmation, or raises SettingsError."""
    text = message.text
    if field == "thumb":
        if not message.photo:
            raise SettingsError("Send the thumbnail as a photo (not as a file).")
        s["thumb"], s["thumb_msg"] = thumb_file_id(message.photo), message.id
        return "Thumbnail saved. Your files will carry it."
    if text is None:
        raise SettingsError("Send it as a text message.")
    if field == "caption":
        s["caption"], s["caption_off"] = check_caption(text), False
        return "Custom caption saved."
    if field == "rename":
        s["rename"] = check_rename(text)
        return f"Rename pattern saved. Example: {apply_name(s, 'Holiday video.mp4', n=42)}"
    if field == "replace":
        rules = parse_rules(text)
        s.update(add_rules(s, rules))
        return f"Saved {len(rules)} rule(s); you have {len(s['replace'])} of {MAX_RULES}."
    if field == "target":
        s["target"] = await _resolve_target(client, message.from_user.id, text)
        topic = f", topic {s['target']['topic']}" if s["target"]["topic"] else ""
        return f"I will deliver your files to {s['target']['title']}{topic}."
    raise SettingsError("That setting no longer exists; send /settings again.")


@Client.on_message(filters.private & has_prompt, group=order.PROMPT)
async def answer_prompt(client: Client, message):
    settings, uid = client.services.settings, message.from_user.id
    field = settings.prompt(uid)
    text = message.text or ""
    if field is None:
        return  # expired since the filter looked
    if text.startswith("/"):
        settings.end_prompt(uid)
        if text[1:].lower().split("@")[0].split(maxsplit=1)[:1] == ["cancel"]:
            await message.reply(f"OK, your {LABELS.get(field, 'setting')} stays as it was.")
            message.stop_propagation()
        return  # any other command leaves the prompt and runs as usual
    s = await settings.load(uid)
    try:
        reply = await _take(client, message, field, s)
    except SettingsError as e:
        await message.reply(f"{e}\nTry again, or /cancel to keep the current value.",
                            parse_mode=PLAIN)
        message.stop_propagation()
    await settings.save(uid, s)
    settings.end_prompt(uid)
    await message.reply(reply, parse_mode=PLAIN)
    message.stop_propagation()
