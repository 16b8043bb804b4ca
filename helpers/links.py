"""Every t.me link form -> a small immutable :class:`LinkRef`.

Links arrive straight from users, so this module is the trust boundary: anything it
returns is range-checked and small, and anything it rejects comes back as a
:class:`LinkError` whose text is the reply to send (what was wrong, then the accepted
forms). No other exception escapes :func:`parse` or :func:`parse_batch`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "ACCEPTED_FORMS", "LinkError", "LinkRef", "parse", "parse_batch",
    "MAX_MESSAGE_ID", "MAX_CHANNEL_ID", "MAX_TEXT_LEN", "channel_chat_id", "bare_channel_id",
]

MAX_TEXT_LEN = 4096
MAX_MESSAGE_ID = 2**31 - 1
# t.me/c/<id> carries a bare channel id; modern ids are past 2**31, so the bound is
# the client library's channel id space (10**12 - 2**31), not int32.
MAX_CHANNEL_ID = 10**12 - 2**31
_CHANNEL_SHIFT = 10**12  # Bot API chat id of channel N: -(10**12 + N), whatever N's width


def channel_chat_id(bare_id: int) -> int:
    """t.me/c/<bare_id> -> the chat id the client library takes (-1001234567890 for
    1234567890). Arithmetic, not "-100" + digits: that is right only for 10-digit ids."""
    return -(_CHANNEL_SHIFT + int(bare_id))


def bare_channel_id(chat_id: int) -> int:
    """The inverse: the number a t.me/c/ link carries for a channel's chat id."""
    return -int(chat_id) - _CHANNEL_SHIFT

ACCEPTED_FORMS = (
    "Accepted link forms:\n"
    "• https://t.me/username/123 — a message in a public chat\n"
    "• https://t.me/c/1234567890/123 — a message in a private chat (needs /login)\n"
    "• https://t.me/username/10-25 or https://t.me/c/1234567890/10-25 — a range\n"
    "• https://t.me/c/1234567890/TOPIC/123 or https://t.me/username/TOPIC/123 — a forum topic\n"
    "• add ?single (one message of an album), ?thread=ID or ?comment=ID\n"
    "• https://t.me/b/botname/123 — a message in a chat with a bot\n"
    "• https://t.me/+HASH or https://t.me/joinchat/HASH — an invite link\n"
    "telegram.me, www. and links without https:// work too. "
    "For many messages: /batch <link> <count>."
)

_HOSTS = frozenset({"t.me", "telegram.me", "telegram.dog"})
# First path segments that are t.me features, never chats.
_RESERVED = frozenset({
    "addemoji", "addlist", "addstickers", "addtheme", "auth", "bg", "boost", "confirmphone",
    "contact", "giftcode", "invoice", "iv", "joinchat", "login", "m", "nft", "proxy",
    "setlanguage", "share", "socks", "stars", "stickers",
})
_USERNAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{3,31}", re.ASCII)
_NUM_RE = re.compile(r"[0-9]+", re.ASCII)
_RANGE_RE = re.compile(r"([0-9]+)-([0-9]+)", re.ASCII)
_HASH_RE = re.compile(r"[A-Za-z0-9_-]{5,64}", re.ASCII)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\ufeff]")
# A token is treated as a link attempt when it has a scheme or looks like host/path;
# plain words in the message are ignored.
_LINKISH_RE = re.compile(r"(?:[a-z][a-z0-9+.-]*://|(?:www\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)+/)",
                         re.ASCII | re.IGNORECASE)
_STRIP_LEAD = "([{<\"'«“‘"
_STRIP_TRAIL = ")]}>\"'.,;:!?»”’"


class LinkError(Exception):
    """A link could not be used; ``str(err)`` is the user-facing reply."""

    def __init__(self, problem: str):
        super().__init__(f"{problem}\n\n{ACCEPTED_FORMS}")
        self.problem = problem


@dataclass(frozen=True, slots=True)
class LinkRef:
    """One parsed link: where to read and which message ids (inclusive range)."""

    kind: str  # "public" | "private" | "bot" | "invite"
    chat: str | int  # username, bare channel id (private), or "" (invite)
    msg_id: int
    end_id: int
    topic_id: int | None = None
    comment_id: int | None = None
    single: bool = False
    invite_hash: str | None = None

    @property
    def chat_id(self) -> str | int | None:
        """The peer to resolve: the channel's chat id for private chats, username otherwise."""
        if self.kind == "private":
            return channel_chat_id(int(self.chat))
        if self.kind == "invite":
            return None
        return self.chat

    @property
    def count(self) -> int:
        return len(self.ids())

    @property
    def is_range(self) -> bool:
        return self.end_id != self.msg_id

    def ids(self) -> range:
        if self.kind == "invite":
            return range(0)
        return range(self.msg_id, self.end_id + 1)

    @property
    def url(self) -> str:
        """Canonical https link, for storing a job as text and echoing it back."""
        if self.kind == "invite":
            return f"https://t.me/+{self.invite_hash}"
        prefix = {"private": "c/", "bot": "b/"}.get(self.kind, "")
        path = f"{prefix}{self.chat}/"
        if self.topic_id is not None and self.comment_id is None:
            path += f"{self.topic_id}/"
        path += f"{self.msg_id}" + (f"-{self.end_id}" if self.is_range else "")
        query = []
        if self.comment_id is not None:
            if self.topic_id is not None:
                query.append(f"thread={self.topic_id}")
            query.append(f"comment={self.comment_id}")
        if self.single:
            query.append("single")
        return f"https://t.me/{path}" + (f"?{'&'.join(query)}" if query else "")


