"""The CDN calls (core.telegram.org/cdn): help.getCdnConfig, upload.getCdnFileHashes and
upload.reuploadCdnFile on the master DC, upload.getCdnFile on the CDN DC (tgsim/cdn.py)."""

from __future__ import annotations

from pyrogram.raw.core.primitives import Vector

from tgsim.api import Call, handles


@handles("help.GetCdnConfig")
async def get_cdn_config(call: Call, q):
    return call.sim.cdn.config()


@handles("upload.GetCdnFileHashes")
async def get_cdn_file_hashes(call: Call, q):
    cdn = call.sim.cdn
    return Vector(cdn.hashes(cdn.entry(q.file_token), q.offset))


@handles("upload.ReuploadCdnFile")
async def reupload_cdn_file(call: Call, q):
    return Vector(call.sim.cdn.reupload(q.file_token, q.request_token))


@handles("upload.GetCdnFile")
async def get_cdn_file(call: Call, q):
    return call.sim.cdn.chunk(q.file_token, q.offset, q.limit)
