"""One file down or up in parallel parts, within the account's budgets: the public face.

The client library moves a file one part at a time, so every part waits a full round trip and
a 150 ms data centre caps a download at a few MB/s. Here K parts of one file are in flight at
once over up to P pooled media connections (helpers/transfer_pool.py), each downloaded part
written at its offset as it arrives, K x part size held against the memory budget; every file
of one account draws from that account's window of requests in flight and at most two big
files of one account run at once per DC (helpers/transfer_budget.py); each part fails, waits
or retries by one policy (helpers/transfer_retry.py); a download resumes from its sidecar
(helpers/transfer_resume.py). The library's internals are reached only through
helpers/client_adapter.py.

Parts: 1 MiB downloads (the most upload.getFile gives; offsets are multiples of the part, so
no request crosses a 1 MiB boundary: core.telegram.org/api/files) and 512 KiB uploads (the
most save*FilePart takes). Fewer, larger requests cost less CPU per MB and fewer of the
account's requests. An upload part is read from disk straight into the buffer it is encrypted
and sent from (helpers/transfer_frames.py), at most two per connection at a time; it takes its
slot in the account's window only then, just before the wire, so the window counts what
Telegram can have in flight. Parts awaiting their answer hold no bytes, so K costs round
trips, not memory.

Telegram may answer upload.getFile with upload.fileCdnRedirect even without cdn_supported
(pyrogram#1265, Telethon#4485): the rest of the file then comes from the CDN DC, decrypted
and checked against the master's hashes (helpers/cdn.py), over pooled CDN sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import inspect
import logging
import math
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

from pyrogram import enums, errors, raw

from helpers import client_adapter as adapter
from helpers import floodwait, media_kinds
from helpers import transfer_retry as retry
from helpers.allocator import trim
from helpers.cdn import CdnFile, CdnHashMismatch
from helpers.client_adapter import Broken as _Broken
from helpers.client_adapter import parse_messages
from helpers.direct_io import DirectFile
from helpers.file_reference import RefreshedLocation
from helpers.transfer_budget import (
    BIG_FILE,
    DOWNLOAD_PART,
    KB,
    MIB,
    REQUESTS_PER_CONNECTION,
    UPLOAD_PART,
    Budgets,
    plan,
)
from helpers.transfer_budget import UPLOAD_REQUESTS_PER_CONNECTION as UPLOAD_PER_CONNECTION
from helpers.transfer_frames import FilePart, PartSource
from helpers.transfer_pool import Job as _Job
from helpers.transfer_pool import Pools
from helpers.transfer_resume import (
    SIDECAR_SUFFIX,
    Sidecar,
    remove_partial,
    sidecar_path,
)

log = logging.getLogger("transfer")

__all__ = ["Transfers", "MIB", "KB", "UPLOAD_PART", "BIG_FILE", "SIDECAR_SUFFIX",
           "sidecar_path", "remove_partial", "FREE_UPLOAD_LIMIT", "PREMIUM_UPLOAD_LIMIT"]

FREE_UPLOAD_LIMIT = 2000 * MIB  # 4000 parts of 512 KB
PREMIUM_UPLOAD_LIMIT = 4000 * MIB  # 8000 parts



class _CdnRedirect(Exception):
    """upload.getFile answered upload.fileCdnRedirect: the file is to come from a CDN DC."""

    def __init__(self, redirect):
        super().__init__("redirected to a CDN")
        self.redirect = redirect



async def _call_progress(progress, done: int, total: int) -> None:
    if progress is None:
        return
    result = progress(done, total)
    if inspect.isawaitable(result):
        await result


class _PartSink:
    """Writes a download part at its offset from the decrypting thread (adapter.WithSink),
    when it is the length asked for and the file is still open."""

    __slots__ = ("out", "offset", "want")

    def __init__(self, out: DirectFile, offset: int, want: int):
        self.out, self.offset, self.want = out, offset, want

    def __call__(self, data) -> bool:
        return len(data) == self.want and self.out.write_if_open(data, self.offset)


def _media_of(message):
    """The downloadable media of a Message (or the media object itself)."""
    if hasattr(message, "file_id") and hasattr(message, "file_unique_id"):
        return message
    kind = getattr(getattr(message, "media", None), "value", None)
    media = getattr(message, kind, None) if kind else None
    if media is None or not hasattr(media, "file_id"):
        for name in media_kinds.NAMES:
            media = getattr(message, name, None)
            if media is not None:
                break
    if media is None or not hasattr(media, "file_id"):
        raise ValueError("This message has no downloadable media")
    return media



class Transfers:
    """Parallel, memory-bounded file transfers; one instance per process.

    part_size: download part (a power of two, 4 KB..1 MiB; 1 MiB by default). max_inflight /
    upload_inflight: K, parts in flight per download / upload. max_connections: P, media
    sessions per client and DC, shared by all its transfers; a small file uses one part and
    one connection. account_inflight: file requests in flight per account, all its transfers
    together (AIMD under a 420 or a dropped connection). big_files: files over 10 MB of one
    account at once per DC. reserve(name, mb): the memory budget's try_reserve; None halves K
    (down to 1, never fails). idle_close_s: pooled sessions idle this long are closed.
    direct_io: parts are written and read past the page cache where the filesystem allows
    (helpers/direct_io.py).
    """

    PART_TIMEOUT_S = 30.0  # no answer to one part in this long: retry it elsewhere
    PART_RETRIES = retry.PART_RETRIES
    MAX_FLOODS_PER_PART = retry.MAX_FLOODS_PER_PART
    MAX_FLOODS_PER_FILE = retry.MAX_FLOODS_PER_FILE
    CDN_RETRIES = 3  # chunks failing their hash, or redirects, before the file fails
    CLOSE_WAIT_S = 1.5  # how long a cancelled transfer waits for its connections to close

    def __init__(self, *, part_size: int = DOWNLOAD_PART, max_inflight: int = 12,
                 max_connections: int = 4, upload_inflight: int = 16, reserve=None,
                 idle_close_s: float = 300.0, account_inflight: int = 16, big_files: int = 2,
                 direct_io: bool = True):
        if not (4 * KB <= part_size <= MIB and MIB % part_size == 0):
            raise ValueError("part_size must be a power of two between 4 KB and 1 MB "
                             "(upload.getFile alignment)")
        if (max_inflight < 1 or max_connections < 1 or upload_inflight < 1
                or account_inflight < 1 or big_files < 1):
            raise ValueError("max_inflight, max_connections, upload_inflight, "
                             "account_inflight and big_files must be >= 1")
        self.part_size = part_size
        self.max_inflight = max_inflight
        self.max_connections = max_connections
        self.upload_inflight = upload_inflight
        self.reserve = reserve
        self.idle_close_s = idle_close_s
        self.account_inflight = account_inflight
        self.direct_io = direct_io
        # one window of requests in flight per account, whatever each file asks for
        self.budgets = Budgets(account_inflight, big_files)
        self._pools = Pools(max_connections, idle_close_s)
        self._io: ThreadPoolExecutor | None = None
        self._running = 0  # transfers running their parts, of every client

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
        return self._pools.count(client)

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
        file_id = adapter.decode_file_id(media.file_id)
        size = int(getattr(media, "file_size", 0) or 0)
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        chat = getattr(getattr(message, "chat", None), "id", None)

        async def refetch():
            """A file reference expires with time: the message, fetched again, has a new one."""
            fresh = await client.get_messages(chat, message.id)
            if fresh is None or getattr(fresh, "empty", False) or not fresh.media:
                raise errors.FileReferenceExpired()
            fresh_id = adapter.decode_file_id(_media_of(fresh).file_id)
            if fresh_id.media_id != file_id.media_id:  # edited to another file meanwhile
                raise errors.FileReferenceExpired()
            return adapter.file_location(fresh_id)

        can_refetch = chat is not None and getattr(message, "id", None)
        loc = RefreshedLocation(adapter.file_location(file_id), refetch if can_refetch else None)

        if size <= 0:  # size unknown (or an empty file): read parts in order until a short one
            return await self._download_sequential(client, file_id.dc_id, loc, path,
                                                   progress)

        part = self.part_size
        parts = math.ceil(size / part)
        side = Sidecar(path, f"{media.file_unique_id}:{file_id.media_id}", size, part, parts)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        out = DirectFile(path, fd, os.O_WRONLY, self.direct_io)
        try:
            resumed = os.path.exists(side.path) and side.load(path)
            if not resumed:
                os.ftruncate(fd, 0)
                _allocate(fd, size)  # parts land at their offsets
                side.save()
            todo = deque(i for i in range(parts) if not side.has(i))
            state = job_dir_state if isinstance(job_dir_state, dict) else {}
            state.update(sidecar=side.path, parts=parts, done=side.done, resumed=side.done)
            done_bytes = sum(min(part, size - i * part) for i in range(parts) if side.has(i))
            if done_bytes:
                await _call_progress(progress, done_bytes, size)

            inflight, _ = self._plan(len(todo), self.max_inflight, part)
            async with contextlib.AsyncExitStack() as stack:
                await self._big_slot(stack, client, file_id.dc_id, size)
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
                        data = await self._get_part(job, loc, offset, part, want,
                                                    _PartSink(out, offset, want))
                        if not isinstance(data, adapter.Written):  # else on disk already
                            await self._write(out, data, offset)
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
            self._close_file(out)
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
        file_id = adapter.next_random_id(client)
        dc_id = await adapter.home_dc(client)
        source = PartSource(path, self.direct_io)
        try:
            md5 = ""
            if not big:  # small files carry an md5 the server checks; cheap at <= 10 MB
                md5 = await self._disk(_md5_of_source, source, size)
            todo = deque(range(parts))
            inflight, _ = self._plan(parts, self.upload_inflight,
                                     per_connection=UPLOAD_PER_CONNECTION)
            async with contextlib.AsyncExitStack() as stack:
                await self._big_slot(stack, client, dc_id, size)
                inflight = await self._reserve(stack, f"upload {name}", inflight, UPLOAD_PART)
                inflight, connections = self._plan(inflight, inflight,
                                                   per_connection=UPLOAD_PER_CONNECTION)
                job = _Job(client, dc_id, connections)
                counter = [0]

                async def worker() -> None:
                    while todo:
                        i = todo.popleft()
                        await self._put_part(job, source, file_id, i, parts, big, size)
                        counter[0] += min(UPLOAD_PART, size - i * UPLOAD_PART)
                        await _call_progress(progress, counter[0], size)

                await self._run(job, [worker for _ in range(min(inflight, parts))])
        finally:
            source.close()  # once the last read of a part in progress is over
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
        if kind not in media_kinds.UPLOAD_KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        path = os.fspath(path)
        name = file_name or os.path.basename(path)
        file = await self.upload(client, path, progress=progress, file_name=name)
        thumb_file = None
        if thumb and media_kinds.BY_NAME[kind].thumb and os.path.isfile(thumb):
            thumb_file = await self.upload(client, thumb)
        media = media_kinds.uploaded_media(
            kind, file, name, thumb_file, client.guess_mime_type(name),
            {"duration": duration, "width": width, "height": height, "performer": performer,
             "title": title, "supports_streaming": supports_streaming})
        text = await adapter.parse_text_entities(client, caption or "",
                                               enums.ParseMode.DISABLED, entities or None)
        peer = await client.resolve_peer(chat_id)
        markup = await reply_markup.write(client) if reply_markup else None
        for _ in range(3):
            request = raw.functions.messages.SendMedia(
                peer=peer, media=media, random_id=adapter.next_random_id(client), reply_markup=markup, **text)
            try:
                # a 420 (FLOOD_WAIT, SLOWMODE_WAIT) is waited out here, not by uploading again
                r = await floodwait.patiently(lambda: client.invoke(request), "send media")
                break
            except errors.FilePartMissing as e:  # the server lost a part: send it again
                await self._resend_part(client, path, file, int(e.value))
        else:
            raise RuntimeError(f"{name}: the server kept losing parts of the upload")
        messages = await parse_messages(client, r)
        return messages[0] if messages else None

    @contextlib.asynccontextmanager
    async def one_request(self, client):
        """Hold one of the account's requests in flight around a file request the library
        makes for us (a thumbnail's download_media): the account's budget counts every file
        request of that account, not only our parts."""
        window = self.budgets.window(client)
        await window.acquire()
        try:
            yield
        finally:
            window.release()

    async def close_client(self, client) -> None:
        """Close every pooled connection of `client`; call before `client.stop()` (and after
        its transfers ended: a transfer still running would open new ones)."""
        await self._pools.close_client(client)

    async def close(self) -> None:
        """Close everything (at shutdown)."""
        await self._pools.close()
        if self._io is not None:
            self._io.shutdown(wait=False)
            self._io = None

    # planning and memory -----------------------------------------------------------------
    def _plan(self, parts: int, max_inflight: int, part: int = 0,
              per_connection: int = REQUESTS_PER_CONNECTION) -> tuple[int, int]:
        return plan(parts, max_inflight, self.max_connections, per_connection)

    async def _big_slot(self, stack: contextlib.AsyncExitStack, client, dc_id: int,
                        size: int) -> None:
        """A file over BIG_FILE waits for one of its account's big-file slots on that DC."""
        if size > BIG_FILE:
            slots = self.budgets.big_file(client, dc_id)
            await slots.acquire()
            stack.callback(slots.release)

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
        self._running += 1
        try:
            if tasks:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for t in done:
                    if not t.cancelled() and t.exception() is not None:
                        raise t.exception()
            ok = True
        finally:
            self._running -= 1
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.wait(tasks)
                for t in tasks:  # retrieve, so nothing is logged as never retrieved
                    if not t.cancelled():
                        t.exception()
            if not self._running and self._io is not None:
                # the heap tops kept for the parts (allocator.TRIM_THRESHOLD) go back now
                self._io.submit(trim)
            if not ok:
                for conn in job.used:
                    self._pools.doom(conn)
                await self._pools.wait_closing(self.CLOSE_WAIT_S)

    def _disk(self, fn, *args) -> asyncio.Future:
        """Disk I/O off the event loop, on one thread of our own: a slow disk must not stall
        the bot, and one thread (one malloc arena) holds less memory than the default pool.
        Being one thread, it also runs a file's close after every read or write queued
        before it, even those whose caller was cancelled."""
        if self._io is None:
            self._io = ThreadPoolExecutor(1, thread_name_prefix="transfer-io")
        return asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    def _close_file(self, out: DirectFile) -> None:
        if self._io is None:
            out.close()
        else:
            self._io.submit(out.close)

    async def _write(self, out: DirectFile, data: bytes, offset: int) -> None:
        await self._disk(out.write, data, offset)  # bytes, or a part's pieces

    # parts -------------------------------------------------------------------------------
    async def _get_part(self, job: _Job, loc: RefreshedLocation, offset: int, limit: int,
                        want: int | None, sink=None) -> bytes:
        """One part of a download: exactly `want` bytes (any length when None), or an
        adapter.Written when `sink` (see adapter.WithSink) wrote them. Once the master DC
        has redirected the file to a CDN (loc.cdn), parts come from there."""
        generation = [loc.generation]

        async def query():
            generation[0] = loc.generation  # the reference this request carries
            request = raw.functions.upload.GetFile(location=loc.location, offset=offset,
                                                   limit=limit)
            return request if sink is None else adapter.WithSink(request, sink)

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

    async def _put_part(self, job: _Job, source: PartSource, file_id: int, i: int, parts: int,
                        big: bool, size: int) -> None:
        """One part of an upload. The request is a description (transfer_frames.FilePart):
        its bytes are read from disk on each attempt straight into the buffer it is
        encrypted in, on the connection's crypto thread, and let go once encrypted."""
        n = min(UPLOAD_PART, size - i * UPLOAD_PART)

        async def query():
            return FilePart(source, file_id, i, parts, big, i * UPLOAD_PART, n)

        def check(r) -> None:
            if r is not True:
                raise _Broken(f"upload part {i} not saved")

        await self._with_retries(job, query, check, f"upload part {i}", late=True)

    async def _with_retries(self, job: _Job, query, check, what: str, refresh=None,
                            late: bool = False):
        """A part under the one policy (helpers/transfer_retry.py); `late`: see _invoke."""
        def migrate(dc: int) -> None:
            job.dc_id = dc

        return await retry.with_retries(
            lambda q: self._invoke(job, q, late), lambda e, n: self._flood(job, e, n), migrate,
            query, check, what, refresh, self.PART_RETRIES)

    async def _resend_part(self, client, path: str, file, part: int) -> None:
        big = isinstance(file, raw.types.InputFileBig)
        job = _Job(client, await adapter.home_dc(client), 1)
        source = PartSource(path, self.direct_io)
        try:
            await self._run(job, [lambda: self._put_part(job, source, file.id, part,
                                                         file.parts, big, source.size)])
        finally:
            source.close()

    def _flood(self, job: _Job, e: Exception, floods: int) -> None:
        """A 420 on a part: every part of that client and DC waits it out together (those in
        flight meet the same 420 and only move the same deadline), a bounded number of
        times per part and per file, so a flood is a pause, never a retry storm."""
        wait = floodwait.record(floodwait.seconds_of(e), f"transfer on DC{job.dc_id}")
        job.floods += 1
        if (not floodwait.worth_waiting(wait) or floods > self.MAX_FLOODS_PER_PART
                or job.floods > self.MAX_FLOODS_PER_FILE):
            raise e
        pool = self._pools.get(job.client, job.dc_id, job.cdn)
        pool.flood_until = max(pool.flood_until, time.monotonic() + wait)

    async def _invoke(self, job: _Job, make_query: Callable[[], Awaitable[Any]],
                      late: bool = False):
        """One request, once the FloodWait pause of its client and DC is over and the
        account's window has room; a 420 or a dropped connection shrinks that window.

        `late` (upload parts): the window is taken once the part is read and encrypted,
        just before it goes on the wire, so it counts what Telegram can have in flight
        (sent, not answered), not parts still on our side; those are bounded apart, by the
        connection's slots for built requests (transfer_pool.Conn.unsent)."""
        pool = self._pools.get(job.client, job.dc_id, job.cdn)
        while (delay := pool.flood_until - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        window = self.budgets.window(job.client)
        held = False

        async def admit() -> None:
            nonlocal held
            await window.acquire()
            held = True

        async def query():
            q = await make_query()
            q.admit = admit  # a FilePart: awaited by the adapter before the wire
            return q

        if not late:
            await admit()
        ok = False
        try:
            result = await self._pools.invoke(job, query if late else make_query,
                                              self.PART_TIMEOUT_S)
            ok = True
            return result
        except floodwait.FAMILY as e:
            window.backoff(f"{type(e).__name__} {floodwait.seconds_of(e):g} s")
            raise
        except (ConnectionError, TimeoutError) as e:
            window.backoff(f"connection closed: {e}" if isinstance(e, ConnectionError)
                           else "no answer")
            raise
        finally:
            if held:
                window.release(ok)

    # downloads of unknown size -----------------------------------------------------------
    async def _download_sequential(self, client, dc_id: int, loc: RefreshedLocation, path: str,
                                   progress) -> str:
        """No size to plan with: one part at a time, until a short one, like the library."""
        part = self.part_size
        job = _Job(client, dc_id, 1)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        out = DirectFile(path, fd, os.O_WRONLY, self.direct_io)
        try:
            async def worker() -> None:
                offset = 0
                while True:
                    data = await self._get_part(job, loc, offset, part, None)
                    if data:
                        await self._write(out, data, offset)
                    offset += len(data)
                    await _call_progress(progress, offset, 0)
                    if len(data) < part:
                        os.ftruncate(fd, offset)
                        return

            await self._run(job, [worker])
        finally:
            self._close_file(out)
        return path




def _allocate(fd: int, size: int) -> None:
    """Reserve the file's blocks at once: a full disk fails the download before it starts
    instead of after hours, and writing into reserved blocks costs the kernel a little less
    than filling holes (ext4, measured interleaved: 0.17-0.23 against 0.27-0.33 ms of system
    CPU per MB). Sparse where the filesystem cannot."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise
        os.ftruncate(fd, size)


def _md5_of_source(source: PartSource, size: int) -> str:
    h = hashlib.md5()
    offset = 0
    with source.reading() as fd:
        while offset < size:
            chunk = os.pread(fd, MIB, offset)
            if not chunk:
                break
            h.update(chunk)
            offset += len(chunk)
    return h.hexdigest()
