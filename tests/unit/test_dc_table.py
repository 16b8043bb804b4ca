"""TELEGRAM_SERVER as a DC table, and the storage that connects a session to its own DC."""

import base64
import struct

import pytest
from pyrogram.storage import Storage

from bot.config import ConfigError, load_settings
from helpers.telegram_server import PinnedStorage, dc_table


def load(env):
    return load_settings(dict(env), env_file=None)


@pytest.fixture
def key(tmp_path):
    path = tmp_path / "k.pem"
    path.write_text("x")
    return str(path)


def test_one_address_is_dc2_and_a_list_names_the_others(key):
    s = load({"TELEGRAM_SERVER": "127.0.0.1:8443", "TELEGRAM_SERVER_KEY": key})
    assert s.telegram_server == ("127.0.0.1", 8443) and s.telegram_dcs == ()
    assert s.telegram_servers == {2: ("127.0.0.1", 8443)}
    s = load({"TELEGRAM_SERVER": " 127.0.0.1:8443, 4=127.0.0.1:8446,1=[::1]:8444 ",
              "TELEGRAM_SERVER_KEY": key})
    assert s.telegram_server == ("127.0.0.1", 8443)
    assert s.telegram_dcs == ((1, "::1", 8444), (4, "127.0.0.1", 8446))
    assert s.telegram_servers == {2: ("127.0.0.1", 8443), 1: ("::1", 8444),
                                  4: ("127.0.0.1", 8446)}
    assert load({"TELEGRAM_SERVER": "3=h:3,2=h:2", "TELEGRAM_SERVER_KEY": key}
                ).telegram_server == ("h", 2)
    assert load({}).telegram_servers is None


@pytest.mark.parametrize("value, message", [
    ("4=127.0.0.1:8446", "must name DC 2"),
    ("h:1,h:2", "names DC 2 twice"),
    ("h:1,x=h:2", "N=host:port"),
    ("h:1,4=h", "must be host:port"),
])
def test_bad_tables_are_refused_clearly(key, value, message):
    with pytest.raises(ConfigError, match=message):
        load({"TELEGRAM_SERVER": value, "TELEGRAM_SERVER_KEY": key})


def _session_string(dc_id: int) -> str:
    packed = struct.pack(Storage.SESSION_STRING_FORMAT, dc_id, 12345, False, bytes(256),
                         777, False)
    return base64.urlsafe_b64encode(packed).decode().rstrip("=")


async def test_a_session_connects_to_its_own_dc():
    table = {2: ("127.0.0.1", 1002), 4: ("127.0.0.1", 1004)}
    for dc, expected in ((4, ("127.0.0.1", 1004)), (2, ("127.0.0.1", 1002)),
                         (5, ("127.0.0.1", 1002))):  # not listed: DC 2's address
        storage = PinnedStorage(f"s{dc}", table, _session_string(dc))
        await storage.open()
        try:
            assert (await storage.server_address(), await storage.port()) == expected
        finally:
            await storage.close()
    with pytest.raises(ValueError, match="needs DC 2"):
        dc_table({4: ("h", 1)})
    assert dc_table(("h", 1)) == {2: ("h", 1)}
