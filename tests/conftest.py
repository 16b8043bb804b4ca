"""Fixtures: an in-process tgsim on a free loopback port, and real pyrogram clients for it."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.botenv import bot_env  # noqa: E402
from tests.simclient import SimClients  # noqa: E402
from tgsim import TgSim  # noqa: E402


@pytest.fixture
async def sim(tmp_path):
    server = TgSim(tmp_path / "tgsim")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


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
