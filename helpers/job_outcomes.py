"""How a job ends in words: the expected failure type, the reason kept in the DB, the one
notice the user gets (whoever shows it: the runner's progress message or the queue)."""

from __future__ import annotations


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
