"""The load benchmark, scaled down, as a test: every link answered, nothing lost."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_load_bench_small():
    proc = subprocess.run([sys.executable, "-m", "bench.load", "--users", "12", "--links", "4"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    out = proc.stdout
    assert "links answered                    48 of 48" in out, out + proc.stderr[-2000:]
    assert "jobs lost                         0" in out
    assert proc.returncode == 0, out
