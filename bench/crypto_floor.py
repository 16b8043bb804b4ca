"""The crypto floor: CPU milliseconds per MB that MTProto's own cryptography costs, per AES module.

A transfer cannot cost less CPU than the cryptography every byte goes through, so this is the
yardstick for the transfer benches' "CPU per MB". It mirrors the client library's per-message
work (pyrogram/crypto/mtproto.py), one MTProto message per file part:

- receive (download): the key derivation (two SHA-256 over 52 bytes), AES-256-IGE decrypt of
  the whole message, then SHA-256 over auth_key[96:128] + the plaintext for the msg_key check;
- send (upload): SHA-256 over auth_key[88:120] + the padded plaintext for the msg_key, the key
  derivation, AES-256-IGE encrypt.

Only the cryptography is timed: the copies the library makes around it (concatenations,
BytesIO reads) are not, so this is a floor, not an estimate of the library's cost. AES-256-CTR
(CDN files, obfuscated transports) is measured on its own. Every AES module importable here is
measured side by side in the same run; the ratio column is the module pyrogram loads divided
by that one (above 1: faster than what pyrogram loads).

    python -m bench.crypto_floor                  # 1 MiB parts, best of 3
    python -m bench.crypto_floor --part-kib 512 --json
    python -m bench.crypto_floor --so rs=/path/to/tgcrypto.abi3.so   # another build, same run

Units: MB = 1,000,000 bytes; times are CPU time of the whole process (time.process_time:
one build runs CTR on extra threads, which thread time would not see), so other load on the
machine inflates them less than wall time would. Other benches call
`floor_ms_per_mb()` for the module pyrogram loads.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

MB = 1_000_000
AUTH_KEY = bytes((i * 13 + 7) & 0xFF for i in range(256))

Ige = Callable[[bytes, bytes, bytes], bytes]
Ctr = Callable[[bytes, bytes, bytearray, bytearray], bytes]


@dataclass
class Impl:
    """One AES module: IGE both ways, CTR if it has one."""

    name: str
    ige_encrypt: Ige
    ige_decrypt: Ige
    ctr: Optional[Ctr] = None
    slow: bool = False  # pure Python: measured on small messages


def _dist_of(module: str) -> str:
    """'Distribution version' that installed a top-level module (several ship `tgcrypto`)."""
    try:
        dists = importlib.metadata.packages_distributions().get(module, [])
    except Exception:  # pragma: no cover - broken metadata
        dists = []
    for dist in dists:
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return module


def loaded_impl() -> Impl:
    """The AES that pyrogram.crypto.aes chose at import: a `tgcrypto` module, or pyaes."""
    from pyrogram.crypto import aes

    native = getattr(aes, "tgcrypto", None)
    name = f"pyrogram -> {_dist_of('tgcrypto')}" if native else "pyrogram -> pyaes (fallback)"
    return Impl(name, aes.ige256_encrypt, aes.ige256_decrypt, aes.ctr256_encrypt,
                slow=native is None)


def _tgcrypto_api(name: str, mod) -> Impl:
    if not hasattr(mod, "ige256_encrypt") and hasattr(mod, "encrypt_ige"):  # cryptg's names
        return Impl(name, mod.encrypt_ige, mod.decrypt_ige)
    return Impl(name, mod.ige256_encrypt, mod.ige256_decrypt, mod.ctr256_encrypt)


def _load_so(label: str, path: str):
    """Load an extension module from a file, under the init name its file carries."""
    base = os.path.basename(path).split(".", 1)[0]
    spec = importlib.util.spec_from_file_location(base, path)
    mod = importlib.util.module_from_spec(spec)
    saved = sys.modules.get(base)
    try:
        spec.loader.exec_module(mod)
    finally:
        # a single-phase extension registers itself under its name: keep the real one there
        if saved is not None:
            sys.modules[base] = saved
        elif sys.modules.get(base) is mod:
            del sys.modules[base]
    return mod


def candidates(extra_so: dict[str, str] | None = None) -> list[Impl]:
    """Every AES module importable in this interpreter, pyrogram's own choice first."""
    found = [loaded_impl()]
    try:
        import tgcrypto

        found.append(_tgcrypto_api(f"tgcrypto ({_dist_of('tgcrypto')})", tgcrypto))
    except ImportError:
        pass
    try:
        import cryptg  # Telethon's: IGE only, its own names

        found.append(_tgcrypto_api(f"cryptg ({_dist_of('cryptg')})", cryptg))
    except ImportError:
        pass
    for module in ("cryptogram", "tgcryptors"):  # tgcrypto's API under their own names
        try:
            found.append(_tgcrypto_api(f"{module} ({_dist_of(module)})",
                                       importlib.import_module(module)))
        except ImportError:
            pass
    for label, path in (extra_so or {}).items():
        found.append(_tgcrypto_api(f"{label} ({path})", _load_so(label, path)))
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        def openssl_ctr(data, key, iv, state):
            # what a shim over OpenSSL would do per call; the state offset is not modelled
            return Cipher(algorithms.AES(key), modes.CTR(bytes(iv))).encryptor().update(data)

        def no_ige(*_):
            raise NotImplementedError

        found.append(Impl(f"OpenSSL CTR only ({_dist_of('cryptography')})", no_ige, no_ige,
                          openssl_ctr))
    except ImportError:
        pass
    return found


