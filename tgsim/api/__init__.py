"""RPC handlers, one module a namespace. `dispatch` finds the handler for a query's name."""

from __future__ import annotations

import time
from typing import Awaitable, Callable

from pyrogram import raw

from tgsim.access_hash import for_viewer
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
        if isinstance(p, (raw.types.InputUserFromMessage, raw.types.InputPeerUserFromMessage)):
            return self._min_peer(p, "user")
        uid = getattr(p, "user_id", None)
        acc = self.world.accounts.get(uid) if uid is not None else None
        if acc is None:
            raise RpcFail(400, "USER_ID_INVALID")
        if not self._hash_ok(getattr(p, "access_hash", 0), acc.access_hash, member=False):
            # core.telegram.org/api/peers: only the access_hash this account was given works
            raise RpcFail(400, "USER_ID_INVALID")
        return acc

    def _hash_ok(self, given: int, base: int, *, member: bool) -> bool:
        """The account's own hash for the peer; access_hash 0 only where the world was told
        to be lenient (strict_access_hash False), and then only for a member's channel."""
        if given == for_viewer(base, self.me.id):
            return True
        return given == 0 and member and not self.world.strict_access_hash

    def _min_peer(self, p, kind: str):
        """input*FromMessage (core.telegram.org/api/min): a peer seen in a message of a chat
        this account can read; that message must mention it."""
        _, where = self.peer_from_input(p.peer)
        box = where.messages if isinstance(where, Channel) else self.me.box
        msg = box.get(p.msg_id)
        pid = p.user_id if kind == "user" else p.channel_id
        fwd = getattr(getattr(msg, "fwd_from", None), "from_id", None)
        mentioned = msg is not None and (
            (kind == "user" and (msg.from_id == pid or getattr(fwd, "user_id", None) == pid))
            or (kind == "channel" and (msg.peer == ("channel", pid)
                                       or getattr(fwd, "channel_id", None) == pid)))
        target = (self.world.accounts if kind == "user" else self.world.channels).get(pid)
        if not mentioned or target is None:
            raise RpcFail(400, "USER_ID_INVALID" if kind == "user" else "CHANNEL_INVALID")
        return target

    def channel_from_input(self, p, *, need_member: bool = False) -> Channel:
        me = self.me
        if isinstance(p, (raw.types.InputPeerChannelFromMessage,
                          raw.types.InputChannelFromMessage)):
            ch = self._min_peer(p, "channel")
        else:
            cid = getattr(p, "channel_id", None)
            ch = self.world.channels.get(cid) if cid is not None else None
            # core.telegram.org/api/peers: a channel's access_hash is the one this account
            # was given (each account sees its own); 0 or another account's is refused, as
            # channels.getChannels and every channel method answer CHANNEL_INVALID.
            if ch is None or not self._hash_ok(getattr(p, "access_hash", 0), ch.access_hash,
                                               member=me.id in ch.members):
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
            try:
                return "user", self.user_from_input(p)
            except RpcFail as e:
                if e.message == "USER_ID_INVALID":  # messages.* name a bad peer this way
                    raise RpcFail(400, "PEER_ID_INVALID") from None
                raise
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
