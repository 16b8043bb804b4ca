"""Fixtures: an in-process tgsim on free loopback ports, real pyrogram clients for it, and the
bot running against it. What they are made of is the harness (harness/); tests share it
through these fixtures and harness imports, never by importing another test module."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.botenv import bot_env  # noqa: E402
from harness.simclients import SimClients  # noqa: E402
from harness.simserver import tgsim_in_process  # noqa: E402


@pytest.fixture
async def sim(tmp_path):
    async with tgsim_in_process(tmp_path / "tgsim") as server:
        yield server


@pytest.fixture
async def clients(sim):
    pool = SimClients(sim)
    try:
        yield pool
    finally:
        await pool.stop_all()


_phones = itertools.count(1000)


@pytest.fixture
def phone():
    return f"+1555{os.getpid() % 1000:03d}{next(_phones):04d}"


@pytest.fixture
async def env(sim, clients, tmp_path):
    """The bot running against tgsim, with one logged-in person (env.people[0])."""
    async with bot_env(sim, clients, tmp_path) as e:
        yield e
