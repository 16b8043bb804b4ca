"""File references that expire, as Telegram's do (core.telegram.org/api/file_reference), and
protected media that cannot be re-sent by reference: tgsim's rule, and the bot living with it."""

from __future__ import annotations

import asyncio
import os

import pytest
from pyrogram import errors, raw
from pyrogram.file_id import FileId

from helpers.transfer import Transfers, sidecar_path
from harness.files import file_digest, write_random
from tgsim.file_refs import FileRefs

PART = Transfers().part_size


def _media_id(media) -> int:
    return FileId.decode(media.file_id).media_id


def _input_document(doc) -> raw.types.InputDocument:
    f = FileId.decode(doc.file_id)
    return raw.types.InputDocument(id=f.media_id, access_hash=f.access_hash,
                                   file_reference=f.file_reference)


# the rule in tgsim -----------------------------------------------------------------------
def test_references_rotate_after_the_ttl_and_on_demand():
    now = [1000.0]
    refs = FileRefs(ttl=60, clock=lambda: now[0])
    first = refs.reference(7)
    assert refs.check(7, first) == (None, 0)
    now[0] += 59.9
    assert refs.check(7, first) == (None, 0) and refs.reference(7) == first
    now[0] += 0.2
    assert refs.check(7, first)[0] == "FILE_REFERENCE_EXPIRED"
    second = refs.reference(7)
    assert second != first and refs.check(7, second) == (None, 0)
    refs.expire(7)
    assert refs.check(7, second)[0] == "FILE_REFERENCE_EXPIRED"
    assert refs.check(8, refs.reference(7))[0] == "FILE_REFERENCE_INVALID"  # another file's
    assert refs.check(7, b"\x01tgsim")[0] == "FILE_REFERENCE_INVALID"
    assert refs.check(7, refs.reference(7, origin=42)) == (None, 42)
    never = FileRefs(ttl=0, clock=lambda: now[0])
    ref = never.reference(7)
    now[0] += 10 ** 6
    assert never.check(7, ref) == (None, 0)


async def test_stale_reference_refused_on_get_file_and_send_media(clients, phone, tmp_path,
                                                                  sim):
    user = await clients.user(phone, "Stale")
    assert sim.file_reference_ttl == 3600  # on by default, for the whole suite
    src = write_random(tmp_path / "a.bin", 3 * PART + 5)
    msg = await user.send_document("me", str(src))
    other = await user.send_document("me", str(write_random(tmp_path / "b.bin", 1000)))
    sim.expire_file_reference(_media_id(msg.document))

    with pytest.raises(errors.FileReferenceExpired):
        await user.download_media(msg, in_memory=True)
    with pytest.raises(errors.FileReferenceExpired):  # the thumbnail path asks the same
        await user.invoke(raw.functions.upload.GetFile(
            location=raw.types.InputDocumentFileLocation(
                id=_media_id(msg.document), access_hash=FileId.decode(
                    msg.document.file_id).access_hash,
                file_reference=FileId.decode(msg.document.file_id).file_reference,
                thumb_size="m"), offset=0, limit=4096))
    with pytest.raises(errors.FileReferenceExpired):
        await user.send_cached_media("me", msg.document.file_id)
    before = len([m async for m in user.get_chat_history("me")])
    with pytest.raises(errors.FileReferenceExpiredX) as e:  # names the stale item's index
        await user.invoke(raw.functions.messages.SendMultiMedia(
            peer=await user.resolve_peer("me"), multi_media=[
                raw.types.InputSingleMedia(media=raw.types.InputMediaDocument(
                    id=_input_document(doc)), random_id=user.rnd_id(), message="")
                for doc in (other.document, msg.document)]))
    assert e.value.value == 1
    assert len([m async for m in user.get_chat_history("me")]) == before  # all or nothing
    assert sim.stats["file_reference_expired"] == 4

    fresh = await user.get_messages("me", msg.id)  # the remedy: fetch the message again
    got = await user.download_media(fresh, in_memory=True)
    assert got.getbuffer().nbytes == 3 * PART + 5
    assert (await user.send_cached_media("me", fresh.document.file_id)).document


