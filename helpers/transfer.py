"""One file down or up in parallel parts, memory-bounded, over pooled media connections.

The client library moves a file one part at a time, so every part waits a full round trip and
a 150 ms data centre caps a download at a few MB/s. Here K parts are in flight at once over up
to P media sessions of our own (the library's `Session`, made as `Client.get_session(dc,
is_media=True)` makes one, but pooled per client and DC, and closed by us), each downloaded part
written at its offset as it arrives. K x part size is held against the memory budget.

Download parts default to 256 KB, not the 1 MB upload.getFile allows: with K in flight the
round trips overlap whatever the size, but the library copies every answer several times while
decoding it, on all connections at once, and the C allocator keeps blocks over 128 KB around.
bench/transfer_speed.py measured the same speed and about 6 MiB of RSS growth at 256 KB,
against 14-16 MiB at 512 KB and up to 23 MiB at 1 MB (still available through part_size).
Uploads keep at most one built request per connection waiting for the wire; parts awaiting
their answer hold no bytes, so K costs round trips, not memory.

Failure policy, per part and never per file: a 420 of the family (FLOOD_WAIT,
FLOOD_PREMIUM_WAIT, helpers/floodwait.py) pauses every part of that client and DC for the
given seconds, then retries, a bounded number of times per part and per file; a dropped
connection, a silent server or a 5xx retries the part (bounded, with backoff); FILE_MIGRATE
moves to the named DC, whose key the library authorizes once by export/import (our pooled
connections share it: exporting per connection floods, core.telegram.org/api/datacenter); an
expired file reference refetches the message, once for all the parts that found it
expired (helpers/file_reference.py), and they carry on from there. Cancelling the calling task cancels every
part at once and closes the connections it used.

Telegram limits the file requests one account keeps in flight (tgsim/file_limits.py models it at
16): every transfer of one client shares one gate of `account_inflight` requests (12, leaving
room for the library's own thumbnail and album transfers), whatever K each file asks for.

Telegram may answer upload.getFile with upload.fileCdnRedirect even without cdn_supported
(pyrogram#1265, Telethon#4485): the rest of the file then comes from the CDN DC, decrypted
and checked against the master's hashes (helpers/cdn.py), over pooled CDN sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import logging
import math
import os
import time
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

from pyrogram import enums, errors, raw, utils
from pyrogram.file_id import FileId, FileType
from pyrogram.crypto import mtproto
from pyrogram.session import Auth, Session
from pyrogram.session.session import Result as _Result

from helpers import floodwait
from helpers.file_reference import RefreshedLocation
from helpers.cdn import CdnFile, CdnHashMismatch, trust_cdn_keys
from helpers.tasks import cancel_and_wait

log = logging.getLogger("transfer")

KB = 1024
MIB = 1024 * 1024
UPLOAD_PART = 512 * KB  # the largest part upload.save*FilePart accepts
BIG_FILE = 10 * MIB  # above this Telegram wants saveBigFilePart (and no md5)
FREE_UPLOAD_LIMIT = 2000 * MIB  # 4000 parts of 512 KB
PREMIUM_UPLOAD_LIMIT = 4000 * MIB  # 8000 parts
SIDECAR_SUFFIX = ".parts"

# Transient failures: the part is retried, on another connection when the one it used broke.
_TRANSIENT = (OSError, errors.InternalServerError, errors.ServiceUnavailable)
_MEDIA_KINDS = ("document", "video", "audio", "animation", "voice", "video_note", "photo",
                "sticker")


class _Broken(ConnectionError):
    """The media session under a request restarted or never came up."""


class _Resend(Exception):
    """The server asked for the request again (new salt): not a failure."""


class _CdnRedirect(Exception):
    """upload.getFile answered upload.fileCdnRedirect: the file is to come from a CDN DC."""

    def __init__(self, redirect):
        super().__init__("redirected to a CDN")
        self.redirect = redirect


class _Conn:
    """One pooled media session. `inflight` counts our requests on it; a doomed connection
    takes no new requests and is closed as soon as the last one has come back."""

    __slots__ = ("pool", "session", "opener", "inflight", "idle_since", "doomed", "unsent",
                 "closing")

    def __init__(self, pool: "_Pool", unsent: int):
        self.pool = pool
        # requests packed but not yet on the wire: a request takes its bytes from disk only
        # when it gets one of these, so what waits in memory is bounded by connection, not
        # by how many parts are in flight (those awaiting an answer hold nothing)
        self.unsent = asyncio.Semaphore(unsent)
        self.session: Session | None = None
        self.opener: asyncio.Task | None = None
        self.inflight = 0
        self.idle_since = time.monotonic()
        self.doomed = False
        self.closing = False


class _Pool:
    """Media sessions of one client to one DC, plus the FloodWait gate they share."""

    def __init__(self, client, dc_id: int, cdn: bool = False):
        self.client = client
        self.dc_id = dc_id
        self.cdn = cdn  # a CDN DC: its own unauthorized key, upload.getCdnFile only
        self.conns: list[_Conn] = []
        self.flood_until = 0.0
        self.info_lock = asyncio.Lock()


class _Job:
    """The state of one transfer: where it fetches from and which connections it touched."""

    def __init__(self, client, dc_id: int, connections: int, cdn: bool = False):
        self.client = client
        self.dc_id = dc_id
        self.connections = connections
        self.cdn = cdn
        self.used: set[_Conn] = set()
        self.floods = 0  # 420s met by all parts of this transfer


async def _call_progress(progress, done: int, total: int) -> None:
    if progress is None:
        return
    result = progress(done, total)
    if inspect.isawaitable(result):
        await result


def _media_of(message):
    """The downloadable media of a Message (or the media object itself)."""
    if hasattr(message, "file_id") and hasattr(message, "file_unique_id"):
        return message
    kind = getattr(getattr(message, "media", None), "value", None)
    media = getattr(message, kind, None) if kind else None
    if media is None or not hasattr(media, "file_id"):
        for name in _MEDIA_KINDS:
            media = getattr(message, name, None)
            if media is not None:
                break
    if media is None or not hasattr(media, "file_id"):
        raise ValueError("This message has no downloadable media")
    return media


def _location(file_id: FileId):
    """The InputFileLocation the library's get_file builds for the same file id."""
    if file_id.file_type == FileType.CHAT_PHOTO:
        raise ValueError("chat photos are small: download them with download_media")
    if file_id.file_type == FileType.PHOTO:
        return raw.types.InputPhotoFileLocation(
            id=file_id.media_id, access_hash=file_id.access_hash,
            file_reference=file_id.file_reference, thumb_size=file_id.thumbnail_size)
    return raw.types.InputDocumentFileLocation(
        id=file_id.media_id, access_hash=file_id.access_hash,
        file_reference=file_id.file_reference, thumb_size=file_id.thumbnail_size)


