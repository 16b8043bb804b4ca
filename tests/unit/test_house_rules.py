"""House rules a reviewer would otherwise check by eye: tests share code through conftest
fixtures and the harness, never by importing one another; the product never loads the
simulator, the harness or the tests (import bot.app in a fresh interpreter, and trusting a
self-hosted server's key, which every test and bench does)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_PRODUCT = {"tgsim", "tests", "bench", "harness"}


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted name) of every module an import statement names, `from x import y` as
    both x and x.y (y may be a module), relative imports with their leading dots."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{a.name}".replace("..", ".")) for a in node.names]
    return out


def test_no_test_module_imports_another_test_module():
    offences = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for line, name in _imported(ast.parse(path.read_text(), str(path))):
            if any(part.startswith("test_") for part in name.lstrip(".").split(".")):
                offences.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not offences, "share it through tests/conftest.py or harness/:\n" + "\n".join(
        offences)


_PROBE = """
import json, sys
from pathlib import Path
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import bot.app
from helpers.telegram_server import install_server_key

pem = Path(sys.argv[1])
key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
pem.write_bytes(key.public_bytes(serialization.Encoding.PEM,
                                 serialization.PublicFormat.PKCS1))
install_server_key(pem)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in %r)))
"""


def test_the_product_loads_no_simulator_harness_or_tests(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _PROBE % (NOT_PRODUCT,),
                           str(tmp_path / "server.pem")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"import bot.app (and install_server_key) loaded {loaded}"


def test_the_server_key_fingerprint_is_the_one_tgsim_serves(tmp_path):
    from helpers.telegram_server import install_server_key
    from tgsim.crypto import ServerKey  # the test may load tgsim; the product may not

    key = ServerKey.generate()
    (tmp_path / "k.pem").write_bytes(key.public_pem())
    assert install_server_key(tmp_path / "k.pem") == key.fingerprint
