"""Edits to a formatted text that keep each entity on the characters it covered.

Telegram counts entity offsets in UTF-16 code units (core.telegram.org/api/entities), so
every position here is one; an entity an edit cuts across is dropped, one that an edit
lies inside is resized when its kind allows (``tg_text.RESIZABLE``). The caller's entities
are never mutated: moved ones are copies.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from helpers import tg_text

PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

_u16 = tg_text.u16len


def _follow(entity: Any, moves: list[tuple[int, int, int]]) -> Any | None:
    """Follow one entity through edits (old start, old end, new length) in UTF-16 units."""
    start, end = entity.offset, entity.offset + entity.length
    new_start, new_end = start, end
    for a, b, n in moves:
        delta = n - (b - a)
        if b <= start:
            new_start += delta
            new_end += delta
        elif a >= end:
            continue
        elif start <= a and b <= end and tg_text.resizable(entity):
            new_end += delta
        else:
            return None  # the edit cuts across it
    if new_end <= new_start:
        return None
    if (new_start, new_end) == (start, end):
        return entity
    return tg_text.moved(entity, new_start, new_end - new_start)


def rule_edits(text: str, rules: Sequence[Sequence[str]]) -> list[tuple[int, int, str]]:
    """(start, end, new) for every rule match, in one pass over the original text.

    One pass, longest word first: a replacement is never matched again, and "foobar" wins
    over "foo". A deleted word takes one neighbouring space with it, so no double space is left.
    """
    if not rules or not text:
        return []
    ordered = sorted(rules, key=lambda r: -len(r[0]))
    pattern = re.compile("|".join(f"({re.escape(old)})" for old, _ in ordered), re.IGNORECASE)
    edits = []
    for m in pattern.finditer(text):
        new = ordered[m.lastindex - 1][1]
        start, end = m.span()
        if not new:
            before = text[start - 1] if start > 0 else ""
            after = text[end] if end < len(text) else ""
            if after == " " and (not before or before.isspace()):
                end += 1  # "a SPAM b" -> "a b"; "SPAM b" -> "b"
            elif before == " " and (not after or after in ".,;:!?"):
                start -= 1  # "a SPAM" -> "a"; "a SPAM." -> "a."
        edits.append((start, end, new))
    return edits


def rewrite(text: str, entities: list, edits: list[tuple[int, int, str]]) -> tuple[str, list]:
    if not edits:
        return text, entities
    parts, moves, pos, pos16 = [], [], 0, 0
    for start, end, new in edits:
        a = pos16 + _u16(text[pos:start])
        b = a + _u16(text[start:end])
        parts += [text[pos:start], new]
        moves.append((a, b, _u16(new)))
        pos, pos16 = end, b
    parts.append(text[pos:])
    moved = (_follow(e, moves) for e in entities)
    return "".join(parts), [e for e in moved if e is not None]


def fill(template: str, values: dict[str, tuple[str, list]]) -> tuple[str, list]:
    """Substitute {field}s in one pass, so a value that contains "{caption}" stays literal."""
    parts, entities, pos16, pos = [], [], 0, 0
    for m in PLACEHOLDER.finditer(template):
        if m[1] not in values:
            continue
        literal = template[pos:m.start()]
        value, value_entities = values[m[1]]
        pos16 += _u16(literal)
        entities += [tg_text.moved(e, e.offset + pos16, e.length) for e in value_entities]
        parts += [literal, value]
        pos16 += _u16(value)
        pos = m.end()
    parts.append(template[pos:])
    return "".join(parts), entities
