"""The one FloodWait policy covers the 420 family, not FloodWait alone."""

from __future__ import annotations

import time

import pytest
from pyrogram import errors

from helpers import floodwait
from helpers.broadcast import broadcast

FAMILY = [errors.FloodWait, errors.FloodPremiumWait, errors.SlowmodeWait]


@pytest.mark.parametrize("cls", FAMILY)
async def test_patiently_waits_out_each_of_the_family(cls):
    calls = []

    async def call():
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise cls(value="1")
        return "sent"

    before = floodwait.STATS.count
    assert await floodwait.patiently(call, "test") == "sent"
    assert len(calls) == 2 and calls[1] - calls[0] >= 1.0
    assert floodwait.STATS.count == before + 1


async def test_patiently_gives_up_on_a_wait_over_the_bound_without_sleeping():
    async def call():
        raise errors.FloodPremiumWait(value="5000")

    started = time.monotonic()
    with pytest.raises(floodwait.GaveUp) as e:
        await floodwait.patiently(call, "test")
    assert e.value.seconds == 5000 and time.monotonic() - started < 1


async def test_patiently_gives_up_after_its_attempts():
    calls = []

    async def call():
        calls.append(1)
        raise errors.SlowmodeWait(value="1")

    with pytest.raises(floodwait.GaveUp):
        await floodwait.patiently(call, "test", attempts=2)
    assert len(calls) == 2


def test_seconds_of_an_error_without_a_number():
    assert floodwait.seconds_of(errors.FloodWait(value=None)) == 60.0
    assert floodwait.seconds_of(errors.SlowmodeWait(value="0")) == 1.0


async def test_broadcast_waits_out_a_slowmode_wait():
    sent = []

    async def recipients():
        for uid in (1, 2):
            yield uid

    async def send(uid):
        if uid == 1 and not sent:
            sent.append("flood")
            raise errors.SlowmodeWait(value="1")
        sent.append(uid)

    result = await broadcast(recipients(), send, per_second=100)
    assert (result.delivered, result.failed) == (2, 0) and sent == ["flood", 1, 2]
