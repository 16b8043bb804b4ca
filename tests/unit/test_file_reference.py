import asyncio

import pytest
from pyrogram import errors

from helpers.file_reference import RefreshedLocation


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _fetcher(results: list):
    calls = []

    async def fetch():
        calls.append(1)
        await asyncio.sleep(0.01)  # long enough for every waiter to pile up behind it
        return results.pop(0)

    return fetch, calls


async def test_one_fetch_for_every_part_that_found_it_expired():
    fetch, calls = _fetcher(["fresh"])
    loc = RefreshedLocation("old", fetch)
    await asyncio.gather(*(loc.expired(0) for _ in range(20)))
    assert calls == [1] and loc.location == "fresh" and loc.generation == 1
    await loc.expired(0)  # a late answer to a request made with the old one: just retry
    assert calls == [1]


async def test_rearmed_once_the_fresh_reference_worked_or_after_a_while():
    clock = Clock()
    fetch, calls = _fetcher(["r1", "r2", "r3"])
    loc = RefreshedLocation("r0", fetch, clock=clock)
    await loc.expired(0)
    with pytest.raises(errors.FileReferenceExpired):  # stale again before it ever worked
        await loc.expired(1)
    loc.worked(0)  # an old generation's success proves nothing about the new one
    with pytest.raises(errors.FileReferenceExpired):
        await loc.expired(1)
    loc.worked(1)
    await loc.expired(1)
    assert loc.location == "r2" and len(calls) == 2
    clock.t += RefreshedLocation.REARM_S
    await loc.expired(2)
    assert loc.location == "r3" and len(calls) == 3


async def test_bounded_and_without_a_message_not_refreshed():
    with pytest.raises(errors.FileReferenceExpired):
        await RefreshedLocation("x", None).expired(0)
    fetch, calls = _fetcher([f"r{i}" for i in range(RefreshedLocation.MAX_REFRESHES + 1)])
    loc = RefreshedLocation("r", fetch)
    for g in range(RefreshedLocation.MAX_REFRESHES):
        await loc.expired(g)
        loc.worked(g + 1)
    with pytest.raises(errors.FileReferenceExpired):
        await loc.expired(RefreshedLocation.MAX_REFRESHES)
    assert len(calls) == RefreshedLocation.MAX_REFRESHES


async def test_a_failed_fetch_fails_its_waiters_and_may_be_tried_again():
    async def broken():
        await asyncio.sleep(0.01)
        raise errors.ChannelPrivate()

    loc = RefreshedLocation("x", broken)
    results = await asyncio.gather(*(loc.expired(0) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, errors.ChannelPrivate) for r in results)
    assert loc.generation == 0
    with pytest.raises(errors.ChannelPrivate):
        await loc.expired(0)
