"""Per-user delivery settings: what a user may store, and how it changes what the bot sends.

plugins/settings.py asks for values and saves them; the pipeline only calls the apply_*
functions and the two getters. Settings live as JSON in the users table, so every reader
goes through :func:`normalize`: a malformed or outdated row falls back to the defaults
instead of breaking a job.

Placeholders (the only ones; anything else in braces is refused when the value is set):

- custom caption: ``{caption}`` the original caption after the word rules (its formatting
  kept), ``{filename}`` the name of the delivered file;
- rename pattern: ``{name}`` the original name without its extension (after the word
  rules), ``{ext}`` the original extension without the dot, ``{n}`` a number the caller
  passes (the pipeline uses the source message id). A pattern without ``{ext}`` keeps the
  original extension, so a renamed video stays a video.

Telegram counts entity offsets and the caption limit in UTF-16 code units, so this module
does too (an emoji outside the BMP is two units but one Python character).
"""

from __future__ import annotations

import copy
import re
from typing import Any, Callable, Iterable, Sequence

from helpers import tg_text
from helpers.filenames import safe_filename
from helpers.text_edits import PLACEHOLDER, fill, rewrite, rule_edits

__all__ = [
    "MAX_CAPTION", "MAX_RULES", "MAX_WORD", "MAX_RENAME", "DEFAULTS", "SettingsError",
    "normalize", "check_caption", "check_rename", "parse_rules", "add_rules", "parse_target",
    "apply_caption", "apply_name", "thumbnail", "thumb_file_id", "target", "may_post",
    "describe",
]

MAX_CAPTION = tg_text.CAPTION_LIMIT
MAX_RULES = 20
MAX_WORD = 64
MAX_RENAME = 128
_MAX_FILE_ID = 512
_MAX_TITLE = 128

CAPTION_FIELDS = ("caption", "filename")
NAME_FIELDS = ("name", "ext", "n")

DEFAULTS: dict[str, Any] = {
    "caption": None,       # custom caption template, None = keep the original
    "caption_off": False,  # send no caption at all (wins over "caption")
    "rename": None,        # file name pattern, None = keep the original name
    "replace": [],         # [[word, replacement], ...]; "" deletes the word
    "thumb": None,         # file_id of a photo the user sent to the bot
    "thumb_msg": None,     # id of that message in the user's chat, to refresh the file_id
    "target": None,        # {"chat": int | str, "topic": int | None, "title": str}
}

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class SettingsError(ValueError):
    """A value the user sent cannot be used; ``str(err)`` is the reply to send."""


# ---------------------------------------------------------------------------- validation

_u16 = tg_text.u16len


def _check_placeholders(text: str, allowed: Sequence[str]) -> None:
    for name in PLACEHOLDER.findall(text):
        if name not in allowed:
            known = ", ".join("{" + a + "}" for a in allowed)
            raise SettingsError(f"Unknown placeholder {{{name}}}. You can use {known}.")


def _check_template(text: object, allowed: Sequence[str], *, ask: str, noun: str, limit: int,
                    size: Callable[[str], int] = len) -> str:
    """A template the user sent, without control characters, or SettingsError."""
    if not isinstance(text, str) or not text.strip():
        raise SettingsError(ask)
    text = _CONTROL.sub("", text).strip()
    if size(text) > limit:
        raise SettingsError(f"That {noun} is too long: at most {limit} characters.")
    _check_placeholders(text, allowed)
    return text


def check_caption(text: object) -> str:
    """A custom caption template, cleaned, or SettingsError."""
    return _check_template(text, CAPTION_FIELDS, ask="Send the caption as text.",
                           noun="caption", limit=MAX_CAPTION, size=_u16)


def check_rename(text: object) -> str:
    """A rename pattern, cleaned, or SettingsError. Path tricks are left to safe_filename."""
    return _check_template(text, NAME_FIELDS,
                           ask="Send the name pattern as text, for example: {name} [{n}]",
                           noun="pattern", limit=MAX_RENAME)


def _check_word(word: object, what: str) -> str:
    if not isinstance(word, str):
        raise SettingsError(f"The {what} must be text.")
    word = _CONTROL.sub("", word).replace("\n", " ").strip()
    if len(word) > MAX_WORD:
        raise SettingsError(f"The {what} {word[:20]!r}… is too long: at most {MAX_WORD} "
                            "characters.")
    return word