def _message(part: int) -> bytes:
    """A file part in its MTProto envelope, padded as pyrogram pads it (12..27 bytes)."""
    body = 8 + 8 + 8 + 4 + 4 + 4 + 8 + part  # salt, session, msg_id, seq, len, rpc_result...
    return bytes((i * 7) & 0xFF for i in range(body + (-(body + 12) % 16 + 12)))


def _kdf(msg_key: bytes, x: int) -> tuple[bytes, bytes]:
    a = hashlib.sha256(msg_key + AUTH_KEY[x : x + 36]).digest()
    b = hashlib.sha256(AUTH_KEY[x + 40 : x + 76] + msg_key).digest()
    return a[:8] + b[8:24] + a[24:32], b[:8] + a[8:24] + b[24:32]


def _receive(impl: Impl, wire: bytes, msg_key: bytes) -> None:
    key, iv = _kdf(msg_key, 8)
    plain = impl.ige_decrypt(wire, key, iv)
    h = hashlib.sha256(AUTH_KEY[96:128])
    h.update(plain)
    h.digest()


def _send(impl: Impl, plain: bytes) -> None:
    h = hashlib.sha256(AUTH_KEY[88:120])
    h.update(plain)
    msg_key = h.digest()[8:24]
    key, iv = _kdf(msg_key, 0)
    impl.ige_encrypt(plain, key, iv)


def _sha256_only(_impl: Impl, plain: bytes) -> None:
    h = hashlib.sha256(AUTH_KEY[96:128])
    h.update(plain)
    h.digest()


def _per_mb(fn: Callable[[], None], nbytes: int, budget_s: float, repeats: int) -> float:
    """Best of `repeats` runs of ~budget_s CPU each: ms of process CPU per MB."""
    best = float("inf")
    t0 = time.process_time()
    while time.process_time() - t0 < budget_s / 2:  # warm-up: caches, page faults, clocks
        fn()
    for _ in range(repeats):
        n, t0 = 0, time.process_time()
        while True:
            fn()
            n += 1
            spent = time.process_time() - t0
            if spent >= budget_s:
                break
        best = min(best, spent * 1000 / (n * nbytes / MB))
    return best


