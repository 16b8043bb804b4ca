"""Telegram's lengths and album rules against the real bot: a premium author's long caption
copied and re-uploaded, split uploads under a long caption, documents albums that hold a
file the library reads as a video, and /login with a number that has no account."""

from __future__ import annotations

from pathlib import Path

from pyrogram import enums, raw
from pyrogram.types import MessageEntity

from helpers.tg_text import CAPTION_LIMIT, u16len
from harness.botenv import bot_env
from harness.files import file_digest, write_random

# 11 + 1002 + 20 + 467 = 1500 UTF-16 units (1490 characters); the cut at 1024 falls inside an
# emoji, so 1023 units remain.
HEAD = "Bold part! "
LONG_CAPTION = HEAD + "x" * 1002 + "😀" * 10 + "y" * 467
KEPT = LONG_CAPTION.encode("utf-16-le")[:2 * 1023].decode("utf-16-le")


def _entities():
    return [MessageEntity(type=enums.MessageEntityType.BOLD, offset=0, length=4),
            MessageEntity(type=enums.MessageEntityType.ITALIC, offset=1000, length=100),
            MessageEntity(type=enums.MessageEntityType.UNDERLINE, offset=1200, length=10)]


def _check_cut(msg) -> None:
    """The caption cut to Telegram's limit, the entities inside kept, the one across clipped."""
    assert u16len(LONG_CAPTION) == 1500
    assert msg.caption == KEPT and u16len(msg.caption) <= CAPTION_LIMIT
    got = [(e.type, e.offset, e.length) for e in msg.caption_entities or []]
    assert got == [(enums.MessageEntityType.BOLD, 0, 4),
                   (enums.MessageEntityType.ITALIC, 1000, 23)], got


async def _premium(env, person):
    env.sim.world.accounts[person.id].premium = True  # premium senders post up to 4096


async def _post_long(env, chat, path: Path):
    return await env.user.send_document(chat, str(path), caption=LONG_CAPTION,
                                        caption_entities=_entities(),
                                        parse_mode=enums.ParseMode.DISABLED)


async def test_long_premium_caption_is_copied_server_side_and_cut(env):
    await _premium(env, env.people[0])
    ch = await env.user.create_channel("Feed", "")
    await env.user.set_chat_username(ch.id, "longfeed")
    src = write_random(env.work / "a.bin", 300_000)
    post = await _post_long(env, "longfeed", src)
    assert post.caption == LONG_CAPTION  # a premium author's caption exists as it is
    await env.say(f"https://t.me/longfeed/{post.id}")
    got = await env.expect_media()
    _check_cut(got)
    assert env.sim.stats["upload.GetFile"] == 0  # copied, not downloaded
    path = await env.user.download_media(got, file_name=str(env.work / "out" / "a"))
    assert file_digest(path) == file_digest(src)


async def test_long_premium_caption_is_reuploaded_cut_from_a_protected_chat(env):
    await _premium(env, env.people[0])
    ch = await env.user.create_channel("Locked", "")
    await env.user.set_chat_protected_content(ch.id, True)
    await env.user.add_chat_members(ch.id, env.bot_username)
    src = write_random(env.work / "b.bin", 400_000)
    post = await _post_long(env, ch.id, src)
    await env.say(f"https://t.me/c/{str(ch.id)[4:]}/{post.id}")
    got = await env.expect_media()
    _check_cut(got)
    assert env.sim.stats["upload.GetFile"] > 0  # downloaded and re-uploaded
    path = await env.user.download_media(got, file_name=str(env.work / "out" / "b"))
    assert file_digest(path) == file_digest(src)


async def _album(env, chat, files, captions, entities):
    """A documents album posted through uploadMedia + sendMultiMedia, as Telegram apps do."""
    peer = await env.user.resolve_peer(chat)
    items = []
    for path, caption, ents in zip(files, captions, entities):
        sent = await env.user.invoke(raw.functions.messages.UploadMedia(
            peer=peer, media=raw.types.InputMediaUploadedDocument(
                file=await env.user.save_file(str(path)), mime_type="application/octet-stream",
                attributes=[raw.types.DocumentAttributeFilename(file_name=path.name)])))
        doc = sent.document
        items.append(raw.types.InputSingleMedia(
            media=raw.types.InputMediaDocument(id=raw.types.InputDocument(
                id=doc.id, access_hash=doc.access_hash, file_reference=doc.file_reference)),
            random_id=env.user.rnd_id(), message=caption, entities=ents))
    await env.user.invoke(raw.functions.messages.SendMultiMedia(peer=peer, multi_media=items))


async def _first_of_last_two(env, chat) -> int:
    return min([m.id async for m in env.user.get_chat_history(chat, limit=2)])


