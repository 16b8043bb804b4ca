"""Access hashes as strict as Telegram's: the bot learns a private chat from the update sent
when it is added, and a user session keeps its peers across evictions and restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pyrogram import errors, raw

from bot.app import App
from helpers import peers
from harness.botenv import login
from harness.files import file_digest, write_random


def _link(ch, msg_id: int) -> str:
    return f"https://t.me/c/{str(ch.id)[4:]}/{msg_id}"


async def _db_bytes(env) -> bytes:
    out = b""
    for suffix in ("", "-wal"):
        path = Path(env.app.settings.database_path + suffix)
        if path.exists():
            out += path.read_bytes()
    return out


async def test_bot_added_to_private_channel_while_running_reads_it(env):
    assert env.sim.world.strict_access_hash, "tgsim is strict by default"
    owner = await env.person("Owner")
    ch = await owner.client.create_channel("Members only", "")
    await owner.client.set_chat_protected_content(ch.id, True)  # download + upload, no copy
    src = write_random(env.work / "doc.bin", 1_500_000)
    post = await owner.client.send_document(ch.id, str(src), caption="for the bot")
    bot_before = env.sim.stats["channels.GetMessages"]
    # Added while running: the bot has never seen this channel and knows it only from the
    # update Telegram sends it now. The reader has no session, so only the bot can read it.
    await owner.client.add_chat_members(ch.id, env.bot_username)
    reader = env.people[0]
    await reader.say(_link(ch, post.id))
    got = await reader.expect_media()
    assert got.caption == "for the bot"
    path = await reader.client.download_media(got, file_name=str(env.work / "out" / "d"))
    assert file_digest(path) == file_digest(src)
    assert env.sim.stats["channels.GetMessages"] > bot_before


async def test_unknown_private_chat_says_what_to_do(env):
    owner = await env.person("Owner")
    ch = await owner.client.create_channel("Elsewhere", "")
    post = await owner.client.send_message(ch.id, "not for the bot")
    reply = await env.people[0].ask(_link(ch, post.id), "add me again")
    assert "/login" in reply.text


async def test_cold_user_session_reads_a_private_chat_without_scanning_dialogs(env):
    me = env.people[0]
    owner = await env.person("Owner")
    ch = await owner.client.create_channel("Vault", "")
    await owner.client.set_chat_protected_content(ch.id, True)
    await me.client.join_chat(await owner.client.export_chat_invite_link(ch.id))
    posts = [await owner.client.send_message(ch.id, f"secret {i}") for i in range(3)]
    await login(env, me)

    # First read: the fresh session has to find the chat in its dialogs.
    await me.say(_link(ch, posts[0].id))
    await me.expect_text("secret 0")
    assert env.sim.stats["messages.GetDialogs"] >= 1

    # Evicted: the next client starts cold, from the stored session and its kept peers.
    # The reply comes before the job lets go of the session: wait for that (as below).
    await asyncio.wait_for(env.app.queue.wait_idle(), 10)
    assert await env.app.sessions.evict_idle() == 1
    assert not env.app.sessions.is_live(me.id)
    dialogs = env.sim.stats["messages.GetDialogs"]
    reads = env.sim.stats["channels.GetMessages"]
    await me.say(_link(ch, posts[1].id))
    await me.expect_text("secret 1")
    assert env.sim.stats["messages.GetDialogs"] == dialogs, "no dialog scan after eviction"
    # One call reads it through the session (the bot's own failed try needs none: it has
    # no hash for the chat, so pyrogram asks channels.getChannels).
    assert env.sim.stats["channels.GetMessages"] == reads + 1

    # The kept hashes are encrypted at rest, bound to the user.
    hash_seen = (await me.client.resolve_peer(ch.id)).access_hash
    db = await _db_bytes(env)
    assert str(hash_seen).encode() not in db

    # Restarted bot process (same database): still no scan.
    settings = env.app.settings
    await env.app.stop()
    env.app = App(settings)
    await env.app.start()
    await me.say(_link(ch, posts[2].id))
    await me.expect_text("secret 2")
    assert env.sim.stats["messages.GetDialogs"] == dialogs, "no dialog scan after restart"


async def test_tgsim_access_hashes_are_per_account_and_strict(sim, clients, phone):
    alice = await clients.user(phone, "Alice")
    bob = await clients.user(phone[:-1] + str((int(phone[-1]) + 1) % 10), "Bob")
    ch = await alice.create_channel("Private", "")
    await bob.join_chat(await alice.export_chat_invite_link(ch.id))
    mine, his = await alice.resolve_peer(ch.id), await bob.resolve_peer(ch.id)
    assert mine.access_hash != his.access_hash, "each account sees its own channel hash"
    ids = [raw.types.InputMessageID(id=1)]
    for wrong in (mine.access_hash, 0):  # another account's, or none
        with pytest.raises(errors.ChannelInvalid):
            await bob.invoke(raw.functions.channels.GetMessages(
                channel=raw.types.InputChannel(channel_id=his.channel_id, access_hash=wrong),
                id=ids))
    await bob.invoke(raw.functions.channels.GetMessages(
        channel=raw.types.InputChannel(channel_id=his.channel_id, access_hash=his.access_hash),
        id=ids))

    svc = await clients.bot("hash_check_bot")
    to_a = await alice.resolve_peer("hash_check_bot")
    to_b = await bob.resolve_peer("hash_check_bot")
    assert to_a.access_hash != to_b.access_hash, "each account sees its own user hash"
    for wrong in (to_a.access_hash, 0):
        with pytest.raises(errors.PeerIdInvalid):
            await bob.invoke(raw.functions.messages.SendMessage(
                peer=raw.types.InputPeerUser(user_id=svc.me.id, access_hash=wrong),
                message="hi", random_id=1))
    await bob.send_message("hash_check_bot", "hi")


async def test_a_kept_hash_that_stopped_working_falls_back_to_the_dialogs(env):
    me = env.people[0]
    owner = await env.person("Owner")
    ch = await owner.client.create_channel("Moved", "")
    await me.client.join_chat(await owner.client.export_chat_invite_link(ch.id))
    posts = [await owner.client.send_message(ch.id, f"note {i}") for i in range(2)]
    await login(env, me)
    await me.say(_link(ch, posts[0].id))
    await me.expect_text("note 0")
    # the reply comes before the job lets go of the session and keeps its peers: wait for
    # that, or the eviction finds it busy and the kept peers are written over below
    await asyncio.wait_for(env.app.queue.wait_idle(), 10)
    assert await env.app.sessions.evict_idle() == 1
    # The kept hash no longer works (as after a restore of an old database).
    cipher = env.app.cipher
    await env.app.db.save_session_peers(
        me.id, cipher.encrypt(peers.pack([(ch.id, 12345, "channel")]), peers.aad(me.id)))
    dialogs = env.sim.stats["messages.GetDialogs"]
    await me.say(_link(ch, posts[1].id))
    await me.expect_text("note 1")
    assert env.sim.stats["messages.GetDialogs"] > dialogs, "found again in the dialogs"
    kept = peers.unpack(cipher.decrypt(await env.app.db.load_session_peers(me.id),
                                       peers.aad(me.id)))
    assert kept[0] == (ch.id, (await me.client.resolve_peer(ch.id)).access_hash, "channel")
