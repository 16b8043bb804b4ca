"""helpers.transfer_budget: the per-account AIMD window and the planner (pure logic)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from helpers.transfer_budget import Budgets, Window, plan


async def test_window_caps_requests_in_flight_fifo_and_a_cancelled_waiter_passes_its_slot():
    w = Window(2)
    await w.acquire()
    await w.acquire()
    order: list[int] = []

    async def take(i: int) -> None:
        await w.acquire()
        order.append(i)

    waiting = [asyncio.ensure_future(take(i)) for i in range(3)]
    await asyncio.sleep(0)
    assert w.inflight == 2 and not order
    waiting[0].cancel()
    w.release()
    await asyncio.sleep(0)
    assert order == [1] and w.inflight == 2 and w.peak == 2
    w.release()
    await asyncio.sleep(0)
    assert order == [1, 2]
    await asyncio.gather(*waiting[1:])


async def test_backoff_halves_once_per_episode_and_grows_back_slowly(caplog, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("helpers.transfer_budget.time.monotonic", lambda: now[0])
    w = Window(12, name="42")
    with caplog.at_level(logging.INFO, logger="transfer"):
        for _ in range(12):  # every part in flight meets the same flood
            w.backoff("FloodWait 3 s")
    assert w.limit == 6 and w.changes == 1
    assert sum("12 -> 6" in r.getMessage() for r in caplog.records) == 1
    now[0] += Window.HOLD_S
    w.backoff("FloodWait 3 s")
    w.backoff("FloodWait 3 s")
    assert w.limit == 3 and w.changes == 2
    now[0] += 10
    for _ in range(5):
        w.backoff("connection closed")
        now[0] += Window.HOLD_S
    assert w.limit == w.floor == 2
    # growth: a window's worth of successes AND GROW_EVERY_S since the last change, +1 each
    now[0] += Window.GROW_EVERY_S
    for _ in range(2):
        w.inflight += 1
        w.release()
    assert w.limit == 3
    for _ in range(10):  # many successes at once are still one step
        w.inflight += 1
        w.release()
    assert w.limit == 3
    for _ in range(40):
        now[0] += Window.GROW_EVERY_S
        for _ in range(w.limit):
            w.inflight += 1
            w.release()
    assert w.limit == 12  # never past the setting


def test_budgets_are_per_account_and_big_file_slots_per_account_and_dc():
    class Me:
        def __init__(self, uid):
            self.id = uid

    class C:
        def __init__(self, uid):
            self.me = Me(uid)

    b = Budgets(account_inflight=12, big_files=2)
    a1, a1_again, a2 = C(1), C(1), C(2)
    assert b.window(a1) is b.window(a1_again)  # two clients of one account share it
    assert b.window(a1) is not b.window(a2)
    assert b.big_file(a1, 2) is b.big_file(a1_again, 2)
    assert b.big_file(a1, 2) is not b.big_file(a1, 4)
    assert b.big_file(a1, 2).cap == 2
    with pytest.raises(ValueError):
        Budgets(account_inflight=0)


def test_plan_opens_a_connection_per_four_requests():
    assert plan(1, 12, 4) == (1, 1)
    assert plan(100, 12, 4) == (12, 3)
    assert plan(100, 8, 4) == (8, 2)
    assert plan(100, 12, 2) == (12, 2)


async def test_a_library_file_request_holds_a_slot_of_its_accounts_window():
    """A thumbnail's download_media goes through the library, yet counts like our parts:
    Telegram counts every file request of the account."""
    from types import SimpleNamespace

    from helpers.thumbs import Thumbnails
    from helpers.transfer import Transfers

    t = Transfers(account_inflight=2)
    user = SimpleNamespace(me=SimpleNamespace(id=77))
    window = t.budgets.window(user)
    async with t.one_request(user):
        assert window.inflight == 1
        async with t.one_request(user):
            assert window.inflight == 2
            held = t.one_request(user)
            third = asyncio.ensure_future(held.__aenter__())
            await asyncio.sleep(0)
            assert not third.done(), "a third request waits for a slot"
        await asyncio.wait_for(third, 1)
    assert window.inflight == 1  # the third holds the slot it was handed
    await held.__aexit__(None, None, None)
    assert window.idle
    assert Thumbnails(None, None, None, t.one_request).gate == t.one_request
