"""Session encryption: round trip, clear key errors, no plaintext at rest, no default key."""

import base64
import inspect

import pytest

from helpers import secrets
from helpers.database import Database
from helpers.secrets import SecretKeyError, SessionCipher, check_key_against, generate_key

SESSION = "BQAAAAEAAAAAAbcdEFghIJklMNopQRstUVwxYZ-my-session-string"


def test_round_trip_and_fresh_nonce():
    c = SessionCipher(generate_key())
    a, b = c.encrypt(SESSION), c.encrypt(SESSION)
    assert a != b  # random nonce per blob
    assert c.decrypt(a) == SESSION == c.decrypt(b)
    assert c.decrypt(c.encrypt("")) == ""


def test_ciphertext_does_not_contain_plaintext():
    blob = SessionCipher(generate_key()).encrypt(SESSION)
    assert SESSION.encode() not in blob
    assert SESSION[:16].encode() not in blob
    assert base64.b64encode(SESSION.encode())[:16] not in blob


def test_wrong_key_gives_one_clear_line():
    blob = SessionCipher(generate_key()).encrypt(SESSION)
    with pytest.raises(SecretKeyError) as ei:
        SessionCipher(generate_key()).decrypt(blob)
    msg = str(ei.value)
    assert "does not match" in msg and "\n" not in msg


def test_tampered_or_foreign_blob():
    c = SessionCipher(generate_key())
    blob = bytearray(c.encrypt(SESSION))
    blob[-1] ^= 1
    with pytest.raises(SecretKeyError):
        c.decrypt(bytes(blob))
    with pytest.raises(SecretKeyError, match="known encrypted format"):
        c.decrypt(b"plain session string")


@pytest.mark.parametrize("key", [None, "", "   ", b""])
def test_missing_key_is_a_clear_error(key):
    with pytest.raises(SecretKeyError, match="not set"):
        SessionCipher(key)


@pytest.mark.parametrize(
    "key",
    ["not base64 at all!", "c2hvcnQ=", base64.urlsafe_b64encode(b"x" * 31).decode(),
     "ключ", b"\xff\xfe"],
)
def test_malformed_key_is_a_clear_error(key):
    with pytest.raises(SecretKeyError, match="malformed") as ei:
        SessionCipher(key)
    assert "\n" not in str(ei.value)
    if isinstance(key, str) and key:
        assert key not in str(ei.value)  # never echo key material


def test_no_default_key():
    assert inspect.signature(SessionCipher).parameters["key"].default is inspect.Parameter.empty
    with pytest.raises(TypeError):
        SessionCipher()  # type: ignore[call-arg]
    assert generate_key() != generate_key()
    assert len(base64.urlsafe_b64decode(generate_key())) == 32
    key = generate_key()
    assert key not in repr(SessionCipher(key))
    assert not any(
        isinstance(v, (str, bytes)) and len(v) == 44 for k, v in vars(secrets).items()
        if not k.startswith("__")
    )


async def test_check_key_against(db_target):
    db = await Database.open(db_target)
    try:
        key = generate_key()
        assert await check_key_against(db, SessionCipher(key)) is False
        await db.save_session(1, SessionCipher(key).encrypt(SESSION))
        assert await check_key_against(db, SessionCipher(key)) is True
        with pytest.raises(SecretKeyError, match="does not match"):
            await check_key_against(db, SessionCipher(generate_key()))
    finally:
        await db.close()
