"""A CDN DC beside the simulated Telegram, as core.telegram.org/cdn describes it.

Telegram may answer upload.getFile for a popular file with upload.fileCdnRedirect, even to a
client that did not set cdn_supported (pyrogram#1265, Telethon#4485). The client then fetches
the file from the CDN DC named in the redirect with upload.getCdnFile, over an auth key made
with the CDN's own RSA key (help.getCdnConfig), decrypts each chunk with AES-256-CTR (the
redirect's key; its iv with the last 4 bytes replaced by offset / 16, big-endian), and checks
every 128 KB against the SHA-256 hashes the master DC gives (the redirect's file_hashes,
upload.getCdnFileHashes, upload.reuploadCdnFile). The CDN is "enemy territory": it answers
nothing but upload.getCdnFile, and only the hashes prove what it sent.

Here the CDN listens on a port of its own, listed in help.getConfig as DC CDN_DC with the
cdn flag; `sim.faults.cdn_redirect` chooses the files that are redirected.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import os
from dataclasses import dataclass

from pyrogram import raw
from pyrogram.crypto import aes

from tgsim import crypto
from tgsim.server import RpcFail

log = logging.getLogger("tgsim.cdn")

CDN_DC = 203  # Telegram's CDN DCs have ids above 200 (core.telegram.org/cdn)
HASH_PART = 128 * 1024  # the file is hashed in parts of 128 KB
HASHES_PER_ANSWER = 8  # upload.getCdnFileHashes answers for 1 MB from the offset asked
CDN_METHODS = frozenset({"upload.GetCdnFile"})  # all a CDN DC answers
MAX_TOKENS = 1000
MB = 1024 * 1024


@dataclass
class CdnEntry:
    media_id: int
    key: bytes
    iv: bytes
    request_token: bytes | None = None


def check_dc(conn, name: str) -> None:
    """A CDN DC answers only upload.getCdnFile; the master DC never answers it (nor the CDN
    the master's CDN helpers): CDN_METHOD_INVALID, "you can't call this method in a CDN DC"
    (core.telegram.org/method/upload.getFile)."""
    if getattr(conn, "cdn", False):
        if name not in CDN_METHODS:
            raise RpcFail(400, "CDN_METHOD_INVALID")
    elif name in CDN_METHODS:
        raise RpcFail(400, "CDN_METHOD_INVALID")


class Cdn:
    def __init__(self, sim):
        self.sim = sim
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._key: crypto.ServerKey | None = None
        self.tokens: collections.OrderedDict[bytes, CdnEntry] = collections.OrderedDict()
        self.stats: collections.Counter[str] = collections.Counter()
        # media not on the CDN yet: getCdnFile answers cdnFileReuploadNeeded for every token
        # of it until the master reuploads it (a property of the file, not of one redirect,
        # so parts redirected at once all meet it)
        self.absent: set[int] = set()

    @property
    def key(self) -> crypto.ServerKey:
        """The CDN's own RSA key, made on first use (most runs never meet a CDN)."""
        if self._key is None:
            self._key = crypto.load_or_create_key(self.sim.data_dir / "cdn_key.pem")
        return self._key

    async def start(self, on_connect) -> None:
        self._server = await asyncio.start_server(on_connect, self.sim.host, 0, limit=4 << 20)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def dc_options(self) -> list:
        return [raw.types.DcOption(id=CDN_DC, ip_address=self.sim.host, port=self.port,
                                   cdn=True)]

    def config(self) -> raw.types.CdnConfig:
        return raw.types.CdnConfig(public_keys=[raw.types.CdnPublicKey(
            dc_id=CDN_DC, public_key=self.key.public_pem().decode())])

    # master side -------------------------------------------------------------------------
    def redirect(self, media) -> raw.types.upload.FileCdnRedirect:
        """Put the file on the CDN under a fresh key and token; what the master answers."""
        token = os.urandom(16)
        entry = CdnEntry(media.id, os.urandom(32), os.urandom(16))
        faults = self.sim.faults
        if faults.cdn_reupload_needed > 0:
            faults.cdn_reupload_needed -= 1
            self.absent.add(media.id)
        self.tokens[token] = entry
        while len(self.tokens) > MAX_TOKENS:
            self.tokens.popitem(last=False)
        self.stats["redirects"] += 1
        return raw.types.upload.FileCdnRedirect(
            dc_id=CDN_DC, file_token=token, encryption_key=entry.key,
            encryption_iv=entry.iv, file_hashes=self.hashes(entry, 0, 2))

    def entry(self, token: bytes) -> CdnEntry:
        entry = self.tokens.get(token)
        if entry is None:
            # "the master DC did not accept the file_token": the client goes back to getFile
            raise RpcFail(400, "FILE_TOKEN_INVALID")
        return entry

    def hashes(self, entry: CdnEntry, offset: int, count: int = HASHES_PER_ANSWER) -> list:
        media = self.sim.world.media.get(entry.media_id)
        if media is None:
            raise RpcFail(400, "FILE_TOKEN_INVALID")
        start = offset - offset % HASH_PART
        out = []
        with open(media.path, "rb") as f:
            for n in range(count):
                at = start + n * HASH_PART
                if at >= media.size:
                    break
                f.seek(at)
                data = f.read(HASH_PART)
                out.append(raw.types.FileHash(offset=at, limit=len(data),
                                              hash=hashlib.sha256(data).digest()))
        self.stats["hashes"] += len(out)
        return out

    def reupload(self, token: bytes, request_token: bytes) -> list:
        entry = self.entry(token)
        if entry.request_token is None or request_token != entry.request_token:
            raise RpcFail(400, "REQUEST_TOKEN_INVALID")
        self.absent.discard(entry.media_id)
        entry.request_token = None
        self.stats["reuploads"] += 1
        return self.hashes(entry, 0)

    # CDN side ----------------------------------------------------------------------------
    def chunk(self, token: bytes, offset: int, limit: int):
        # the same offset/limit rules as upload.getFile (core.telegram.org/api/files)
        if offset < 0 or offset % 4096:
            raise RpcFail(400, "OFFSET_INVALID")
        if limit <= 0 or limit > MB or limit % 4096 or MB % limit or \
                offset // MB != (offset + limit - 1) // MB:
            raise RpcFail(400, "LIMIT_INVALID")
        entry = self.entry(token)
        faults = self.sim.faults
        if entry.media_id in self.absent:
            # one request token until the master has reuploaded the file; a stale one is
            # refused with REQUEST_TOKEN_INVALID
            entry.request_token = entry.request_token or os.urandom(16)
            self.stats["reupload_needed"] += 1
            return raw.types.upload.CdnFileReuploadNeeded(request_token=entry.request_token)
        media = self.sim.world.media.get(entry.media_id)
        if media is None:
            raise RpcFail(400, "FILE_TOKEN_INVALID")
        with open(media.path, "rb") as f:
            f.seek(offset)
            data = f.read(limit)
        iv = bytearray(entry.iv[:-4] + (offset // 16).to_bytes(4, "big"))
        enc = aes.ctr256_encrypt(data, entry.key, iv)
        if faults.cdn_corrupt > 0 and enc:
            faults.cdn_corrupt -= 1
            enc = bytes([enc[0] ^ 0xFF]) + enc[1:]
            self.stats["corrupted"] += 1
        self.stats["chunks"] += 1
        self.stats["bytes"] += len(enc)
        return raw.types.upload.CdnFile(bytes=enc)
