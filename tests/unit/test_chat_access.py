"""helpers/chat_access.py: the one place that picks the reader of a chat and allows a copy."""

import asyncio
from types import SimpleNamespace

import pytest

from helpers.chat_access import ChatAccess, Session, UnknownPeer
from helpers.queue_manager import JobError


def _sessions(enabled: bool, logged_in: bool):
    async def has_session(uid):
        return logged_in
    return SimpleNamespace(enabled=enabled, has_session=has_session)


def _after(access, chat, error):
    return asyncio.run(access.after_bot_failed(1, chat, error))


def test_session_state():
    assert asyncio.run(ChatAccess(None).session(1)) is Session.OFF
    assert asyncio.run(ChatAccess(_sessions(False, True)).session(1)) is Session.OFF
    assert asyncio.run(ChatAccess(_sessions(True, False)).session(1)) is Session.NONE
    assert asyncio.run(ChatAccess(_sessions(True, True)).session(1)) is Session.READY


def test_a_logged_in_user_is_served_by_their_session():
    assert _after(ChatAccess(_sessions(True, True)), -1001, UnknownPeer("x")) is None


@pytest.mark.parametrize("sessions,chat,error,text", [
    (None, -1001, UnknownPeer("x"), "introduced it to me"),
    (_sessions(True, False), -1001, UnknownPeer("x"), "or log in with /login"),
    (_sessions(True, False), -1001, JobError("x"), "I am not a member: log in"),
    (_sessions(True, False), "public", JobError("as is"), "as is"),
    (None, "public", JobError("as is"), "as is"),
])
def test_what_the_user_is_told_when_only_the_bot_could_try(sessions, chat, error, text):
    with pytest.raises(JobError, match=text) as e:
        _after(ChatAccess(sessions), chat, error)
    if sessions is None and isinstance(error, UnknownPeer):
        assert "/login" not in str(e.value), "no login offered when logins are off"


def test_only_what_the_bot_read_unprotected_may_be_copied():
    free, locked = SimpleNamespace(has_protected_content=False), \
        SimpleNamespace(has_protected_content=True)
    assert ChatAccess.may_copy(free, read_by_bot=True)
    assert not ChatAccess.may_copy(free, read_by_bot=False)
    assert not ChatAccess.may_copy(locked, read_by_bot=True)
