"""stop() of every background owner: the task it stops may end by cancellation, but a caller
that is itself cancelled while waiting (a shutdown that timed out) stays cancelled."""

import asyncio

import pytest

from helpers.login import LoginDesk
from helpers.memory_monitor import MemoryMonitor
from helpers.session_manager import SessionManager
from helpers.tasks import cancel_and_wait
from helpers.transfer import Transfers


def _sleeper() -> asyncio.Task:
    return asyncio.create_task(asyncio.sleep(3600))


def _monitor():
    m = MemoryMonitor(512, 400, 50, 300)
    m._task = _sleeper()
    return m


def _logins():
    desk = LoginDesk(lambda name: None, None, lambda: None)
    desk._sweeper = _sleeper()
    return desk


def _sessions():
    sm = SessionManager(None, None, api_id=1, api_hash="x")
    sm._reaper = _sleeper()
    return sm


def _transfers():
    t = Transfers(reserve=lambda n: None)
    t._pools._reaper = _sleeper()  # the connection pool (helpers/transfer_pool.py) owns it
    return t


@pytest.mark.parametrize("make, stop", [
    (_monitor, "stop"), (_logins, "stop"), (_sessions, "stop"), (_transfers, "close")])
async def test_stop_keeps_the_callers_own_cancellation(make, stop):
    owner = make()
    caller = asyncio.create_task(getattr(owner, stop)())
    await asyncio.sleep(0)  # the caller now waits for the cancelled background task
    caller.cancel()
    await asyncio.wait({caller})
    assert caller.cancelled(), "stop() swallowed its caller's cancellation"


@pytest.mark.parametrize("make, stop", [
    (_monitor, "stop"), (_logins, "stop"), (_sessions, "stop"), (_transfers, "close")])
async def test_stop_alone_ends_normally(make, stop):
    await getattr(make(), stop)()


async def test_cancel_and_wait_absorbs_only_the_tasks_cancellation():
    await cancel_and_wait(_sleeper())
    await cancel_and_wait(None)
