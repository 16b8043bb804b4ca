"""The MTProto server: connections, the auth key exchange, sessions, RPC dispatch, updates."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import time
from dataclasses import dataclass, field
from hashlib import sha1
from io import BytesIO
from pathlib import Path
from typing import Any

from pyrogram import raw
from pyrogram.crypto import aes
from pyrogram.crypto.prime import CURRENT_DH_PRIME
from pyrogram.raw.core import Int, Long, MsgContainer, TLObject

from tgsim import crypto
from tgsim.faults import Faults, Throttle
from tgsim.file_refs import DEFAULT_TTL_S
from tgsim.file_limits import DEFAULT_MAX_FILE_REQUESTS, ExportLimit, FileRequestLimit
from tgsim.transport import Framing, detect
from tgsim.update_log import UpdateLog
from tgsim.world import DC_ID, World

log = logging.getLogger("tgsim")

# pq = p * q, both primes under 2**32 as the client's factoriser expects
_P, _Q = 1229739323, 1402015859
_PQ = (_P * _Q).to_bytes(8, "big")


class RpcFail(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


@dataclass
class AuthKey:
    key: bytes
    key_id: bytes
    salt: int
    # the DC it was made on: Telegram's DCs share no keys, and a key is authorised on each DC
    # by itself (core.telegram.org/api/datacenter)
    dc_id: int = DC_ID
    user_id: int | None = None
    created: float = field(default_factory=time.time)
    revoked: bool = False
    device_model: str | None = None  # from the last initConnection on this key


@dataclass
class Session:
    auth: AuthKey
    session_id: bytes
    conn: "Connection | None"
    created: float = field(default_factory=time.monotonic)
    last_msg_id: int = 0
    content_count: int = 0
    announced: bool = False
    no_updates: bool = False
    last_seen: float = field(default_factory=time.monotonic)
    # updates sent while this session's connection was down, for the same session coming
    # back on a new connection (see TgSim.push)
    undelivered: collections.deque = field(
        default_factory=lambda: collections.deque(maxlen=TgSim.SESSION_QUEUE))

    def next_msg_id(self, response: bool) -> int:
        base = int(time.time() * 2**32) & ~3
        if base <= self.last_msg_id:
            base = (self.last_msg_id + 4) & ~3
        self.last_msg_id = base | (1 if response else 3)
        return self.last_msg_id

    def next_seq(self, content: bool) -> int:
        if content:
            self.content_count += 1
            return self.content_count * 2 - 1
        return self.content_count * 2


class Connection:
    def __init__(self, sim: "TgSim", reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 dc_id: int = DC_ID, cdn: bool = False):
        self.sim = sim
        self.dc_id = dc_id  # the DC whose port it came in on
        self.cdn = cdn  # a connection to the CDN DC: its own RSA key, upload.getCdnFile only
        self.reader = reader
        self.writer = writer
        self.framing: Framing | None = None
        self.out_throttle = Throttle(sim.faults)
        self.in_throttle = Throttle(sim.faults)
        self.write_lock = asyncio.Lock()
        self.tasks: set[asyncio.Task] = set()
        self.auth: AuthKey | None = None
        self.handshake: dict[str, Any] = {}
        self.closed = False
        self.file_bytes_sent = 0
        self.device_model: str | None = None  # from initConnection: tells clients apart

    @property
    def user_id(self) -> int | None:
        return self.auth.user_id if self.auth and not self.auth.revoked else None

    async def send_raw(self, payload: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("closed")
        async with self.write_lock:
            await self.out_throttle.spend(len(payload))
            self.writer.write(self.framing.frame(payload))
            await self.writer.drain()

    async def send_plain(self, obj: TLObject, session_hint: int = 0) -> None:
        body = obj.write()
        msg_id = (int(time.time() * 2**32) & ~3) | 1
        await self.send_raw(bytes(8) + Long(msg_id) + Int(len(body)) + body)

    async def send_message(self, session: Session, body: bytes, *, response: bool,
                           content: bool = True) -> None:
        msg_id = session.next_msg_id(response)
        seq = session.next_seq(content)
        packet = crypto.pack_server(session.auth.key, session.auth.key_id, session.auth.salt,
                                    session.session_id, msg_id, seq, body)
        await self.send_raw(packet)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in list(self.tasks):
            task.cancel()
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - already gone
            pass


def rpc_result(req_msg_id: int, result: Any) -> bytes:
    payload = result if isinstance(result, bytes) else result.write()
    return Int(raw.types.RpcResult.ID, False) + Long(req_msg_id) + payload


def rpc_error(req_msg_id: int, code: int, message: str) -> bytes:
    return rpc_result(req_msg_id, raw.types.RpcError(error_code=code, error_message=message))


DC_IDS = (1, 2, 3, 4, 5)


def default_dc_ports(port: int) -> dict[int, int]:
    """DC 2 (where a new client starts) on `port`, DCs 1, 3, 4, 5 on port+1..port+4; all
    free ports when `port` is 0."""
    if not port:
        return {dc: 0 for dc in DC_IDS}
    others = [dc for dc in DC_IDS if dc != DC_ID]
    return {DC_ID: port, **{dc: port + 1 + i for i, dc in enumerate(others)}}


@contextlib.contextmanager
def _ends_connection(*expected: type[BaseException]):
    """What ends a connection's stage: a client gone or a bad packet is routine (debug), a
    cancel is the server stopping, anything else is tgsim's own bug (logged with its trace)."""
    try:
        yield
    except expected as e:
        log.debug("connection closed: %r", e)
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("connection failed")


