"""helpers/services.py: what plugins get instead of the App."""

import asyncio
import sqlite3
from types import SimpleNamespace

import pytest

from helpers.services import AccountService, AdminService, JobsService
from helpers.storage_errors import StorageBusy


class _Locked:
    """A store whose every call meets another process's lock past the retries."""

    def __getattr__(self, name):
        async def call(*args, **kwargs):
            raise sqlite3.OperationalError("database is locked")
        return call


def test_a_locked_store_reaches_plugins_as_storage_busy():
    jobs = JobsService(_Locked(), SimpleNamespace(), _Locked())
    jobs.attach_queue(_Locked())
    accounts = AccountService(_Locked(), None, None, None, None, None)
    for call in (lambda: jobs.submit(1, [("c", 1, None)], False),
                 lambda: jobs.handled(1, 2), lambda: jobs.allowance(1),
                 lambda: jobs.batch_cap(1), lambda: accounts.ensure_user(1)):
        with pytest.raises(StorageBusy):
            asyncio.run(call())


def test_other_errors_pass_through():
    class Broken:
        async def ensure_user(self, uid):
            raise sqlite3.IntegrityError("no")
    with pytest.raises(sqlite3.IntegrityError):
        asyncio.run(AccountService(Broken(), None, None, None, None, None).ensure_user(1))


def test_ban_cancels_jobs_after_the_ban_and_one_broadcast_at_a_time():
    done = []

    async def set_banned(uid, banned):
        done.append(("banned", uid, banned))

    class Queue:
        async def cancel(self, uid, job_id=None):
            done.append(("cancel", uid))
            return 2

    jobs = JobsService(None, None, None)
    jobs.attach_queue(Queue())
    admin = AdminService(None, is_admin=lambda uid: False, set_banned=set_banned, jobs=jobs,
                         notify=None, spawn=None, stats=None, monitor=None)
    assert asyncio.run(admin.ban(5)) == 2
    assert done == [("banned", 5, True), ("cancel", 5)]
    assert admin.begin_broadcast() and not admin.begin_broadcast()
    admin.end_broadcast()
    assert admin.begin_broadcast()


def test_a_lost_postgresql_connection_reaches_plugins_as_storage_busy():
    import asyncpg

    import helpers.storage_postgres  # noqa: F401 - registers the driver's busy errors

    class Lost:
        async def ensure_user(self, uid):
            raise asyncpg.ConnectionDoesNotExistError("connection was closed")
    with pytest.raises(StorageBusy):
        asyncio.run(AccountService(Lost(), None, None, None, None, None).ensure_user(1))
