"""The queue's policy in memory: tiers (premium first, then oldest), the caps a submission
must fit, and the heap of waiting jobs with their places.

The heap keeps only slim ``(tier, job_id, user_id)`` tuples, at most ``cap`` of them, and is
always the best prefix of the queued rows in the DB: a job worse than all of it while rows
already spilled over waits in the DB only, counted in ``spilled``, and the queue refills the
heap from the DB as room frees. Nothing here awaits or touches the DB.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

PREMIUM, FREE = 0, 1  # heap order: lower tier value runs first

Item = tuple[int, int, int]  # (tier, job_id, user_id); job ids grow, so oldest first


def tier_of(premium: bool) -> int:
    return PREMIUM if premium else FREE


class SubmitRefused(Exception):
    """Nothing of a submission fits; the text is a reply for the user."""


class QueueFull(SubmitRefused):
    pass


class UserLimit(SubmitRefused):
    pass


@dataclass(frozen=True)
class SubmitResult:
    """accepted: (job_id, 1-based queue position); refused/reason cover what did not fit."""

    accepted: list[tuple[int, int]]
    refused: int
    reason: str | None


def fit(wanted: int, *, waiting: int, user_active: int, max_queue: int,
        max_per_user: int) -> tuple[int, SubmitRefused]:
    """How many of ``wanted`` new jobs fit, and the refusal for the rest (the tighter cap)."""
    room_queue = max(0, max_queue - waiting)
    room_user = max(0, max_per_user - user_active)
    n = min(wanted, room_queue, room_user)
    if room_user <= room_queue:
        return n, UserLimit(f"You can have at most {max_per_user} jobs at a time "
                            f"({user_active} in progress). Wait for them to finish or /cancel.")
    return n, QueueFull(f"The queue is full ({max_queue} jobs waiting). "
                        "Please try again in a few minutes.")


class JobHeap:
    """Waiting jobs, best first, capped at ``cap``; the rest are counted in ``spilled``."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._heap: list[Item] = []
        self._queued: dict[int, Item] = {}  # job_id -> heap item
        self.spilled = 0  # queued rows in the DB that are not in the heap

    def __len__(self) -> int:
        return len(self._heap)

    @property
    def waiting(self) -> int:
        return len(self._heap) + self.spilled

    def push(self, item: Item) -> None:
        """Keeps the heap the best prefix of the DB: when full the worst spills to the DB."""
        if self.spilled and self._heap and item > max(self._heap):
            self.spilled += 1  # worse than everything in memory: it waits in the DB
            return
        heapq.heappush(self._heap, item)
        self._queued[item[1]] = item
        if len(self._heap) > self.cap:
            self.remove(max(self._heap))
            self.spilled += 1

    def remove(self, item: Item) -> None:
        self._heap.remove(item)
        heapq.heapify(self._heap)
        self._queued.pop(item[1], None)

    def pop(self) -> Item:
        item = heapq.heappop(self._heap)
        self._queued.pop(item[1], None)
        return item

    def load(self, items: list[Item], spilled: int) -> None:
        """Replace the contents with the DB's best ``items`` and the count of the rest."""
        heapq.heapify(items)
        self._heap = items
        self._queued = {item[1]: item for item in items}
        self.spilled = spilled

    def position(self, job_id: int) -> int | None:
        """1-based place in the combined queue; None when not waiting in memory."""
        item = self._queued.get(int(job_id))
        if item is None:
            return None
        return 1 + sum(1 for other in self._heap if other < item)

    def positions(self, job_ids: list[int]) -> list[tuple[int, int]]:
        """(job_id, place) for each; one past the last for a job that spilled to the DB."""
        order = sorted(self._heap)
        rank = {item[1]: i + 1 for i, item in enumerate(order)}
        return [(job_id, rank.get(job_id, len(order) + 1)) for job_id in job_ids]

    def best(self, n: int) -> list[Item]:
        return heapq.nsmallest(max(0, n), self._heap)

    def of_user(self, user_id: int, job_id: int | None = None) -> list[Item]:
        """The user's waiting items in memory (one, or all when job_id is None)."""
        return [i for i in self._heap if i[2] == user_id and job_id in (None, i[1])]
