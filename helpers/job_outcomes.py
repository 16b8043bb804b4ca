"""How a job ends in words: the expected failure type, the reason kept in the DB, the one
notice the user gets (whoever shows it: the runner's progress message or the queue)."""

from __future__ import annotations

import asyncio


class JobError(Exception):
    """An expected failure (bad link, file gone, ...); its text is shown to the user."""


def failure_reason(exc: BaseException) -> str:
    """The reason stored with a failed job; an unexpected error names only its type."""
    if isinstance(exc, JobError):
        return str(exc) or "failed"
    return f"internal error ({type(exc).__name__})"


def failure_notice(job_id: int, reason: str) -> str:
    """The user's notice for a stored reason; an internal error's details stay in the log."""
    if reason.startswith("internal error"):
        return f"Job #{job_id} failed: an internal error occurred."
    return f"Job #{job_id} failed: {reason}"


def failure_text(job_id: int, exc: BaseException) -> str:
    """The one notice of a failed job, whoever shows it (the runner's progress message or
    the queue's own message)."""
    return failure_notice(job_id, failure_reason(exc))


def mark_told(exc: BaseException) -> None:
    """The runner has shown the user this failure: the queue must not say it again."""
    try:
        exc.user_told = True
    except AttributeError:  # an exception type without a __dict__: the queue says it
        pass


_NOTIFY_TIMEOUT_S = 15.0  # a stuck notification must not hold a worker forever


async def tell(notify, user_id: int, text: str, log, who: str) -> None:
    """A job's notice to its user, best effort: bounded, and a failure only logged (the job's
    outcome is already stored)."""
    if notify is None:
        return
    try:
        await asyncio.wait_for(notify(user_id, text), _NOTIFY_TIMEOUT_S)
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001
        log.warning("%s: could not notify user %s", who, user_id, exc_info=True)
