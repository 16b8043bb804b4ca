"""tgsim as strict as Telegram on lengths (UTF-16), albums, sign-up and upload geometry, seen
through the real client library."""

from __future__ import annotations

import os

import pytest
from pyrogram import errors, raw, types
from pyrogram.types import InputMediaAudio, InputMediaDocument, InputMediaPhoto, InputMediaVideo

from harness.files import write_random

EMOJI = "😀"  # one character, two UTF-16 units


async def test_text_and_caption_lengths_count_utf16_units(clients, phone, tmp_path):
    alice = await clients.user(phone, "Alice")
    await alice.send_message("me", "a" * 4096)
    await alice.send_message("me", EMOJI * 2048)
    with pytest.raises(errors.MessageTooLong):
        await alice.send_message("me", EMOJI * 2049)  # 2049 characters, 4098 units
    with pytest.raises(errors.MessageTooLong):
        await alice.send_message("me", "a" * 4097)
    doc = write_random(tmp_path / "d.bin", 10_000)
    await alice.send_document("me", str(doc), caption=EMOJI * 512)
    with pytest.raises(errors.MediaCaptionTooLong):
        await alice.send_document("me", str(doc), caption=EMOJI * 513)  # 1026 units
    sim_acc = clients.sim.world.accounts[alice.me.id]
    sim_acc.premium = True  # core.telegram.org/api/config: caption_length_limit_premium
    await alice.send_document("me", str(doc), caption="b" * 1500 + EMOJI * 1298)  # 4096
    with pytest.raises(errors.MediaCaptionTooLong):
        await alice.send_document("me", str(doc), caption="b" * 4097)


async def test_entities_must_lie_inside_the_text(clients, phone):
    alice = await clients.user(phone, "Alice")
    peer = raw.types.InputPeerSelf()
    # "😀ab" is 4 units: bold over "ab" is offsets 2..4, fine; 3..5 runs past the end.
    await alice.invoke(raw.functions.messages.SendMessage(
        peer=peer, message=EMOJI + "ab", random_id=alice.rnd_id(),
        entities=[raw.types.MessageEntityBold(offset=2, length=2)]))
    with pytest.raises(errors.BadRequest, match="ENTITY_BOUNDS_INVALID"):
        await alice.invoke(raw.functions.messages.SendMessage(
            peer=peer, message=EMOJI + "ab", random_id=alice.rnd_id(),
            entities=[raw.types.MessageEntityBold(offset=3, length=2)]))


async def test_album_sizes_and_kinds(clients, phone, tmp_path):
    alice = await clients.user(phone, "Alice")
    f = [str(write_random(tmp_path / f"f{i}.bin", 20_000 + i)) for i in range(11)]
    jpg = str(write_random(tmp_path / "p.jpg", 20_000))
    mp4 = str(write_random(tmp_path / "v.mp4", 30_000))
    mp3 = str(write_random(tmp_path / "a.mp3", 30_000))
    with pytest.raises(errors.MediaInvalid):
        await alice.send_media_group("me", [InputMediaDocument(f[0])])
    with pytest.raises(errors.MultiMediaTooLong):
        await alice.send_media_group("me", [InputMediaDocument(p) for p in f])
    with pytest.raises(errors.MediaInvalid):
        await alice.send_media_group("me", [InputMediaDocument(f[0]), InputMediaPhoto(jpg)])
    with pytest.raises(errors.MediaInvalid):
        await alice.send_media_group("me", [InputMediaAudio(mp3), InputMediaDocument(f[1])])
    with pytest.raises(errors.MediaInvalid):
        await alice.send_media_group("me", [InputMediaVideo(mp4), InputMediaDocument(f[2])])
    ok = await alice.send_media_group("me", [InputMediaPhoto(jpg), InputMediaVideo(mp4)])
    assert len(ok) == 2 and ok[0].media_group_id == ok[1].media_group_id
    ten = await alice.send_media_group("me", [InputMediaDocument(p) for p in f[:10]])
    assert len(ten) == 10
    assert len(await alice.send_media_group("me", [InputMediaAudio(mp3),
                                                    InputMediaAudio(mp3)])) == 2


async def test_album_items_must_be_uploaded_first(clients, phone, tmp_path):
    alice = await clients.user(phone, "Alice")
    items = []
    for i in range(2):
        path = write_random(tmp_path / f"u{i}.bin", 5_000)
        items.append(raw.types.InputSingleMedia(
            media=raw.types.InputMediaUploadedDocument(
                file=await alice.save_file(str(path)), mime_type="application/octet-stream",
                attributes=[]),
            random_id=alice.rnd_id(), message=""))
    with pytest.raises(errors.MediaInvalid):
        await alice.invoke(raw.functions.messages.SendMultiMedia(
            peer=raw.types.InputPeerSelf(), multi_media=items))


