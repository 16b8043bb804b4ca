"""Logging to stdout and a rotating ``logs.txt``, with secrets redacted.

Logs are read by operators and pasted into issues, and the bot handles phone numbers,
login codes, 2FA passwords, session strings and its own token. Redaction runs on the
handlers, so every record that reaches a file or the console passes through it,
whichever library emitted it.

The first rule is structural: the client library's records never carry the values of the
Telegram objects they mention. At DEBUG its session logs every message sent and received,
and those hold what users type in the /login conversation (a phone, a code with spaces, a
password) before anything could register them as secrets. Such objects are logged as their
outline (type names only). Pattern masking and registered secrets are the second line.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from logging.handlers import RotatingFileHandler

from helpers.client_adapter import is_tl_object, tl_fields, tl_name

__all__ = ["setup_logging", "RedactingFilter", "redact", "register_secret", "LOG_FORMAT"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_BYTES = 5 * 1024 * 1024
BACKUP_COUNT = 3
MAX_SECRETS = 1000
MIN_SECRET_LEN = 4  # shorter values would mangle every line and protect little
_CHATTY = ("pyrogram.session", "pyrogram.connection")
_MARK = "_bot_log_handler"

_FERNET_RE = re.compile(r"gAAAAA[A-Za-z0-9_\-]{40,}={0,2}")
_SESSION_RE = re.compile(r"[A-Za-z0-9_\-+/]{200,}={0,2}")
_BOT_TOKEN_RE = re.compile(r"\b(\d{6,}):[A-Za-z0-9_\-]{30,}")
_PHONE_RE = re.compile(r"(?<![\w+])\+\d(?:[ \-().]{0,2}\d){6,14}(?![\d])")
_PASSWORD_KV_RE = re.compile(
    r"(?i)\b(password|passwd|passphrase)(\s*[:=]\s*)(\S+)")
_CODE_WORD_RE = re.compile(r"(?i)(?<![a-z])(codes?|passwords?|passcode|otp|2fa|pin)(?![a-z])")
_CODE_RE = re.compile(r"(?<![\w.])\d{5,6}(?!\w|\.\d)")
_CODE_WINDOW = 40  # characters between the keyword and the digits

_secrets: dict[str, None] = {}  # insertion-ordered set; oldest dropped past the cap
_pinned: set[str] = set()  # the deployment's own secrets: never dropped
_secrets_re: re.Pattern[str] | None = None
_secrets_lock = threading.Lock()
_setup_lock = threading.Lock()


def register_secret(value: str, pinned: bool = False) -> None:
    """Mask ``value`` wherever it appears in future log lines. ``pinned`` (the API hash, the
    token, the key) is kept for good; other values are a second line of defence behind the
    structural rules below and the oldest go past MAX_SECRETS."""
    global _secrets_re
    if not isinstance(value, str) or len(value) < MIN_SECRET_LEN:
        return
    with _secrets_lock:
        if pinned:
            _pinned.add(value)
        _secrets.pop(value, None)
        _secrets[value] = None
        for old in [k for k in _secrets if k not in _pinned][:max(0, len(_secrets) - MAX_SECRETS)]:
            del _secrets[old]
        _secrets_re = None  # rebuilt lazily on the next redact()


def _secret_pattern() -> re.Pattern[str] | None:
    global _secrets_re
    pattern = _secrets_re
    if pattern is None and _secrets:
        with _secrets_lock:
            # Longest first so a secret containing another is masked whole.
            alternatives = sorted(_secrets, key=len, reverse=True)
            pattern = _secrets_re = re.compile("|".join(map(re.escape, alternatives)))
    return pattern


def _mask_codes(text: str) -> str:
    words = [m.span() for m in _CODE_WORD_RE.finditer(text)]
    if not words:
        return text

    def near(m: re.Match[str]) -> str:
        start, end = m.span()
        for ws, we in words:
            if ws - _CODE_WINDOW <= end and start <= we + _CODE_WINDOW:
                return "[REDACTED-CODE]"
        return m.group(0)

    return _CODE_RE.sub(near, text)


def redact(text: str) -> str:
    """``text`` with every known kind of secret replaced by a ``[REDACTED-...]`` marker."""
    if not isinstance(text, str):
        text = str(text)
    pattern = _secret_pattern()
    if pattern is not None:
        text = pattern.sub("[REDACTED]", text)
    text = _FERNET_RE.sub("[REDACTED-FERNET]", text)
    text = _SESSION_RE.sub("[REDACTED-SESSION]", text)
    text = _BOT_TOKEN_RE.sub(r"\1:[REDACTED-TOKEN]", text)
    text = _PASSWORD_KV_RE.sub(r"\1\2[REDACTED]", text)
    text = _mask_codes(text)
    text = _PHONE_RE.sub("[REDACTED-PHONE]", text)
    return text


_OUTLINE_MAX = 24  # type names per record; an update batch can hold hundreds


def tl_outline(obj, _budget: list[int] | None = None) -> str:
    """A Telegram object as its tree of type names, no field values: `Message(MsgContainer(
    Message(UpdateShort(UpdateNewMessage(Message(PeerUser)))))`."""
    budget = [_OUTLINE_MAX] if _budget is None else _budget
    budget[0] -= 1
    name = tl_name(obj)
    if budget[0] <= 0:
        return name
    inner = []
    for value in tl_fields(obj):
        for item in (value if isinstance(value, list) else [value]):
            if budget[0] <= 0:
                inner.append("…")
                break
            if _is_tl(item):
                inner.append(tl_outline(item, budget))
    return f"{name}({', '.join(inner)})" if inner else name


_is_tl = is_tl_object


def _outline_library_record(record: logging.LogRecord) -> None:
    """The client library's record with every Telegram object replaced by its outline."""
    if _is_tl(record.msg):
        record.msg = tl_outline(record.msg)
    args = record.args
    if isinstance(args, tuple) and any(_is_tl(a) for a in args):
        record.args = tuple(tl_outline(a) if _is_tl(a) else a for a in args)
    elif isinstance(args, dict) and any(_is_tl(a) for a in args.values()):
        record.args = {k: tl_outline(a) if _is_tl(a) else a for k, a in args.items()}


