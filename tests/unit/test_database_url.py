"""DATABASE_URL: only PostgreSQL URLs, never echoed (it holds a password)."""

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings
from harness.processes import bot_environment

ROOT = Path(__file__).resolve().parents[2]
URL = "postgresql://bot:s3cret-pass@db.internal:5432/bot"


def test_database_url_is_checked_and_hidden():
    s = load_settings(environ={"DATABASE_URL": URL}, env_file=None)
    assert s.database_url == URL and "s3cret-pass" not in repr(s)
    assert load_settings(environ={}, env_file=None).database_url == ""
    with pytest.raises(ConfigError, match="DATABASE_URL must be a PostgreSQL URL") as e:
        load_settings(environ={"DATABASE_URL": "mysql://u:s3cret-pass@h/db"}, env_file=None)
    assert "s3cret-pass" not in str(e.value)


def test_migrate_db_without_a_source_or_a_url_is_one_line_and_exit_2(tmp_path):
    def run(*args, **env):
        return subprocess.run([sys.executable, "-m", "bot", "migrate-db", *args], cwd=ROOT,
                              env=bot_environment(env), capture_output=True, text=True,
                              timeout=60)
    no_url = run(DATABASE_PATH=tmp_path / "bot.db")
    assert no_url.returncode == 2 and "needs --to postgresql://" in no_url.stderr
    no_file = run("--to", URL, DATABASE_PATH=tmp_path / "missing.db")
    assert no_file.returncode == 2, no_file.stderr
    assert f"no SQLite database at {tmp_path / 'missing.db'}" in no_file.stderr
    assert "Traceback" not in no_file.stderr + no_url.stderr
    assert not (tmp_path / "missing.db").exists()  # nothing made where nothing was


@pytest.mark.parametrize("argv", [[URL], ["migrate-db", "--too", URL], ["front", URL]])
def test_a_mistyped_command_line_never_echoes_the_url(tmp_path, argv):
    r = subprocess.run([sys.executable, "-m", "bot", *argv], cwd=ROOT,
                       env=bot_environment({"DATABASE_PATH": tmp_path / "bot.db"}),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "s3cret-pass" not in r.stdout + r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
