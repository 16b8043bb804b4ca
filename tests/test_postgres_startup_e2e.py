"""`python -m bot` with a DATABASE_URL it cannot use: one line, no password, and the exit
code that tells the supervisor whether to retry (1: unreachable) or not (2: refused)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bot.rehearsal_load import bot_environment
from tests.simclient import free_port

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "hunter2-not-for-logs"


def _run(tmp_path: Path, url: str) -> subprocess.CompletedProcess:
    env = bot_environment({
        "API_ID": "12345", "API_HASH": "0123456789abcdef0123456789abcdef",
        "BOT_TOKEN": "1:x", "DATABASE_URL": url,
        "DATABASE_PATH": str(tmp_path / "data" / "bot.db"),
        "LOG_FILE": str(tmp_path / "logs.txt"), "PORT": str(free_port())})
    return subprocess.run([sys.executable, "-m", "bot"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_unreachable_server_is_exit_1_and_refused_is_exit_2(tmp_path, pg_cluster):
    closed = f"postgresql://bot:{PASSWORD}@127.0.0.1:{free_port()}/bot"
    down = _run(tmp_path, closed)
    assert down.returncode == 1, down.stderr
    assert "PostgreSQL (DATABASE_URL) could not be reached" in down.stderr
    assert "Traceback" not in down.stderr and PASSWORD not in down.stderr

    missing = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{pg_cluster.port}/no_such_db"
    refused = _run(tmp_path, missing)
    assert refused.returncode == 2, refused.stderr
    assert "Configuration error: PostgreSQL (DATABASE_URL) refused" in refused.stderr
    assert "Traceback" not in refused.stderr and PASSWORD not in refused.stderr
    logs = (tmp_path / "logs.txt").read_text()
    assert PASSWORD not in logs and "refused the connection" in logs
