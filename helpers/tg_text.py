"""Telegram's text limits, counted the way Telegram counts them.

Telegram measures message text, captions and entity offsets in UTF-16 code units
(core.telegram.org/api/entities): an emoji outside the BMP is two units but one Python
character. A caption is at most 1024 units from an ordinary sender (4096 from a premium one,
so long captions exist in the wild and a bot must cut them to re-send them); a message 4096.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

CAPTION_LIMIT = 1024  # a non-premium sender, which every bot is
TEXT_LIMIT = 4096

# Formatting that still means the same on part of its text; a mention, URL, hashtag or custom
# emoji is defined by its whole text, so one that a cut (or an edit) goes through is dropped.
RESIZABLE = {"BOLD", "ITALIC", "UNDERLINE", "STRIKETHROUGH", "SPOILER", "TEXT_LINK",
             "TEXT_MENTION", "BLOCKQUOTE", "EXPANDABLE_BLOCKQUOTE", "CODE", "PRE"}


def u16len(text: str | None) -> int:
    return len((text or "").encode("utf-16-le", "surrogatepass")) // 2


def resizable(entity: Any) -> bool:
    return getattr(getattr(entity, "type", None), "name", None) in RESIZABLE


def moved(entity: Any, offset: int, length: int) -> Any:
    """A moved copy: the caller's entities (parts of a Message) are never mutated."""
    e = copy.copy(entity)
    e.offset, e.length = offset, length
    return e


def clip(entities: Iterable[Any] | None, size: int) -> list:
    """Entities that fit in text of `size` UTF-16 units: one that runs past the end is
    clipped to it (formatting) or dropped (text-defined kinds); hostile offsets are dropped."""
    out = []
    for e in entities or ():
        off, length = getattr(e, "offset", None), getattr(e, "length", None)
        if not isinstance(off, int) or not isinstance(length, int):
            continue
        end = min(off + length, size)
        if not 0 <= off < end:
            continue
        if end - off == length:
            out.append(e)
        elif resizable(e):
            out.append(moved(e, off, end - off))
    return out


def truncate(text: str | None, entities: Iterable[Any] | None, limit: int
             ) -> tuple[str, list]:
    """`text` cut to `limit` UTF-16 units (never inside a surrogate pair) and its entities
    kept valid for what is left."""
    text = text or ""
    if u16len(text) > limit:
        cut = text.encode("utf-16-le", "surrogatepass")[:2 * max(0, limit)]
        if cut and 0xD800 <= int.from_bytes(cut[-2:], "little") <= 0xDBFF:
            cut = cut[:-2]  # never keep half of an emoji
        text = cut.decode("utf-16-le", "surrogatepass")
    return text, clip(entities, u16len(text))
