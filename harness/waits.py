"""Waiting on a condition, never a fixed sleep: the one poll loop of tests and benchmarks."""

from __future__ import annotations

import asyncio
import time


async def wait_until(cond, timeout: float, what: str, every: float = 0.05):
    """Poll cond() (a plain or an async function) until it is true and return what it gave;
    fail, naming `what`, at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(every)
