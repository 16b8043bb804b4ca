"""The simulated Telegram's state: accounts, channels, messages and files.

Messages and metadata live in memory (a simulator's world is test-sized); file contents live on
disk under the data directory and are only ever read in the slices a request asks for.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tgsim.file_refs import DEFAULT_TTL_S, FileRefs

DC_ID = 2


def _rand_long() -> int:
    return int.from_bytes(os.urandom(8), "little", signed=True)


@dataclass
class Media:
    kind: str  # "document" | "photo"
    id: int
    access_hash: int
    path: Path
    size: int
    date: int
    mime_type: str = "application/octet-stream"
    attributes: list = field(default_factory=list)  # raw DocumentAttribute* objects
    thumb_path: Path | None = None
    thumb_size: int = 0
    w: int = 800
    h: int = 600
    dc_id: int = DC_ID  # the DC a client must fetch it from; another one makes it open more sessions
    album_kind: str | None = None  # as uploaded (force_file makes a file); None: from attributes
    refs: FileRefs | None = field(default=None, repr=False, compare=False)  # set by add_media


@dataclass
class Msg:
    id: int
    peer: tuple[str, int]  # ("user", id) seen from the box owner, or ("channel", id)
    date: int
    text: str = ""
    from_id: int | None = None
    entities: list | None = None
    media: Media | None = None
    grouped_id: int | None = None
    reply_to: int | None = None
    top_id: int | None = None  # forum topic
    edit_date: int | None = None
    reply_markup: Any = None
    twin: tuple[int, int] | None = None  # (other account, its message id) in private chats
    fwd_from: Any = None
    action: Any = None  # service message action


@dataclass
class Account:
    id: int
    access_hash: int
    first_name: str
    username: str | None = None
    phone: str | None = None
    bot: bool = False
    bot_token: str | None = None
    password: str | None = None
    premium: bool = False
    deactivated: bool = False
    next_msg_id: int = 1
    pts: int = 1
    seq: int = 0  # the Updates containers pushed to the account (core.telegram.org/api/updates)
    qts: int = 0  # secret chats and bots' participant updates (core.telegram.org/api/updates)
    box: dict[int, Msg] = field(default_factory=dict)
    bot_commands: list = field(default_factory=list)
    # the home DC: a login elsewhere is sent there (PHONE_MIGRATE_X / USER_MIGRATE_X)
    dc_id: int = DC_ID

    def new_msg_id(self) -> int:
        mid = self.next_msg_id
        self.next_msg_id += 1
        return mid


@dataclass
class Topic:
    id: int
    title: str
    date: int


@dataclass
class Channel:
    id: int
    access_hash: int
    title: str
    creator_id: int
    date: int
    username: str | None = None
    broadcast: bool = True
    megagroup: bool = False
    forum: bool = False
    noforwards: bool = False
    about: str = ""
    members: set[int] = field(default_factory=set)
    admins: set[int] = field(default_factory=set)
    invite_hash: str | None = None
    messages: dict[int, Msg] = field(default_factory=dict)
    next_msg_id: int = 1
    pts: int = 1
    topics: dict[int, Topic] = field(default_factory=dict)

    def new_msg_id(self) -> int:
        mid = self.next_msg_id
        self.next_msg_id += 1
        return mid


@dataclass
class Upload:
    """Parts of a file being uploaded. A small file's parts (saveFilePart: how many is known
    only when the file is named) are kept as separate files and joined then; a big file's
    (saveBigFilePart: all but the last of one size, checked as each arrives) are written at
    their offsets in one file as they arrive, so naming it costs no copy: joining 512 MB
    took tgsim ~2 s after the last part, time in which the client only waits, which
    Telegram's storage does not make it do."""
    dir: Path
    sizes: dict[int, int] = field(default_factory=dict)  # part -> bytes, for the geometry rules
    total_parts: int | None = None
    touched: float = field(default_factory=time.monotonic)
    part_size: int | None = None  # a big file's size of every part but the last

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def place(self, part: int, data: bytes) -> None:
        """A big file's part at its offset; the last one waits in a file of its own until
        the part size is known."""
        last = part == self.total_parts - 1
        if not last and self.part_size is None:
            self.part_size = len(data)
            pending = self.dir / "last"
            if pending.exists():
                self._write(self.total_parts - 1, pending.read_bytes())
                pending.unlink()
        if self.part_size is None:
            (self.dir / "last").write_bytes(data)
        else:
            self._write(part, data)

    def _write(self, part: int, data: bytes) -> None:
        fd = os.open(self.data, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, data, part * self.part_size)
        finally:
            os.close(fd)

    def placed(self, parts: int) -> int | None:
        """The size of the file written in place (all `parts` checked present), or None for
        a file kept in parts."""
        if self.total_parts is None:
            return None
        if self.part_size is None:  # one part only: it is the last
            self.part_size = self.sizes[parts - 1]
            self._write(parts - 1, (self.dir / "last").read_bytes())
        size = (parts - 1) * self.part_size + self.sizes[parts - 1]
        os.truncate(self.data, size)  # a last part sent again shorter leaves no tail
        return size