class RedactingFilter(logging.Filter):
    """Formats the record's message once, redacts it, and freezes it (args = None)."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("pyrogram"):
            _outline_library_record(record)
        try:
            message = record.getMessage()
        except Exception:  # malformed args: let logging report it as it normally would
            return True
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            # Exception text (e.g. an RPC error quoting a phone) is cached on the record
            # and reused by every formatter, so redacting it here covers all handlers.
            record.exc_text = redact(self._formatter.formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def setup_logging(log_file: str, level: str = "INFO") -> None:
    """Install (or reinstall) our two handlers on the root logger; safe to call twice."""
    numeric = logging.getLevelName(str(level).upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    root = logging.getLogger()
    with _setup_lock:
        for handler in list(root.handlers):
            if getattr(handler, _MARK, False):
                root.removeHandler(handler)
                handler.close()
        formatter = logging.Formatter(LOG_FORMAT)
        handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
        directory = os.path.dirname(os.path.abspath(log_file))
        os.makedirs(directory, exist_ok=True)
        handlers.append(RotatingFileHandler(log_file, maxBytes=MAX_BYTES,
                                            backupCount=BACKUP_COUNT, encoding="utf-8"))
        redactor = RedactingFilter()
        for handler in handlers:
            setattr(handler, _MARK, True)
            handler.setFormatter(formatter)
            handler.addFilter(redactor)
            root.addHandler(handler)
        root.setLevel(numeric)
        for name in _CHATTY:
            logging.getLogger(name).setLevel(
                logging.NOTSET if numeric <= logging.DEBUG else logging.WARNING)