class TgSim:
    """One simulated Telegram. `await start()` listens on 127.0.0.1, one port per DC: `port`
    for DC 2 (0 = free ports for all), the others from `dc_ports` ({dc: port}) or
    `default_dc_ports`. Each DC has its own auth keys, as Telegram's do."""

    # A session whose connection dropped keeps at most this many updates, for this long, for
    # the same session resuming on a new connection (an MTProto session belongs to the
    # client application, not to one TCP connection: core.telegram.org/mtproto). A new
    # session, i.e. a restarted client, gets none of them: it must call updates.getDifference.
    SESSION_QUEUE = 100
    SESSION_RESUME_S = 60.0
    INBOX_PACKETS = 2  # packets off the link, waiting for the server (see _on_connect)

    def __init__(self, data_dir: str | os.PathLike, port: int = 0, host: str = "127.0.0.1",
                 login_code: str = "12345", file_reference_ttl: float = DEFAULT_TTL_S,
                 dc_ports: dict[int, int] | None = None,
                 max_file_requests_per_account: int = DEFAULT_MAX_FILE_REQUESTS,
                 update_log_size: int = 1000):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port
        self.dc_ports = {**default_dc_ports(port), **(dc_ports or {})}
        self.dc_ports[DC_ID] = port
        # (dc, user id) -> auth.importAuthorization calls that succeeded on that DC, and
        # auth.exportAuthorization calls for that target DC, for tests
        self.imports: collections.Counter = collections.Counter()
        self.exports: collections.Counter = collections.Counter()
        self.key = crypto.load_or_create_key(self.data_dir / "server_key.pem")
        (self.data_dir / "public.pem").write_bytes(self.key.public_pem())
        self.world = World(self.data_dir, login_code=login_code,
                           file_reference_ttl=file_reference_ttl)
        self.faults = Faults()
        self.auth_keys: dict[bytes, AuthKey] = {}
        self.sessions: dict[tuple[bytes, bytes], Session] = {}
        self.connections: set[Connection] = set()
        # what getDifference serves; its size is the horizon past which a client gets
        # updates.differenceTooLong (core.telegram.org/api/updates, "Recovering gaps")
        self.updates = UpdateLog(update_log_size)
        self.callback_waiters: dict[int, asyncio.Future] = {}
        self.stats = collections.Counter()
        self.pending_login: dict[bytes, tuple[str, object]] = {}
        self.flooded_phones: dict[str, int] = {}  # phone -> FloodWait seconds on send_code
        self.exported_auth: dict[bytes, tuple[int, int]] = {}  # -> (user, target DC)
        self.srp_states: dict[int, object] = {}
        self._servers: dict[int, asyncio.base_events.Server] = {}
        # per-account file requests in flight and exported authorizations (tgsim/file_limits.py)
        self.file_limit = FileRequestLimit(max_file_requests_per_account)
        self.export_limit = ExportLimit()
        from tgsim import api, membership  # noqa: F401 - registers the handlers
        self.world.on_member_change = (
            lambda ch, uid, actor, before: membership.announce(self, ch, uid, actor, before))
        from tgsim.cdn import Cdn
        self.cdn = Cdn(self)
        from tgsim.key_places import RandomIds
        self.random_ids = RandomIds()  # RANDOM_ID_DUPLICATE (tgsim/key_places.py)
        self.duplicated_accounts: set[int] = set()  # AUTH_KEY_DUPLICATED was answered

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> "TgSim":
        for dc in DC_IDS:
            server = await asyncio.start_server(functools.partial(self._on_connect, dc),
                                                self.host, self.dc_ports[dc], limit=4 << 20)
            self._servers[dc] = server
            self.dc_ports[dc] = server.sockets[0].getsockname()[1]
        self.port = self.dc_ports[DC_ID]
        from tgsim.cdn import CDN_DC
        await self.cdn.start(functools.partial(self._on_connect, CDN_DC, cdn=True))
        log.info("tgsim listening on %s (CDN on %s)", self.server_spec, self.cdn.port)
        return self

    async def stop(self) -> None:
        for server in self._servers.values():
            server.close()
        await self.cdn.stop()
        for conn in list(self.connections):
            conn.close()
        for server in self._servers.values():
            try:
                await asyncio.wait_for(server.wait_closed(), 2)
            except asyncio.TimeoutError:
                pass
        self._servers.clear()

    @property
    def public_key_path(self) -> Path:
        return self.data_dir / "public.pem"

    @property
    def address(self) -> str:
        """host:port of DC 2, where a new client starts."""
        return f"{self.host}:{self.port}"

    @property
    def dc_table(self) -> dict[int, tuple[str, int]]:
        """{dc: (host, port)} of every DC, what the client library's DC table is for
        Telegram."""
        return {dc: (self.host, port) for dc, port in sorted(self.dc_ports.items())}

    @property
    def server_spec(self) -> str:
        """The product's TELEGRAM_SERVER value: DC 2 first, then every other DC as N=host:port."""
        return ",".join([self.address] + [f"{dc}={self.host}:{port}" for dc, port
                                          in sorted(self.dc_ports.items()) if dc != DC_ID])

    # test controls -----------------------------------------------------------------------
    def connection_count(self, user_id: int | None = None,
                         device_model: str | None = None, dc_id: int | None = None) -> int:
        """Live connections, of one account and/or one kind of client (its device_model),
        and/or on one DC."""
        live = [c for c in self.connections if not c.closed]
        if dc_id is not None:
            live = [c for c in live if c.dc_id == dc_id]
        if device_model is not None:
            live = [c for c in live if c.device_model == device_model]
        if user_id is None:
            return len(live)
        return sum(1 for c in live if c.auth and c.auth.user_id == user_id)

    def users_connected(self, device_model: str | None = None) -> set[int]:
        """Accounts with at least one live authorised connection (of that device_model)."""
        return {c.auth.user_id for c in self.connections
                if not c.closed and c.auth and c.auth.user_id
                and (device_model is None or c.device_model == device_model)}

    @property
    def file_reference_ttl(self) -> float:
        """Seconds a media's file_reference lives before it rotates (0: never)."""
        return self.world.file_refs.ttl

    @file_reference_ttl.setter
    def file_reference_ttl(self, seconds: float) -> None:
        self.world.file_refs.ttl = seconds

    def expire_file_reference(self, media_id: int) -> None:
        """Make every file_reference of that media stale now, as when Telegram rotates it:
        each request that names one from now on, parts already in flight included, gets
        FILE_REFERENCE_EXPIRED."""
        self.world.file_refs.expire(media_id)

    def drop_connections(self, user_id: int | None = None) -> int:
        dropped = 0
        for conn in list(self.connections):
            if user_id is None or (conn.auth and conn.auth.user_id == user_id):
                conn.close()
                dropped += 1
        return dropped

    def revoke(self, user_id: int, device_model: str | None = None) -> int:
        """Log an account out server-side (only its keys of one device_model when given, as
        when a user terminates one device): they answer AUTH_KEY_UNREGISTERED from now on."""
        count = 0
        for auth in self.auth_keys.values():
            if device_model is not None and auth.device_model != device_model:
                continue
            if auth.user_id == user_id and not auth.revoked:
                auth.revoked = True
                count += 1
        return count

    # connection loop ---------------------------------------------------------------------
    async def _on_connect(self, dc_id: int, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter, cdn: bool = False):
        conn = Connection(self, reader, writer, dc_id, cdn=cdn)
        self.connections.add(conn)
        self.stats["connections"] += 1
        # The link and the server are two stages, as on a real network: the next packet's
        # bytes travel (in_throttle's transmission time) while the server decrypts and
        # dispatches the one before. Doing both in one loop put the server's processing in
        # series with the wire, so a connection never reached its bandwidth cap (a 512 KiB
        # upload part at 10 MB/s is 52 ms on the wire plus ~6 ms of decrypting here).
        # The inbox is small, like a TCP receive window: a server slower than the link
        # stops the link, it does not queue without bound.
        inbox: asyncio.Queue = asyncio.Queue(maxsize=self.INBOX_PACKETS)
        server = asyncio.get_running_loop().create_task(self._serve(conn, inbox))
        conn.tasks.add(server)
        server.add_done_callback(conn.tasks.discard)
        try:
            with _ends_connection(asyncio.IncompleteReadError, ConnectionError, ValueError):
                conn.framing = await detect(reader)
                while not conn.closed and not server.done():
                    packet = await conn.framing.read(reader)
                    await conn.in_throttle.spend(len(packet))
                    await inbox.put(packet)
                if not server.done():
                    await inbox.put(None)  # the client is gone: the server finishes what came
                    await server
        finally:
            conn.close()
            self.connections.discard(conn)

    async def _serve(self, conn: Connection, inbox: asyncio.Queue) -> None:
        """The server side of one connection: its packets in order, as they come off the
        link; a packet that fails MTProto's checks closes the connection."""
        try:
            with _ends_connection(ConnectionError, ValueError, crypto.BadMessage):
                while (packet := await inbox.get()) is not None and not conn.closed:
                    if len(packet) < 8:
                        continue
                    if packet[:8] == bytes(8):
                        await self._handshake(conn, packet)
                    else:
                        await self._encrypted(conn, packet)
                    del packet
        finally:
            conn.close()  # its reader sees the end of the stream
            while not inbox.empty():  # and is not left waiting for room in the inbox
                inbox.get_nowait()

    # auth key exchange -------------------------------------------------------------------
    async def _handshake(self, conn: Connection, packet: bytes) -> None:
        length = int.from_bytes(packet[16:20], "little")
        req = TLObject.read(BytesIO(packet[20:20 + length]))
        hs = conn.handshake
        # a CDN DC has RSA keys of its own, published by help.getCdnConfig (core.telegram.org/cdn)
        key = self.cdn.key if conn.cdn else self.key
        if isinstance(req, (raw.functions.ReqPqMulti, raw.functions.ReqPq)):
            hs.clear()
            hs["nonce"] = req.nonce
            hs["server_nonce"] = int.from_bytes(os.urandom(16), "little", signed=True)
            await conn.send_plain(raw.types.ResPQ(
                nonce=req.nonce, server_nonce=hs["server_nonce"], pq=_PQ,
                server_public_key_fingerprints=[key.fingerprint]))
        elif isinstance(req, raw.functions.ReqDHParams):
            if req.nonce != hs.get("nonce") or req.server_nonce != hs.get("server_nonce"):
                raise ValueError("nonce mismatch")
            if req.public_key_fingerprint != key.fingerprint:
                raise ValueError("unknown fingerprint")
            plain = key.decrypt(req.encrypted_data)[-255:]
            inner = TLObject.read(BytesIO(plain[20:]))
            if sha1(inner.write()).digest() != plain[:20]:
                raise ValueError("bad inner hash")
            if inner.nonce != hs["nonce"] or inner.server_nonce != hs["server_nonce"]:
                raise ValueError("inner nonce mismatch")
            new_nonce = inner.new_nonce.to_bytes(32, "little", signed=True)
            server_nonce_b = hs["server_nonce"].to_bytes(16, "little", signed=True)
            tmp_key, tmp_iv = crypto.tmp_aes(new_nonce, server_nonce_b)
            a, g_a = crypto.new_dh_secret()
            answer = raw.types.ServerDHInnerData(
                nonce=hs["nonce"], server_nonce=hs["server_nonce"], g=crypto.DH_G,
                dh_prime=crypto.dh_prime_bytes(), g_a=g_a.to_bytes(256, "big"),
                server_time=int(time.time())).write()
            data = sha1(answer).digest() + answer
            data += os.urandom(-len(data) % 16)
            hs.update(a=a, new_nonce=new_nonce, tmp_key=tmp_key, tmp_iv=tmp_iv)
            await conn.send_plain(raw.types.ServerDHParamsOk(
                nonce=hs["nonce"], server_nonce=hs["server_nonce"],
                encrypted_answer=aes.ige256_encrypt(data, tmp_key, tmp_iv)))
        elif isinstance(req, raw.functions.SetClientDHParams):
            if "a" not in hs or req.nonce != hs["nonce"]:
                raise ValueError("unexpected set_client_DH_params")
            plain = aes.ige256_decrypt(req.encrypted_data, hs["tmp_key"], hs["tmp_iv"])
            inner = TLObject.read(BytesIO(plain[20:]))
            g_b = int.from_bytes(inner.g_b, "big")
            if not 1 < g_b < CURRENT_DH_PRIME - 1:
                raise ValueError("bad g_b")
            auth_key = pow(g_b, hs["a"], CURRENT_DH_PRIME).to_bytes(256, "big")
            key_id = crypto.auth_key_id(auth_key)
            new_nonce = hs["new_nonce"]
            server_nonce_b = hs["server_nonce"].to_bytes(16, "little", signed=True)
            salt = int.from_bytes(aes.xor(new_nonce[:8], server_nonce_b[:8]), "little", signed=True)
            self.auth_keys[key_id] = AuthKey(key=auth_key, key_id=key_id, salt=salt,
                                             dc_id=conn.dc_id)
            aux_hash = sha1(auth_key).digest()[:8]
            nn_hash = sha1(new_nonce + b"\x01" + aux_hash).digest()[-16:]
            await conn.send_plain(raw.types.DhGenOk(
                nonce=hs["nonce"], server_nonce=hs["server_nonce"],
                new_nonce_hash1=int.from_bytes(nn_hash, "little", signed=True)))
            hs.clear()
            self.stats["auth_keys"] += 1
        else:
            raise ValueError(f"unexpected plain message {type(req).__name__}")

    # encrypted traffic -------------------------------------------------------------------
    async def _encrypted(self, conn: Connection, packet: bytes) -> None:
        auth = self.auth_keys.get(packet[:8])
        if auth is None or auth.dc_id != conn.dc_id:
            # a key made on another DC is unknown here: transport error -404, as for any
            # unknown key (core.telegram.org/mtproto/mtproto-transports, "Transport errors")
            await conn.send_raw(Int(-404))
            conn.close()
            return
        salt, session_id, message = crypto.unpack_client(packet, auth.key)
        if conn.auth is not auth:
            conn.auth = auth
            if auth.user_id is not None:
                from tgsim.key_places import check_duplicate
                check_duplicate(self, conn)  # one key, two processes (tgsim/key_places.py)
        skey = (auth.key_id, session_id)
        session = self.sessions.get(skey)
        if session is None:
            session = self.sessions[skey] = Session(auth=auth, session_id=session_id, conn=conn)
        resumed = session.conn is not conn
        if time.monotonic() - session.last_seen > self.SESSION_RESUME_S:
            session.undelivered.clear()  # too late to resume: getDifference has them
        session.conn = conn
        session.last_seen = time.monotonic()
        if salt != auth.salt:
            await conn.send_message(session, raw.types.BadServerSalt(
                bad_msg_id=message.msg_id, bad_msg_seqno=message.seq_no, error_code=48,
                new_server_salt=auth.salt).write(), response=True, content=False)
            return
        if not session.announced:
            session.announced = True
            await conn.send_message(session, raw.types.NewSessionCreated(
                first_msg_id=message.msg_id, unique_id=int.from_bytes(os.urandom(8), "little", signed=True),
                server_salt=auth.salt).write(), response=False)
        if resumed and session.undelivered:
            self._resume(session)
        messages = message.body.messages if isinstance(message.body, MsgContainer) else [message]
        for msg in messages:
            self._handle_message(conn, session, msg)

    def _handle_message(self, conn: Connection, session: Session, msg) -> None:
        body = msg.body
        if isinstance(body, raw.types.MsgsAck):
            return
        if isinstance(body, (raw.functions.Ping, raw.functions.PingDelayDisconnect)):
            self._spawn(conn, conn.send_message(session, raw.types.Pong(
                msg_id=msg.msg_id, ping_id=body.ping_id).write(), response=True))
            return
        if isinstance(body, raw.functions.DestroySession):
            self._spawn(conn, conn.send_message(session, rpc_result(
                msg.msg_id, raw.types.DestroySessionOk(session_id=body.session_id)),
                response=True))
            return
        if isinstance(body, (raw.types.MsgsStateReq, raw.types.MsgResendReq)):
            return
        self._spawn(conn, self._rpc(conn, session, msg.msg_id, body))

    def _spawn(self, conn: Connection, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)

    async def _rpc(self, conn: Connection, session: Session, req_msg_id: int, query) -> None:
        no_updates = False
        while True:  # unwrap invokeWithLayer, initConnection and friends
            if isinstance(query, raw.functions.InvokeWithoutUpdates):
                no_updates = session.no_updates = True
            if isinstance(query, raw.functions.InitConnection):
                conn.device_model = session.auth.device_model = query.device_model
            if isinstance(query, (raw.functions.InvokeWithLayer, raw.functions.InitConnection,
                                  raw.functions.InvokeWithoutUpdates,
                                  raw.functions.InvokeAfterMsg,
                                  raw.functions.InvokeWithTakeout)):
                query = query.query
                continue
            break
        name = ".".join(query.QUALNAME.split(".")[1:])
        self.stats[name] += 1
        account = conn.user_id
        slot = self.file_limit.enter(name, account)  # in flight from receipt to answer
        try:
            await self._answer(conn, session, req_msg_id, query, name, no_updates, slot)
        finally:
            if slot:
                self.file_limit.leave(account)

    async def _answer(self, conn: Connection, session: Session, req_msg_id: int, query,
                      name: str, no_updates: bool, slot: bool | None) -> None:
        from tgsim.api import Call, dispatch
        from tgsim.cdn import check_dc
        from tgsim.key_places import refuse_if_duplicated

        try:
            delay = self.faults.delay_for(name)
            if delay:
                await asyncio.sleep(delay)
            check_dc(conn, name)
            refuse_if_duplicated(session.auth)
            if slot is False:  # over the account's cap of file requests in flight
                self.stats["file_cap_floods"] += 1
                raise RpcFail(420, f"FLOOD_WAIT_{self.file_limit.wait_s}")
            error = self.faults.next_error(name)
            if error:
                raise RpcFail(*error)
            flood = self.faults.flood_error(name, conn.user_id)
            if flood is not None:
                self.stats["flood_waits"] += 1
                raise RpcFail(420, flood)
            call = Call(self, conn, session, no_updates)
            result = await dispatch(call, name, query)
            payload = rpc_result(req_msg_id, result)
            held = self.faults.answer_latency_s.get(name)
            if held:
                await asyncio.sleep(held)
        except RpcFail as e:
            payload = rpc_error(req_msg_id, e.code, e.message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("handler for %s failed", name)
            payload = rpc_error(req_msg_id, 500, "INTERNAL_SERVER_ERROR")
        try:
            await conn.send_message(session, payload, response=True)
        except (ConnectionError, OSError):
            pass

    # updates -----------------------------------------------------------------------------
    def _updates_session(self, user_id: int) -> Session | None:
        """The oldest live session of each key of the account gets its updates, as the main
        session of a client is the first it opens (media sessions come later). Only keys of
        the account's home DC: keys imported elsewhere are for files."""
        best: Session | None = None
        acc = self.world.accounts.get(user_id)
        home = acc.dc_id if acc is not None else DC_ID
        for s in self.sessions.values():
            if (s.auth.user_id != user_id or s.auth.revoked or s.no_updates or s.conn is None
                    or s.conn.closed or s.auth.dc_id != home):
                continue
            if best is None or s.created < best.created:
                best = s
        return best

    def _resumable_session(self, user_id: int) -> Session | None:
        """The account's updates session whose connection dropped lately, if any."""
        now = time.monotonic()
        best: Session | None = None
        acc = self.world.accounts.get(user_id)
        home = acc.dc_id if acc is not None else DC_ID
        for s in self.sessions.values():
            if (s.auth.user_id != user_id or s.auth.revoked or s.no_updates
                    or s.auth.dc_id != home or now - s.last_seen > self.SESSION_RESUME_S):
                continue
            if best is None or s.last_seen > best.last_seen:
                best = s
        return best

    def push(self, user_id: int, updates: TLObject) -> None:
        """Send an Updates container to the account's live updates session. Nothing is kept
        for an account with no session: what happened meanwhile is in the update log, for
        updates.getDifference (core.telegram.org/api/updates, "Recovering gaps")."""
        acc = self.world.accounts.get(user_id)
        if acc is not None and isinstance(updates, raw.types.Updates):
            acc.seq += 1
            updates.seq = acc.seq
        session = self._updates_session(user_id)
        if session is None:
            session = self._resumable_session(user_id)
            if session is not None:
                session.undelivered.append(updates)
            return
        conn = session.conn
        self._spawn(conn, self._send_update(conn, session, updates))

    def _resume(self, session: Session) -> None:
        """The same session is back on a new connection: it gets what was sent to it while
        the connection was down, if that was recent."""
        queued = list(session.undelivered)
        session.undelivered.clear()
        for updates in queued:
            self._spawn(session.conn, self._send_update(session.conn, session, updates))

    async def _send_update(self, conn: Connection, session: Session, updates: TLObject) -> None:
        try:
            await conn.send_message(session, updates.write(), response=False)
        except (ConnectionError, OSError):
            session.undelivered.append(updates)  # for the same session, should it resume
