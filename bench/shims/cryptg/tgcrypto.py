"""Evaluation only, not shipped: cryptg's AES-NI IGE and OpenSSL's CTR under the name pyrogram imports.

pyrogram.crypto.aes imports a module named `tgcrypto`; cryptg (Telethon's) names its functions
encrypt_ige/decrypt_ige and has no CTR. Put this directory first on sys.path to measure it:

    PYTHONPATH=bench/shims/cryptg python -m bench.crypto_floor
    PYTHONPATH=bench/shims/cryptg python -m pytest -q tests/unit/test_crypto_kat.py

(needs `cryptg` and `cryptography` installed). README "Crypto" says why it is not the default.
"""

from cryptg import decrypt_ige as ige256_decrypt  # noqa: F401
from cryptg import encrypt_ige as ige256_encrypt  # noqa: F401
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def ctr256_encrypt(data, key, iv, state):
    """tgcrypto's contract: `iv` (16-byte bytearray, the counter block) and `state` (1 byte, the
    offset in the current block) advance in place, so a stream can be split across calls."""
    enc = Cipher(algorithms.AES(bytes(key)), modes.CTR(bytes(iv))).encryptor()
    skip = state[0]
    if skip:
        enc.update(bytes(skip))
    out = enc.update(bytes(data))
    total = skip + len(data)
    iv[:] = ((int.from_bytes(iv, "big") + total // 16) % (1 << 128)).to_bytes(16, "big")
    state[0] = total % 16
    return out


ctr256_decrypt = ctr256_encrypt
