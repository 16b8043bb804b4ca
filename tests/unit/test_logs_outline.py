"""The client library's records carry type names, never the values of Telegram objects; the
deployment's own secrets stay masked however many login secrets come after them."""

import logging

from pyrogram import raw
from pyrogram.raw.core import Message, MsgContainer

from helpers import logs


def _record(name: str, msg, *args) -> logging.LogRecord:
    return logging.LogRecord(name, logging.DEBUG, __file__, 1, msg, args, None)


def test_library_records_show_only_the_outline():
    update = raw.types.UpdateShortMessage(id=1, user_id=2, message="1 2 3 4 5 hunter2",
                                          pts=1, pts_count=1, date=0)
    sent = raw.functions.auth.SendCode(phone_number="+14155550123", api_id=1, api_hash="h" * 32,
                                       settings=raw.types.CodeSettings())
    packet = Message(MsgContainer([Message(update, 1, 0, 0), Message(sent, 2, 0, 0)]), 3, 0, 0)
    for record in (_record("pyrogram.session.session", "Received: %s", packet),
                   _record("pyrogram.client", update)):
        logs.RedactingFilter().filter(record)
        text = record.getMessage()
        assert "hunter2" not in text and "1 2 3 4 5" not in text and "4155550123" not in text
        assert "UpdateShortMessage" in text
    assert logs.tl_outline(packet) == ("Message(MsgContainer(Message(types.UpdateShortMessage), "
                                       "Message(functions.auth.SendCode(types.CodeSettings))))")


def test_our_own_records_are_left_to_the_patterns():
    record = _record("bot", "Job #%d done", 7)
    logs.RedactingFilter().filter(record)
    assert record.getMessage() == "Job #7 done"


def test_pinned_secrets_outlive_the_cap():
    logs.register_secret("pinned-deployment-hash", pinned=True)
    for i in range(logs.MAX_SECRETS + 10):
        logs.register_secret(f"login-secret-{i:05d}")
    assert logs.redact("x pinned-deployment-hash y") == "x [REDACTED] y"
    assert "login-secret-00000" in logs.redact("login-secret-00000")  # the oldest went
    assert len(logs._secrets) <= logs.MAX_SECRETS + len(logs._pinned)
