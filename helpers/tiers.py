"""Daily job allowance per tier; the day is the UTC day, so the reset time is the same for all."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Allowance:
    premium: bool
    limit: int
    used: int

    @property
    def room(self) -> int:
        return max(0, self.limit - self.used)

    def refusal(self) -> str:
        tier = "premium" if self.premium else "free"
        text = (f"You have used all {self.limit} jobs of today's {tier} allowance. "
                "It resets at 00:00 UTC.")
        if not self.premium:
            text += " Premium users get more; ask the bot's admin."
        return text


async def allowance(db, settings, user_id: int) -> Allowance:
    premium = await db.is_premium(user_id)
    limit = settings.premium_daily_jobs if premium else settings.free_daily_jobs
    return Allowance(premium, limit, await db.jobs_today(user_id))
