"""Stopping a background task without swallowing the caller's own cancellation."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(task: asyncio.Task | None) -> None:
    """Cancel `task` and wait until it has ended. Its CancelledError is absorbed (we asked for
    it), but if the task calling this is itself being cancelled (a shutdown timed out, a
    SIGTERM during start-up) the cancellation goes on up instead of being lost here."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
