"""upload.*: file parts in, file slices out, with Telegram's offset/limit rules."""

from __future__ import annotations

import asyncio
import time

from pyrogram import raw
from pyrogram.raw.core.primitives import Bool

from tgsim import limits
from tgsim.api import Call, handles
from tgsim.file_refs import checked
from tgsim.server import RpcFail

MAX_PART = limits.MAX_PART
MB = 1024 * 1024


def _maybe_drop(call: Call, nbytes: int) -> None:
    """Drop the connection once it has received drop_after_upload_bytes of file parts; the
    part that crossed the line is not stored (its answer could not arrive anyway)."""
    conn = call.conn
    faults = call.sim.faults
    conn.file_bytes_received = getattr(conn, "file_bytes_received", 0) + nbytes
    if (faults.drops_left > 0 and faults.drop_after_upload_bytes is not None
            and conn.file_bytes_received >= faults.drop_after_upload_bytes):
        faults.drops_left -= 1
        conn.close()
        raise RpcFail(500, "CONNECTION_DROPPED")


@handles("upload.SaveFilePart")
async def save_file_part(call: Call, q):
    limits.check_part(q.bytes, q.file_part, None, None)
    if q.file_part < 0 or q.file_part >= 4000:
        raise RpcFail(400, "FILE_PART_INVALID")
    _maybe_drop(call, len(q.bytes))
    call.world.upload_part(call.auth.key_id, q.file_id, q.file_part, q.bytes)
    return Bool(True)


@handles("upload.SaveBigFilePart")
async def save_big_file_part(call: Call, q):
    limit = 8000 if call.me.premium else 4000
    if q.file_total_parts > limit:
        raise RpcFail(400, "FILE_PARTS_INVALID")
    if not 0 <= q.file_part < q.file_total_parts:
        raise RpcFail(400, "FILE_PART_INVALID")
    limits.check_part(q.bytes, q.file_part, q.file_total_parts,
                      call.world.part_size_of(call.auth.key_id, q.file_id))
    _maybe_drop(call, len(q.bytes))
    call.world.upload_part(call.auth.key_id, q.file_id, q.file_part, q.bytes, q.file_total_parts)
    return Bool(True)


def _locate(call: Call, loc):
    if isinstance(loc, (raw.types.InputDocumentFileLocation, raw.types.InputPhotoFileLocation)):
        media = call.world.media.get(loc.id)
        if media is None or media.access_hash != loc.access_hash:
            raise RpcFail(400, "LOCATION_INVALID")
        if media.dc_id != call.dc_id:
            # a file is kept on one DC and fetched from that one: 303 FILE_MIGRATE_X
            # elsewhere (core.telegram.org/api/datacenter, "File Access"; api/errors)
            raise RpcFail(303, f"FILE_MIGRATE_{media.dc_id}")
        # a stale reference fails every request for the file, its thumbnail's too
        # (core.telegram.org/api/file_reference)
        checked(call, media, loc.file_reference)
        if isinstance(loc, raw.types.InputDocumentFileLocation) and loc.thumb_size:
            if media.thumb_path is None:
                raise RpcFail(400, "LOCATION_INVALID")
            return media.thumb_path, media.thumb_size
        return media.path, media.size
    raise RpcFail(400, "LOCATION_INVALID")


@handles("upload.GetFile")
async def get_file(call: Call, q):
    # core.telegram.org/api/files "Downloading files": offset and limit multiples of 4 KiB,
    # 1 MiB divisible by limit, no request across a 1 MiB boundary; with precise, multiples
    # of 1 KiB and at most 1 MiB
    offset, limit = q.offset, q.limit
    align = 1024 if q.precise else 4096
    if offset < 0 or offset % align:
        raise RpcFail(400, "OFFSET_INVALID")
    if limit <= 0 or limit > MB or limit % align:
        raise RpcFail(400, "LIMIT_INVALID")
    if not q.precise and (MB % limit or offset // MB != (offset + limit - 1) // MB):
        raise RpcFail(400, "LIMIT_INVALID")
    path, size = _locate(call, q.location)
    if (getattr(q.location, "id", None) in call.sim.faults.cdn_redirect
            and not getattr(q.location, "thumb_size", "")):
        # a popular file: redirected to a CDN even when cdn_supported is not set
        # (pyrogram#1265, Telethon#4485; core.telegram.org/cdn)
        return call.sim.cdn.redirect(call.world.media[q.location.id])
    if call.sim.faults.stall_file_calls > 0:
        call.sim.faults.stall_file_calls -= 1
        await asyncio.sleep(3600)  # cancelled when the connection closes
    if offset > size:
        raise RpcFail(400, "OFFSET_INVALID")
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(limit)
    conn = call.conn
    faults = call.sim.faults
    conn.file_bytes_sent += len(data)
    call.sim.stats["file_bytes_out"] += len(data)
    if (faults.drops_left > 0 and faults.drop_after_file_bytes is not None
            and conn.file_bytes_sent >= faults.drop_after_file_bytes):
        faults.drops_left -= 1
        conn.close()
        raise RpcFail(500, "CONNECTION_DROPPED")
    return raw.types.upload.File(type=raw.types.storage.FilePartial(), mtime=int(time.time()),
                                 bytes=data)