def parse_rules(text: object) -> list[tuple[str, str]]:
    """One rule a line: ``word => replacement`` replaces, a bare ``word`` deletes."""
    if not isinstance(text, str) or not text.strip():
        raise SettingsError("Send the words as text: one per line, `word => replacement` "
                            "to replace or just `word` to delete.")
    rules = []
    for line in text.splitlines():
        if not line.strip():
            continue
        old, _, new = line.partition("=>")
        old = _check_word(old, "word")
        if not old:
            raise SettingsError(f"Line {line.strip()[:40]!r} has no word before =>.")
        rules.append((old, _check_word(new, "replacement")))
    if len(rules) > MAX_RULES:
        raise SettingsError(f"At most {MAX_RULES} rules.")
    return rules


def add_rules(settings: object, rules: Iterable[tuple[str, str]]) -> dict:
    """New settings with the rules added; a word already present gets its new replacement."""
    s = normalize(settings)
    merged = {old.casefold(): [old, new] for old, new in s["replace"]}
    for old, new in rules:
        merged[old.casefold()] = [old, new]
    if len(merged) > MAX_RULES:
        raise SettingsError(f"You can keep at most {MAX_RULES} word rules; you would have "
                            f"{len(merged)}. Clear some first.")
    s["replace"] = list(merged.values())
    return s


_TARGET = re.compile(r"""
    (?:(?:https?://)?(?:www\.)?(?:t\.me|telegram\.me|telegram\.dog)/)?
    (?: c/(?P<cid>[0-9]{1,13})
      | -100(?P<pid>[0-9]{1,13})
      | @?(?P<user>[A-Za-z][A-Za-z0-9_]{3,31}) )
    (?:/(?P<topic>[0-9]{1,10}))?   # a topic: @chan/5, t.me/c/123/5
    (?:/[0-9]{1,10})?              # a message inside that topic, ignored
    /?""", re.X | re.ASCII)


def parse_target(text: object) -> tuple[int | str, int | None]:
    """(chat, topic) from @name, -100…, or a t.me link; the chat is not checked here."""
    raw = text.strip() if isinstance(text, str) else ""
    m = _TARGET.fullmatch(raw)
    if not m:
        raise SettingsError("Send the chat as @username or -100… id, optionally with a topic "
                            "(@channel/5 or a t.me/c/… topic link). Invite links cannot be "
                            "used: add me to the chat and send its id instead.")
    digits = m["cid"] or m["pid"]
    chat: int | str = int("-100" + digits) if digits else m["user"]
    topic = int(m["topic"]) if m["topic"] else None
    if topic is not None and not 0 < topic < 2**31:
        raise SettingsError("That topic number is not valid.")
    return chat, topic


def _norm_target(t: object) -> dict | None:
    if not isinstance(t, dict):
        return None
    chat, topic = t.get("chat"), t.get("topic")
    if isinstance(chat, bool) or not isinstance(chat, (int, str)) or not chat:
        return None
    if isinstance(chat, str) and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{3,31}", chat):
        return None
    if topic is not None and (isinstance(topic, bool) or not isinstance(topic, int)
                              or not 0 < topic < 2**31):
        topic = None
    title = t.get("title") if isinstance(t.get("title"), str) else str(chat)
    return {"chat": chat, "topic": topic, "title": title[:_MAX_TITLE]}


def normalize(settings: object) -> dict:
    """A complete settings dict with every value valid; anything malformed is dropped."""
    raw = settings if isinstance(settings, dict) else {}
    s = copy.deepcopy(DEFAULTS)
    for key, check in (("caption", check_caption), ("rename", check_rename)):
        if raw.get(key) is not None:
            try:
                s[key] = check(raw[key])
            except SettingsError:
                pass
    s["caption_off"] = raw.get("caption_off") is True
    rules = raw.get("replace")
    for rule in rules if isinstance(rules, list) else ():
        if not isinstance(rule, (list, tuple)) or len(rule) != 2:
            continue
        try:
            old, new = _check_word(rule[0], "word"), _check_word(rule[1], "replacement")
        except SettingsError:
            continue
        if old and len(s["replace"]) < MAX_RULES:
            s["replace"].append([old, new])
    thumb = raw.get("thumb")
    if isinstance(thumb, str) and 0 < len(thumb) <= _MAX_FILE_ID:
        s["thumb"] = thumb
        msg = raw.get("thumb_msg")
        s["thumb_msg"] = msg if isinstance(msg, int) and not isinstance(msg, bool) else None
    s["target"] = _norm_target(raw.get("target"))
    return s


# ---------------------------------------------------------------------------- applying

