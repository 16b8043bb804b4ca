"""One job end to end: link -> message(s) -> copy, or download + re-upload -> cleanup.

The job row holds only the chat reference and message id; pyrogram Message objects live for
the duration of the job and no longer. Expected failures raise JobError with a line for the
user; the queue records and reports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import time
from pathlib import Path
from typing import Awaitable, Callable

from pyrogram import Client, enums, errors, raw, types

from helpers import delivery_ids, floodwait, media_kinds, peers, tg_text
from helpers import user_settings as us
from helpers.chat_access import ChatAccess, UnknownPeer
from helpers.client_adapter import parse_messages
from helpers.janitor import Janitor, safe_filename
from helpers.memory_monitor import MemoryMonitor
from helpers.progress import ProgressReporter
from helpers.queue_manager import JobError, failure_text, mark_told
from helpers.session_manager import AUTH_GONE as _AUTH_GONE
from helpers.session_manager import SessionManager
from helpers.thumbs import Thumbnails
from helpers.transfer import Transfers

_FINAL_EDIT_WAIT_S = 30.0  # how long a finished job waits to show its last status
_SEND_ATTEMPTS = 3
_DIALOG_SCAN_LIMIT = 2000  # how far to look for a chat the user's session has not cached

log = logging.getLogger("pipeline")

_DUPLICATE = tuple(e for e in (getattr(errors, "RandomIdDuplicate", None),
                               getattr(errors, "RandomIdDuplicate500", None)) if e)

# Errors that mean "this account cannot see that chat".
_UNREADABLE = (errors.ChannelInvalid, errors.ChannelPrivate, errors.UsernameNotOccupied,
               errors.UsernameInvalid, errors.PeerIdInvalid, errors.ChatIdInvalid,
               errors.ChannelPublicGroupNa)
# ...of which these mean "this account holds no (valid) access_hash for it": Telegram
# refuses an id without the hash it gave this very account (core.telegram.org/api/peers).
_NO_HASH = (errors.ChannelInvalid, errors.PeerIdInvalid, KeyError, ValueError)

_SESSION_HAS_NO_HASH = (
    "I cannot read that chat through your account: it does not exist, your account is not "
    f"in it, or it is not among your {_DIALOG_SCAN_LIMIT} most recent chats. Join it with "
    "your account (send me its invite link), then send the link again.")

MarkupFactory = Callable[[dict], "types.InlineKeyboardMarkup | None"]


def chat_of(chat_ref: str) -> int | str:
    """A stored chat reference back to what pyrogram accepts: -100 id or username."""
    return int(chat_ref) if chat_ref.lstrip("-").isdigit() else chat_ref


class Pipeline:
    def __init__(self, bot: Client, janitor: Janitor, monitor: MemoryMonitor, *,
                 progress_interval: float, cancel_markup: MarkupFactory,
                 on_bytes: Callable[[int, int], Awaitable[None]] | None = None,
                 sessions: "SessionManager | None" = None,
                 settings_of: Callable[[int], Awaitable[dict]] | None = None,
                 on_delivered: Callable[..., Awaitable[None]] | None = None,
                 transfers: "Transfers | None" = None,
                 keep_partial: Callable[[], bool] = lambda: False,
                 split_bytes: int = 0,
                 save_settings: Callable[[int, dict], Awaitable[None]] | None = None,
                 access: ChatAccess | None = None):
        self.bot = bot
        self.janitor = janitor
        self.monitor = monitor
        self.progress_interval = progress_interval
        self.cancel_markup = cancel_markup
        self.on_bytes = on_bytes
        self.sessions = sessions
        self.access = access or ChatAccess(sessions)  # which client reads, whether to copy
        self.settings_of = settings_of
        self.on_delivered = on_delivered
        self.transfers = transfers
        # True while the bot shuts down: an interrupted job keeps its parts to resume from.
        self.keep_partial = keep_partial
        self.split_bytes = split_bytes  # 0: Telegram's own limit for the bot
        self.duplicates_caught = 0  # sends Telegram already had (RANDOM_ID_DUPLICATE)
        self.thumbs = Thumbnails(bot, settings_of, save_settings,
                                 transfers.one_request if transfers is not None else None)

    async def run(self, job: dict) -> None:
        job_id, user_id = job["id"], job["user_id"]
        markup = self.cancel_markup(job)
        if job.get("delivered"):
            # Sent before a crash cut the bookkeeping short: never send it twice, and say
            # "done" only if the user was not told so already.
            await self.janitor.remove_job_dir_async(job_id)
            if job["delivered"] >= 2:
                log.info("job #%s: delivered and announced before the restart", job_id)
                return
            await self._patient(lambda: self.bot.send_message(
                user_id, f"Job #{job_id} done: it was delivered before the bot restarted.",
                parse_mode=enums.ParseMode.DISABLED), "notice")
            return
        first = f"Job #{job_id} started: fetching message {job['msg_id']}…"
        if job.get("attempts"):
            first = (f"Job #{job_id} resumed after an interruption (attempt "
                     f"{job['attempts'] + 1}): if part of it already reached you, this is a "
                     "retry.")
        status = await self._patient(lambda: self.bot.send_message(
            user_id, first, reply_markup=markup, parse_mode=enums.ParseMode.DISABLED), "status")

        async def edit(text: str) -> None:
            await self.bot.edit_message_text(user_id, status.id, text, reply_markup=markup,
                                             parse_mode=enums.ParseMode.DISABLED)

        reporter = ProgressReporter(edit, min_interval=self.progress_interval,
                                    name=f"Job #{job_id}")
        # A folder left by an interrupted run holds downloaded parts: the download resumes.
        try:
            async with self.monitor.track("Job", {"job": job_id, "msg": job["msg_id"]}):
                try:
                    summary = await self._deliver(job, reporter)
                except OSError as e:
                    if e.errno in (errno.ENOSPC, errno.EDQUOT):
                        log.error("job #%s: disk full: %s", job_id, e)
                        raise JobError("The bot's disk is full right now. Please send the "
                                       "link again later.") from None
                    raise
            await self._mark_delivered(job_id)
            done = f"Job #{job_id} done: {summary}"
            if await reporter.finish(done) or await self._final_word(reporter, user_id, done):
                await self._mark_delivered(job_id, announced=True)
        except BaseException as e:
            # Shutting down: the job goes back to the queue and resumes from its parts.
            # Anything else ends it here (a retry starts afresh).
            stopping = self.keep_partial()
            if not stopping:
                await self.janitor.remove_job_dir_async(job_id)
            if isinstance(e, Exception):
                if await reporter.finish(failure_text(job_id, e)):
                    mark_told(e)
            else:
                note = "paused for a restart; it will resume" if stopping else "cancelled"
                await _quietly(reporter.finish(f"Job #{job_id} {note}."))
            raise
        else:
            await self.janitor.remove_job_dir_async(job_id)
        finally:
            await reporter.close()

    async def _mark_delivered(self, job_id: int, announced: bool = False) -> None:
        """Bookkeeping after the user has the file (and, announced, was told it is done):
        its failure must not fail the job."""
        if self.on_delivered is None:
            return
        try:
            await self.on_delivered(job_id, announced=announced)
        except Exception:  # noqa: BLE001 - the worst case is one retry notice after a crash
            log.warning("job #%s: could not record the delivery", job_id, exc_info=True)

    async def _final_word(self, reporter: ProgressReporter, user_id: int, text: str) -> bool:
        """The last edit was refused (a FloodWait on edits): wait it out once, briefly, or
        say it in a new message, so a finished job never looks stuck. True if it was said."""
        wait = reporter.flood_until - time.monotonic()
        if 0 < wait <= _FINAL_EDIT_WAIT_S:
            await asyncio.sleep(wait)
            if await reporter.finish(text):
                return True
        try:
            await self.bot.send_message(user_id, text, parse_mode=enums.ParseMode.DISABLED)
            return True
        except errors.RPCError:
            return False

    async def _patient(self, call: Callable[[], Awaitable], where: str):
        """A send that Telegram rate-limits is waited out, not failed: the file is already
        on disk and costly to fetch again.

        Every send of the content passes here. RANDOM_ID_DUPLICATE means Telegram already
        posted a send of ours with that random_id (core.telegram.org/method/messages.sendMedia):
        the client library resent a request whose answer was lost, or, in the scaled layout,
        an earlier worker of this job died after sending (helpers/fleet_pipeline.py). It
        counts as sent (None: no message to edit) and the job goes on with its next send."""
        at = delivery_ids.mark()

        async def once():
            delivery_ids.rewind(at)  # a repeat after a 420 reuses the ids of its try
            return await call()

        try:
            return await floodwait.patiently(once, where, attempts=_SEND_ATTEMPTS)
        except floodwait.GaveUp as e:
            raise JobError(f"Telegram asks me to wait {e.seconds:.0f} s before sending "
                           "more. Please send the link again later.") from None
        except _DUPLICATE:
            self.duplicates_caught += 1
            log.warning("%s: Telegram already has this message (RANDOM_ID_DUPLICATE): sent "
                        "before, not sent again", where)
            return None

    @staticmethod
    async def _read(call: Callable[[], Awaitable], where: str):
        """A read (fetch, resolve, album) that Telegram rate-limits is waited out too: user
        sessions run with sleep_threshold 0, so every 420 reaches us."""
        try:
            return await floodwait.patiently(call, where)
        except floodwait.GaveUp as e:
            raise JobError(f"Telegram asks me to wait {e.seconds:.0f} s before reading that "
                           "chat. Please send the link again later.") from None

    async def _deliver(self, job: dict, reporter: ProgressReporter) -> str:
        """The bot reads what it can (public chats, chats it is in); the rest goes through
        the user's own session, which is the only way into their private chats."""
        chat = chat_of(job["chat_ref"])
        user_id = job["user_id"]
        try:
            msg = await self._fetch(self.bot, chat, job["msg_id"])
        except JobError as e:
            await self.access.after_bot_failed(user_id, chat, e)  # raises unless a session
        else:
            return await self._deliver_from(self.bot, chat, msg, job, reporter)

        async def waiting(text: str) -> None:
            await reporter.finish(f"Job #{job['id']}: {text}…")

        async with self.sessions.use(user_id, on_wait=waiting) as client:
            seen = await self._resolve(client, chat)
            try:
                msg = await self._fetch(client, chat, job["msg_id"])
            except UnknownPeer:
                if not isinstance(chat, int):
                    raise
                if seen is not None:
                    raise JobError(_SESSION_HAS_NO_HASH) from None
                seen = await self._scan(client, chat)  # the kept hash stopped working
                try:
                    msg = await self._fetch(client, chat, job["msg_id"])
                except UnknownPeer:
                    raise JobError(_SESSION_HAS_NO_HASH) from None
            await self.sessions.remember(user_id, client, [chat, *(seen or ())])
            return await self._deliver_from(client, chat, msg, job, reporter)

    async def _resolve(self, client: Client, chat) -> list[int] | None:
        """A session knows the peers kept from its earlier runs (helpers/peers.py); for any
        other chat, look through its dialogs (which caches them), as Telegram only accepts
        the access_hash it gave this account. Returns the ids scanned, None if no scan."""
        try:
            await self._read(lambda: client.resolve_peer(chat), "resolve")
            return None
        except _AUTH_GONE:
            raise
        except (errors.RPCError, KeyError, ValueError):
            pass
        if not isinstance(chat, int):
            return None
        return await self._scan(client, chat)

    async def _scan(self, client: Client, chat: int) -> list[int]:
        """Dialogs up to `chat` (at most _DIALOG_SCAN_LIMIT): their ids, newest first, so the
        session keeps the hashes of its recent chats and the next one needs no scan."""
        seen: list[int] = []

        async def scan() -> None:
            seen.clear()  # a flood waited out starts the scan again
            async for dialog in client.get_dialogs(limit=_DIALOG_SCAN_LIMIT):
                if dialog.chat is None:
                    continue
                if len(seen) < peers.MAX_PEERS_PER_SESSION:
                    seen.append(dialog.chat.id)
                if dialog.chat.id == chat:
                    return

        try:
            await self._read(scan, "dialog scan")
        except _AUTH_GONE:
            raise
        except (errors.RPCError, TimeoutError, OSError):
            log.info("dialog scan failed; fetching without it", exc_info=True)
        return seen

    async def _deliver_from(self, client: Client, chat, msg: types.Message, job: dict,
                            reporter: ProgressReporter) -> str:
        out = _Delivery(job, reporter, us.normalize(await self._prefs(job["user_id"])))
        group = [msg]
        if msg.media_group_id:
            group = await self._read(lambda: _get_album(client, chat, msg), "album")
        # helpers/chat_access.py: protected content and what a session read are re-uploaded
        if self.access.may_copy(msg, client is self.bot) and out.may_copy(group):
            try:
                await self._copy(chat, msg, group, out)
                return out.summary("copied" if len(group) == 1
                                   else f"album of {len(group)} copied")
            except (errors.ChatForwardsRestricted, errors.MediaCaptionTooLong):
                # Protected after all, or a premium author's caption the bot may not post as
                # is: fall through to download + upload, which cuts captions to the limit.
                pass
        if not msg.media:
            await self._patient(lambda: self.bot.send_message(
                out.chat, msg.text or "", entities=msg.entities,
                parse_mode=enums.ParseMode.DISABLED, **out.thread), "send text")
            return out.summary("text delivered")
        job_dir = self.janitor.job_dir(job["id"])
        files = []
        for n, item in enumerate(group, 1):
            files.append(await self._download(client, item, job_dir, out, n))
        await self._upload(group, files, out)
        total = sum(os.path.getsize(f[0]) for f in files)
        return out.summary(f"{len(files)} file(s), {total / 1048576:.1f} MB")

    async def _copy(self, chat, msg: types.Message, group: list, out: "_Delivery") -> None:
        """A server-side copy. The file reference it names may have rotated since the fetch:
        then the message is fetched again (an album copy fetches its group itself)."""
        for attempt in (1, 2):
            try:
                if len(group) > 1:
                    # Telegram's own copy keeps every caption's entities (copy_media_group
                    # re-parses them as Markdown) and the album's kinds as they are.
                    await self._patient(lambda: self.bot.forward_messages(
                        out.chat, chat, [m.id for m in group], hide_sender_name=True,
                        **out.thread), "copy album")
                else:
                    caption = {}
                    if msg.media and (out.recaptions or _too_long(msg.caption)):
                        text, ents = out.caption(msg, _file_name(msg))
                        caption = {"caption": text, "caption_entities": ents,
                                   "parse_mode": enums.ParseMode.DISABLED}
                    await self._patient(lambda: msg.copy(out.chat, **caption, **out.thread),
                                        "copy")
                return
            except (errors.FileReferenceExpired, errors.FileReferenceExpiredX):
                if attempt == 2:
                    raise
                msg = await self._fetch(self.bot, chat, msg.id)

    async def _prefs(self, user_id: int) -> dict:
        if self.settings_of is None:
            return {}
        try:
            return await self.settings_of(user_id)
        except Exception:  # noqa: BLE001 - defaults are better than a failed job
            log.warning("could not read settings of user %s; using defaults", user_id)
            return {}

    async def _fetch(self, client: Client, chat, msg_id: int) -> types.Message:
        try:
            msg = await self._read(lambda: _get_message(client, chat, msg_id), "fetch")
        except _AUTH_GONE:
            raise
        except _UNREADABLE as e:
            who = "I am" if client is self.bot else "your account is"
            kind = UnknownPeer if isinstance(e, _NO_HASH) else JobError
            raise kind("I cannot read that chat: it does not exist, or it is private "
                       f"and {who} not a member of it.") from None
        except (KeyError, ValueError):
            raise UnknownPeer("I cannot read that chat: it is unknown to me.") from None
        if msg is None or msg.empty:
            raise JobError(f"Message {msg_id} does not exist or was deleted.")
        if msg.service:
            raise JobError(f"Message {msg_id} is a service message: nothing to deliver.")
        return msg

    async def _download(self, client: Client, msg: types.Message, job_dir: Path,
                        out: "_Delivery", n: int) -> tuple[str, str | None]:
        media = _media_of(msg)
        name = us.apply_name(out.prefs, _file_name(msg), n=n)
        target = job_dir / f"{n:03d}" / name  # one folder per item: renamed names may collide
        target.parent.mkdir(parents=True, exist_ok=True)
        reporter, job = out.reporter, out.job

        def progress(done: int, total: int) -> None:
            reporter.update("Downloading", done, total)

        async with self.monitor.track("Download", {"job": job["id"], "size": _size(media)}):
            if self.transfers is not None:
                path = await self.transfers.download(client, msg, str(target),
                                                     progress=progress)
            else:
                path = await client.download_media(msg, file_name=str(target),
                                                   progress=progress)
        if path is None:
            raise JobError("The download was interrupted; please try again.")
        thumb = None
        if media_kinds.of(msg).thumb:
            thumb = await self.thumbs.fetch(client, msg, media, out.prefs, job["user_id"],
                                            target.parent)
        if self.on_bytes:
            await self.on_bytes(job["id"], os.path.getsize(path))
        return path, thumb

    async def _upload(self, group: list[types.Message], files: list, out: "_Delivery") -> None:
        reporter = out.reporter

        def progress(done: int, total: int) -> None:
            reporter.update("Uploading", done, total)

        async with self.monitor.track("Upload", {"job": out.job["id"], "files": len(files)}):
            if len(group) > 1:
                kinds = _album_kinds(group)
                await self._patient(lambda: self.bot.send_media_group(
                    out.chat, [_input_media(m, k, p, t, out)
                               for m, k, (p, t) in zip(group, kinds, files)],
                    **out.thread), "send album")
                return
            path, thumb = files[0]
            limit = self.split_bytes or Transfers.upload_limit(self.bot)
            if os.path.getsize(path) > limit:
                await self._send_split(group[0], path, limit, out, progress)
                return
            if self.transfers is not None and not out.thread:
                await self._patient(lambda: _send_parallel(self.transfers, self.bot, group[0],
                                                           *files[0], out, progress),
                                    "send file")
                return
            await self._patient(lambda: _send_one(self.bot, group[0], *files[0], out, progress),
                                "send file")


    async def _send_split(self, msg: types.Message, path: str, limit: int, out: "_Delivery",
                          progress) -> None:
        """A file over Telegram's upload limit goes as numbered parts, one on disk at a time
        (so the disk holds the file plus one part), each captioned with how to join them."""
        size = os.path.getsize(path)
        count = -(-size // limit)
        name = os.path.basename(path)

        def note(i: int) -> str:
            return (f"Part {i + 1} of {count} of {name} (too big for one Telegram file). "
                    f"Join them in order, e.g. cat {name}.0* > {name}")

        # The caption is cut to leave room for the note: together they fit Telegram's limit.
        caption, entities = out.caption(msg, name,
                                        limit=tg_text.CAPTION_LIMIT - tg_text.u16len(note(0)) - 2)
        for i in range(count):
            part = f"{path}.{i + 1:03d}"
            await asyncio.to_thread(_copy_range, path, part, i * limit, limit)
            text = f"{caption}\n\n{note(i)}" if i == 0 and caption else note(i)
            ents = entities if i == 0 else None

            async def send(part=part, text=text, ents=ents):
                if self.transfers is not None and not out.thread:
                    return await self.transfers.send_file(
                        self.bot, out.chat, part, kind="document", caption=text, entities=ents,
                        file_name=os.path.basename(part), progress=progress)
                return await self.bot.send_document(
                    out.chat, part, caption=text, caption_entities=ents,
                    parse_mode=enums.ParseMode.DISABLED, file_name=os.path.basename(part),
                    force_document=True, progress=progress, **out.thread)

            try:
                await self._patient(send, "send part")
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(part)


async def _get_messages(client: Client, chat, msg_ids: list[int], replies: int = 1) -> list:
    """client.get_messages(chat, msg_ids), minus its hidden sleep: the library invokes it with
    sleep_threshold -1, sleeping through any FloodWait however long (a silent job for as long
    as Telegram says); here every 420 reaches the one policy (helpers/floodwait.py)."""
    peer = await client.resolve_peer(chat)
    ids = [raw.types.InputMessageID(id=i) for i in msg_ids]
    if isinstance(peer, raw.types.InputPeerChannel):
        rpc = raw.functions.channels.GetMessages(channel=peer, id=ids)
    else:
        rpc = raw.functions.messages.GetMessages(id=ids)
    r = await client.invoke(rpc, sleep_threshold=0)
    return await parse_messages(client, r, replies=replies)


async def _get_message(client: Client, chat, msg_id: int):
    messages = await _get_messages(client, chat, [msg_id])
    return messages[0] if messages else None


async def _get_album(client: Client, chat, msg: types.Message) -> list:
    """client.get_media_group(chat, msg.id) through _get_messages: an album has at most 10
    items, so they all lie within 9 ids of any one of them."""
    around = await _get_messages(client, chat, list(range(max(1, msg.id - 9), msg.id + 10)),
                                 replies=0)
    return [m for m in around if m.media_group_id == msg.media_group_id]


def _copy_range(src: str, dst: str, offset: int, length: int) -> None:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fin.seek(offset)
        left = length
        while left > 0:
            chunk = fin.read(min(left, 1 << 20))
            if not chunk:
                break
            fout.write(chunk)
            left -= len(chunk)


class _Delivery:
    """Where one job's output goes and how it is dressed (the user's /settings)."""

    def __init__(self, job: dict, reporter: ProgressReporter, prefs: dict):
        self.job, self.reporter, self.prefs = job, reporter, prefs
        target = us.target(prefs)
        self.chat = target[0] if target else job["user_id"]
        self.thread = {"message_thread_id": target[1]} if target and target[1] else {}
        self.recaptions = bool(prefs["caption_off"] or prefs["caption"] or prefs["replace"])

    def may_copy(self, group: list) -> bool:
        """A server-side copy cannot rename, re-thumbnail or re-caption an album."""
        if self.prefs["rename"] or self.prefs["thumb"]:
            return not group[0].media
        return len(group) == 1 or not self.recaptions

    def caption(self, msg: types.Message, file_name: str,
                limit: int = tg_text.CAPTION_LIMIT) -> tuple[str, list | None]:
        return us.apply_caption(self.prefs, msg.caption or "", msg.caption_entities,
                                file_name=file_name, limit=limit)

    def summary(self, what: str) -> str:
        if self.chat == self.job["user_id"]:
            return what
        title = (self.prefs.get("target") or {}).get("title") or str(self.chat)
        return f"{what}, delivered to {title}"


async def _quietly(coro) -> None:
    try:
        await coro
    except Exception:  # noqa: BLE001 - a last status edit must never mask the real outcome
        pass


_media_of = media_kinds.media_of


def _size(media) -> int:
    return getattr(media, "file_size", 0) or 0


def _file_name(msg: types.Message) -> str:
    return safe_filename(getattr(_media_of(msg), "file_name", None),
                         fallback=media_kinds.default_name(msg))


def _caption(msg: types.Message, path: str, out: _Delivery) -> dict:
    text, entities = out.caption(msg, os.path.basename(path))
    return {"caption": text, "caption_entities": entities, "parse_mode": enums.ParseMode.DISABLED}


async def _send_one(bot: Client, msg: types.Message, path: str, thumb: str | None,
                    out: _Delivery, progress) -> None:
    method, attrs = media_kinds.send_kwargs(msg, thumb, os.path.basename(path))
    await getattr(bot, method)(out.chat, path, progress=progress, **_caption(msg, path, out),
                               **attrs, **out.thread)


async def _send_parallel(transfers: "Transfers", bot: Client, msg: types.Message, path: str,
                         thumb: str | None, out: _Delivery, progress) -> None:
    """The same message as _send_one, uploaded in parallel parts."""
    cap = _caption(msg, path, out)
    await transfers.send_file(bot, out.chat, path, caption=cap["caption"],
                              entities=cap["caption_entities"], progress=progress,
                              **media_kinds.transfer_kwargs(msg, thumb, os.path.basename(path)))


def _too_long(caption: str | None) -> bool:
    return tg_text.u16len(caption) > tg_text.CAPTION_LIMIT


_album_kinds = media_kinds.album_kinds


def _input_media(msg: types.Message, kind, path: str, thumb: str | None, out: _Delivery):
    return media_kinds.album_item(msg, kind, path, thumb, _caption(msg, path, out))
