import logging
import re
from logging.handlers import RotatingFileHandler

import pytest

from helpers import logs
from helpers.logs import RedactingFilter, redact, register_secret, setup_logging

TOKEN = "123456789:AAHfiqksKZ8WmR2zSjiQ7_v4TMAKdiHm9T0"
SESSION = "BQ" + "AbC-dEf_0123456789" * 20  # pyrogram session strings: urlsafe base64, ~350 chars
FERNET = "gAAAAABmZ3Rlc3RfdG9rZW5fZm9yX3JlZGFjdGlvbl90ZXN0aW5nX29ubHlfMTIzNDU2Nzg5MA=="
API_HASH = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def log_setup(tmp_path):
    """setup_logging into tmp_path; restores the root logger afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    path = tmp_path / "logs" / "logs.txt"

    def read() -> str:
        for h in root.handlers:
            h.flush()
        return path.read_text(encoding="utf-8")

    setup_logging(str(path), "INFO")
    yield path, read
    for h in list(root.handlers):
        if h not in saved_handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(saved_level)
    for name in ("pyrogram.session", "pyrogram.connection"):
        logging.getLogger(name).setLevel(logging.NOTSET)


@pytest.fixture(autouse=True)
def clean_secrets():
    logs._secrets.clear()
    logs._secrets_re = None
    yield
    logs._secrets.clear()
    logs._secrets_re = None


def test_every_secret_class_redacted_in_log_file(log_setup, capsys):
    path, read = log_setup
    setup_logging(str(path), "INFO")  # again, so the stdout handler writes into capsys
    register_secret(API_HASH)
    register_secret("correct horse battery")
    log = logging.getLogger("test.secrets")
    log.info("login for %s started", "+1 555-123-4567")
    log.info("phone +447911123456 and +7 (999) 123-45-67")
    log.info("bot token is %s", TOKEN)
    log.info("session string: %s", SESSION)
    log.info("encrypted %s", FERNET)
    log.info("user sent the login code 12345")
    log.info("code: %s", "654321")
    log.info("2FA password %s accepted", "correct horse battery")
    log.info("api hash %s", API_HASH)
    log.warning("password=hunter2 was used")
    try:
        raise RuntimeError(f"auth failed for +15551234567 with {TOKEN}")
    except RuntimeError:
        log.exception("sign in failed for %s", "+15551234567")
    text = read()
    out = capsys.readouterr().out
    for stream in (text, out):
        for secret in ["555-123-4567", "447911123456", "999) 123-45-67", TOKEN[10:], SESSION,
                       FERNET, "code 12345", "654321", "correct horse battery", API_HASH,
                       "hunter2", "15551234567"]:
            assert secret not in stream, secret
        assert "[REDACTED-PHONE]" in stream
        assert "123456789:[REDACTED-TOKEN]" in stream
        assert "[REDACTED-SESSION]" in stream
        assert "[REDACTED-FERNET]" in stream
        assert "[REDACTED-CODE]" in stream
        assert "password=[REDACTED]" in stream
        assert "RuntimeError" in stream  # the traceback itself survives
    # one line per event, in the documented format
    first = text.splitlines()[0]
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO test\.secrets: login for ", first)


def test_ordinary_numbers_survive(log_setup):
    _, read = log_setup
    log = logging.getLogger("test.plain")
    log.info("downloaded 12345 bytes of message 654321 in chat -1001234567890")
    log.info("job 42 took 1.5s; rss 123456 kB")
    text = read()
    assert "12345 bytes" in text and "654321" in text and "-1001234567890" in text
    assert "123456 kB" in text


def test_codes_only_near_keywords():
    assert redact("your code is 12345") == "your code is [REDACTED-CODE]"
    assert redact("Code 12345") == "Code [REDACTED-CODE]"
    assert "12345" in redact("sent 12345 bytes")
    far = "code " + "x" * 60 + " 12345"
    assert "12345" in redact(far)
    assert "1234567" in redact("code 1234567")  # 7 digits is not a login code


def test_redact_is_idempotent():
    once = redact(f"{TOKEN} +15551234567 code 12345 {SESSION} {FERNET}")
    assert redact(once) == once


def test_register_secret_bounded_and_ignores_short():
    register_secret("abc")  # too short: would mangle every line
    assert "abc" in redact("abc")
    for i in range(logs.MAX_SECRETS + 50):
        register_secret(f"secret-value-{i:05d}")
    assert len(logs._secrets) == logs.MAX_SECRETS
    assert "secret-value-00000" in redact("secret-value-00000")  # evicted, oldest first
    assert redact(f"x secret-value-{logs.MAX_SECRETS + 49:05d} y") == "x [REDACTED] y"
    register_secret(None)  # type: ignore[arg-type]


def test_longest_secret_masked_whole():
    register_secret("abcd")
    register_secret("abcdefgh")
    assert redact("abcdefgh") == "[REDACTED]"


def test_filter_freezes_args():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token %s n=%d", (TOKEN, 5), None)
    assert RedactingFilter().filter(record) is True
    assert record.args is None
    assert record.getMessage() == "token 123456789:[REDACTED-TOKEN] n=5"


def test_filter_tolerates_bad_args():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d", ("nope",), None)
    assert RedactingFilter().filter(record) is True


def test_setup_is_idempotent(tmp_path, log_setup):
    path, read = log_setup
    root = logging.getLogger()
    ours = lambda: [h for h in root.handlers if getattr(h, "_bot_log_handler", False)]  # noqa: E731
    assert len(ours()) == 2
    setup_logging(str(path), "INFO")
    setup_logging(str(path), "INFO")
    assert len(ours()) == 2
    assert sum(isinstance(h, RotatingFileHandler) for h in ours()) == 1
    logging.getLogger("test.once").info("exactly once")
    assert read().count("exactly once") == 1
    file_handler = next(h for h in ours() if isinstance(h, RotatingFileHandler))
    assert file_handler.maxBytes == 5 * 1024 * 1024 and file_handler.backupCount == 3


def test_pyrogram_loggers_quiet_unless_debug(log_setup):
    path, _ = log_setup
    assert logging.getLogger("pyrogram.session").level == logging.WARNING
    assert logging.getLogger("pyrogram.connection").level == logging.WARNING
    setup_logging(str(path), "DEBUG")
    assert logging.getLogger().level == logging.DEBUG
    assert logging.getLogger("pyrogram.session").getEffectiveLevel() == logging.DEBUG