async def test_unregistered_phone_gets_sign_up_required_with_terms(clients, phone):
    client = clients.new()
    await client.connect()
    try:
        sent = await client.send_code(phone)
        result = await client.sign_in(phone, sent.phone_code_hash, clients.sim.world.login_code)
        assert isinstance(result, types.TermsOfService) and result.id and result.text
        user = await client.sign_up(phone, sent.phone_code_hash, "New")
        assert user.first_name == "New"
    finally:
        await client.disconnect()


async def _send_uploaded(client, input_file):
    return await client.invoke(raw.functions.messages.SendMedia(
        peer=raw.types.InputPeerSelf(), message="", random_id=client.rnd_id(),
        media=raw.types.InputMediaUploadedDocument(
            file=input_file, mime_type="application/octet-stream",
            attributes=[raw.types.DocumentAttributeFilename(file_name="x.bin")])))


def _small(file_id, parts):
    return raw.types.InputFile(id=file_id, parts=parts, name="x.bin", md5_checksum="")


async def test_upload_geometry(clients, phone):
    c = await clients.user(phone, "Uploader")
    kb = 1024
    save = raw.functions.upload.SaveFilePart
    big = raw.functions.upload.SaveBigFilePart

    # a part size that is not a multiple of 1 KB dividing 512 KB (1000 bytes, 3 KB)
    for size in (1000, 3 * kb):
        fid = c.rnd_id()
        await c.invoke(save(file_id=fid, file_part=0, bytes=os.urandom(size)))
        await c.invoke(save(file_id=fid, file_part=1, bytes=os.urandom(10)))
        with pytest.raises(errors.FilePartSizeInvalid):
            await _send_uploaded(c, _small(fid, 2))
    fid = c.rnd_id()
    with pytest.raises(errors.FilePartSizeInvalid):
        await c.invoke(big(file_id=fid, file_part=0, file_total_parts=3,
                           bytes=os.urandom(3 * kb)))

    # one size for all parts but the last, which may be smaller only
    fid = c.rnd_id()
    await c.invoke(big(file_id=fid, file_part=0, file_total_parts=3, bytes=os.urandom(64 * kb)))
    with pytest.raises(errors.FilePartSizeChanged):
        await c.invoke(big(file_id=fid, file_part=1, file_total_parts=3,
                           bytes=os.urandom(32 * kb)))
    fid = c.rnd_id()
    for i, size in enumerate((4 * kb, 8 * kb, 4 * kb)):
        await c.invoke(save(file_id=fid, file_part=i, bytes=os.urandom(size)))
    with pytest.raises(errors.FilePartSizeChanged):
        await _send_uploaded(c, _small(fid, 3))
    fid = c.rnd_id()
    await c.invoke(save(file_id=fid, file_part=0, bytes=os.urandom(4 * kb)))
    await c.invoke(save(file_id=fid, file_part=1, bytes=os.urandom(5 * kb)))
    with pytest.raises(errors.FilePartSizeInvalid):
        await _send_uploaded(c, _small(fid, 2))

    # a missing part is named, and saving it lets the same send go through
    fid = c.rnd_id()
    await c.invoke(save(file_id=fid, file_part=0, bytes=os.urandom(4 * kb)))
    await c.invoke(save(file_id=fid, file_part=2, bytes=os.urandom(100)))
    with pytest.raises(errors.FilePartMissing) as missing:
        await _send_uploaded(c, _small(fid, 3))
    assert missing.value.value == 1
    await c.invoke(save(file_id=fid, file_part=1, bytes=os.urandom(4 * kb)))
    sent = await _send_uploaded(c, _small(fid, 3))
    doc = next(u for u in sent.updates if isinstance(u, raw.types.UpdateNewMessage))
    assert doc.message.media.document.size == 8 * kb + 100

    # over 10 MB the big method is required
    fid = c.rnd_id()
    chunk = os.urandom(512 * kb)
    for i in range(21):
        await c.invoke(save(file_id=fid, file_part=i, bytes=chunk))
    with pytest.raises(errors.FilePartsInvalid):
        await _send_uploaded(c, _small(fid, 21))
    fid = c.rnd_id()
    for i in range(21):
        await c.invoke(big(file_id=fid, file_part=i, file_total_parts=21, bytes=chunk))
    await _send_uploaded(c, raw.types.InputFileBig(id=fid, parts=21, name="x.bin"))
