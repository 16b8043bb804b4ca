"""tgsim against the real, unmodified client library over TCP on loopback."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from pyrogram import errors, filters, raw
from pyrogram.types import InputMediaDocument

from harness.files import file_digest, write_random


def _file(tmp_path, name: str, size: int) -> str:
    return str(write_random(tmp_path / name, size))


def _same(a: str, b: str) -> bool:
    return file_digest(a) == file_digest(b)


async def test_sign_up_sign_in_and_wrong_code(clients, phone):
    alice = await clients.user(phone, "Alice")
    assert alice.me.first_name == "Alice" and alice.me.phone_number == phone.lstrip("+")
    # the same phone signs in again to the same account
    again = await clients.user(phone)
    assert again.me.id == alice.me.id
    other = clients.new()
    await other.connect()
    sent = await other.send_code(phone)
    with pytest.raises(errors.PhoneCodeInvalid):
        await other.sign_in(phone, sent.phone_code_hash, "00000")
    await other.disconnect()


async def test_two_step_password_uses_real_srp(clients, phone):
    bob = await clients.user(phone, "Bob", password="correct horse")
    assert bob.me.first_name == "Bob"
    client = clients.new()
    await client.connect()
    sent = await client.send_code(phone)
    with pytest.raises(errors.SessionPasswordNeeded):
        await client.sign_in(phone, sent.phone_code_hash, "12345")
    with pytest.raises(errors.PasswordHashInvalid):
        await client.check_password("wrong horse")
    user = await client.check_password("correct horse")
    assert user.id == bob.me.id
    await client.disconnect()


async def test_channels_media_and_download_bytes_match(clients, phone, tmp_path):
    owner = await clients.user(phone, "Owner")
    reader_phone = phone[:-1] + ("8" if phone.endswith("9") else "9")  # never the owner's
    reader = await clients.user(reader_phone, "Reader")
    public = await owner.create_channel("Public", "a public channel")
    await owner.set_chat_username(public.id, "publicchan")
    private = await owner.create_channel("Private", "protected")
    await owner.set_chat_protected_content(private.id, True)

    text = await owner.send_message("publicchan", "**bold** and __italic__")
    doc_path = _file(tmp_path, "big.bin", 20 * 1024 * 1024 + 7)
    doc = await owner.send_document("publicchan", doc_path, caption="twenty MB")
    photo_path = _file(tmp_path, "pic.jpg", 150_000)
    photo = await owner.send_photo("publicchan", photo_path)
    video_path = _file(tmp_path, "clip.mp4", 2_000_000)
    thumb_path = _file(tmp_path, "thumb.jpg", 9_000)
    video = await owner.send_video("publicchan", video_path, duration=7, width=640, height=360,
                                   thumb=thumb_path, caption="a clip")
    album_files = [_file(tmp_path, f"a{i}.bin", 300_000 + i) for i in range(3)]
    album = await owner.send_media_group("publicchan", [
        InputMediaDocument(album_files[0], caption="first"),
        InputMediaDocument(album_files[1]),
        InputMediaDocument(album_files[2]),  # documents group only with documents
    ])
    assert len({m.media_group_id for m in album}) == 1 and album[0].media_group_id

    got = await reader.get_messages("publicchan", [text.id, doc.id, photo.id, video.id])
    assert got[0].text == "bold and italic" and len(got[0].entities) == 2
    assert got[1].document.file_size == os.path.getsize(doc_path)
    assert got[1].caption == "twenty MB"
    assert got[3].video.duration == 7 and got[3].video.width == 640
    assert got[3].video.thumbs
    for message, original in ((got[1], doc_path), (got[2], photo_path), (got[3], video_path)):
        out = await reader.download_media(message, file_name=str(tmp_path / "dl" / "x"))
        assert _same(out, original)
        os.remove(out)
    thumb = await reader.download_media(got[3].video.thumbs[0].file_id,
                                        file_name=str(tmp_path / "dl" / "t"))
    assert _same(thumb, thumb_path)
    group = await reader.get_media_group("publicchan", album[0].id)
    assert [m.id for m in group] == [m.id for m in album]
    for message, original in zip(group, album_files):
        out = await reader.download_media(message, file_name=str(tmp_path / "dl" / "g"))
        assert _same(out, original)

    # the private channel is unreachable until the reader joins by invite
    secret = await owner.send_message(private.id, "members only")
    link = await owner.export_chat_invite_link(private.id)
    await reader.join_chat(link)
    seen = await reader.get_messages(private.id, secret.id)
    assert seen.text == "members only" and seen.has_protected_content


async def test_forwarding_from_protected_channel_is_refused(clients, phone):
    owner = await clients.user(phone, "Owner")
    ch = await owner.create_channel("Locked", "")
    await owner.set_chat_protected_content(ch.id, True)
    msg = await owner.send_message(ch.id, "do not forward")
    with pytest.raises(errors.ChatForwardsRestricted):
        await owner.forward_messages("me", ch.id, msg.id)
    open_ch = await owner.create_channel("Open", "")
    msg2 = await owner.send_message(open_ch.id, "fine to forward")
    fwd = await owner.forward_messages("me", open_ch.id, msg2.id)
    assert fwd.text == "fine to forward"


async def test_bot_receives_start_and_its_reply_arrives(clients, phone):
    bot = await clients.bot("echo_sim_bot")
    user = await clients.user(phone, "Carol")
    replies: asyncio.Queue = asyncio.Queue()

    @bot.on_message(filters.private & filters.command("start"))
    async def on_start(_, message):
        await message.reply(f"hello {message.from_user.first_name}")

    @user.on_message(filters.private)
    async def on_reply(_, message):
        await replies.put(message)

    await user.send_message("echo_sim_bot", "/start")
    reply = await asyncio.wait_for(replies.get(), 10)
    assert reply.text == "hello Carol" and reply.from_user.is_bot


async def test_flood_wait_obeyed_below_threshold_raised_above(clients, phone, sim):
    from tgsim.faults import FloodRule

    user = await clients.user(phone, "Dan")
    sim.faults.flood["messages.SendMessage"] = FloodRule(every=1, seconds=1, limit=1)
    start = time.monotonic()
    await user.send_message("me", "after a short wait")
    assert time.monotonic() - start >= 1.0
    sim.faults.flood["messages.SendMessage"] = FloodRule(every=1, seconds=60, limit=1)
    with pytest.raises(errors.FloodWait) as exc:
        await user.send_message("me", "too long to wait")
    assert exc.value.value == 60
    await user.send_message("me", "flood is over")


async def test_dropped_connection_is_survived(clients, phone, sim):
    user = await clients.user(phone, "Eve")
    await user.send_message("me", "before")
    assert sim.drop_connections() >= 1
    msg = await user.send_message("me", "after the drop")
    assert msg.text == "after the drop"


async def test_revoked_session_sees_auth_key_unregistered(clients, phone, sim):
    user = await clients.user(phone, "Frank")
    assert sim.revoke(user.me.id) >= 1
    with pytest.raises(errors.AuthKeyUnregistered):
        await user.get_me()


async def test_unsupported_method_answers_an_error_not_a_hang(clients, phone):
    user = await clients.user(phone, "Gina")
    with pytest.raises(errors.RPCError) as exc:
        await asyncio.wait_for(user.invoke(raw.functions.help.GetPremiumPromo()), 5)
    assert "METHOD_NOT_SUPPORTED" in str(exc.value)