class World:
    MAX_UPLOADS = 512

    def __init__(self, data_dir: Path, login_code: str = "12345",
                 file_reference_ttl: float = DEFAULT_TTL_S):
        self.data_dir = data_dir
        self.files_dir = data_dir / "files"
        self.uploads_dir = data_dir / "uploads"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        self.login_code = login_code
        # Registered applications (api_id -> api_hash, https://core.telegram.org/myapp): a
        # login with any other pair is refused with API_ID_INVALID, as Telegram does.
        self.apps: dict[int, str] = {12345: "0123456789abcdef0123456789abcdef"}
        # every media's file_reference rotates after this many seconds (tgsim/file_refs.py)
        self.file_refs = FileRefs(file_reference_ttl)
        # Each account has its own access_hash for a peer (tgsim/access_hash.py) and only that
        # one works. False lets members pass access_hash 0 for their channels: lenient, for
        # a test that says why (core.telegram.org/api/peers).
        self.strict_access_hash = True
        # (channel, user_id, actor_id, (was member, was admin)) after a membership change, so
        # the server can send the member what Telegram sends (tgsim/membership.py)
        self.on_member_change: Callable[[Channel, int, int | None, tuple], None] | None = None
        # (key, file id) -> the join of a finished upload, for a client that asks again
        self.finished_uploads: dict[tuple[bytes, int], asyncio.Future] = {}
        self.accounts: dict[int, Account] = {}
        self.by_phone: dict[str, int] = {}
        self.by_username: dict[str, tuple[str, int]] = {}
        self.by_token: dict[str, int] = {}
        self.channels: dict[int, Channel] = {}
        self.media: dict[int, Media] = {}
        self.uploads: dict[tuple[bytes, int], Upload] = {}
        self.phone_codes: dict[str, str] = {}  # phone_code_hash -> phone
        # the home DC of a phone not registered yet (a test's choice; DC 2 when absent)
        self.phone_dcs: dict[str, int] = {}
        self._user_ids = itertools.count(100001)
        self._channel_ids = itertools.count(1000000001)

    # accounts ---------------------------------------------------------------------------
    def add_user(self, phone: str, first_name: str = "User", username: str | None = None,
                 password: str | None = None, premium: bool = False,
                 dc_id: int | None = None) -> Account:
        acc = Account(id=next(self._user_ids), access_hash=_rand_long(), first_name=first_name,
                      username=username, phone=phone, password=password, premium=premium,
                      dc_id=dc_id or self.phone_dcs.get(phone, DC_ID))
        self.accounts[acc.id] = acc
        self.by_phone[phone] = acc.id
        if username:
            self.by_username[username.lower()] = ("user", acc.id)
        return acc

    def add_bot(self, username: str, first_name: str = "Bot", dc_id: int = DC_ID) -> Account:
        acc = Account(id=next(self._user_ids), access_hash=_rand_long(), first_name=first_name,
                      username=username, bot=True, dc_id=dc_id)
        acc.bot_token = f"{acc.id}:{secrets.token_urlsafe(26)[:35]}"
        self.accounts[acc.id] = acc
        self.by_token[acc.bot_token] = acc.id
        self.by_username[username.lower()] = ("user", acc.id)
        return acc

    def account_by_phone(self, phone: str) -> Account | None:
        uid = self.by_phone.get(phone)
        return self.accounts.get(uid) if uid else None

    def phone_dc(self, phone: str) -> int:
        """The DC a phone number logs in on: its account's home, else the test's choice."""
        acc = self.account_by_phone(phone)
        return acc.dc_id if acc is not None else self.phone_dcs.get(phone, DC_ID)

    # channels ---------------------------------------------------------------------------
    def add_channel(self, creator_id: int, title: str, broadcast: bool = True,
                    megagroup: bool = False, forum: bool = False, about: str = "") -> Channel:
        ch = Channel(id=next(self._channel_ids), access_hash=_rand_long(), title=title,
                     creator_id=creator_id, date=int(time.time()), broadcast=broadcast,
                     megagroup=megagroup, forum=forum, about=about)
        ch.members.add(creator_id)
        ch.admins.add(creator_id)
        ch.invite_hash = secrets.token_urlsafe(12)
        self.channels[ch.id] = ch
        if forum:
            ch.topics[1] = Topic(id=1, title="General", date=ch.date)
        return ch

    def set_username(self, ch: Channel, username: str | None) -> None:
        if ch.username:
            self.by_username.pop(ch.username.lower(), None)
        ch.username = username
        if username:
            self.by_username[username.lower()] = ("channel", ch.id)

    def add_member(self, ch: Channel, user_id: int, actor_id: int | None = None,
                   admin: bool | None = None) -> None:
        """Add (or promote/demote with `admin`) a member and tell them, as Telegram does."""
        before = (user_id in ch.members, user_id in ch.admins)
        ch.members.add(user_id)
        if admin is True:
            ch.admins.add(user_id)
        elif admin is False:
            ch.admins.discard(user_id)
        if before != (True, user_id in ch.admins) and self.on_member_change is not None:
            self.on_member_change(ch, user_id, actor_id, before)

    def channel_by_invite(self, invite_hash: str) -> Channel | None:
        for ch in self.channels.values():
            if ch.invite_hash == invite_hash:
                return ch
        return None

    # files ------------------------------------------------------------------------------
    def upload_part(self, key_id: bytes, file_id: int, part: int, data: bytes,
                    total_parts: int | None = None) -> None:
        up = self.uploads.get((key_id, file_id))
        if up is None:
            if len(self.uploads) >= self.MAX_UPLOADS:
                oldest = min(self.uploads, key=lambda k: self.uploads[k].touched)
                shutil.rmtree(self.uploads.pop(oldest).dir, ignore_errors=True)
            d = self.uploads_dir / f"{key_id.hex()}_{file_id & 0xFFFFFFFFFFFFFFFF:x}"
            d.mkdir(parents=True, exist_ok=True)
            up = self.uploads[(key_id, file_id)] = Upload(dir=d)
        if total_parts is not None:
            up.total_parts = total_parts
            up.place(part, data)
        else:
            (up.dir / str(part)).write_bytes(data)
        up.sizes[part] = len(data)
        up.touched = time.monotonic()

    def part_size_of(self, key_id: bytes, file_id: int) -> int | None:
        """The size of a non-last part already stored for this upload, if any."""
        up = self.uploads.get((key_id, file_id))
        if up is None or up.total_parts is None:
            return None
        return next((n for i, n in up.sizes.items() if i < up.total_parts - 1), None)

    async def finish_upload(self, key_id: bytes, file_id: int, parts: int,
                            check: Callable[[Upload], None] | None = None) -> tuple[Path, int]:
        """Join the parts into one stored file, streaming part by part in a thread so a 2 GB
        join does not stall every other connection. A client that times out and sends the
        same request again gets the same file, as Telegram does."""
        key = (key_id, file_id)
        done = self.finished_uploads.get(key)
        if done is not None:
            return await asyncio.shield(done)
        up = self.uploads.get(key)
        if up is None:
            raise LookupError("FILE_PART_0_MISSING")
        if check is not None:
            check(up)  # Telegram's geometry rules (tgsim/limits.py); raises to refuse
        elif any(i not in up.sizes for i in range(parts)):
            raise LookupError("FILE_PARTS_INVALID")
        del self.uploads[key]
        target = self.files_dir / secrets.token_hex(12)

        def join() -> tuple[Path, int]:
            size = up.placed(parts)
            if size is not None:  # a big file, already in place
                os.replace(up.data, target)
                shutil.rmtree(up.dir, ignore_errors=True)
                return target, size
            size = 0
            with open(target, "wb") as out:
                for i in range(parts):
                    with open(up.dir / str(i), "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
                        size = out.tell()
            shutil.rmtree(up.dir, ignore_errors=True)
            return target, size

        future = asyncio.ensure_future(asyncio.to_thread(join))
        self.finished_uploads[key] = future
        while len(self.finished_uploads) > self.MAX_UPLOADS:
            self.finished_uploads.pop(next(iter(self.finished_uploads)))
        return await asyncio.shield(future)

    def add_media(self, media: Media) -> Media:
        media.refs = self.file_refs
        self.media[media.id] = media
        return media

    def new_media(self, kind: str, path: Path, size: int, **kw) -> Media:
        return self.add_media(Media(kind=kind, id=_rand_long(), access_hash=_rand_long(),
                                    path=path, size=size, date=int(time.time()), **kw))

    def store_bytes(self, data: bytes) -> Path:
        target = self.files_dir / secrets.token_hex(12)
        target.write_bytes(data)
        return target
