"""auth.* and account.getPassword: phone code sign-in/up, SRP 2FA, bot tokens, log out."""

from __future__ import annotations

import hashlib
import os
import secrets

from pyrogram import raw
from pyrogram.crypto.prime import CURRENT_DH_PRIME

from tgsim.api import Call, handles
from tgsim.api.convert import user
from tgsim.server import DC_IDS, RpcFail

SRP_G = 3
TERMS = raw.types.help.TermsOfService(
    id=raw.types.DataJSON(data='"tgsim-tos-1"'), text="tgsim terms of service.", entities=[],
    popup=True)


def _home_dc_only(call: Call, phone: str) -> None:
    """A phone logs in on its home DC only: elsewhere Telegram answers 303 PHONE_MIGRATE_X
    and the client moves there with a new key (core.telegram.org/api/datacenter,
    "Registration/Authorization"; the 303 SEE_OTHER family in core.telegram.org/api/errors)."""
    home = call.world.phone_dc(phone)
    if home != call.dc_id:
        raise RpcFail(303, f"PHONE_MIGRATE_{home}")


def _h(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def _itob(x: int) -> bytes:
    return x.to_bytes(256, "big")


def _password_x(password: str, salt1: bytes, salt2: bytes) -> int:
    h1 = _h(salt1, password.encode(), salt1)
    h2 = _h(salt2, h1, salt2)
    h3 = hashlib.pbkdf2_hmac("sha512", h2, salt1, 100000)
    return int.from_bytes(_h(salt2, h3, salt2), "big")


class SrpState:
    """One account's password verifier and the server half of the current SRP round."""

    def __init__(self, password: str):
        self.salt1 = os.urandom(40)
        self.salt2 = os.urandom(16)
        self.v = pow(SRP_G, _password_x(password, self.salt1, self.salt2), CURRENT_DH_PRIME)
        self.rounds: dict[int, tuple[int, bytes]] = {}  # srp_id -> (b, B)

    def algo(self):
        return raw.types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
            salt1=self.salt1, salt2=self.salt2, g=SRP_G, p=_itob(CURRENT_DH_PRIME))

    def new_round(self) -> tuple[int, bytes]:
        p = CURRENT_DH_PRIME
        k = int.from_bytes(_h(_itob(p), _itob(SRP_G)), "big")
        b = int.from_bytes(os.urandom(256), "big")
        big_b = _itob((k * self.v + pow(SRP_G, b, p)) % p)
        srp_id = int.from_bytes(os.urandom(8), "little", signed=True)
        self.rounds = {srp_id: (b, big_b)}  # one round at a time, like Telegram
        return srp_id, big_b

    def check(self, srp_id: int, a_bytes: bytes, m1: bytes) -> bool:
        round_ = self.rounds.pop(srp_id, None)
        if round_ is None:
            return False
        b, big_b = round_
        p = CURRENT_DH_PRIME
        a_int = int.from_bytes(a_bytes, "big")
        if not 0 < a_int < p:
            return False
        u = int.from_bytes(_h(_itob(a_int), big_b), "big")
        s = pow(a_int * pow(self.v, u, p) % p, b, p)
        k_bytes = _h(_itob(s))
        hp, hg = _h(_itob(p)), _h(_itob(SRP_G))
        expected = _h(bytes(x ^ y for x, y in zip(hp, hg)), _h(self.salt1), _h(self.salt2),
                      _itob(a_int), big_b, k_bytes)
        return secrets.compare_digest(expected, m1)


def _srp(call: Call, acc) -> SrpState:
    states = call.sim.srp_states
    state = states.get(acc.id)
    if state is None or state.password != acc.password:
        state = SrpState(acc.password)
        state.password = acc.password
        states[acc.id] = state
    return state


def _authorize(call: Call, acc) -> raw.types.auth.Authorization:
    call.auth.user_id = acc.id
    call.auth.revoked = False
    call.sim.pending_login.pop(call.auth.key_id, None)
    return raw.types.auth.Authorization(user=user(acc, acc.id))


def _check_app(call: Call, q) -> None:
    # https://core.telegram.org/method/auth.sendCode and
    # https://core.telegram.org/method/auth.importBotAuthorization: 400 API_ID_INVALID for an
    # api_id / api_hash pair that is not a registered application.
    if call.world.apps.get(q.api_id) != q.api_hash:
        raise RpcFail(400, "API_ID_INVALID")


@handles("auth.SendCode")
async def send_code(call: Call, q):
    _check_app(call, q)
    phone = q.phone_number.strip().lstrip("+").replace(" ", "")
    if not phone.isdigit() or not 5 <= len(phone) <= 15:
        raise RpcFail(400, "PHONE_NUMBER_INVALID")
    _home_dc_only(call, phone)
    if phone in call.sim.flooded_phones:
        raise RpcFail(420, f"FLOOD_WAIT_{call.sim.flooded_phones[phone]}")
    code_hash = secrets.token_hex(8)
    call.world.phone_codes[code_hash] = phone
    return raw.types.auth.SentCode(
        type=raw.types.auth.SentCodeTypeApp(length=len(call.world.login_code)),
        phone_code_hash=code_hash, timeout=60)


def _check_code(call: Call, q) -> str:
    phone = q.phone_number.strip().lstrip("+").replace(" ", "")
    if call.world.phone_codes.get(q.phone_code_hash) != phone:
        raise RpcFail(400, "PHONE_CODE_EXPIRED")
    return phone