def measure(impl: Impl, part: int = 1 << 20, budget_s: float = 0.15, repeats: int = 3) -> dict:
    """ms per MB for one module: IGE each way, SHA-256, receive, send, CTR (None if absent)."""
    if impl.slow:
        part, budget_s, repeats = min(part, 64 << 10), 0.5, 1
    plain = _message(part)
    key, iv = _kdf(b"k" * 16, 0)
    out: dict = {"implementation": impl.name, "part_bytes": part}
    try:
        wire = impl.ige_encrypt(plain, key, iv)
        assert impl.ige_decrypt(wire, key, iv) == plain, "IGE does not round-trip"
        n = len(plain)
        out["ige_encrypt"] = _per_mb(lambda: impl.ige_encrypt(plain, key, iv), n, budget_s, repeats)
        out["ige_decrypt"] = _per_mb(lambda: impl.ige_decrypt(wire, key, iv), n, budget_s, repeats)
        out["sha256"] = _per_mb(lambda: _sha256_only(impl, plain), n, budget_s, repeats)
        out["receive"] = _per_mb(lambda: _receive(impl, wire, b"m" * 16), n, budget_s, repeats)
        out["send"] = _per_mb(lambda: _send(impl, plain), n, budget_s, repeats)
    except NotImplementedError:
        for k in ("ige_encrypt", "ige_decrypt", "sha256", "receive", "send"):
            out[k] = None
    if impl.ctr is not None:
        ctr_iv = bytes(16)
        out["ctr"] = _per_mb(lambda: impl.ctr(plain, key, bytearray(ctr_iv), bytearray(1)),
                             len(plain), budget_s, repeats)
    else:
        out["ctr"] = None
    return out


def _warm_up(impl: Impl, seconds: float = 0.6) -> None:
    """Spin the first module before timing anything: the first row measured otherwise read
    15-30 % slower than the same module measured again (clocks, caches, the allocator)."""
    plain, t0 = _message(1 << 20), time.process_time()
    key, iv = _kdf(b"w" * 16, 0)
    while time.process_time() - t0 < (0.05 if impl.slow else seconds):
        impl.ige_encrypt(plain[: 64 << 10] if impl.slow else plain, key, iv)


def floor_ms_per_mb(part: int = 1 << 20, budget_s: float = 0.2, repeats: int = 3) -> dict:
    """The floor for the AES pyrogram loads: {'implementation', 'receive', 'send', ...} ms/MB.

    `receive` is the download floor (IGE decrypt + SHA-256), `send` the upload floor.
    """
    impl = loaded_impl()
    _warm_up(impl)
    return measure(impl, part, budget_s, repeats)


COLUMNS = ("ige_encrypt", "ige_decrypt", "sha256", "receive", "send", "ctr")


def format_table(rows: list[dict]) -> str:
    base = rows[0]
    lines = [f"{'implementation':44} " + " ".join(f"{c:>17}" for c in COLUMNS)]
    for row in rows:
        cells = []
        for c in COLUMNS:
            v, b = row.get(c), base.get(c)
            if v is None:
                cells.append(f"{'-':>17}")
            elif b:
                cells.append(f"{v:8.2f} ({b / v:5.2f}x)")
            else:
                cells.append(f"{v:8.2f} (  -  )")
        lines.append(f"{row['implementation'][:44]:44} " + " ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part-kib", type=int, default=1024, help="file part per message (KiB)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--budget-s", type=float, default=0.15, help="CPU seconds per repeat")
    p.add_argument("--so", action="append", default=[], metavar="LABEL=PATH",
                   help="also measure an extension module (tgcrypto's or cryptg's API) from PATH")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    extra = dict(s.split("=", 1) for s in a.so)
    impls = candidates(extra)
    _warm_up(impls[0])
    rows = [measure(i, a.part_kib << 10, a.budget_s, a.repeats) for i in impls]
    print(f"python {sys.version.split()[0]} on {os.uname().machine}, {a.part_kib} KiB parts; "
          f"ms of CPU per MB (ratio: the first row / this row)")
    print(format_table(rows))
    if a.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
