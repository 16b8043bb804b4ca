"""Which event loop the bot runs on: uvloop where it is installed, else asyncio's own.

A transfer's CPU above its crypto is mostly the event loop's: about 28 turns of it and 37
callbacks per 1 MiB part. uvloop (libuv, MagicStack; the loop the client library's docs
recommend) costs less per turn. Measured interleaved, 256 MB children against one tgsim at
150 ms: 7.11 / 7.15 CPU ms/MB down on asyncio's loop against 6.72 / 6.68 on uvloop, and
7.50 / 7.81 up against 7.19 / 7.19. The tests run on the same loop (tests/conftest.py), so
what they check is what runs. EVENT_LOOP=asyncio keeps asyncio's loop.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, TypeVar

T = TypeVar("T")

CHOICES = ("auto", "uvloop", "asyncio")


def factory(choice: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """A new-loop function for `choice`: auto is uvloop when importable."""
    if choice not in CHOICES:
        raise ValueError(f"event loop must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Awaitable[T], new_loop: Callable[[], asyncio.AbstractEventLoop]) -> T:
    """asyncio.run on the loop `new_loop` makes (`factory`'s answer)."""
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(main)
