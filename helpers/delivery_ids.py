"""The random_id of every message a job delivers, derived from the job, not drawn at random.

Telegram keeps the random_id of each message an account sent and refuses a second send with
the same one (RANDOM_ID_DUPLICATE; "Unique client message ID required to prevent message
resending", core.telegram.org/method/messages.sendMedia). A worker that takes over a job
whose first worker died may not know whether that worker's send reached Telegram; sending
with the same ids makes Telegram itself answer: a duplicate means "already delivered".

The client library draws ids from `Client.rnd_id` (an instance attribute: pyrogram's
client.py sets `self.rnd_id = MsgId`); `install` replaces it on the worker's own bot client
with one that, inside a job's `scope`, gives the n-th send of the job the n-th id of a keyed
sequence, and outside any scope keeps the library's own.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import hmac

from helpers.client_adapter import random_id_source, set_random_id_source

_scope: contextvars.ContextVar["_Scope | None"] = contextvars.ContextVar(
    "delivery_scope", default=None)


class _Scope:
    __slots__ = ("key", "count")

    def __init__(self, key: bytes):
        self.key = key
        self.count = 0

    def next(self) -> int:
        self.count += 1
        digest = hmac.new(self.key, self.count.to_bytes(4, "big"), hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1) or 1


def install(client) -> None:
    """Inside a job's scope the client's sends take their random_id from the job's sequence;
    outside it, from the library's own source."""
    fallback = random_id_source(client)

    def pick() -> int:
        scope = _scope.get()
        return fallback() if scope is None else scope.next()

    set_random_id_source(client, pick)


def mark() -> int | None:
    """Where the job's sequence stands now (None outside a job's scope), for `rewind`."""
    scope = _scope.get()
    return None if scope is None else scope.count


def rewind(to: int | None) -> None:
    """Back to where `mark` stood: a send repeated after a 420 (which posts nothing) takes
    the ids of the try it repeats. Drawing fresh ones would shift the rest of the sequence,
    so a worker that takes the job over would send the first try's ids, which Telegram never
    saw, and post that message a second time."""
    scope = _scope.get()
    if scope is not None and to is not None:
        scope.count = to


def active() -> bool:
    """True inside a job's scope (its sends take their ids from the job's sequence)."""
    return _scope.get() is not None


@contextlib.contextmanager
def scope(secret: bytes, job_id: int):
    """Every send inside (tasks started inside included) takes its id from the job's
    sequence, in order; the same job gets the same sequence in every attempt."""
    key = hmac.new(secret, f"job:{int(job_id)}".encode(), hashlib.sha256).digest()
    token = _scope.set(_Scope(key))
    try:
        yield
    finally:
        _scope.reset(token)