def _short(token: str) -> str:
    return token if len(token) <= 60 else token[:57] + "..."


def _number(text: str, what: str, token: str, maximum: int = MAX_MESSAGE_ID) -> int:
    if not _NUM_RE.fullmatch(text):
        raise LinkError(f"{_short(token)}: {what} must be a number, got {_short(text)!r}.")
    # Length first: never feed an unbounded digit run to int().
    if len(text.lstrip("0")) > 13 or not 0 < int(text) <= maximum:
        raise LinkError(f"{_short(token)}: {what} must be between 1 and {maximum}.")
    return int(text)


def _split_url(token: str) -> tuple[str, list[str], str] | None:
    """(host, path segments, query) for a link-looking token, None for ordinary words."""
    lowered = token.lower()
    rest = token
    if "://" in lowered:
        scheme, _, rest = token.partition("://")
        if scheme.lower() == "tg":
            raise LinkError(f"{_short(token)}: tg:// links are not supported; use the t.me "
                            f"link (Copy Link in Telegram).")
        if scheme.lower() not in ("http", "https"):
            raise LinkError(f"{_short(token)} is not a Telegram link.")
    elif not _LINKISH_RE.match(token) and lowered.partition("/")[0] not in _HOSTS \
            and not lowered.startswith("www."):
        return None
    rest = rest.partition("#")[0]
    hostpath, _, query = rest.partition("?")
    host, _, path = hostpath.partition("/")
    host = host.lower()
    if "@" in host or ":" in host:  # userinfo or port: nothing Telegram hands out
        raise LinkError(f"{_short(token)} is not a Telegram link.")
    if host.startswith("www."):
        host = host[4:]
    if host not in _HOSTS:
        raise LinkError(f"{_short(token)} is not a Telegram link.")
    segments = path.split("/")
    if segments and segments[-1] == "":  # one trailing slash is harmless
        segments.pop()
    if any(seg in ("", ".", "..") for seg in segments):
        raise LinkError(f"{_short(token)}: the link path is malformed.")
    return host, segments, query


def _parse_query(query: str, token: str) -> tuple[int | None, int | None, bool]:
    thread = comment = None
    single = False
    for item in query.split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        key = key.lower()
        if key == "single":
            single = True
        elif key in ("thread", "topic"):
            if thread is None:
                thread = _number(value, "the thread id", token)
        elif key == "comment":
            if comment is None:
                comment = _number(value, "the comment id", token)
        # other parameters (tracking etc.) carry nothing we need
    return thread, comment, single


def _message_part(text: str, token: str, max_range: int) -> tuple[int, int]:
    m = _RANGE_RE.fullmatch(text)
    if not m:
        start = _number(text, "the message id", token)
        return start, start
    start = _number(m.group(1), "the first message id", token)
    end = _number(m.group(2), "the last message id", token)
    if end < start:
        raise LinkError(f"{_short(token)}: the range is reversed; write the smaller id first "
                        f"({end}-{start}).")
    if end - start + 1 > max_range:
        raise LinkError(f"{_short(token)}: a range may cover at most {max_range} messages; "
                        f"this one covers {end - start + 1}.")
    return start, end


def _username(text: str, token: str) -> str:
    if not _USERNAME_RE.fullmatch(text):
        raise LinkError(f"{_short(token)}: {_short(text)!r} is not a valid Telegram username "
                        f"(4-32 letters, digits or _, starting with a letter).")
    return text


