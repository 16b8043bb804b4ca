"""Real pyrogram clients signed in to tgsim through the code flow, as a person signs in."""

from __future__ import annotations

import contextlib
from pathlib import Path

API_ID, API_HASH = 12345, "0123456789abcdef0123456789abcdef"  # the pair tgsim registers
LOGIN_CODE = "12345"  # what tgsim sends every phone (`python -m tgsim --code`)


async def sign_in(address: tuple[str, int] | dict[int, tuple[str, int]], key_path: Path | str,
                  phone: str, name: str, code: str = LOGIN_CODE, *,
                  password: str | None = None, client_name: str | None = None, **client_kw):
    """A client signed in (or up, as `name`) and initialised for updates; `address` is DC 2's
    or the server's DC table; `password` answers a 2FA challenge."""
    from pyrogram import Client, types

    from helpers.telegram_server import client_options

    label = client_name or "u" + phone.lstrip("+")
    client = Client(label, api_id=API_ID, api_hash=API_HASH,
                    **client_options(label, address, key_path), **client_kw)
    await client.connect()
    try:
        sent = await client.send_code(phone)
        try:
            result = await client.sign_in(phone, sent.phone_code_hash, code)
        except Exception as e:  # SessionPasswordNeeded
            if password is None or "SESSION_PASSWORD_NEEDED" not in str(e):
                raise
            result = await client.check_password(password)
        if not isinstance(result, types.User):  # False or TermsOfService: no account yet
            await client.sign_up(phone, sent.phone_code_hash, name)
        client.me = await client.get_me()
        await client.initialize()
    except BaseException:
        with contextlib.suppress(Exception):
            await client.disconnect()
        raise
    return client
