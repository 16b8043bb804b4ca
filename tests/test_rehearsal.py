"""The rehearsals as a newcomer and an operator run them: real processes, real exit codes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], tmp_path: Path, timeout: float) -> subprocess.CompletedProcess:
    # No credentials in the environment and no config.env in the working directory of the
    # rehearsals' own settings: what a fresh machine has.
    env = {k: v for k, v in os.environ.items()
           if k not in ("API_ID", "API_HASH", "BOT_TOKEN", "RENDER", "RENDER_EXTERNAL_URL")}
    env["TMPDIR"] = str(tmp_path)
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_load_rehearsal_prints_the_table_and_exits_0(tmp_path):
    r = _run(["rehearse", "--users", "2", "--jobs", "2", "--file-mb", "2",
              "--concurrency", "2"], tmp_path, timeout=60)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    rows = {m.group(1).strip(): m.group(2) for m in
            re.finditer(r"^(idle RSS|RSS per live session|peak RSS|throughput|"
                        r"jobs done / failed|bytes identical|MEMORY_LIMIT_MB held)\s+(.+?)(?:  |$)",
                        out, re.M)}
    assert len(rows) == 7, out
    idle = float(rows["idle RSS"].split()[0])
    peak = float(rows["peak RSS"].split()[0])
    assert 20 < idle <= peak < 512
    assert float(rows["throughput"].split()[0]) > 0
    assert rows["jobs done / failed"].replace(" ", "") == "4/0"
    assert rows["bytes identical"].replace(" ", "") == "2/2"
    assert rows["MEMORY_LIMIT_MB held"] == "yes"
    assert "bot_jobs metrics: done 6, failed 0" in out  # 4 jobs + 2 warm-up jobs
    assert out.rstrip().endswith("OK")
    assert not list(tmp_path.glob("bot-load-*")), "work directory removed"


def test_load_rehearsal_bad_flags_one_line_exit_2(tmp_path):
    for args in (["--users", "0"], ["--jobs", "x"], ["--frobnicate"],
                 ["--file-mb", "5000"]):
        r = _run(["rehearse", *args], tmp_path, timeout=30)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stdout == ""


@pytest.mark.parametrize("args", [["--sim"], ["rehearse"]])
def test_short_rehearsal_still_works(tmp_path, args):
    r = _run(args, tmp_path, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 jobs in" in r.stdout
    assert r.stdout.count(" yes") == 3
    # Only the logs are left behind for the newcomer to read.
    (work,) = tmp_path.glob("bot-rehearsal-*")
    assert [p.name for p in work.iterdir()] == ["logs.txt"]