async def test_album_copy_keeps_entities_and_a_long_caption_is_cut(env):
    await _premium(env, env.people[0])
    ch = await env.user.create_channel("Albums", "")
    await env.user.set_chat_username(ch.id, "albumfeed")
    files = [write_random(env.work / f"d{i}.bin", 100_000 + i) for i in range(2)]
    bold = [raw.types.MessageEntityBold(offset=0, length=5)]
    await _album(env, "albumfeed", files, ["hello __world__", ""], [bold, None])
    first = await _first_of_last_two(env, "albumfeed")
    await env.say(f"https://t.me/albumfeed/{first}")
    parts = [await env.expect_media() for _ in range(2)]
    parts.sort(key=lambda m: m.id)
    # Copied as is: the underscores are not re-read as Markdown, and the bold stays bold.
    assert parts[0].caption == "hello __world__"
    assert [(e.type, e.offset, e.length) for e in parts[0].caption_entities] == [
        (enums.MessageEntityType.BOLD, 0, 5)]
    assert env.sim.stats["upload.GetFile"] == 0

    long_ents = [raw.types.MessageEntityBold(offset=0, length=4),
                 raw.types.MessageEntityItalic(offset=1000, length=100),
                 raw.types.MessageEntityUnderline(offset=1200, length=10)]
    await _album(env, "albumfeed", files, [LONG_CAPTION, "second"], [long_ents, None])
    first = await _first_of_last_two(env, "albumfeed")
    await env.say(f"https://t.me/albumfeed/{first}")
    parts = [await env.expect_media() for _ in range(2)]
    parts.sort(key=lambda m: m.id)
    _check_cut(parts[0])
    assert parts[1].caption == "second"
    assert len({p.media_group_id for p in parts}) == 1
    for part, src in zip(parts, files):
        path = await env.user.download_media(part, file_name=str(env.work / "out" / src.name))
        assert file_digest(path) == file_digest(src)


async def test_split_upload_under_a_long_caption_fits_the_note(sim, clients, tmp_path):
    async with bot_env(sim, clients, tmp_path, split_mb=1) as env:
        me = env.people[0]
        await _premium(env, me)
        ch = await env.user.create_channel("Huge", "")
        await env.user.set_chat_protected_content(ch.id, True)
        await env.user.add_chat_members(ch.id, env.bot_username)
        src = write_random(tmp_path / "huge.bin", 2 * 1024 * 1024 + 12345)
        post = await _post_long(env, ch.id, src)
        await me.say(f"https://t.me/c/{str(ch.id)[4:]}/{post.id}")
        parts = [await me.expect_media() for _ in range(3)]
        first = parts[0].caption
        assert u16len(first) <= CAPTION_LIMIT
        assert first.startswith(HEAD) and "\n\nPart 1 of 3 of huge.bin" in first
        ents = [(e.type, e.offset) for e in parts[0].caption_entities]
        assert (enums.MessageEntityType.BOLD, 0) in ents
        assert all(e.offset + e.length <= u16len(first) for e in parts[0].caption_entities)
        await me.expect_text("Job #1 done")


async def test_documents_album_with_a_video_looking_file_arrives_as_documents(env):
    ch = await env.user.create_channel("Docs", "")
    await env.user.set_chat_protected_content(ch.id, True)  # download + re-upload
    await env.user.add_chat_members(ch.id, env.bot_username)
    peer = await env.user.resolve_peer(ch.id)
    files = [write_random(env.work / "clip.mp4", 200_000),
             write_random(env.work / "notes.bin", 150_000)]
    items = []
    for path in files:
        attrs = [raw.types.DocumentAttributeFilename(file_name=path.name)]
        if path.suffix == ".mp4":  # sent as a file, but carrying a video's attributes
            attrs.insert(0, raw.types.DocumentAttributeVideo(duration=3, w=64, h=48))
        sent = await env.user.invoke(raw.functions.messages.UploadMedia(
            peer=peer, media=raw.types.InputMediaUploadedDocument(
                file=await env.user.save_file(str(path)), mime_type="video/mp4",
                attributes=attrs, force_file=True)))
        items.append(raw.types.InputSingleMedia(
            media=raw.types.InputMediaDocument(id=raw.types.InputDocument(
                id=sent.document.id, access_hash=sent.document.access_hash,
                file_reference=sent.document.file_reference)),
            random_id=env.user.rnd_id(), message=path.name))
    await env.user.invoke(raw.functions.messages.SendMultiMedia(peer=peer, multi_media=items))
    history = [m async for m in env.user.get_chat_history(ch.id, limit=2)]
    assert {m.media for m in history} == {enums.MessageMediaType.VIDEO,
                                          enums.MessageMediaType.DOCUMENT}
    await env.say(f"https://t.me/c/{str(ch.id)[4:]}/{min(m.id for m in history)}")
    parts = sorted([await env.expect_media() for _ in range(2)], key=lambda m: m.id)
    assert [m.media for m in parts] == [enums.MessageMediaType.DOCUMENT] * 2
    assert len({m.media_group_id for m in parts}) == 1 and parts[0].media_group_id
    for part, src in zip(parts, files):
        path = await env.user.download_media(part, file_name=str(env.work / "out" / src.name))
        assert file_digest(path) == file_digest(src)


async def test_login_with_a_number_that_has_no_account(env):
    me = env.people[0]
    unregistered = "+15550001234"
    assert env.sim.world.account_by_phone(unregistered.lstrip("+")) is None
    await me.ask("/login", "phone number")
    await me.say(unregistered)
    await me.expect_text("login code")
    await me.say(" ".join(env.sim.world.login_code))
    await me.expect_text("There is no Telegram account for this phone number")
    assert await env.app.db.load_session(me.id) is None
    assert len(env.app.logins) == 0
    assert env.sim.world.account_by_phone(unregistered.lstrip("+")) is None