def _parse_token(token: str, max_range: int) -> LinkRef | None:
    parts = _split_url(token)
    if parts is None:
        return None
    _host, seg, query = parts
    if not seg:
        raise LinkError(f"{_short(token)} does not point at a message.")

    first = seg[0]
    # Invite links: t.me/+HASH and t.me/joinchat/HASH.
    if first.startswith("+") or first.lower() == "joinchat":
        if first.startswith("+"):
            invite, extra = first[1:], seg[1:]
        else:
            invite, extra = (seg[1] if len(seg) > 1 else ""), seg[2:]
        if extra or not _HASH_RE.fullmatch(invite):
            raise LinkError(f"{_short(token)} is not a valid invite link.")
        if invite.isdigit():
            raise LinkError(f"{_short(token)} is a phone number link, not a message link.")
        return LinkRef("invite", "", 0, 0, invite_hash=invite)

    thread, comment, single = _parse_query(query, token)
    lowered = first.lower()
    if lowered == "c":
        kind = "private"
        if len(seg) < 3:
            raise LinkError(f"{_short(token)} is missing the message id.")
        chat: str | int = _number(seg[1], "the chat id", token, MAX_CHANNEL_ID)
        rest = seg[2:]
    elif lowered == "b":
        kind = "bot"
        if len(seg) < 3:
            raise LinkError(f"{_short(token)} is missing the message id.")
        chat = _username(seg[1], token)
        rest = seg[2:]
    else:
        kind = "public"
        if lowered == "s" and len(seg) >= 3:  # t.me/s/name/N: the web preview of a channel
            seg = seg[1:]
        if seg[0].lower() in _RESERVED:
            raise LinkError(f"{_short(token)} is a Telegram feature link, not a message link.")
        chat = _username(seg[0], token)
        if len(seg) < 2:
            raise LinkError(f"{_short(token)} points at a chat, not a message; add the "
                            f"message id (e.g. t.me/{chat}/123).")
        rest = seg[1:]

    if len(rest) > 2:
        raise LinkError(f"{_short(token)} has too many parts.")
    if len(rest) == 2:
        topic = _number(rest[0], "the topic id", token)
        if thread is not None and thread != topic:
            raise LinkError(f"{_short(token)}: the topic in the path and ?thread= disagree.")
        thread = topic
    start, end = _message_part(rest[-1], token, max_range)
    if comment is not None and start != end:
        raise LinkError(f"{_short(token)}: a range cannot be combined with ?comment=.")
    return LinkRef(kind, chat, start, end, thread, comment, single)


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise LinkError("Send the link as text.")
    if len(text) > MAX_TEXT_LEN:
        raise LinkError(f"The message is too long ({len(text)} characters; "
                        f"at most {MAX_TEXT_LEN}).")
    if _CONTROL_RE.search(text):
        raise LinkError("The message contains control or invisible characters; "
                        "paste the link as plain text.")
    return text


def _tokens(text: str):
    for raw in text.split():
        token = raw.lstrip(_STRIP_LEAD).rstrip(_STRIP_TRAIL)
        if token:
            yield token


def parse(text: str, max_links: int = 50, max_range: int = 200) -> list[LinkRef]:
    """All links in a message, in order, duplicates dropped.

    Words that are not links are ignored; any link-looking token that is wrong fails
    the whole message, so a user never gets half of what they asked for silently.
    """
    try:
        text = _check_text(text)
        refs: list[LinkRef] = []
        seen: set[LinkRef] = set()
        for token in _tokens(text):
            ref = _parse_token(token, max_range)
            if ref is None or ref in seen:
                continue
            if len(refs) >= max_links:
                raise LinkError(f"Too many links; send at most {max_links} per message.")
            seen.add(ref)
            refs.append(ref)
        if not refs:
            raise LinkError("No Telegram link found in your message.")
        return refs
    except LinkError:
        raise
    except Exception as exc:  # pragma: no cover - defence in depth for hostile input
        raise LinkError("That link could not be read.") from exc


def parse_batch(args: str, cap: int) -> LinkRef:
    """``/batch <link> <count>``: ``count`` messages starting at the link's message."""
    try:
        text = _check_text(args)
        tokens = list(_tokens(text))
        if len(tokens) != 2:
            raise LinkError("Usage: /batch <link> <count>, e.g. /batch https://t.me/name/100 "
                            f"10 (count 1-{cap}).")
        ref = _parse_token(tokens[0], max_range=MAX_MESSAGE_ID)
        if ref is None:
            raise LinkError(f"{_short(tokens[0])} is not a Telegram link.")
        if ref.kind == "invite":
            raise LinkError("/batch needs a message link, not an invite link; send the "
                            "invite link on its own first.")
        if ref.is_range:
            raise LinkError("/batch takes a single message link and a count, not a range.")
        if ref.comment_id is not None:
            raise LinkError("/batch cannot start from a comment link.")
        count_text = tokens[1]
        if not _NUM_RE.fullmatch(count_text) or len(count_text) > 9 \
                or not 1 <= int(count_text) <= cap:
            raise LinkError(f"The count must be a number from 1 to {cap}, "
                            f"got {_short(count_text)!r}.")
        end = ref.msg_id + int(count_text) - 1
        if end > MAX_MESSAGE_ID:
            raise LinkError(f"The batch would run past the largest message id ({MAX_MESSAGE_ID}).")
        return LinkRef(ref.kind, ref.chat, ref.msg_id, end, ref.topic_id, None, ref.single)
    except LinkError:
        raise
    except Exception as exc:  # pragma: no cover - defence in depth for hostile input
        raise LinkError("That link could not be read.") from exc