async def test_protected_media_is_not_resent_by_reference(clients, phone, tmp_path, sim):
    owner = await clients.user(phone, "Owner")
    reader = await clients.user(phone + "7", "Reader")
    ch = await owner.create_channel("Locked", "")
    # by invite: the owner never saw the reader, so it holds no hash to add them by
    # (core.telegram.org/api/peers)
    await reader.join_chat(await owner.export_chat_invite_link(ch.id))
    src = write_random(tmp_path / "p.bin", 5000)
    posts = [await owner.send_document(ch.id, str(src)) for _ in range(2)]
    seen = await reader.get_messages(ch.id, posts[0].id)
    # unprotected: re-sending by reference is allowed (the rule below is not a blanket ban)
    assert (await reader.send_cached_media("me", seen.document.file_id)).document

    await owner.set_chat_protected_content(ch.id, True)
    seen = await reader.get_messages(ch.id, [p.id for p in posts])
    with pytest.raises(errors.ChatForwardsRestricted):
        await reader.send_cached_media("me", seen[0].document.file_id)
    with pytest.raises(errors.ChatForwardsRestricted):
        await reader.invoke(raw.functions.messages.SendMultiMedia(
            peer=await reader.resolve_peer("me"), multi_media=[
                raw.types.InputSingleMedia(media=raw.types.InputMediaDocument(
                    id=_input_document(m.document)), random_id=reader.rnd_id(), message="")
                for m in seen]))
    assert sim.stats["chat_forwards_restricted"] == 2
    with pytest.raises(errors.ChatForwardsRestricted):
        await reader.forward_messages("me", ch.id, posts[0].id)
    # what it may still do: download it, as the bot does before re-uploading
    got = await reader.download_media(seen[0], in_memory=True)
    assert got.getbuffer().nbytes == 5000