@handles("auth.SignIn")
async def sign_in(call: Call, q):
    phone = _check_code(call, q)
    _home_dc_only(call, phone)
    if q.phone_code != call.world.login_code:
        raise RpcFail(400, "PHONE_CODE_INVALID")
    acc = call.world.account_by_phone(phone)
    if acc is None:
        # core.telegram.org/api/auth: an unregistered number gets
        # auth.authorizationSignUpRequired carrying the terms of service to accept.
        call.sim.pending_login[call.auth.key_id] = ("signup", phone)
        return raw.types.auth.AuthorizationSignUpRequired(terms_of_service=TERMS)
    call.world.phone_codes.pop(q.phone_code_hash, None)
    if acc.password:
        call.sim.pending_login[call.auth.key_id] = ("password", acc.id)
        raise RpcFail(401, "SESSION_PASSWORD_NEEDED")
    return _authorize(call, acc)


@handles("auth.SignUp")
async def sign_up(call: Call, q):
    phone = _check_code(call, q)
    if call.world.account_by_phone(phone):
        raise RpcFail(400, "PHONE_NUMBER_OCCUPIED")
    if not q.first_name.strip():
        raise RpcFail(400, "FIRSTNAME_INVALID")
    call.world.phone_codes.pop(q.phone_code_hash, None)
    acc = call.world.add_user(phone, first_name=q.first_name, password=None)
    return _authorize(call, acc)


def _pending_password_account(call: Call):
    pending = call.sim.pending_login.get(call.auth.key_id)
    if pending and pending[0] == "password":
        return call.world.accounts[pending[1]]
    if call.auth.user_id and not call.auth.revoked:
        return call.world.accounts.get(call.auth.user_id)
    return None


@handles("account.GetPassword")
async def get_password(call: Call, q):
    acc = _pending_password_account(call)
    if acc is None:
        raise RpcFail(401, "AUTH_KEY_UNREGISTERED")
    algo_new = raw.types.PasswordKdfAlgoUnknown()
    secure_new = raw.types.SecurePasswordKdfAlgoUnknown()
    if not acc.password:
        return raw.types.account.Password(new_algo=algo_new, new_secure_algo=secure_new,
                                          secure_random=os.urandom(32))
    state = _srp(call, acc)
    srp_id, big_b = state.new_round()
    return raw.types.account.Password(
        has_password=True, current_algo=state.algo(), srp_B=big_b, srp_id=srp_id,
        hint="tgsim", new_algo=algo_new, new_secure_algo=secure_new,
        secure_random=os.urandom(32))


@handles("auth.CheckPassword")
async def check_password(call: Call, q):
    pending = call.sim.pending_login.get(call.auth.key_id)
    if not pending or pending[0] != "password":
        raise RpcFail(400, "PASSWORD_HASH_INVALID")
    acc = call.world.accounts[pending[1]]
    pwd = q.password
    if not isinstance(pwd, raw.types.InputCheckPasswordSRP):
        raise RpcFail(400, "PASSWORD_HASH_INVALID")
    if not _srp(call, acc).check(pwd.srp_id, pwd.A, pwd.M1):
        raise RpcFail(400, "PASSWORD_HASH_INVALID")
    return _authorize(call, acc)


@handles("auth.ImportBotAuthorization")
async def import_bot(call: Call, q):
    _check_app(call, q)
    uid = call.world.by_token.get(q.bot_auth_token)
    if uid is None:
        raise RpcFail(400, "ACCESS_TOKEN_INVALID")
    bot = call.world.accounts[uid]
    if bot.dc_id != call.dc_id:  # USER_MIGRATE_X: the account lives on DC X
        raise RpcFail(303, f"USER_MIGRATE_{bot.dc_id}")
    return _authorize(call, bot)


# Exported authorizations waiting for their import, capped: a client that never imports
# must not grow the table (Telegram's tokens are short-lived too).
MAX_EXPORTED = 1024


@handles("auth.ExportAuthorization")
async def export_auth(call: Call, q):
    """Bytes that authorise a key on DC `dc_id`, for auth.importAuthorization there; the DC
    must be another one (DC_ID_INVALID, core.telegram.org/method/auth.exportAuthorization)."""
    me = call.me
    if q.dc_id not in DC_IDS or q.dc_id == call.dc_id:
        raise RpcFail(400, "DC_ID_INVALID")
    # once per DC and kept, or flooded (tgsim/file_limits.py; core.telegram.org/api/datacenter)
    wait = call.sim.export_limit.check(me.id, q.dc_id)
    if wait is not None:
        raise RpcFail(420, f"FLOOD_WAIT_{wait}")
    call.sim.exports[(q.dc_id, me.id)] += 1
    token = os.urandom(32)
    exported = call.sim.exported_auth
    exported[token] = (me.id, q.dc_id)
    while len(exported) > MAX_EXPORTED:
        exported.pop(next(iter(exported)))
    return raw.types.auth.ExportedAuthorization(id=me.id, bytes=token)


@handles("auth.ImportAuthorization")
async def import_auth(call: Call, q):
    """Authorise this DC's key as the exporting account: only on the DC the bytes were
    exported for, once (core.telegram.org/api/datacenter)."""
    uid, dc = call.sim.exported_auth.pop(q.bytes, (None, None))
    if uid is None or dc != call.dc_id:
        raise RpcFail(400, "AUTH_BYTES_INVALID")
    if uid != q.id:
        raise RpcFail(400, "USER_ID_INVALID")
    call.sim.imports[(call.dc_id, uid)] += 1
    return _authorize(call, call.world.accounts[uid])


@handles("auth.LogOut")
async def log_out(call: Call, q):
    call.auth.user_id = None
    return raw.types.auth.LoggedOut()
