"""Known answers for the AES the client library actually loads (pyrogram.crypto.aes).

MTProto's every message is AES-256-IGE (core.telegram.org/mtproto/description) and CDN files
and the obfuscated transport are AES-256-CTR (core.telegram.org/cdn). The vectors below are
fixed here, not produced by the implementation under test:

- the AES-256 block: FIPS-197 Appendix C.3 (one IGE block with an all-zero IV is plain AES);
- CTR: NIST SP 800-38A, F.5.5 CTR-AES256.Encrypt;
- IGE, and the long CTR streams: computed once with two independent AES cores, the pure-Python
  pyaes and OpenSSL's ECB (through `cryptography`), driven by the mode as defined (IGE:
  c_i = E(p_i ^ c_{i-1}) ^ p_{i-1}, the 32-byte IV being c_0 then p_0, the layout the client
  library passes; CTR: a 128-bit big-endian counter). Both cores agreed on every vector;
  `test_short_ige_vectors_rederive_with_pyaes` redoes the short ones with pyaes on each run.
"""

from __future__ import annotations

import hashlib

import pyaes
import pytest
from pyrogram.crypto import aes

KEY = bytes((7 * i + 3) & 0xFF for i in range(32))
IV = bytes((11 * i + 5) & 0xFF for i in range(32))
PT10 = bytes((i * 31 + i // 256) & 0xFF for i in range(160))  # ten blocks
CT10 = bytes.fromhex(
    "a006dca8ff5dbee7c69e306c73e8f0674b287bc338fefd391f46d13df2275915"
    "1569e71ac76dc90864fbb5913b65655303c83cfe756172c9b62148bc9cb8ecda"
    "878801bebdbd9442febb395ebcf37d8d77df1fe43dace46541a72fd0ef7db445"
    "df4663e201ce417a130f7fbf3621338e20c7348a74288ebfe7d895d1e8c60dd9"
    "7411c4ef37f079ac47a9ae4b7eef448c29ee209e8f2e4f6d25003d5e9bcc5b05"
)
# decrypt of bytes no encryption produced: a vector for the decrypt direction on its own
ARBITRARY6 = bytes((i * 17 + 200) & 0xFF for i in range(96))
ARBITRARY6_DEC = bytes.fromhex(
    "522e2dfc18b3e11b8986822a00363d76cd4f8d91093fad60f4ad3bbd2cda1eea"
    "e173db6966ab338e8f45e6ccbdf7324c4c2c49615fdf095ed08eb2e076c59493"
    "767c57bbff9cfddb735f22e6bce2167b02599d6a19b7c39363152629d5fc6dc7"
)
# 1 MiB + 7 blocks, the size of a large getFile part with its MTProto envelope
BIG = bytes(range(256)) * 4096 + bytes(112)
BIG_IGE_SHA256 = "07bbfd4b569d37cff4d50fb6cddcbf700453beca041fa93cb395a610bba5ff74"

CTR_KEY = bytes((5 * i + 1) & 0xFF for i in range(32))
# the counter starts 16 blocks below a 32-bit wrap, so the carry crosses into byte 11
CTR_IV = bytes.fromhex("00112233445566778899aabbfffffff0")
BIG_CTR_SHA256 = "f2b36e1d95eee117089cd7ba5166fb0777a14deba7ed69cfac54838304c2be5b"
BIG_CTR_IV_AFTER = bytes.fromhex("00112233445566778899aabc0000fff7")
# the CDN's form: encryption_iv[:12] + the 4-byte block number of the offset, from block 0
CDN_IV = bytes.fromhex("0102030405060708090a0b0c00000000")
BIG_CDN_SHA256 = "60ec2eccff5940190c55d2ed67f8f0056d149dd5e0a7371f0c53c98d7dc1d62c"

# NIST SP 800-38A F.5.5
NIST_KEY = bytes.fromhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
NIST_CTR = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
NIST_PT = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710"
)
NIST_CT = bytes.fromhex(
    "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5"
    "2b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6"
)


def test_the_client_library_loads_a_native_module():
    # without one it falls back to pyaes, about 100x slower, and only says so in a log line
    assert hasattr(aes, "tgcrypto"), "pyrogram.crypto.aes fell back to pyaes"


def test_aes256_block_fips197():
    key = bytes(range(32))
    pt = bytes.fromhex("00112233445566778899aabbccddeeff")
    ct = bytes.fromhex("8ea2b7ca516745bfeafc49904b496089")
    assert aes.ige256_encrypt(pt, key, bytes(32)) == ct
    assert aes.ige256_decrypt(ct, key, bytes(32)) == pt


def test_ige_encrypt_and_decrypt_ten_blocks():
    assert aes.ige256_encrypt(PT10, KEY, IV) == CT10
    assert aes.ige256_decrypt(CT10, KEY, IV) == PT10


def test_ige_decrypt_of_arbitrary_bytes():
    assert aes.ige256_decrypt(ARBITRARY6, KEY, IV) == ARBITRARY6_DEC


def test_ige_each_iv_half_matters():
    # the first half chains the ciphertext, the second the plaintext: swapping them must show
    swapped = IV[16:] + IV[:16]
    assert aes.ige256_encrypt(PT10, KEY, swapped) != CT10


def test_ige_one_mebibyte_both_ways():
    ct = aes.ige256_encrypt(BIG, KEY, IV)
    assert hashlib.sha256(ct).hexdigest() == BIG_IGE_SHA256
    assert aes.ige256_decrypt(ct, KEY, IV) == BIG


def test_ctr_nist_sp800_38a():
    iv = bytearray(NIST_CTR)
    assert bytes(aes.ctr256_encrypt(NIST_PT, NIST_KEY, iv)) == NIST_CT
    # the counter is left on the next block: the transport relies on it between calls
    assert iv == bytearray.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdff03")
    iv = bytearray(NIST_CTR)
    assert bytes(aes.ctr256_decrypt(NIST_CT, NIST_KEY, iv)) == NIST_PT


def test_ctr_stream_in_uneven_pieces_keeps_counter_and_offset():
    # as the obfuscated transport calls it: one (iv, state) pair mutated across calls whose
    # lengths are not multiples of 16, so the in-block offset `state` is non-zero in between
    iv, state = bytearray(NIST_CTR), bytearray(1)
    out, pos, seen_states = b"", 0, []
    for n in (5, 23, 1, 35):
        out += bytes(aes.ctr256_encrypt(NIST_PT[pos : pos + n], NIST_KEY, iv, state))
        pos += n
        seen_states.append(state[0])
    assert out == NIST_CT
    assert seen_states == [5, 12, 13, 0]
    assert iv == bytearray.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdff03")


def test_ctr_long_stream_carries_past_32_bits():
    iv = bytearray(CTR_IV)
    ct = bytes(aes.ctr256_encrypt(BIG, CTR_KEY, iv))
    assert hashlib.sha256(ct).hexdigest() == BIG_CTR_SHA256
    assert bytes(iv) == BIG_CTR_IV_AFTER


def test_ctr_cdn_chunks_at_offsets():
    # pyrogram's CDN read decrypts each chunk alone with iv[:-4] + (offset // 16) as 4 bytes
    whole = bytes(aes.ctr256_decrypt(BIG, CTR_KEY, bytearray(CDN_IV)))
    assert hashlib.sha256(whole).hexdigest() == BIG_CDN_SHA256
    for offset, limit in ((0, 131072), (131072, 131072), (524288, 524288), (1048576, 112)):
        iv = bytearray(CDN_IV[:-4] + (offset // 16).to_bytes(4, "big"))
        chunk = bytes(aes.ctr256_decrypt(BIG[offset : offset + limit], CTR_KEY, iv))
        assert chunk == whole[offset : offset + limit], offset


def _ige_reference(data: bytes, key: bytes, iv: bytes, encrypt: bool) -> bytes:
    """IGE by its definition over pyaes's block cipher: the independent side of the vectors."""
    cipher = pyaes.AES(key)
    block = cipher.encrypt if encrypt else cipher.decrypt
    chain_in, chain_out = (iv[:16], iv[16:]) if encrypt else (iv[16:], iv[:16])
    out = bytearray()
    for i in range(0, len(data), 16):
        x = data[i : i + 16]
        y = bytes(a ^ b for a, b in zip(block([a ^ b for a, b in zip(x, chain_in)]), chain_out))
        out += y
        # encrypt: c_i chains into the input, p_i into the output; decrypt: p_i and c_i
        chain_in, chain_out = y, x
    return bytes(out)


@pytest.mark.parametrize("encrypt", [True, False])
def test_short_ige_vectors_rederive_with_pyaes(encrypt):
    if encrypt:
        assert _ige_reference(PT10, KEY, IV, True) == CT10
    else:
        assert _ige_reference(CT10, KEY, IV, False) == PT10
        assert _ige_reference(ARBITRARY6, KEY, IV, False) == ARBITRARY6_DEC
