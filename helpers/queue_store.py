"""The queue's scans over its rows in the database, which is the source of truth: a job
exists once its row is committed. Each scan is paged or capped, so memory stays bounded
however many rows wait.
"""

from __future__ import annotations

import contextlib
from collections.abc import Container

from helpers.database import Database
from helpers.queue_policy import Item, tier_of

CRASH_LOOPS_PER_START = 1000  # the rest are caught at the next start
_CANCEL_PAGE = 100


async def best_queued(db: Database, cap: int, skip: Container[int]) -> tuple[list[Item], int]:
    """The best ``cap`` queued rows in queue order as heap items, and how many more there are
    (counted, not kept); ``skip`` holds jobs already taken but not yet marked running."""
    items: list[Item] = []
    extra = 0
    async with contextlib.aclosing(db.iter_jobs_with_status("queued")) as rows:
        async for row in rows:
            if row["id"] in skip:
                continue
            if len(items) < cap:
                items.append((tier_of(row["premium"]), row["id"], row["user_id"]))
            else:
                extra += 1
    return items, extra


async def crash_loops(db: Database, max_attempts: int) -> list[tuple[int, int, int]]:
    """(job_id, user_id, attempts) of queued jobs cut off by ``max_attempts`` restarts: a job
    that was running at each of the last crashes may be what crashes us."""
    found: list[tuple[int, int, int]] = []
    async with contextlib.aclosing(db.iter_jobs_with_status("queued")) as rows:
        async for row in rows:
            if row["attempts"] >= max_attempts:
                found.append((row["id"], row["user_id"], row["attempts"]))
                if len(found) >= CRASH_LOOPS_PER_START:
                    break
    return found


async def cancel_queued(db: Database, user_id: int, job_id: int | None,
                        skip: Container[int]) -> int:
    """Cancel the user's queued rows (one, or all when job_id is None) that are not in
    ``skip``; returns how many this call ended."""
    count = 0
    seen: set[int] = set()
    while True:
        rows = await db.jobs_of_user(user_id, "queued", limit=_CANCEL_PAGE)
        rows = [r for r in rows if r["id"] not in skip and r["id"] not in seen
                and job_id in (None, r["id"])]
        if not rows:
            return count
        for row in rows:
            seen.add(row["id"])
            if await db.set_status(row["id"], "cancelled", "cancelled by user"):
                count += 1
