"""Data centers are separate, as on Telegram (core.telegram.org/api/datacenter): every tgsim DC
has its own port and its own auth keys, a key is authorised on another DC only through
auth.exportAuthorization / importAuthorization, a file lives on one DC, and a phone logs in on
its home DC. The real client library and the real bot against it."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import time

import pytest
from pyrogram import errors, raw
from pyrogram.connection import Connection
from pyrogram.crypto import mtproto
from pyrogram.file_id import FileId
from pyrogram.raw.core import Int, Message

from helpers.transfer import MIB, Transfers
from harness.botenv import READER, bot_env, login
from harness.chats import chat_link as _link
from harness.chats import private_channel as _private_channel
from harness.files import file_digest, write_random

NOT_FOUND = Int(-404)  # the transport error for an auth key the server does not know


async def _first_answer(address: tuple[str, int], auth_key: bytes) -> bytes:
    """One encrypted ping with `auth_key` to `address`; the server's first packet back."""
    conn = Connection(2, address[0], address[1], False)
    await conn.connect()
    try:
        body = raw.functions.Ping(ping_id=1)
        msg = Message(body, int(time.time() * 2**32) & ~3, 1, len(body.write()))
        key_id = hashlib.sha1(auth_key).digest()[-8:]
        await conn.send(mtproto.pack(msg, 0, os.urandom(8), auth_key, key_id))
        return await asyncio.wait_for(conn.recv(), 10)
    finally:
        await conn.close()


def _media_of_post(sim, chat_id: int, msg_id: int):
    return sim.world.channels[int(str(chat_id)[4:])].messages[msg_id].media


async def _dc4_file(sim, transfers, user, tmp_path, name: str, size: int):
    """A file of `user`'s on DC 4, with a Message whose file id says so."""
    src = write_random(tmp_path / name, size)
    msg = await transfers.send_file(user, "me", str(src), kind="document")
    media = sim.world.media[FileId.decode(msg.document.file_id).media_id]
    assert media.dc_id == 2  # stored where it was uploaded: the account's home DC
    media.dc_id = 4
    msg = await user.get_messages("me", msg.id)
    assert FileId.decode(msg.document.file_id).dc_id == 4
    return src, msg, media


@pytest.fixture
async def user(clients, phone):
    return await clients.user(phone, "Far")


async def test_keys_belong_to_their_dc_and_are_authorised_only_by_import(user, sim):
    home = sim.dc_table[2]
    assert len(set(sim.dc_table.values())) == 5, "every DC on its own port"
    home_key = await user.storage.auth_key()
    assert await _first_answer(home, home_key) != NOT_FOUND
    assert await _first_answer(sim.dc_table[4], home_key) == NOT_FOUND

    far = await user.get_session(4, export_authorization=False, temporary=True)
    try:
        assert (await far.invoke(raw.functions.help.GetConfig())).this_dc == 4
        with pytest.raises(errors.AuthKeyUnregistered):
            await far.invoke(raw.functions.users.GetUsers(id=[raw.types.InputUserSelf()]))
        with pytest.raises(errors.DcIdInvalid):  # no exporting to the DC one is on
            await user.invoke(raw.functions.auth.ExportAuthorization(dc_id=2))
        wrong = await user.invoke(raw.functions.auth.ExportAuthorization(dc_id=5))
        with pytest.raises(errors.AuthBytesInvalid):  # bytes for DC 5 do not open DC 4
            await far.invoke(raw.functions.auth.ImportAuthorization(id=wrong.id,
                                                                    bytes=wrong.bytes))
        exported = await user.invoke(raw.functions.auth.ExportAuthorization(dc_id=4))
        await far.invoke(raw.functions.auth.ImportAuthorization(id=exported.id,
                                                                bytes=exported.bytes))
        me = await far.invoke(raw.functions.users.GetUsers(id=[raw.types.InputUserSelf()]))
        assert me[0].id == user.me.id
        assert sim.imports[(4, user.me.id)] == 1
        assert await _first_answer(home, far.auth_key) == NOT_FOUND
    finally:
        await far.stop()


async def test_file_migrate_on_the_wrong_dc_and_transfers_follow_it(user, sim, tmp_path):
    t = Transfers()
    try:
        src, msg, media = await _dc4_file(sim, t, user, tmp_path, "far.bin", 2 * MIB + 7)
        fid = FileId.decode(msg.document.file_id)
        loc = raw.types.InputDocumentFileLocation(
            id=fid.media_id, access_hash=fid.access_hash, file_reference=fid.file_reference,
            thumb_size="")
        with pytest.raises(errors.FileMigrate) as info:  # asked on the home DC
            await user.invoke(raw.functions.upload.GetFile(location=loc, offset=0, limit=MIB))
        assert info.value.value == 4
        media.dc_id = 5  # moved after the message was read: its file id still says DC 4
        out = await t.download(user, msg, str(tmp_path / "dl" / "far.bin"))
        assert file_digest(out) == file_digest(src)
        uid = user.me.id
        assert sim.imports[(4, uid)] == 1 and sim.imports[(5, uid)] == 1
    finally:
        await t.close()


