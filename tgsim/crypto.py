"""Server side of MTProto's cryptography: the RSA key, the DH exchange and message framing.

The client side lives in pyrogram's session/auth.py and crypto/mtproto.py; this mirrors it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from hashlib import sha1, sha256
from io import BytesIO
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pyrogram.crypto import aes
from pyrogram.crypto.mtproto import kdf
from pyrogram.crypto.prime import CURRENT_DH_PRIME
from pyrogram.raw.core import Int, Long, Message, MsgContainer, TLObject
from pyrogram.raw.core.primitives import Bytes

DH_G = 3


def rsa_fingerprint(n: int, e: int) -> int:
    """Lower 64 bits of SHA1 over the TL-serialised key, as a signed long (Telegram's rule)."""
    n_bytes = n.to_bytes((n.bit_length() + 7) // 8, "big")
    e_bytes = e.to_bytes((e.bit_length() + 7) // 8, "big")
    digest = sha1(Bytes(n_bytes) + Bytes(e_bytes)).digest()
    return int.from_bytes(digest[-8:], "little", signed=True)


@dataclass(frozen=True)
class ServerKey:
    n: int
    e: int
    d: int

    @property
    def fingerprint(self) -> int:
        return rsa_fingerprint(self.n, self.e)

    def decrypt(self, data: bytes) -> bytes:
        return pow(int.from_bytes(data, "big"), self.d, self.n).to_bytes(256, "big")

    def public_pem(self) -> bytes:
        pub = rsa.RSAPublicNumbers(self.e, self.n).public_key()
        return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)

    @classmethod
    def generate(cls) -> "ServerKey":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        nums = key.private_numbers()
        return cls(n=nums.public_numbers.n, e=nums.public_numbers.e, d=nums.d)


def load_or_create_key(private_path: Path) -> ServerKey:
    """Reuse the key across runs so clients that trust its fingerprint keep working."""
    if private_path.is_file():
        key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
        nums = key.private_numbers()
        return ServerKey(n=nums.public_numbers.n, e=nums.public_numbers.e, d=nums.d)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_path.parent.mkdir(parents=True, exist_ok=True)
    private_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    os.chmod(private_path, 0o600)
    nums = key.private_numbers()
    return ServerKey(n=nums.public_numbers.n, e=nums.public_numbers.e, d=nums.d)


def load_public_pem(pem: bytes) -> tuple[int, int]:
    pub = serialization.load_pem_public_key(pem)
    nums = pub.public_numbers()
    return nums.n, nums.e


def tmp_aes(new_nonce: bytes, server_nonce: bytes) -> tuple[bytes, bytes]:
    key = sha1(new_nonce + server_nonce).digest() + sha1(server_nonce + new_nonce).digest()[:12]
    iv = (
        sha1(server_nonce + new_nonce).digest()[12:]
        + sha1(new_nonce + new_nonce).digest()
        + new_nonce[:4]
    )
    return key, iv


def dh_prime_bytes() -> bytes:
    return CURRENT_DH_PRIME.to_bytes(256, "big")


def new_dh_secret() -> tuple[int, int]:
    """(a, g_a) with g_a inside the range the client's security checks demand."""
    while True:
        a = int.from_bytes(os.urandom(256), "big")
        g_a = pow(DH_G, a, CURRENT_DH_PRIME)
        if 2 ** (2048 - 64) < g_a < CURRENT_DH_PRIME - 2 ** (2048 - 64):
            return a, g_a


def auth_key_id(auth_key: bytes) -> bytes:
    return sha1(auth_key).digest()[-8:]


class BadMessage(Exception):
    """A packet that fails MTProto's checks; the connection is dropped as Telegram does."""


def unpack_client(packet: bytes, auth_key: bytes) -> tuple[int, bytes, Message]:
    """Decrypt a client packet: (salt, session_id, message)."""
    msg_key = packet[8:24]
    aes_key, aes_iv = kdf(auth_key, msg_key, True)
    plain = aes.ige256_decrypt(packet[24:], aes_key, aes_iv)
    if sha256(auth_key[88:120] + plain).digest()[8:24] != msg_key:
        raise BadMessage("msg_key mismatch")
    data = BytesIO(plain)
    salt = Long.read(data)
    session_id = data.read(8)
    return salt, session_id, read_message(data)


# The library guesses the element type of an untyped vector from the bytes left in the buffer
# (8 per element reads as longs). A few spare bytes after each body keep that guess honest
# for requests such as channels.getMessages with one InputMessageID.
_SPARE = b"\x00" * 3


def read_message(data: BytesIO) -> Message:
    msg_id = Long.read(data)
    seq_no = Int.read(data)
    length = Int.read(data)
    body = data.read(length)
    if body[:4] == Int(MsgContainer.ID, False):
        inner = BytesIO(body[4:])
        count = Int.read(inner)
        obj = MsgContainer([read_message(inner) for _ in range(count)])
    else:
        obj = TLObject.read(BytesIO(body + _SPARE))
    return Message(obj, msg_id, seq_no, length)


def pack_server(auth_key: bytes, key_id: bytes, salt: int, session_id: bytes,
                msg_id: int, seq_no: int, body: bytes) -> bytes:
    data = Long(salt) + session_id + Long(msg_id) + Int(seq_no) + Int(len(body)) + body
    padding = os.urandom(-(len(data) + 12) % 16 + 12)
    msg_key = sha256(auth_key[96:128] + data + padding).digest()[8:24]
    aes_key, aes_iv = kdf(auth_key, msg_key, False)
    return key_id + msg_key + aes.ige256_encrypt(data + padding, aes_key, aes_iv)
