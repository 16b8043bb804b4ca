"""Safe file names: one path component that cannot leave its folder, whatever Telegram sent.

A name comes from a stranger's upload or a user's rename pattern: path separators, Windows'
reserved names and characters, invisible controls and byte lengths past what a file system
takes are all cleaned here.
"""

from __future__ import annotations

import re
import unicodedata

_MAX_NAME_BYTES = 128
_MAX_EXT_BYTES = 16
_WINDOWS_BAD = set('<>:"|?*')
# Bidi controls let "evil\u202Egpj.exe" display as "evilexe.jpg"; line separators
# break log lines and captions.
_INVISIBLE = {
    "\u061c", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
    "\u2066", "\u2067", "\u2068", "\u2069", "\u2028", "\u2029", "\ufeff",
}
_RESERVED = {"CON", "PRN", "AUX", "NUL", "CLOCK$", "CONIN$", "CONOUT$"}
_RESERVED |= {f"{p}{d}" for p in ("COM", "LPT") for d in "0123456789¹²³"}
_DOTS = re.compile(r"\.{2,}")


def _clean(name: object, max_bytes: int) -> str:
    if name is None:
        return ""
    text = unicodedata.normalize("NFC", str(name))
    chars = []
    for ch in text:
        if ch in "/\\" or ch in _WINDOWS_BAD:
            chars.append("_")
        elif ch in _INVISIBLE or unicodedata.category(ch) in ("Cc", "Cs"):
            continue  # control chars (NUL, newline, ...) and lone surrogates
        elif ch.isspace():
            chars.append(" ")
        else:
            chars.append(ch)
    s = _DOTS.sub(".", "".join(chars))
    # Leading dots would hide the file (and "." / ".." are paths); trailing dots and
    # spaces are silently dropped by Windows, which makes names collide.
    s = s.strip(" .")
    if not s:
        return ""
    if s.split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
        s = "_" + s
    stem, dot, ext = s.rpartition(".")
    # The extension must leave room for a stem: with a small max_bytes a negative
    # budget would slice from the end and return a name longer than the limit.
    if (dot and stem and 0 < len(ext.encode()) <= _MAX_EXT_BYTES and " " not in ext
            and len(ext.encode()) + 2 <= max_bytes):
        ext = "." + ext
    else:
        stem, ext = s, ""
    budget = max_bytes - len(ext.encode())
    stem = stem.encode()[:budget].decode("utf-8", "ignore").rstrip(" .")
    if not stem:
        return ""
    return stem + ext


def safe_filename(name: str | None, fallback: str = "file", max_bytes: int = _MAX_NAME_BYTES) -> str:
    """A single path component that cannot leave its folder, whatever Telegram sent.

    Keeps the extension when the name must be shortened, so the upload keeps its type.
    """
    out = _clean(name, max_bytes) or _clean(fallback, max_bytes) or "file"
    assert "/" not in out and "\\" not in out and "\x00" not in out and out not in (".", "..")
    return out
