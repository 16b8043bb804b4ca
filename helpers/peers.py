"""The access hashes our clients hold, kept so that a crash, a restart or an eviction does
not lose them.

Telegram accepts a channel's or user's access_hash only from the account it gave that hash
to, and gives it only in passing: in the users/chats of an update or of an answer
(core.telegram.org/api/peers: peer info "must be persisted to a database and never
deleted"). The bot learns a private channel from the update Telegram sends when it is added
to it; a user session learns one from its dialogs. Both are expensive or impossible to learn
again, so:

- the bot's own peer database (pyrogram's session file) is committed as soon as it learns
  something a job depends on: pyrogram commits it only at start and stop, so a kill -9
  forgot every peer learned since the start;
- a user session's peers (at most MAX_PEERS_PER_SESSION, newest first) are stored beside
  its session string, encrypted the same way, and loaded into the client when it starts,
  so a cold session reads a chat it has read before with one call instead of scanning up
  to 2000 dialogs.
"""

from __future__ import annotations

import json
import logging

from pyrogram import Client, raw

from helpers.client_adapter import (
    channel_chat_id,
    commit_storage,
    learn_peers,
    store_peers,
    stored_peer,
)

log = logging.getLogger("peers")

MAX_PEERS_PER_SESSION = 200

Row = tuple[int, int, str]  # (pyrogram peer id, access_hash, pyrogram peer type)


async def keep(client: Client) -> None:
    """Commit the client's peer database now (a failure only costs a later re-learn)."""
    try:
        await commit_storage(client)
    except Exception:  # noqa: BLE001 - never fail a handler or a job over this
        log.warning("could not commit the bot's peer database", exc_info=True)


def _row(peer_id: int, peer) -> Row | None:
    if isinstance(peer, raw.types.InputPeerChannel):
        return channel_chat_id(peer.channel_id), peer.access_hash, "channel"
    if isinstance(peer, raw.types.InputPeerUser):
        return peer.user_id, peer.access_hash, "user"
    return None  # basic groups need no hash; self needs no entry


async def export(client: Client, peer_ids) -> list[Row]:
    """The rows the client knows for these ids, in the order given."""
    rows: list[Row] = []
    for peer_id in peer_ids:
        if not isinstance(peer_id, int):
            continue
        try:
            row = _row(peer_id, await stored_peer(client, peer_id))
        except KeyError:
            continue
        if row is not None:
            rows.append(row)
    return rows


async def learn(client: Client, answer) -> list[int]:
    """Store the channels an answer carries where pyrogram does not look (the `chat` of
    chatInviteAlready, the `updates` inside chatInviteJoinResultOk) and return their ids."""
    ok = isinstance(answer, raw.types.messages.ChatInviteJoinResultOk)
    inner = answer.updates if ok else answer
    chats = list(getattr(inner, "chats", None) or [])
    if getattr(answer, "chat", None) is not None:
        chats.append(answer.chat)
    chats = [c for c in chats if isinstance(c, raw.types.Channel)]
    await learn_peers(client, chats)
    return [channel_chat_id(c.id) for c in chats]


async def install(client: Client, rows: list[Row]) -> None:
    if rows:
        await store_peers(client, rows)


def merge(old: list[Row], new: list[Row], cap: int = MAX_PEERS_PER_SESSION) -> list[Row]:
    """New rows first (most recently used), one row per id, at most `cap`."""
    out: list[Row] = []
    seen: set[int] = set()
    for row in (*new, *old):
        if row[0] not in seen:
            seen.add(row[0])
            out.append(row)
        if len(out) >= cap:
            break
    return out


def pack(rows: list[Row]) -> str:
    return json.dumps([list(r) for r in rows], separators=(",", ":"))


def unpack(text: str | None) -> list[Row]:
    """Rows from pack(); anything malformed is dropped (it is only a cache of hashes)."""
    if not text:
        return []
    try:
        items = json.loads(text)
    except ValueError:
        return []
    rows: list[Row] = []
    for item in items if isinstance(items, list) else []:
        if (isinstance(item, list) and len(item) == 3 and isinstance(item[0], int)
                and isinstance(item[1], int) and item[2] in ("channel", "user")):
            rows.append((item[0], item[1], item[2]))
    return rows[:MAX_PEERS_PER_SESSION]


def aad(user_id: int) -> bytes:
    """Binds a peers blob to its user: it cannot be moved to another row or read as a
    session string."""
    return b"peers:v1:%d" % int(user_id)
