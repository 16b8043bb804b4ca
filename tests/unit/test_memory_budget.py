"""The memory budget on its own: any part can be handed it without the whole monitor."""

from helpers.memory_budget import MemoryBudget
from helpers.memory_readings import MemoryLimits


def make(rss_mb: float):
    state = {"rss": rss_mb, "rechecks": 0}
    limits = MemoryLimits(limit_mb=200, warn_mb=150, critical_ratio=0.9)  # budget 180 MB

    def recheck():
        state["rechecks"] += 1
        if state["rss"] < limits.warn_mb:
            budget.resume()

    budget = MemoryBudget(limits, lambda: state["rss"], clock=lambda: 0.0, recheck=recheck)
    return budget, state, limits


async def test_paused_budget_rechecks_before_answering():
    budget, state, _ = make(170.0)
    assert await budget.admit() and state["rechecks"] == 0  # open: no extra reading
    assert budget.pause() is True and budget.pause() is False  # True only when it changed
    assert not await budget.admit() and state["rechecks"] == 1
    state["rss"] = 100.0
    assert await budget.admit() and not budget.paused
    assert budget.resume() is False


async def test_reservations_follow_the_live_limits():
    budget, state, limits = make(100.0)
    held = budget.try_reserve("a", 80)
    assert held is not None and budget.try_reserve("b", 1) is None  # 100 + 80 + 1 > 180
    limits.limit_mb = 400  # an operator or a test may change it at run time
    assert budget.try_reserve("b", 1) is not None
    held.release()
    assert budget.reserved_mb == 1