async def test_export_once_per_dc_and_client_not_per_connection(user, sim, tmp_path):
    t = Transfers(max_connections=4)
    try:
        src, msg, _ = await _dc4_file(sim, t, user, tmp_path, "wide.bin", 6 * MIB + 1)
        for i in range(2):
            out = await t.download(user, msg, str(tmp_path / "dl" / f"wide{i}.bin"))
            assert file_digest(out) == file_digest(src)
        assert t.connections(user) >= 2, "the download used several media connections"
        assert sim.exports[(4, user.me.id)] == 1
        assert sim.imports[(4, user.me.id)] == 1
    finally:
        await t.close()


async def test_file_on_dc4_via_the_bot_and_via_a_user_session(env):
    me = env.people[0]
    owner = await env.person("Owner")
    sim = env.sim
    # The bot reads a protected channel it is a member of: it downloads from DC 4 itself.
    locked = await owner.client.create_channel("Far locked", "")
    await owner.client.set_chat_protected_content(locked.id, True)
    await owner.client.add_chat_members(locked.id, env.bot_username)
    src = write_random(env.work / "a.bin", 3_000_000)
    post = await owner.client.send_document(locked.id, str(src), caption="far a")
    _media_of_post(sim, locked.id, post.id).dc_id = 4
    await me.say(_link(locked, post.id))
    got = await me.expect_media(timeout=90)
    assert got.caption == "far a"
    path = await me.client.download_media(got, file_name=str(env.work / "out" / "a"))
    assert file_digest(path) == file_digest(src)
    assert sim.imports[(4, env.bot_acc.id)] == 1, "the bot's import arrived on DC 4"
    assert sim.exports[(4, env.bot_acc.id)] == 1, "one export for DC 4, not one per part"

    # A private channel the bot is not in: the user's own session downloads from DC 4.
    vault = await _private_channel(owner, "Far vault", me)
    src2 = write_random(env.work / "b.bin", 2_000_000)
    post2 = await owner.client.send_document(vault.id, str(src2), caption="far b")
    _media_of_post(sim, vault.id, post2.id).dc_id = 4
    await login(env, me)
    await me.say(_link(vault, post2.id))
    got2 = await me.expect_media(timeout=90)
    assert got2.caption == "far b"
    path2 = await me.client.download_media(got2, file_name=str(env.work / "out" / "b"))
    assert file_digest(path2) == file_digest(src2)
    assert sim.imports[(4, me.id)] == 1, "the user session's import arrived on DC 4"


async def test_login_of_a_phone_on_dc4_follows_phone_migrate(sim, clients, tmp_path):
    async with bot_env(sim, clients, tmp_path) as env:
        phone = "+14440000404"
        sim.world.phone_dcs[phone.lstrip("+")] = 4
        far = await env.person("Far", phone=phone)  # its own client migrated to DC 4 too
        assert sim.world.accounts[far.id].dc_id == 4
        owner = env.people[0]
        ch = await _private_channel(owner, "To DC4", far)
        src = write_random(tmp_path / "c.bin", 1_500_000)
        post = await owner.client.send_document(ch.id, str(src), caption="for far")
        await login(env, far)
        # The stored session lives on DC 4: the bot's user client must connect there.
        await far.say(_link(ch, post.id))
        got = await far.expect_media(timeout=90)
        assert got.caption == "for far"
        path = await far.client.download_media(got, file_name=str(tmp_path / "out" / "c"))
        assert file_digest(path) == file_digest(src)
        assert sim.connection_count(far.id, device_model=READER, dc_id=4) >= 1
        assert sim.connection_count(far.id, device_model=READER, dc_id=2) >= 1  # the file
        assert sim.imports[(2, far.id)] >= 1  # owner's file is on DC 2, far's home is DC 4


async def test_bot_living_on_dc4_follows_user_migrate_and_reconnects_there(sim, clients,
                                                                          tmp_path):
    """A bot whose account lives on DC 4 is sent there at sign-in (USER_MIGRATE_4); its
    session file then names DC 4, and a restart must connect to DC 4's address."""
    from bot.app import App
    from bot.config import load_settings
    from harness.botenv import sim_settings
    from helpers.secrets import generate_key
    from harness.botenv import Env

    bot_acc = sim.world.add_bot("far_dl_bot", "Far Downloader", dc_id=4)
    settings = dataclasses.replace(
        sim_settings(load_settings(environ={}, env_file=None), sim, bot_acc.bot_token,
                     tmp_path / "bot"), session_key=generate_key())
    for run in range(2):
        app = App(settings)
        await app.start()
        try:
            env = Env(sim, clients, app, bot_acc, tmp_path)
            person = await env.person(f"Asker{run}")
            await person.ask("/start", "Hello!")
            assert sim.connection_count(bot_acc.id, dc_id=4) >= 1
            assert sim.connection_count(bot_acc.id, dc_id=2) == 0
        finally:
            await app.stop()