def apply_caption(settings: object, caption: str | None, entities: list | None, *,
                  file_name: str = "", limit: int = MAX_CAPTION) -> tuple[str, list | None]:
    """The caption and entities to send. Entities come back as moved copies, sorted; None
    when there are none (send with ParseMode.DISABLED so the text is never re-parsed)."""
    s = normalize(settings)
    if s["caption_off"]:
        return "", None
    text = caption if isinstance(caption, str) else ""
    ents = tg_text.clip(entities, _u16(text))
    text, ents = rewrite(text, ents, rule_edits(text, s["replace"]))
    if s["caption"] is not None:
        text, ents = fill(s["caption"], {"caption": (text, ents),
                                          "filename": (file_name or "", [])})
    text, ents = tg_text.truncate(text, ents, limit)
    ents.sort(key=lambda e: (e.offset, -e.length))
    return text, ents or None


def _split_ext(file_name: str) -> tuple[str, str]:
    stem, dot, ext = file_name.rpartition(".")
    if dot and stem.strip(".") and 0 < len(ext) <= 16 and ext.isalnum():
        return stem, ext
    return file_name, ""


def apply_name(settings: object, file_name: str | None, *, n: int = 1) -> str:
    """The file name to upload under: always a single safe path component."""
    s = normalize(settings)
    original = file_name if isinstance(file_name, str) else ""
    stem, ext = _split_ext(original)
    replaced, _ = rewrite(stem, [], rule_edits(stem, s["replace"]))
    stem = replaced if replaced.strip(" ._") else stem  # rules may not erase the whole name
    pattern = s["rename"]
    if pattern is None:
        name = f"{stem}.{ext}" if ext else stem
    else:
        values = {"name": (stem, []), "ext": (ext, []), "n": (str(int(n)), [])}
        name, _ = fill(pattern, values)
        if "{ext}" not in pattern and ext:
            name = f"{name}.{ext}"
    return safe_filename(name, fallback=safe_filename(original))


def thumb_file_id(photo) -> str:
    """Telegram wants a thumbnail of at most 320 px: the largest size that fits, if any."""
    fits = [t for t in photo.thumbs or () if max(t.width or 0, t.height or 0) <= 320]
    best = max(fits, key=lambda t: (t.width or 0) * (t.height or 0), default=None)
    return best.file_id if best else photo.file_id


def thumbnail(settings: object) -> str | None:
    """The bot-side file_id of the user's own thumbnail photo, if any."""
    return normalize(settings)["thumb"]


def target(settings: object) -> tuple[int | str, int | None] | None:
    """(chat, topic id or None) to deliver to instead of the user's private chat."""
    t = normalize(settings)["target"]
    return (t["chat"], t["topic"]) if t else None


def may_post(member: Any, broadcast: bool, default_can_send: bool | None = None) -> bool:
    """Whether a pyrogram ChatMember may send messages: in a channel only the owner and
    admins with the post right; in a group anyone not restricted (the chat's defaults apply)."""
    status = getattr(getattr(member, "status", None), "name", None)
    if status == "OWNER":
        return True
    if status == "ADMINISTRATOR":
        return not broadcast or bool(getattr(member.privileges, "can_post_messages", False))
    if broadcast:
        return False
    if status == "MEMBER":
        return default_can_send is not False
    if status == "RESTRICTED":
        return bool(getattr(member, "is_member", False)) and bool(
            getattr(getattr(member, "permissions", None), "can_send_messages", False))
    return False


def _short(text: str, size: int = 60) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= size else text[:size - 1] + "…"


def describe(settings: object) -> str:
    """The /settings summary; plain text (send it with parse mode disabled)."""
    s = normalize(settings)
    if s["caption_off"]:
        caption = "off"
    elif s["caption"] is not None:
        caption = f"custom: {_short(s['caption'])}"
    else:
        caption = "original"
    rules = "none"
    if s["replace"]:
        rules = "; ".join(f"{_short(o, 20)} → {_short(n, 20) if n else '(deleted)'}"
                          for o, n in s["replace"])
    t = s["target"]
    where = "this chat"
    if t:
        where = _short(t["title"], 40) + (f" (topic {t['topic']})" if t["topic"] else "")
    return "\n".join([
        "Your settings",
        f"Caption: {caption}",
        f"Rename: {s['rename'] or 'original name'}",
        f"Words: {rules}",
        f"Thumbnail: {'your photo' if s['thumb'] else 'original'}",
        f"Deliver to: {where}",
    ])
