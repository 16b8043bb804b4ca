"""RPC handlers, one module a namespace. `dispatch` finds the handler for a query's name."""

from __future__ import annotations

import time
from typing import Awaitable, Callable

from pyrogram import raw

from tgsim.server import RpcFail
from tgsim.world import Account, Channel

Handler = Callable[["Call", object], Awaitable[object]]
HANDLERS: dict[str, Handler] = {}
NO_AUTH = {"help.GetConfig", "help.GetNearestDc", "auth.SendCode", "auth.SignIn", "auth.SignUp",
           "auth.ImportBotAuthorization", "auth.CheckPassword", "account.GetPassword",
           "auth.ImportAuthorization", "auth.LogOut", "help.GetAppConfig", "auth.ResendCode",
           "auth.CancelCode", "upload.GetCdnFile"}  # CDN keys are never authorized


def handles(*names: str):
    def register(fn: Handler) -> Handler:
        for name in names:
            HANDLERS[name] = fn
        return fn
    return register


class Call:
    """One RPC in flight: who asks, on which connection and session."""

    def __init__(self, sim, conn, session, no_updates: bool):
        self.sim = sim
        self.world = sim.world
        self.conn = conn
        self.session = session
        self.auth = session.auth
        self.no_updates = no_updates
        self.dc_id = conn.dc_id  # the DC this call came in on

    @property
    def me(self) -> Account:
        auth = self.auth
        if auth.revoked:
            raise RpcFail(401, "AUTH_KEY_UNREGISTERED")
        if auth.user_id is None:
            raise RpcFail(401, "AUTH_KEY_UNREGISTERED")
        acc = self.world.accounts.get(auth.user_id)
        if acc is None:
            raise RpcFail(401, "AUTH_KEY_UNREGISTERED")
        if acc.deactivated:
            raise RpcFail(401, "USER_DEACTIVATED")
        return acc

    @staticmethod
    def now() -> int:
        return int(time.time())

    # peers ------------------------------------------------------------------------------
    def user_from_input(self, p) -> Account:
        me = self.me
        if isinstance(p, (raw.types.InputUserSelf, raw.types.InputPeerSelf)):
            return me
        uid = getattr(p, "user_id", None)
        acc = self.world.accounts.get(uid) if uid is not None else None
        if acc is None:
            raise RpcFail(400, "USER_ID_INVALID")
        if getattr(p, "access_hash", 0) not in (0, acc.access_hash):
            raise RpcFail(400, "USER_ID_INVALID")
        return acc

    def channel_from_input(self, p, *, need_member: bool = False) -> Channel:
        if isinstance(p, raw.types.InputPeerChannelFromMessage):
            p = p.peer
        cid = getattr(p, "channel_id", None)
        ch = self.world.channels.get(cid) if cid is not None else None
        if ch is None:
            raise RpcFail(400, "CHANNEL_INVALID")
        me = self.me
        if getattr(p, "access_hash", 0) != ch.access_hash:
            # access_hash 0 is accepted for members, as Telegram does for min peers
            if (getattr(p, "access_hash", 0) != 0 or me.id not in ch.members
                    or self.world.strict_access_hash):
                raise RpcFail(400, "CHANNEL_INVALID")
        if need_member and ch.username is None and me.id not in ch.members:
            raise RpcFail(400, "CHANNEL_PRIVATE")
        return ch

    def peer_from_input(self, p) -> tuple[str, Account | Channel]:
        if isinstance(p, (raw.types.InputPeerChannel, raw.types.InputChannel,
                          raw.types.InputPeerChannelFromMessage)):
            return "channel", self.channel_from_input(p, need_member=True)
        if isinstance(p, (raw.types.InputPeerUser, raw.types.InputUser, raw.types.InputPeerSelf,
                          raw.types.InputUserSelf, raw.types.InputPeerUserFromMessage)):
            if isinstance(p, raw.types.InputPeerUserFromMessage):
                p = raw.types.InputPeerUser(user_id=p.user_id, access_hash=0)
            return "user", self.user_from_input(p)
        if isinstance(p, raw.types.InputPeerChat):
            raise RpcFail(400, "CHAT_ID_INVALID")
        raise RpcFail(400, "PEER_ID_INVALID")


async def dispatch(call: Call, name: str, query) -> object:
    handler = HANDLERS.get(name)
    if handler is None:
        raise RpcFail(400, f"METHOD_NOT_SUPPORTED_BY_TGSIM_{name.replace('.', '_').upper()}")
    if name not in NO_AUTH:
        call.me  # noqa: B018 - raises 401 for unauthorised keys
    return await handler(call, query)


from tgsim.api import auth, cdn, channels, messages, misc, upload  # noqa: E402,F401