def sidecar_path(path: str | os.PathLike) -> str:
    """Where a download keeps its list of finished parts."""
    return os.fspath(path) + SIDECAR_SUFFIX


def remove_partial(path: str | os.PathLike) -> None:
    """Remove a download's target and its sidecar (a cancelled job that will not resume)."""
    for p in (os.fspath(path), sidecar_path(path), sidecar_path(path) + ".tmp"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(p)


class _Sidecar:
    """A bitmap of finished parts next to the target, replaced atomically, so a restart
    re-fetches only what is missing. Saved at most once a second and on exit: a part lost
    from it is merely fetched again, never wrongly skipped (a bit is set only after its bytes
    are written)."""

    SAVE_EVERY_S = 1.0

    def __init__(self, path: str, key: str, size: int, part: int, parts: int):
        self.path = sidecar_path(path)
        self.key, self.size, self.part, self.parts = key, size, part, parts
        self.bits = bytearray((parts + 7) // 8)
        self.done = 0
        self.saved_at = 0.0
        self.dirty = False

    def has(self, i: int) -> bool:
        return bool(self.bits[i >> 3] & (1 << (i & 7)))

    def mark(self, i: int) -> None:
        if not self.has(i):
            self.bits[i >> 3] |= 1 << (i & 7)
            self.done += 1
            self.dirty = True
        if time.monotonic() - self.saved_at >= self.SAVE_EVERY_S:
            self.save()

    def load(self, target: str) -> bool:
        """Adopt the parts a previous run finished, if it was the same file to the same
        target; False (start over) on any doubt."""
        try:
            with open(self.path, encoding="ascii") as f:
                state = json.load(f)
            if (state.get("v") != 1 or state.get("key") != self.key
                    or state.get("size") != self.size or state.get("part") != self.part
                    or os.path.getsize(target) != self.size):
                return False
            bits = bytes.fromhex(state["done"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if len(bits) != len(self.bits):
            return False
        self.bits[:] = bits
        self.done = sum(1 for i in range(self.parts) if self.has(i))
        return True

    def save(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            json.dump({"v": 1, "key": self.key, "size": self.size, "part": self.part,
                       "done": self.bits.hex()}, f)
        os.replace(tmp, self.path)
        self.saved_at = time.monotonic()
        self.dirty = False

    def remove(self) -> None:
        for p in (self.path, self.path + ".tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(p)


class Transfers:
    """Parallel, memory-bounded file transfers; one instance per process.

    part_size: download part (a power of two, 4 KB..1 MB). max_inflight / upload_inflight:
    K, parts in flight per download / upload. max_connections: P, media sessions per client
    and DC, shared by all its transfers; a small file uses one part and one connection.
    reserve(name, mb): the memory budget's try_reserve; None halves K (down to 1, never
    fails). idle_close_s: pooled sessions idle this long are closed.
    """

    PART_TIMEOUT_S = 30.0  # no answer to one part in this long: retry it elsewhere
    START_TIMEOUT_S = 10.0  # a media session that is not up in this long is given up
    PART_RETRIES = 6  # transient failures of one part before the file fails
    MAX_FLOODS_PER_PART = 20
    MAX_FLOODS_PER_FILE = 60  # a 420 storm fails the file instead of retrying for ever
    CDN_RETRIES = 3  # chunks failing their hash, or redirects, before the file fails
    WATCH_EVERY_S = 0.2  # how often an in-flight request checks its connection is alive
    CLOSE_WAIT_S = 1.5  # how long a cancelled transfer waits for its connections to close
    BYTES_PER_CONNECTION = 2 * MIB  # in flight on one connection before another is opened
    UNSENT_PER_CONNECTION = 1  # requests built and waiting for the wire, per connection

    def __init__(self, *, part_size: int = 256 * KB, max_inflight: int = 12,
                 max_connections: int = 4, upload_inflight: int = 8, reserve=None,
                 idle_close_s: float = 60.0, account_inflight: int = 12):
        if not (4 * KB <= part_size <= MIB and MIB % part_size == 0):
            raise ValueError("part_size must be a power of two between 4 KB and 1 MB "
                             "(upload.getFile alignment)")
        if (max_inflight < 1 or max_connections < 1 or upload_inflight < 1
                or account_inflight < 1):
            raise ValueError("max_inflight, max_connections, upload_inflight and "
                             "account_inflight must be >= 1")
        self.part_size = part_size
        self.max_inflight = max_inflight
        self.max_connections = max_connections
        self.upload_inflight = upload_inflight
        self.reserve = reserve
        self.idle_close_s = idle_close_s
        self.account_inflight = account_inflight
        # client -> the gate all its file requests pass, so one account's transfers together
        # stay under Telegram's per-account limit however many run at once
        self._gates: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._pools: dict[tuple[int, int], _Pool] = {}
        self._closing: set[asyncio.Task] = set()
        self._reaper: asyncio.Task | None = None
        self._io: ThreadPoolExecutor | None = None
        # (address, port, test_mode, home) per client and DC: help.getConfig once, not per pool
        self._dc_info: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # public ------------------------------------------------------------------------------
    @staticmethod
    def upload_limit(client) -> int:
        """The largest file `client` may upload, in bytes (callers split above it)."""
        me = getattr(client, "me", None)
        return PREMIUM_UPLOAD_LIMIT if getattr(me, "is_premium", False) else FREE_UPLOAD_LIMIT

    sidecar_path = staticmethod(sidecar_path)
    remove_partial = staticmethod(remove_partial)

    def connections(self, client=None) -> int:
        """Pooled media sessions (of one client, or all): for metrics and tests."""
        return sum(len(p.conns) for p in self._pools.values()
                   if client is None or p.client is client)

    async def download(self, client, message, path: str, *, progress=None,
                       job_dir_state=None) -> str:
        """Download the media of `message` to `path`; returns `path`.

        Each part is written at its offset as soon as it arrives; at most K are asked for at
        a time, so the file never passes through memory whole. A sidecar (`path + ".parts"`) lists finished parts, so calling again after an
        interruption (cancel, crash, restart) fetches only the missing ones; it is removed on
        success. On failure or cancel the partial target and sidecar stay for that resume:
        call `remove_partial(path)` when the job will not be retried.

        `job_dir_state`, when a dict, is kept up to date with {"sidecar", "parts", "done",
        "resumed"} so the caller can log or persist where the download stands.
        """
        media = _media_of(message)
        file_id = FileId.decode(media.file_id)
        size = int(getattr(media, "file_size", 0) or 0)
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        chat = getattr(getattr(message, "chat", None), "id", None)

        async def refetch():
            """A file reference expires with time: the message, fetched again, has a new one."""
            fresh = await client.get_messages(chat, message.id)
            if fresh is None or getattr(fresh, "empty", False) or not fresh.media:
                raise errors.FileReferenceExpired()
            fresh_id = FileId.decode(_media_of(fresh).file_id)
            if fresh_id.media_id != file_id.media_id:  # edited to another file meanwhile
                raise errors.FileReferenceExpired()
            return _location(fresh_id)

        can_refetch = chat is not None and getattr(message, "id", None)
        loc = RefreshedLocation(_location(file_id), refetch if can_refetch else None)

        if size <= 0:  # size unknown (or an empty file): read parts in order until a short one
            return await self._download_sequential(client, file_id.dc_id, loc, path,
                                                   progress)

        part = self.part_size
        parts = math.ceil(size / part)
        side = _Sidecar(path, f"{media.file_unique_id}:{file_id.media_id}", size, part, parts)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            resumed = os.path.exists(side.path) and side.load(path)
            if not resumed:
                os.ftruncate(fd, 0)
                os.ftruncate(fd, size)  # sparse pre-allocation: parts land at their offsets
                side.save()
            todo = deque(i for i in range(parts) if not side.has(i))
            state = job_dir_state if isinstance(job_dir_state, dict) else {}
            state.update(sidecar=side.path, parts=parts, done=side.done, resumed=side.done)
            done_bytes = sum(min(part, size - i * part) for i in range(parts) if side.has(i))
            if done_bytes:
                await _call_progress(progress, done_bytes, size)

            inflight, _ = self._plan(len(todo), self.max_inflight, part)
            async with contextlib.AsyncExitStack() as stack:
                inflight = await self._reserve(stack, f"download {os.path.basename(path)}",
                                               inflight, part)
                inflight, connections = self._plan(inflight, inflight, part)
                job = _Job(client, file_id.dc_id, connections)
                counter = [done_bytes]
                started = time.monotonic()

                async def worker() -> None:
                    while todo:
                        i = todo.popleft()
                        offset = i * part
                        want = min(part, size - offset)
                        data = await self._get_part(job, loc, offset, part, want)
                        await self._write(fd, data, offset)
                        del data
                        side.mark(i)
                        state["done"] = side.done
                        counter[0] += want
                        await _call_progress(progress, counter[0], size)

                await self._run(job, [worker for _ in range(min(inflight, len(todo)) or 0)])
                elapsed = time.monotonic() - started
                log.debug("download %s: %d parts (%d resumed) in %.2f s, K=%d P=%d",
                          os.path.basename(path), parts, state["resumed"], elapsed,
                          inflight, connections)
        except BaseException:
            with contextlib.suppress(OSError):
                if side.dirty:
                    side.save()
            raise
        finally:
            self._close_fd(fd)
        side.remove()
        return path

    async def upload(self, client, path: str, *, progress=None,
                     file_name: str | None = None):
        """Upload `path` in 512 KB parts, K at a time over up to P media sessions; returns the
        InputFile (InputFileBig over 10 MB) to name in a send call.

        Raises ValueError for an empty file (Telegram refuses them) and for a file over the
        account's limit (2000 MiB, 4000 MiB for premium): the caller splits it.
        """
        path = os.fspath(path)
        name = file_name or os.path.basename(path)
        size = os.path.getsize(path)
        if size == 0:
            raise ValueError(f"{name} is empty: Telegram does not accept empty files")
        limit = self.upload_limit(client)
        if size > limit:
            raise ValueError(f"{name} is {size / MIB:.1f} MiB, over the {limit // MIB} MiB "
                             f"one upload may have: split it into parts first")
        parts = math.ceil(size / UPLOAD_PART)
        big = size > BIG_FILE
        file_id = client.rnd_id()
        dc_id = await client.storage.dc_id()
        fd = os.open(path, os.O_RDONLY)
        try:
            md5 = ""
            if not big:  # small files carry an md5 the server checks; cheap at <= 10 MB
                md5 = await self._disk(_md5_of_fd, fd, size)
            todo = deque(range(parts))
            inflight, _ = self._plan(parts, self.upload_inflight, UPLOAD_PART)
            async with contextlib.AsyncExitStack() as stack:
                inflight = await self._reserve(stack, f"upload {name}", inflight, UPLOAD_PART)
                inflight, connections = self._plan(inflight, inflight, UPLOAD_PART)
                job = _Job(client, dc_id, connections)
                counter = [0]

                async def worker() -> None:
                    while todo:
                        i = todo.popleft()
                        await self._put_part(job, fd, file_id, i, parts, big, size)
                        counter[0] += min(UPLOAD_PART, size - i * UPLOAD_PART)
                        await _call_progress(progress, counter[0], size)

                await self._run(job, [worker for _ in range(min(inflight, parts))])
        finally:
            self._close_fd(fd)
        if big:
            return raw.types.InputFileBig(id=file_id, parts=parts, name=name)
        return raw.types.InputFile(id=file_id, parts=parts, name=name, md5_checksum=md5)

    async def send_file(self, client, chat_id, path, *, kind: str, caption: str = "",
                        entities=None, thumb: str | None = None, duration: int = 0,
                        width: int = 0, height: int = 0, performer=None, title=None,
                        file_name: str | None = None, supports_streaming: bool = False,
                        progress=None, reply_markup=None):
        """Upload `path` with `upload`, then send it as `kind` (document, video, audio,
        animation, voice, photo) with its attributes; returns the sent Message.

        `entities` (pyrogram MessageEntity list) are sent as they are; without them the
        caption is sent as plain text, never parsed, since it is copied from another message.
        """
        if kind not in ("document", "video", "audio", "animation", "voice", "photo"):
            raise ValueError(f"unknown kind {kind!r}")
        path = os.fspath(path)
        name = file_name or os.path.basename(path)
        file = await self.upload(client, path, progress=progress, file_name=name)
        thumb_file = None
        if thumb and kind in ("document", "video", "audio", "animation") and os.path.isfile(thumb):
            thumb_file = await self.upload(client, thumb)
        media = _input_media(client, kind, file, name, thumb_file, duration, width, height,
                             performer, title, supports_streaming)
        text = await utils.parse_text_entities(client, caption or "",
                                               enums.ParseMode.DISABLED, entities or None)
        peer = await client.resolve_peer(chat_id)
        markup = await reply_markup.write(client) if reply_markup else None
        for _ in range(3):
            request = raw.functions.messages.SendMedia(
                peer=peer, media=media, random_id=client.rnd_id(), reply_markup=markup, **text)
            try:
                # a 420 (FLOOD_WAIT, SLOWMODE_WAIT) is waited out here, not by uploading again
                r = await floodwait.patiently(lambda: client.invoke(request), "send media")
                break
            except errors.FilePartMissing as e:  # the server lost a part: send it again
                await self._resend_part(client, path, file, int(e.value))
        else:
            raise RuntimeError(f"{name}: the server kept losing parts of the upload")
        messages = await utils.parse_messages(client, r)
        return messages[0] if messages else None

    async def close_client(self, client) -> None:
        """Close every pooled connection of `client`; call before `client.stop()` (and after
        its transfers ended: a transfer still running would open new ones)."""
        for key, pool in list(self._pools.items()):
            if pool.client is client:
                del self._pools[key]
                for conn in list(pool.conns):
                    self._doom(conn, force=True)
        self._dc_info.pop(client, None)
        await self._wait_closing(None)

    async def close(self) -> None:
        """Close everything (at shutdown)."""
        if self._reaper is not None:
            reaper, self._reaper = self._reaper, None
            try:
                await cancel_and_wait(reaper)
            except Exception:  # noqa: BLE001 - closing regardless
                log.exception("transfer reaper failed")
        for pool in list(self._pools.values()):
            for conn in list(pool.conns):
                self._doom(conn, force=True)
        self._pools.clear()
        await self._wait_closing(None)
        if self._io is not None:
            self._io.shutdown(wait=False)
            self._io = None

    # planning and memory -----------------------------------------------------------------
    def _plan(self, parts: int, max_inflight: int, part: int) -> tuple[int, int]:
        """K parts in flight over P connections: a small file needs one of each."""
        k = max(1, min(max_inflight, parts))
        per_connection = max(1, self.BYTES_PER_CONNECTION // part)
        p = max(1, min(self.max_connections, math.ceil(k / per_connection)))
        return k, p

    async def _reserve(self, stack: contextlib.AsyncExitStack, name: str, k: int,
                       part: int) -> int:
        """Hold K x part against the budget, halving K while it does not fit; at K = 1 the
        transfer runs even unreserved, since refusing would only fail the job."""
        if self.reserve is None:
            return k
        while True:
            res = self.reserve(name, k * part / MIB)
            if res is not None:
                if hasattr(res, "__aenter__"):
                    await stack.enter_async_context(res)
                elif hasattr(res, "__enter__"):
                    stack.enter_context(res)
                return k
            if k == 1:
                log.info("%s: no memory reserved, running one part at a time", name)
                return 1
            k = (k + 1) // 2

    # running workers ---------------------------------------------------------------------
    async def _run(self, job: _Job, workers: list) -> None:
        """Run the workers; the first failure (or a cancel) stops them all, and the
        connections they used are then closed rather than pooled."""
        tasks = [asyncio.ensure_future(w()) for w in workers]
        ok = False
        try:
            if tasks:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for t in done:
                    if not t.cancelled() and t.exception() is not None:
                        raise t.exception()
            ok = True
        finally:
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.wait(tasks)
                for t in tasks:  # retrieve, so nothing is logged as never retrieved
                    if not t.cancelled():
                        t.exception()
            if not ok:
                for conn in job.used:
                    self._doom(conn)
                await self._wait_closing(self.CLOSE_WAIT_S)

    def _disk(self, fn, *args) -> asyncio.Future:
        """Disk I/O off the event loop, on one thread of our own: a slow disk must not stall
        the bot, and one thread (one malloc arena) holds less memory than the default pool.
        Being one thread, it also runs a file's close after every read or write queued
        before it, even those whose caller was cancelled."""
        if self._io is None:
            self._io = ThreadPoolExecutor(1, thread_name_prefix="transfer-io")
        return asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    def _close_fd(self, fd: int) -> None:
        if self._io is None:
            os.close(fd)
        else:
            self._io.submit(os.close, fd)

    async def _write(self, fd: int, data: bytes, offset: int) -> None:
        await self._disk(_pwrite_all, fd, data, offset)

    async def _read(self, fd: int, n: int, offset: int) -> bytes:
        return await self._disk(os.pread, fd, n, offset)

    # parts -------------------------------------------------------------------------------
    async def _get_part(self, job: _Job, loc: RefreshedLocation, offset: int, limit: int,
                        want: int | None) -> bytes:
        """One part of a download: exactly `want` bytes (any length when None). Once the
        master DC has redirected the file to a CDN (loc.cdn), parts come from there."""
        generation = [loc.generation]

        async def query():
            generation[0] = loc.generation  # the reference this request carries
            return raw.functions.upload.GetFile(location=loc.location, offset=offset,
                                                limit=limit)

        async def expired() -> None:
            await loc.expired(generation[0])

        def check(r) -> bytes:
            if isinstance(r, raw.types.upload.FileCdnRedirect):
                raise _CdnRedirect(r)
            if not isinstance(r, raw.types.upload.File):
                raise _Broken(f"unexpected answer {type(r).__name__}")
            if want is not None and len(r.bytes) != want:
                raise _Broken(f"part at {offset}: {len(r.bytes)} bytes, expected {want}")
            loc.worked(generation[0])
            return r.bytes

        for _ in range(self.CDN_RETRIES + 1):
            cdn = loc.cdn
            if cdn is not None:
                try:
                    return await self._get_cdn_part(job, cdn, offset, limit, want)
                except (errors.FileTokenInvalid, errors.RequestTokenInvalid):
                    # "continue downloading the file from the master DC using upload.getFile"
                    # (core.telegram.org/method/upload.getCdnFile, upload.reuploadCdnFile)
                    if loc.cdn is cdn:
                        loc.cdn = None
                    continue
            try:
                return await self._with_retries(job, query, check, f"part at {offset}",
                                                expired)
            except _CdnRedirect as r:
                if loc.cdn is None:
                    log.info("file redirected to CDN DC%s", r.redirect.dc_id)
                    loc.cdn = CdnFile(r.redirect, job.dc_id)
        raise _Broken(f"part at {offset}: the CDN redirect kept failing")

    async def _get_cdn_part(self, job: _Job, cdn: CdnFile, offset: int, limit: int,
                            want: int | None) -> bytes:
        """One part from the CDN DC: fetched (the window rounded out to whole 128 KB hash
        parts when the part is smaller), decrypted, checked against the master's hashes
        (asked of the master when missing, and handed back by upload.reuploadCdnFile when
        the CDN does not hold the file yet), sliced to the part."""
        cjob = _Job(job.client, cdn.dc_id, job.connections, cdn=True)
        hash_part = cdn.hash_part
        start = offset - offset % hash_part if limit < hash_part else offset
        span = hash_part if limit < hash_part else limit

        async def fetch():
            return raw.functions.upload.GetCdnFile(file_token=cdn.token, offset=start,
                                                   limit=span)

        def check_cdn(r):
            if not isinstance(r, (raw.types.upload.CdnFile,
                                  raw.types.upload.CdnFileReuploadNeeded)):
                raise _Broken(f"unexpected CDN answer {type(r).__name__}")
            return r

        def check_hashes(r) -> list:
            if not isinstance(r, list):
                raise _Broken(f"unexpected answer {type(r).__name__} for CDN hashes")
            return r

        what = f"CDN part at {offset}"
        for _ in range(self.CDN_RETRIES):
            r = await self._with_retries(cjob, fetch, check_cdn, what)
            if isinstance(r, raw.types.upload.CdnFileReuploadNeeded):
                async def reupload(token=r.request_token):
                    return raw.functions.upload.ReuploadCdnFile(file_token=cdn.token,
                                                                request_token=token)
                cdn.add(await self._with_retries(job, reupload, check_hashes,
                                                 f"{what}: reupload"))
                continue
            data = await self._disk(cdn.decrypt, r.bytes, start)
            while (at := cdn.missing(start, len(data))) is not None:
                async def ask(at=at):
                    return raw.functions.upload.GetCdnFileHashes(file_token=cdn.token,
                                                                 offset=at)
                hashes = await self._with_retries(job, ask, check_hashes, f"{what}: hashes")
                if not any(h.offset == at for h in hashes):
                    raise _Broken(f"{what}: the master DC has no hash for offset {at}")
                cdn.add(hashes)
            try:
                await self._disk(cdn.verify, data, start, span == limit)
            except CdnHashMismatch as e:
                log.warning("%s", e)  # the CDN is not trusted: fetch it again
                continue
            data = data[offset - start:offset - start + limit]
            if want is not None and len(data) != want:
                raise _Broken(f"{what}: {len(data)} bytes, expected {want}")
            return data
        raise errors.CDNFileHashMismatch()

    async def _put_part(self, job: _Job, fd: int, file_id: int, i: int, parts: int,
                        big: bool, size: int) -> None:
        """One part of an upload, read from disk on each attempt: the request is the only
        holder of its bytes, and it lets go of them once they are encrypted."""
        n = min(UPLOAD_PART, size - i * UPLOAD_PART)

        async def query():
            data = await self._read(fd, n, i * UPLOAD_PART)
            if big:
                return raw.functions.upload.SaveBigFilePart(
                    file_id=file_id, file_part=i, file_total_parts=parts, bytes=data)
            return raw.functions.upload.SaveFilePart(file_id=file_id, file_part=i, bytes=data)

        def check(r) -> None:
            if r is not True:
                raise _Broken(f"upload part {i} not saved")

        await self._with_retries(job, query, check, f"upload part {i}")

    async def _with_retries(self, job: _Job, query, check, what: str, refresh=None):
        """The one failure policy of a part: FloodWait waits (every part of that client and
        DC together), FILE_MIGRATE follows the file, an expired file reference refreshes,
        and a transient failure retries with backoff, a bounded number of times."""
        attempt = floods = migrations = 0
        while True:
            try:
                return check(await self._invoke(job, query))
            except floodwait.FAMILY as e:
                floods += 1
                self._flood(job, e, floods)
            except errors.FileMigrate as e:
                migrations += 1
                if migrations > 3 or not e.value:
                    raise
                log.info("%s: file moved to DC%s", what, e.value)
                job.dc_id = int(e.value)
            except (errors.FileReferenceExpired, errors.FileReferenceInvalid):
                if refresh is None:
                    raise
                await refresh()
            except _Resend:
                continue
            except _TRANSIENT as e:
                attempt += 1
                if attempt > self.PART_RETRIES:
                    raise
                log.info("%s: %s; retry %d", what, str(e) or type(e).__name__, attempt)
                await asyncio.sleep(min(0.25 * 2 ** (attempt - 1), 4.0))

    async def _resend_part(self, client, path: str, file, part: int) -> None:
        size = os.path.getsize(path)
        big = isinstance(file, raw.types.InputFileBig)
        job = _Job(client, await client.storage.dc_id(), 1)
        fd = os.open(path, os.O_RDONLY)
        try:
            await self._run(job, [lambda: self._put_part(job, fd, file.id, part, file.parts,
                                                         big, size)])
        finally:
            self._close_fd(fd)

    def _flood(self, job: _Job, e: Exception, floods: int) -> None:
        """A 420 on a part: every part of that client and DC waits it out together (those in
        flight meet the same 420 and only move the same deadline), a bounded number of
        times per part and per file, so a flood is a pause, never a retry storm."""
        wait = floodwait.record(floodwait.seconds_of(e), f"transfer on DC{job.dc_id}")
        job.floods += 1
        if (not floodwait.worth_waiting(wait) or floods > self.MAX_FLOODS_PER_PART
                or job.floods > self.MAX_FLOODS_PER_FILE):
            raise e
        pool = self._pool(job.client, job.dc_id, job.cdn)
        pool.flood_until = max(pool.flood_until, time.monotonic() + wait)

    async def _invoke(self, job: _Job, make_query: Callable[[], Awaitable[Any]]):
        """Send one request on the least busy connection of the job's DC, watching that
        connection: if it restarts under the request, the answer will never come. Every
        request of one client first passes its gate (account_inflight at a time)."""
        async with self._gate(job.client):
            return await self._invoke_gated(job, make_query)

    def _gate(self, client) -> asyncio.Semaphore:
        gate = self._gates.get(client)
        if gate is None:
            gate = self._gates[client] = asyncio.Semaphore(self.account_inflight)
        return gate

    async def _invoke_gated(self, job: _Job, make_query: Callable[[], Awaitable[Any]]):
        pool = self._pool(job.client, job.dc_id, job.cdn)
        delay = pool.flood_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        conn = self._acquire(pool, job)
        slot = False

        def sent() -> None:
            nonlocal slot
            if slot:
                slot = False
                conn.unsent.release()

        try:
            session = await self._ready(conn)
            await conn.unsent.acquire()
            slot = True
            transport = session.connection
            request = asyncio.ensure_future(
                _send(session, await make_query(), self.PART_TIMEOUT_S, sent))
            try:
                while True:
                    done, _ = await asyncio.wait({request}, timeout=self.WATCH_EVERY_S)
                    if done:
                        break
                    if session.connection is not transport or not session.is_started.is_set():
                        raise _Broken("connection lost")
            finally:
                if not request.done():
                    request.cancel()
                    request.add_done_callback(_consume)
            try:
                return request.result()
            except TimeoutError:
                self._doom(conn)  # silent for PART_TIMEOUT_S: do not trust it again
                raise
        finally:
            sent()
            self._release(conn)

    # pool --------------------------------------------------------------------------------
    def _pool(self, client, dc_id: int, cdn: bool = False) -> _Pool:
        key = (id(client), dc_id)
        pool = self._pools.get(key)
        if pool is None or pool.client is not client:
            pool = self._pools[key] = _Pool(client, dc_id, cdn)
        return pool

    def _acquire(self, pool: _Pool, job: _Job) -> _Conn:
        """An idle connection, else a new one while the job's P allows, else the least busy."""
        live = [c for c in pool.conns if not c.doomed]
        best = min(live, key=lambda c: c.inflight) if live else None
        if best is None or (best.inflight > 0 and len(live) < min(job.connections,
                                                                   self.max_connections)):
            best = _Conn(pool, self.UNSENT_PER_CONNECTION)
            pool.conns.append(best)
            best.opener = asyncio.ensure_future(self._open(best))
            best.opener.add_done_callback(_consume)
            self._ensure_reaper()
        best.inflight += 1
        job.used.add(best)
        return best

    def _release(self, conn: _Conn) -> None:
        conn.inflight -= 1
        if conn.inflight == 0:
            conn.idle_since = time.monotonic()
            if conn.doomed:
                self._close_later(conn)

    def _doom(self, conn: _Conn, force: bool = False) -> None:
        if not conn.doomed:
            conn.doomed = True
            with contextlib.suppress(ValueError):
                conn.pool.conns.remove(conn)
            if conn.inflight == 0 or force:
                self._close_later(conn)

    def _close_later(self, conn: _Conn) -> None:
        if conn.closing:
            return
        conn.closing = True
        task = asyncio.ensure_future(self._close(conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, conn: _Conn) -> None:
        if conn.opener is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(conn.opener), self.START_TIMEOUT_S)
        session, conn.session = conn.session, None
        if session is not None:
            try:
                await asyncio.wait_for(session.stop(), 10)
            except Exception as e:  # noqa: BLE001 - a connection that will not close cleanly
                log.debug("media session stop: %r", e)

    async def _wait_closing(self, timeout: float | None) -> None:
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=timeout)

    async def _ready(self, conn: _Conn) -> Session:
        try:
            await asyncio.shield(conn.opener)
        except errors.Unauthorized:
            self._doom(conn)
            raise
        except (asyncio.CancelledError, Exception) as e:
            if isinstance(e, asyncio.CancelledError) and not conn.opener.done():
                raise  # we were cancelled, not the opener
            self._doom(conn)
            if isinstance(e, errors.RPCError) and not isinstance(e, _TRANSIENT):
                raise
            raise _Broken(f"media session did not start: {e!r}") from e
        session = conn.session
        if session is None:
            raise _Broken("media session closed")
        if not session.is_started.is_set():
            try:
                await asyncio.wait_for(session.is_started.wait(), self.START_TIMEOUT_S)
            except asyncio.TimeoutError:
                self._doom(conn)
                raise _Broken("media session did not come back") from None
        return session

    async def _open(self, conn: _Conn) -> None:
        """A media session as `Client.get_session(dc, is_media=True)` makes one, but ours to
        pool and close: the library keeps one media session per DC, which is what limits it."""
        pool = conn.pool
        client = pool.client
        if pool.cdn:
            conn.session = session = await self._cdn_session(pool)
            await session.start()
            return
        async with pool.info_lock:
            known = self._dc_info.setdefault(client, {})
            if pool.dc_id not in known:
                option = await client.get_dc_option(pool.dc_id, is_media=True, ipv6=client.ipv6)
                known[pool.dc_id] = (option.ip_address, option.port,
                                     await client.storage.test_mode(),
                                     await client.storage.dc_id() == pool.dc_id)
            # the home DC's key is the client's own; on another DC the library makes a key
            # and authorizes it by auth.exportAuthorization / importAuthorization, once per
            # DC and client (it keeps that session), and our sessions share that key: an
            # authorization belongs to the key, not to a connection
            # (core.telegram.org/api/datacenter). Exporting again per connection would be
            # P exports where one does, which Telegram floods. Under the lock, as the
            # library does not guard against two callers making it at once.
            auth_key = (await client.get_session(pool.dc_id)).auth_key
        address, port, test_mode, _home = known[pool.dc_id]
        session = Session(client, pool.dc_id, address, port, auth_key, test_mode, is_media=True)
        conn.session = session
        await session.start()
        # no export/import here: the key is the one the library's session for that DC was
        # authorized with, and an authorization belongs to the key, not the connection
        # (core.telegram.org/api/datacenter); exporting per connection floods

    async def _cdn_session(self, pool: _Pool) -> Session:
        """A session with a CDN DC (core.telegram.org/cdn): an auth key of its own, made
        with the CDN's RSA key from help.getCdnConfig and never authorized; no
        initConnection. One key per client and CDN DC, made once."""
        client = pool.client
        async with pool.info_lock:
            known = self._dc_info.setdefault(client, {})
            entry = known.get(("cdn", pool.dc_id))
            if entry is None:
                trust_cdn_keys(await client.invoke(raw.functions.help.GetCdnConfig()))
                option = await client.get_dc_option(pool.dc_id, is_cdn=True, ipv6=client.ipv6)
                if not option.cdn:
                    raise _Broken(f"no CDN DC{pool.dc_id} in help.getConfig")
                test_mode = await client.storage.test_mode()
                key = await Auth(client, pool.dc_id, option.ip_address, option.port,
                                 test_mode).create()
                entry = known[("cdn", pool.dc_id)] = (option.ip_address, option.port,
                                                      test_mode, key)
        address, port, test_mode, key = entry
        return Session(client, pool.dc_id, address, port, key, test_mode, is_media=True,
                       is_cdn=True)

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.ensure_future(self._reap())

    async def _reap(self) -> None:
        """Close connections idle longer than idle_close_s; ends when the pool is empty."""
        every = max(0.05, min(self.idle_close_s / 2, 10.0))
        while any(p.conns for p in self._pools.values()):
            await asyncio.sleep(every)
            now = time.monotonic()
            for key, pool in list(self._pools.items()):
                for conn in list(pool.conns):
                    if (conn.inflight == 0 and conn.opener is not None and conn.opener.done()
                            and now - conn.idle_since >= self.idle_close_s):
                        self._doom(conn)
                if not pool.conns and now >= pool.flood_until:
                    self._pools.pop(key, None)

    # downloads of unknown size -----------------------------------------------------------
    async def _download_sequential(self, client, dc_id: int, loc: RefreshedLocation, path: str,
                                   progress) -> str:
        """No size to plan with: one part at a time, until a short one, like the library."""
        part = self.part_size
        job = _Job(client, dc_id, 1)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            async def worker() -> None:
                offset = 0
                while True:
                    data = await self._get_part(job, loc, offset, part, None)
                    if data:
                        await self._write(fd, data, offset)
                    offset += len(data)
                    await _call_progress(progress, offset, 0)
                    if len(data) < part:
                        os.ftruncate(fd, offset)
                        return

            await self._run(job, [worker])
        finally:
            self._close_fd(fd)
        return path


async def _send(session: Session, query, timeout: float, on_sent: Callable[[], None]):
    """`Session.send`, minus two things a parallel transfer cannot afford: it keeps the
    request and its encrypted copy referenced until the answer comes (two copies of every
    upload part in flight, for a whole round trip), and a cancelled call leaves its slot in
    `session.results`, where a late 1 MB answer would then stay for the session's life.
    Built from the same pieces as the library's own (kurigram 2.2, pinned)."""
    connection = session.connection
    if connection is None:
        raise _Broken("media session stopped")
    message = await session.msg_factory.create(query)
    kind = type(query)
    del query
    msg_id = message.msg_id
    slot = _Result()
    session.results[msg_id] = slot
    try:
        payload = await asyncio.get_running_loop().run_in_executor(
            connection.protocol.crypto_executor, mtproto.pack, message, session.salt,
            session.session_id, session.auth_key, session.auth_key_id)
        del message
        await connection.send(payload)
        del payload
        on_sent()
        await asyncio.wait_for(slot.event.wait(), timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"no answer in {timeout:.0f} s") from None
    finally:
        session.results.pop(msg_id, None)
    value = slot.value
    if isinstance(value, raw.types.RpcError):
        errors.RPCError.raise_it(value, kind)
    if isinstance(value, raw.types.BadServerSalt):
        session.salt = value.new_server_salt
        raise _Resend()
    if isinstance(value, raw.types.BadMsgNotification):
        raise _Broken(f"bad message notification {value.error_code}")
    return value


def _consume(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _md5_of_fd(fd: int, size: int) -> str:
    h = hashlib.md5()
    offset = 0
    while offset < size:
        chunk = os.pread(fd, MIB, offset)
        if not chunk:
            break
        h.update(chunk)
        offset += len(chunk)
    return h.hexdigest()


def _input_media(client, kind: str, file, name: str, thumb, duration: int, width: int,
                 height: int, performer, title, supports_streaming: bool):
    """The InputMedia the library's send_<kind> would build for a local file."""
    if kind == "photo":
        return raw.types.InputMediaUploadedPhoto(file=file)
    guessed = client.guess_mime_type(name)
    filename = raw.types.DocumentAttributeFilename(file_name=name)
    if kind == "video":
        return raw.types.InputMediaUploadedDocument(
            mime_type=guessed or "video/mp4", file=file, thumb=thumb,
            attributes=[raw.types.DocumentAttributeVideo(
                supports_streaming=supports_streaming or None, duration=duration or 0,
                w=width or 0, h=height or 0), filename])
    if kind == "animation":
        return raw.types.InputMediaUploadedDocument(
            mime_type=guessed or "video/mp4", file=file, thumb=thumb,
            attributes=[raw.types.DocumentAttributeVideo(
                supports_streaming=True, duration=duration or 0, w=width or 0, h=height or 0),
                filename, raw.types.DocumentAttributeAnimated()])
    if kind == "audio":
        mime = guessed or "audio/mpeg"
        return raw.types.InputMediaUploadedDocument(
            mime_type="audio/opus" if mime == "audio/ogg" else mime, file=file, thumb=thumb,
            attributes=[raw.types.DocumentAttributeAudio(
                duration=int(duration or 0), performer=performer, title=title), filename])
    if kind == "voice":
        mime = guessed or "audio/ogg"
        return raw.types.InputMediaUploadedDocument(
            mime_type="audio/ogg" if mime == "audio/mpeg" else mime, file=file,
            attributes=[raw.types.DocumentAttributeAudio(voice=True,
                                                         duration=int(duration or 0))])
    return raw.types.InputMediaUploadedDocument(
        mime_type=guessed or "application/octet-stream", file=file, thumb=thumb,
        force_file=True, attributes=[filename])