# the bot's download, under expiry --------------------------------------------------------
async def test_reference_expiring_under_parts_in_flight_twice_keeps_the_bytes(
        clients, phone, tmp_path, sim):
    """The reference rotates while 8+ parts are in flight, and again later in the same file:
    one refetch each (single flight), every part on disk fetched once, identical bytes."""
    user = await clients.user(phone, "Expiry")
    transfers = Transfers()  # K = 32 parts in flight
    try:
        parts = 96
        src = write_random(tmp_path / "big.bin", parts * PART - 123)
        msg = await transfers.send_file(user, "me", str(src), kind="document")
        media_id = _media_id(msg.document)
        # every getFile sits a while in the server, so many are in flight when it rotates
        sim.faults.method_latency_s["upload.GetFile"] = 0.05
        # marks where more than K parts are still to come, so a full K is in flight
        marks = {parts // 4 * PART: "first", parts * 7 // 12 * PART: "second"}
        expired_at: dict[str, int] = {}

        def progress(done: int, total: int) -> None:
            for mark, name in marks.items():
                if done >= mark and name not in expired_at:
                    expired_at[name] = sim.stats["file_reference_expired"]
                    sim.expire_file_reference(media_id)

        sent_before = sim.stats["file_bytes_out"]
        fetches_before = sim.stats["messages.GetMessages"]
        dst = await transfers.download(user, msg, str(tmp_path / "dl" / "big.bin"),
                                       progress=progress)
        assert file_digest(dst) == file_digest(src)
        assert set(expired_at) == {"first", "second"}
        first_wave = expired_at["second"] - expired_at["first"]
        second_wave = sim.stats["file_reference_expired"] - expired_at["second"]
        assert first_wave >= 8 and second_wave >= 8, (first_wave, second_wave)
        assert sim.stats["messages.GetMessages"] - fetches_before == 2  # one refetch a rotation
        # no part was served twice: what was on disk stayed, only the failed ones came again
        assert sim.stats["file_bytes_out"] - sent_before == os.path.getsize(src)
        assert not os.path.exists(sidecar_path(dst))
    finally:
        sim.faults.method_latency_s.pop("upload.GetFile", None)
        await transfers.close()


async def test_reference_stale_again_before_it_worked_is_not_refetched_in_a_loop(
        clients, phone, tmp_path, sim):
    """A guard on the re-arm: when every fresh reference is stale before any part came back
    with it, the file fails after one refetch (not one per part, not forever) and keeps its
    parts on disk, so the next attempt resumes from them."""
    user = await clients.user(phone, "Loop")
    transfers = Transfers(max_inflight=4)
    try:
        size = 16 * PART
        src = write_random(tmp_path / "l.bin", size)
        msg = await transfers.send_file(user, "me", str(src), kind="document")
        sim.faults.method_latency_s["upload.GetFile"] = 0.05

        def progress(done: int, total: int) -> None:
            if done >= 4 * PART:
                sim.file_reference_ttl = 0.01  # shorter than a request spends in the server

        fetches = sim.stats["messages.GetMessages"]
        dst = str(tmp_path / "dl" / "l.bin")
        with pytest.raises(errors.FileReferenceExpired):
            await transfers.download(user, msg, dst, progress=progress)
        assert sim.stats["messages.GetMessages"] - fetches == 1
        assert os.path.exists(sidecar_path(dst))

        sim.file_reference_ttl = 3600
        sent = sim.stats["file_bytes_out"]
        out = await transfers.download(user, msg, dst)  # resumes from the parts on disk
        assert file_digest(out) == file_digest(src)
        assert sim.stats["file_bytes_out"] - sent <= size - 4 * PART
    finally:
        sim.faults.method_latency_s.pop("upload.GetFile", None)
        await transfers.close()


# the bot's custom thumbnail, after its reference expired ---------------------------------
async def test_expired_custom_thumbnail_still_applies(env):
    p, sim = env.people[0], env.sim
    await p.say("/settings")
    menu = await p.expect(lambda m: (m.text or "").startswith("Your settings")
                          and m.reply_markup is not None)
    await p.client.request_callback_answer(menu.chat.id, menu.id, "set:ask:thumb")
    await p.expect_text("Send me a photo")
    photo = write_random(env.work / "thumb.jpg", 20_000)
    await p.client.send_photo(env.bot_username, str(photo))
    await p.expect_text("Thumbnail saved")
    stored = (await env.app.db.get_settings(p.id))["thumb"]
    sim.expire_file_reference(FileId.decode(stored).media_id)

    owner = await env.person("Owner")
    pub = await owner.client.create_channel("Pub", "")
    await owner.client.set_chat_username(pub.id, "pubthumbs")
    src = write_random(env.work / "clip.bin", 300_000)
    post = await owner.client.send_document("pubthumbs", str(src))
    await p.say(f"https://t.me/pubthumbs/{post.id}")
    got = await p.expect_media()
    assert got.document.thumbs, "the delivered file lost the user's thumbnail"
    thumb = await p.client.download_media(got.document.thumbs[0].file_id, in_memory=True)
    assert bytes(thumb.getbuffer()) == photo.read_bytes()
    # the fresh file_id was kept, so the next job does not refetch it
    assert (await env.app.db.get_settings(p.id))["thumb"] != stored


async def test_bot_delivers_a_file_whose_reference_expires_twice_mid_download(env):
    """The whole bot: a protected post (so the bot must download it) whose reference rotates
    twice while the bot's parts are in flight still arrives byte for byte."""

    sim, me = env.sim, env.user
    ch = await me.create_channel("Locked", "")
    await me.set_chat_protected_content(ch.id, True)
    await me.add_chat_members(ch.id, env.bot_username)
    size = 48 * PART + 11
    src = write_random(env.work / "long.bin", size)
    post = await me.send_document(ch.id, str(src))
    media_id = _media_id(post.document)
    sim.faults.method_latency_s["upload.GetFile"] = 0.05
    sent0, waves = sim.stats["file_bytes_out"], []

    bot_id = next(a.id for a in sim.world.accounts.values() if a.username == env.bot_username)

    async def rotate_at(fraction: float) -> None:
        # past the fraction, and at a moment with 4+ of the bot's 1 MiB parts in flight (the
        # download keeps 12 at most, the account's window 16: Telegram throttles more,
        # tgsim/file_limits.py;
        # 8 when parts were 256 KB: the same bytes in flight are fewer, larger parts now)
        while (sim.stats["file_bytes_out"] - sent0 < fraction * size
               or sim.file_limit.inflight[bot_id] < 4
               or (waves and sim.stats["file_reference_expired"] == waves[0])):
            await asyncio.sleep(0.002)
        waves.append(sim.stats["file_reference_expired"])
        sim.expire_file_reference(media_id)

    rotations = asyncio.ensure_future(asyncio.gather(rotate_at(0.25), rotate_at(0.55)))
    try:
        await me.send_message(env.bot_username, f"t.me/c/{str(ch.id)[4:]}/{post.id}")
        got = await env.expect(lambda m: m.media is not None or "failed" in (m.text or ""),
                               timeout=120)
        assert got.media, got.text
        await asyncio.wait_for(rotations, 1)
    finally:
        rotations.cancel()
        sim.faults.method_latency_s.pop("upload.GetFile", None)
    served = sim.stats["file_bytes_out"] - sent0  # before the user's own download below
    # each rotation found the parts in flight (4 at least, waited for above)
    expired = sim.stats["file_reference_expired"]
    assert len(waves) == 2 and waves[1] - waves[0] >= 4 and expired - waves[1] >= 4, waves
    assert served == size, "parts on disk were fetched again"
    assert sim.stats["chat_forwards_restricted"] == 0  # never tried to re-send it by reference
    path = await me.download_media(got, file_name=str(env.work / "out" / "long.bin"))
    assert file_digest(path) == file_digest(src)


async def test_copy_whose_reference_rotated_meanwhile_is_fetched_again(env):
    """The reference rotates between the bot's fetch and its server-side copy (the copy sits
    in the server when it happens): the bot fetches the message again and copies it."""
    from pyrogram.types import InputMediaDocument

    sim, me = env.sim, env.user
    ch = await me.create_channel("Feed", "")
    await me.set_chat_username(ch.id, "rotfeed")
    one = await me.send_document("rotfeed", str(write_random(env.work / "1.bin", 5000)))
    album = await me.send_media_group("rotfeed", [
        InputMediaDocument(str(write_random(env.work / f"a{i}.bin", 4000 + i)))
        for i in range(2)])

    async def rotate_during(method: str, media_id: int) -> None:
        sim.faults.method_latency_s[method] = 0.3
        start = sim.stats[method]
        while sim.stats[method] == start:  # counted when the request arrives
            await asyncio.sleep(0.005)
        sim.expire_file_reference(media_id)
        sim.faults.method_latency_s.pop(method, None)

    # An album is copied as a forward without author, which names messages, not references:
    # the rotation must not touch it (no expired answer), and it is still copied.
    for link, method, media_id, refused in (
            (f"https://t.me/rotfeed/{one.id}", "messages.SendMedia", _media_id(one.document), 1),
            (f"https://t.me/rotfeed/{album[1].id}", "messages.ForwardMessages",
             _media_id(album[1].document), 0)):
        expired = sim.stats["file_reference_expired"]
        rotation = asyncio.ensure_future(rotate_during(method, media_id))
        try:
            await env.say(link)
            done = await env.expect(lambda m: (m.text or "").startswith("Job #")
                                    and (" done" in m.text or "failed" in m.text), timeout=60)
            assert " done" in done.text and "copied" in done.text, done.text
        finally:
            rotation.cancel()
            sim.faults.method_latency_s.pop(method, None)
        assert sim.stats["file_reference_expired"] == expired + refused
    assert sim.stats["upload.GetFile"] == 0  # copied both times, never downloaded


async def test_original_thumbnail_after_its_reference_expired_is_carried_over(env):
    """The reference rotates once the bot has the file and before it fetches the original's
    thumbnail (same reference): the bot fetches the message again and keeps the thumbnail."""
    sim, me = env.sim, env.user
    ch = await me.create_channel("Locked", "")
    await me.set_chat_protected_content(ch.id, True)
    await me.add_chat_members(ch.id, env.bot_username)
    size = 4 * PART
    src = write_random(env.work / "v.mp4", size)
    thumb = write_random(env.work / "t.jpg", 5_000)
    post = await me.send_video(ch.id, str(src), duration=3, width=320, height=240,
                               thumb=str(thumb))
    sim.faults.method_latency_s["upload.GetFile"] = 0.05
    sent0 = sim.stats["file_bytes_out"]

    async def rotate_after_the_file() -> None:
        while sim.stats["file_bytes_out"] - sent0 < size:
            await asyncio.sleep(0.005)
        sim.expire_file_reference(_media_id(post.video))

    rotation = asyncio.ensure_future(rotate_after_the_file())
    try:
        await env.say(f"t.me/c/{str(ch.id)[4:]}/{post.id}")
        got = await env.expect(lambda m: m.media is not None or "failed" in (m.text or ""),
                               timeout=60)
        assert got.media, got.text
        assert rotation.done()
    finally:
        rotation.cancel()
        sim.faults.method_latency_s.pop("upload.GetFile", None)
    assert sim.stats["file_reference_expired"] >= 1
    assert got.video.thumbs, "the original's thumbnail was lost"
    carried = await me.download_media(got.video.thumbs[0].file_id, in_memory=True)
    assert bytes(carried.getbuffer()) == thumb.read_bytes()
