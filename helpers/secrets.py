"""User session strings encrypted at rest with the deployment's SESSION_KEY.

A session string is a full login to someone's Telegram account, so a leaked database
file must be useless without the key. AES-256-GCM: authenticated, so a wrong key or a
tampered blob is detected instead of yielding garbage that the client library would
try to log in with.

Blob layout: version byte (0x01) | 12-byte random nonce | ciphertext+tag.
There is deliberately no default key anywhere: a missing key is a start-up error.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:  # pragma: no cover
    from helpers.database import Database

_VERSION = 1
_NONCE_LEN = 12
_AAD = b"session:v1"
_KEY_LEN = 32

_MSG_NOT_SET = "SESSION_KEY is not set: generate one with `python -m bot genkey`"
_MSG_MISMATCH = "SESSION_KEY does not match the key the stored sessions were encrypted with"


class SecretKeyError(Exception):
    """A key problem the operator must fix; the message is one line, safe to log."""


def generate_key() -> str:
    """Same shape as a Fernet key (url-safe base64 of 32 random bytes), easy to paste."""
    return base64.urlsafe_b64encode(os.urandom(_KEY_LEN)).decode("ascii")


def _decode_key(key: str | bytes | None) -> bytes:
    if key is None:
        raise SecretKeyError(_MSG_NOT_SET)
    if isinstance(key, bytes):
        try:
            key = key.decode("ascii")
        except UnicodeDecodeError:
            raise SecretKeyError("SESSION_KEY is malformed: it must be ASCII") from None
    key = key.strip()
    if not key:
        raise SecretKeyError(_MSG_NOT_SET)
    try:
        raw = base64.b64decode(key, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        # Never echo the key itself: it would end up in logs.
        raise SecretKeyError(
            "SESSION_KEY is malformed: expected url-safe base64 of 32 bytes "
            "(generate one with `python -m bot genkey`)"
        ) from None
    if len(raw) != _KEY_LEN:
        raise SecretKeyError(
            f"SESSION_KEY is malformed: it decodes to {len(raw)} bytes, expected {_KEY_LEN}"
        )
    return raw


class SessionCipher:
    """Holds only the AEAD object, never the key text, so repr/logging cannot leak it."""

    __slots__ = ("_aead",)

    def __init__(self, key: str | bytes | None):
        self._aead = AESGCM(_decode_key(key))

    def __repr__(self) -> str:
        return "SessionCipher(<redacted>)"

    def encrypt(self, plaintext: str, aad: bytes = _AAD) -> bytes:
        """`aad` names what the blob is for, so one kind of blob (a session's peers) can
        never be passed off as another (a session string) or as another user's."""
        nonce = os.urandom(_NONCE_LEN)
        ct = self._aead.encrypt(nonce, plaintext.encode("utf-8"), aad)
        return bytes([_VERSION]) + nonce + ct

    def decrypt(self, blob: bytes, aad: bytes = _AAD) -> str:
        blob = bytes(blob)
        if len(blob) < 1 + _NONCE_LEN + 16 or blob[0] != _VERSION:
            raise SecretKeyError("stored session is not in a known encrypted format")
        nonce, ct = blob[1:1 + _NONCE_LEN], blob[1 + _NONCE_LEN:]
        try:
            return self._aead.decrypt(nonce, ct, aad).decode("utf-8")
        except InvalidTag:
            raise SecretKeyError(_MSG_MISMATCH) from None


async def check_key_against(db: "Database", cipher: SessionCipher) -> bool:
    """Fail at start-up, with one clear line, rather than at a user's first private link.

    Returns True when a stored session was checked, False when there is none yet.
    """
    async with contextlib.aclosing(db.iter_session_user_ids()) as user_ids:
        async for user_id in user_ids:
            blob = await db.load_session(user_id)
            if blob is None:  # deleted between the two reads
                continue
            cipher.decrypt(blob)
            return True
    return False
