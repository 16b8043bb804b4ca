"""The /login conversation as a small state machine: phone, code, 2FA password.

A login holds a connected, not yet authorised client between messages, so pending logins
are capped and expire; an abandoned one is disconnected by the sweep. Nothing here logs a
phone number, a code or a password, and replies never echo them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Callable

from pyrogram import Client, errors, types

from helpers import floodwait
from helpers.client_adapter import stop_dc_sessions
from helpers.logs import register_secret
from helpers.secrets import SessionCipher
from helpers.tasks import cancel_and_wait

log = logging.getLogger("login")

PHONE, CODE, PASSWORD = "phone", "code", "password"
MAX_CODE_TRIES = 5
MAX_PASSWORD_TRIES = 5

PROMPTS = {
    PHONE: "Send your phone number in international format, e.g. +14155550123.\n"
           "Send /cancel to stop.",
    CODE: "Telegram sent you a login code. Send it here with spaces or dashes between the "
          "digits (e.g. 1 2 3 4 5): Telegram cancels codes that are sent unchanged in a "
          "chat.\nSend /cancel to stop.",
    PASSWORD: "Your account has two-step verification. Send your password.\n"
              "Send /cancel to stop.",
}
NO_ACCOUNT = ("There is no Telegram account for this phone number. Sign up in a Telegram app "
              "first, then send /login again.")


class LoginReply(Exception):
    """A message for the user; `done` True ends the conversation."""

    def __init__(self, text: str, done: bool = False):
        super().__init__(text)
        self.text, self.done = text, done


def normalize_phone(text: str) -> str | None:
    """'+1 (415) 555-0123' -> '+14155550123'; None when it cannot be a phone number."""
    text = text.strip()
    if not re.fullmatch(r"\+?[\d\s().-]{5,32}", text):
        return None
    digits = re.sub(r"\D", "", text)
    return f"+{digits}" if 5 <= len(digits) <= 15 else None


def extract_code(text: str, length: int | None = None) -> str | None:
    """The digits of a code typed with any separators ('1 2-3.4 5', 'code: 12345')."""
    digits = re.sub(r"\D", "", text)
    if length and len(digits) == length:
        return digits
    if not length and 4 <= len(digits) <= 8:
        return digits
    return None


def _wait_text(seconds: int) -> str:
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds} s"


@dataclass
class LoginFlow:
    user_id: int
    client: Client
    step: str = PHONE
    phone: str | None = None
    code_hash: str | None = None
    code_length: int | None = None
    tries: int = 0
    started: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _wrong(flow: LoginFlow, limit: int, what: str, again: str) -> LoginReply:
    """One more wrong answer: the reply that says how many tries are left, or ends the
    login at ``limit``."""
    flow.tries += 1
    if flow.tries >= limit:
        return LoginReply(f"Too many wrong {what}. Start again with /login.", done=True)
    return LoginReply(f"{again} ({limit - flow.tries} tries left), or /cancel.")


class LoginDesk:
    """Pending logins, at most `capacity`, each dropped after `timeout_s`."""

    def __init__(self, new_client: Callable[[str], Client], save: Callable, cipher_of,
                 capacity: int = 20, timeout_s: float = 300):
        self._new_client = new_client
        self._save = save  # async (user_id, encrypted blob) -> None
        self._cipher_of: Callable[[], SessionCipher | None] = cipher_of
        self.capacity = capacity
        self.timeout_s = timeout_s
        self._flows: dict[int, LoginFlow] = {}
        self._sweeper: asyncio.Task | None = None

    def pending(self, user_id: int) -> bool:
        flow = self._flows.get(int(user_id))
        return flow is not None and time.monotonic() - flow.started < self.timeout_s

    def step(self, user_id: int) -> str | None:
        flow = self._flows.get(int(user_id))
        return flow.step if flow else None

    def __len__(self) -> int:
        return len(self._flows)

    async def begin(self, user_id: int) -> str:
        user_id = int(user_id)
        await self.cancel(user_id)
        await self.sweep()
        if len(self._flows) >= self.capacity:
            raise LoginReply("Too many logins are in progress right now. Please try again in "
                             "a few minutes.", done=True)
        self._flows[user_id] = LoginFlow(user_id, self._new_client(f"login{user_id}"))
        self._ensure_sweeper()
        return PROMPTS[PHONE]

    async def cancel(self, user_id: int) -> bool:
        flow = self._flows.pop(int(user_id), None)
        if flow is None:
            return False
        await _disconnect(flow.client)
        return True

    async def handle(self, user_id: int, text: str) -> str:
        """Feed one message of the conversation; returns the next prompt or the result.
        Raises LoginReply for anything the user must fix or that ends the login."""
        flow = self._flows.get(int(user_id))
        if flow is None:
            raise LoginReply("No login in progress. Send /login to start.", done=True)
        async with flow.lock:
            try:
                if flow.step == PHONE:
                    return await self._phone(flow, text)
                if flow.step == CODE:
                    return await self._code(flow, text)
                return await self._password(flow, text)
            except LoginReply as reply:
                if reply.done:
                    await self.cancel(user_id)
                raise
            except floodwait.FAMILY as e:
                await self.cancel(user_id)
                raise LoginReply("Telegram limits login attempts for now: try again in "
                                 f"{_wait_text(int(e.value))} with /login.", done=True) from None
            except (OSError, TimeoutError, errors.RPCError) as e:
                log.warning("login of user %s failed at step %s: %s", user_id, flow.step,
                            type(e).__name__)
                await self.cancel(user_id)
                raise LoginReply("Telegram did not answer the login request. Please try "
                                 "again with /login.", done=True) from None

    async def _phone(self, flow: LoginFlow, text: str) -> str:
        phone = normalize_phone(text)
        if phone is None:
            raise LoginReply("That does not look like a phone number. Send it in "
                             "international format, e.g. +14155550123, or /cancel.")
        register_secret(phone)
        register_secret(phone.lstrip("+"))
        if not flow.client.is_connected:
            await flow.client.connect()
        try:
            sent = await flow.client.send_code(phone)
        except errors.PhoneNumberInvalid:
            raise LoginReply("Telegram says this phone number is invalid. Check it and send "
                             "it again, or /cancel.") from None
        except errors.PhoneNumberBanned:
            raise LoginReply("Telegram has banned this phone number.", done=True) from None
        except errors.PhoneNumberFlood:
            raise LoginReply("Telegram received too many login requests for this number. "
                             "Try again later with /login.", done=True) from None
        flow.phone, flow.code_hash = phone, sent.phone_code_hash
        flow.code_length = getattr(sent.type, "length", None) or getattr(sent, "length", None)
        flow.step, flow.tries = CODE, 0
        return PROMPTS[CODE]

    async def _code(self, flow: LoginFlow, text: str) -> str:
        code = extract_code(text, flow.code_length)
        if code is None:
            want = f"{flow.code_length} digits" if flow.code_length else "the digits"
            raise LoginReply(f"That is not the code: send {want}, with spaces between them, "
                             "or /cancel.")
        register_secret(code)
        try:
            result = await flow.client.sign_in(flow.phone, flow.code_hash, code)
        except errors.SessionPasswordNeeded:
            flow.step, flow.tries = PASSWORD, 0
            return PROMPTS[PASSWORD]
        except (errors.PhoneCodeInvalid, errors.PhoneCodeEmpty):
            raise _wrong(flow, MAX_CODE_TRIES, "codes", "That code is wrong. Check the code "
                         "Telegram sent you and try again") from None
        except errors.PhoneCodeExpired:
            raise LoginReply("That code has expired (or was sent unchanged in a chat, which "
                             "cancels it). Send /login to get a new one.", done=True) from None
        except errors.PhoneNumberUnoccupied:  # older layers' way of saying the same
            result = None
        if not isinstance(result, types.User):
            # False or TermsOfService (which has an id): the number has no account, and a
            # session saved now could not be used.
            raise LoginReply(NO_ACCOUNT, done=True)
        return await self._finish(flow)

    async def _password(self, flow: LoginFlow, text: str) -> str:
        register_secret(text)
        try:
            await flow.client.check_password(text)
        except errors.PasswordHashInvalid:
            raise _wrong(flow, MAX_PASSWORD_TRIES, "passwords",
                         "That password is wrong. Try again") from None
        return await self._finish(flow)

    async def _finish(self, flow: LoginFlow) -> str:
        cipher = self._cipher_of()
        if cipher is None:
            raise LoginReply("Logins are disabled on this bot.", done=True)
        session_string = await flow.client.export_session_string()
        register_secret(session_string)
        await self._save(flow.user_id, cipher.encrypt(session_string))
        del session_string
        me = await flow.client.get_me()
        # The session lives on in the database; this client is done.
        self._flows.pop(flow.user_id, None)
        await _disconnect(flow.client)
        log.info("Login completed for user %s", flow.user_id)
        name = " ".join(filter(None, [me.first_name, me.last_name])) or "your account"
        raise LoginReply(f"Logged in as {name}. I can now read private and protected chats "
                         "you are a member of. Send /logout to remove the session.", done=True)

    # ------------------------------------------------------------------ expiry

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="login-sweeper")

    async def _sweep_loop(self) -> None:
        while self._flows:
            await asyncio.sleep(min(30.0, self.timeout_s / 2))
            await self.sweep()

    async def sweep(self) -> int:
        now = time.monotonic()
        stale = [uid for uid, f in self._flows.items() if now - f.started >= self.timeout_s]
        for uid in stale:
            await self.cancel(uid)
        return len(stale)

    async def stop(self) -> None:
        if self._sweeper is not None:
            sweeper, self._sweeper = self._sweeper, None
            await cancel_and_wait(sweeper)
        for uid in list(self._flows):
            await self.cancel(uid)


async def _disconnect(client: Client) -> None:
    with contextlib.suppress(Exception):
        if client.is_connected:
            await client.disconnect()
    await stop_dc_sessions(client)
