"""Pure pieces of the scaled layout: delivery ids, role checks, fleet settings, worker lines."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, load_settings
from bot.fleet import FleetSettings, check_role
from helpers import delivery_ids
from helpers.fleet_front import fleet_lines


class _Client:
    def __init__(self):
        self.n = 0

        def rnd():
            self.n += 1
            return 1000 + self.n

        self.rnd_id = rnd


def test_a_jobs_sends_get_the_same_ids_in_every_attempt():
    a, b = _Client(), _Client()
    delivery_ids.install(a)
    delivery_ids.install(b)
    with delivery_ids.scope(b"k", 7):
        first = [a.rnd_id() for _ in range(3)]
    with delivery_ids.scope(b"k", 7):
        again = [b.rnd_id() for _ in range(3)]
    with delivery_ids.scope(b"k", 8):
        other = [a.rnd_id() for _ in range(3)]
    assert first == again and len(set(first)) == 3
    assert not set(first) & set(other)
    assert all(0 < i < 2**63 for i in first + other)
    assert a.rnd_id() == 1001  # outside a job: the library's own


def test_roles_need_postgresql_and_credentials():
    s = load_settings(environ={}, env_file=None)
    assert "DATABASE_URL" in check_role(s, "worker")
    s = load_settings(environ={"DATABASE_URL": "postgresql://u@h/db"}, env_file=None)
    assert "API_ID" in check_role(s, "front")
    s = load_settings(environ={"DATABASE_URL": "postgresql://u@h/db", "API_ID": "1",
                               "API_HASH": "a" * 32, "BOT_TOKEN": "1:x"}, env_file=None)
    assert check_role(s, "front") is None


def test_fleet_settings(monkeypatch):
    monkeypatch.setenv("CONFIG_ENV", "")
    monkeypatch.setenv("FLEET_LEASE_S", "12")
    monkeypatch.setenv("WORKER_NAME", "w-a")
    f = FleetSettings()
    assert (f.lease_s, f.name) == (12.0, "w-a")
    monkeypatch.setenv("FLEET_LEASE_S", "0.1")
    with pytest.raises(ConfigError, match="FLEET_LEASE_S"):
        FleetSettings()


def test_worker_lines_say_who_is_silent():
    w = {"name": "w1", "version": "15.0", "rss_mb": 99.5, "peak_mb": 101.0, "sessions": 1,
         "max_sessions": 3, "transfers": 2, "max_transfers": 2, "done": 5, "failed": 0}
    lines = fleet_lines([{**w, "age_s": 1.0}, {**w, "name": "w2", "age_s": 99.0}], 30)
    assert lines[0] == "Workers: 1 live of 2"
    assert "w1 (live" in lines[1] and "RSS 99.5 MB" in lines[1]
    assert "w2 (silent 99 s" in lines[2]
    assert fleet_lines([], 30) == ["Workers: none has reported yet"]


@pytest.mark.parametrize("role", ["front", "worker"])
def test_a_role_without_postgresql_exits_2_with_one_line(role):
    import subprocess
    import sys
    from pathlib import Path

    from harness.processes import bot_environment

    root = Path(__file__).resolve().parents[2]
    env = bot_environment({"API_ID": "1", "API_HASH": "a" * 32, "BOT_TOKEN": "1:x",
                           "CONFIG_ENV": ""})
    proc = subprocess.run([sys.executable, "-m", "bot", role], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "DATABASE_URL" in lines[0], proc.stderr


async def test_a_send_repeated_after_a_420_takes_the_ids_of_its_try():
    """Else the sequence shifts: a worker taking the job over would resend the refused try's
    ids, which Telegram never saw, and post that message twice."""
    from types import SimpleNamespace

    from pyrogram import errors

    from helpers.pipeline import Pipeline

    async def attempt(client, refuse_first: bool) -> list[list[int]]:
        tries: list[list[int]] = []

        async def send(n: int):
            tries.append([client.rnd_id() for _ in range(n)])
            if refuse_first and len(tries) == 1:
                raise errors.FloodWait(value=1)

        with delivery_ids.scope(b"k", 9):
            for n in (2, 1):  # an album of two, then one message
                await Pipeline._patient(SimpleNamespace(duplicates_caught=0),
                                        lambda n=n: send(n), "send")
        return tries

    a, b = _Client(), _Client()
    delivery_ids.install(a)
    delivery_ids.install(b)
    refused = await attempt(a, refuse_first=True)
    clean = await attempt(b, refuse_first=False)
    assert refused[0] == refused[1] == clean[0]  # the repeat reused the refused try's ids
    assert refused[2] == clean[1]  # and the next send goes on where a clean attempt would
