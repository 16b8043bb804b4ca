"""Downloads that Telegram redirects to a CDN DC (core.telegram.org/cdn).

For a popular file upload.getFile may answer upload.fileCdnRedirect even to a client that
never set cdn_supported (pyrogram#1265, Telethon#4485). The file then comes from the CDN DC
named in the redirect, encrypted: AES-256-CTR with the redirect's key, and its iv with the
last 4 bytes replaced by offset / 16 (big-endian). The CDN is not trusted: every 128 KB of
plain text is checked against a SHA-256 the master DC gives (in the redirect, from
upload.getCdnFileHashes, or from upload.reuploadCdnFile when the CDN does not hold the file
yet). A CDN DC has RSA keys of its own, listed by help.getCdnConfig; they are added to the
library's table of server keys (its extension point, as helpers/telegram_server.py does),
and the auth key made with them is never authorized: a CDN only answers upload.getCdnFile.

This module holds the state of one redirected file; helpers/transfer.py runs the requests.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pyrogram import raw

from helpers import client_adapter as adapter


class CdnHashMismatch(Exception):
    """A chunk from the CDN does not match the master's hash: it is fetched again."""


def trust_cdn_keys(config: raw.types.CdnConfig) -> int:
    """Add the CDN DCs' public keys (help.getCdnConfig) to the library's table of server
    keys, so an auth key can be made with a CDN DC; returns how many were added."""
    added = 0
    for item in config.public_keys:
        numbers = load_pem_public_key(item.public_key.encode()).public_numbers()
        fingerprint = adapter.server_key_fingerprint(numbers.n, numbers.e)
        added += adapter.add_server_key(fingerprint, numbers.n, numbers.e)
    return added


class CdnFile:
    """One redirected file: its CDN DC, token, key and the hashes known so far. Hashes are
    dropped once the part they cover is verified, so what is held stays a few KB however
    large the file."""

    MAX_HASHES = 4096  # 512 MiB of 128 KB parts; past it the oldest are forgotten (refetched)

    def __init__(self, redirect: raw.types.upload.FileCdnRedirect, master_dc: int):
        self.dc_id = redirect.dc_id
        self.token = redirect.file_token
        self.key = redirect.encryption_key
        self.iv = redirect.encryption_iv
        self.master_dc = master_dc
        # the size of the hashed parts (128 KB on Telegram), learnt from the first hash
        self.hash_part = next((h.limit for h in redirect.file_hashes if h.offset == 0),
                              128 * 1024)
        self.hashes: dict[int, raw.types.FileHash] = {}
        self.add(redirect.file_hashes)
        self.mismatches = 0

    def add(self, hashes) -> None:
        for h in hashes or ():
            if h.offset not in self.hashes and len(self.hashes) >= self.MAX_HASHES:
                self.hashes.pop(next(iter(self.hashes)))
            self.hashes[h.offset] = h

    def decrypt(self, data: bytes, offset: int) -> bytes:
        iv = bytearray(self.iv[:-4] + (offset // 16).to_bytes(4, "big"))
        return adapter.ctr256_decrypt(data, self.key, iv)

    def missing(self, offset: int, length: int) -> int | None:
        """The first offset in [offset, offset + length) whose hash is not known yet."""
        at = offset
        while at < offset + length:
            h = self.hashes.get(at)
            if h is None:
                return at
            at += h.limit
        return None

    def verify(self, data: bytes, offset: int, drop: bool = True) -> None:
        """Check `data` (plain text at `offset`) against the hashes covering it; the hashes
        used are forgotten when `drop` (no other part needs them). Raises CdnHashMismatch."""
        at, used = offset, []
        while at < offset + len(data):
            h = self.hashes.get(at)
            if h is None:  # forgotten meanwhile (over MAX_HASHES): fetch the part again
                raise CdnHashMismatch(f"no hash for the CDN chunk at {at} any more")
            piece = data[at - offset:at - offset + h.limit]
            if hashlib.sha256(piece).digest() != h.hash:
                self.mismatches += 1
                raise CdnHashMismatch(f"CDN chunk at {at} does not match its hash")
            used.append(at)
            at += h.limit
        if drop:
            for k in used:
                self.hashes.pop(k, None)
