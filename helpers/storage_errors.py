"""Storage errors a caller outside the storage layer may see, whatever the driver.

A handler that must tell the user "busy, send it again" catches StorageBusy, never a driver's
own exception class, so the same plugin works on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Iterator

# The driver errors that mean "the store could not take this now": SQLite's locked or busy
# database past its retries; the PostgreSQL backend adds its own when it loads
# (helpers/storage_postgres.py: connection lost, serialization failure, deadlock).
BUSY: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)


def register_busy(*errors: type[BaseException]) -> None:
    """A driver's own "try again later" errors (called by its backend when it loads)."""
    global BUSY
    BUSY = BUSY + tuple(e for e in errors if e not in BUSY)


class StorageBusy(Exception):
    """The store could not take the request now; it may succeed if sent again later."""


@contextlib.contextmanager
def as_storage_busy() -> Iterator[None]:
    """Turns a driver's busy error inside the block into StorageBusy."""
    try:
        yield
    except BUSY as e:
        raise StorageBusy(str(e)) from e
