"""The thumbnail a delivered file carries: the user's own photo, else the original's.

Both are fetched by a file_id whose file reference Telegram rotates; a stale one is answered
FILE_REFERENCE_EXPIRED, and the remedy is to fetch the message the file came from again
(core.telegram.org/api/file_reference). For the user's own photo that message is the one they
sent the bot in /settings (its id is stored beside the file_id, as `thumb_msg`); the fresh
file_id is saved back so the next job starts with it. For the original's it is the source
message, which a long download may have outlived.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import AsyncContextManager, Awaitable, Callable

from pyrogram import Client, errors, types

from helpers import user_settings as us
from helpers.session_manager import AUTH_GONE as _AUTH_GONE

log = logging.getLogger("thumbs")

_EXPIRED = (errors.FileReferenceExpired, errors.FileReferenceInvalid)
Fetch = Callable[[], Awaitable["str | None"]]


class Thumbnails:
    """settings_of / save_settings: the users' stored settings (save may be None: then a
    refreshed file_id is used for this job only)."""

    def __init__(self, bot: Client, settings_of: Callable[[int], Awaitable[dict]] | None,
                 save_settings: Callable[[int, dict], Awaitable[None]] | None,
                 gate: Callable[[Client], AsyncContextManager] | None = None):
        self.bot = bot
        self.settings_of = settings_of
        self.save_settings = save_settings
        # gate(client): held around each download, so it counts in that account's file
        # requests in flight (Transfers.one_request); None: not counted
        self.gate = gate

    async def fetch(self, client: Client, msg: types.Message, media, prefs: dict,
                    user_id: int, folder: Path) -> str | None:
        """A local thumbnail file for the re-upload, or None; a thumbnail that cannot be
        fetched is not worth failing the job."""
        target = str(folder / "thumb.jpg")
        sources: list[tuple[Client, str, Fetch]] = []
        own = us.thumbnail(prefs)
        if own:
            sources.append((self.bot, own, lambda: self._own_again(prefs, user_id)))
        thumbs = getattr(media, "thumbs", None)
        if thumbs:
            sources.append((client, thumbs[0].file_id, lambda: _original_again(client, msg)))
        for reader, file_id, again in sources:
            try:
                async with (self.gate(reader) if self.gate else contextlib.nullcontext()):
                    return await self._download(reader, file_id, again, target)
            except _AUTH_GONE:
                raise
            except (errors.RPCError, ValueError, OSError):
                log.info("thumbnail not available; trying the next one", exc_info=True)
        return None

    @staticmethod
    async def _download(reader: Client, file_id: str, again: Fetch, target: str) -> str:
        try:
            return await reader.download_media(file_id, file_name=target)
        except _EXPIRED:
            fresh = await again()
            if not fresh:
                raise
            return await reader.download_media(fresh, file_name=target)

    async def _own_again(self, prefs: dict, user_id: int) -> str | None:
        """The user's thumbnail photo from its message in their chat with the bot."""
        msg_id = prefs.get("thumb_msg")
        if not msg_id:
            return None  # stored before its message id was kept: it cannot be refreshed
        msg = await self.bot.get_messages(user_id, msg_id)
        if msg is None or getattr(msg, "empty", False) or not msg.photo:
            log.info("user %s: the thumbnail's message is gone", user_id)
            return None
        fresh = us.thumb_file_id(msg.photo)
        if self.settings_of is not None and self.save_settings is not None:
            current = us.normalize(await self.settings_of(user_id))
            if current["thumb_msg"] == msg_id:  # not replaced meanwhile
                current["thumb"] = fresh
                await self.save_settings(user_id, current)
        return fresh


async def _original_again(client: Client, msg: types.Message) -> str | None:
    chat = getattr(getattr(msg, "chat", None), "id", None)
    if chat is None:
        return None
    fresh = await client.get_messages(chat, msg.id)
    media = getattr(fresh, fresh.media.value, None) if fresh and fresh.media else None
    thumbs = getattr(media, "thumbs", None)
    return thumbs[0].file_id if thumbs else None
