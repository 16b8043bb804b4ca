"""helpers/media_kinds.py: the one table of media kinds gives what each path used to build by
hand (send calls, album items, the raw media a parallel upload sends)."""

import mimetypes
from types import SimpleNamespace

import pytest
from pyrogram import enums, raw, types

from helpers import media_kinds as mk

K = enums.MessageMediaType


def _msg(kind, **attrs):
    media = SimpleNamespace(file_name=attrs.pop("file_name", None), **attrs)
    return SimpleNamespace(media=kind, id=7, **{kind.value: media})


VIDEO = dict(duration=12, width=640, height=360, supports_streaming=True)
AUDIO = dict(duration=200, performer="Band", title="Song")


@pytest.mark.parametrize("kind,attrs,method,expected", [
    (K.PHOTO, {}, "send_photo", {}),
    (K.VIDEO, VIDEO, "send_video",
     dict(VIDEO, thumb="t.jpg", file_name="f.mp4")),
    (K.AUDIO, AUDIO, "send_audio", dict(AUDIO, thumb="t.jpg", file_name="f.mp4")),
    (K.ANIMATION, dict(duration=3, width=10, height=20), "send_animation",
     dict(duration=3, width=10, height=20, thumb="t.jpg", file_name="f.mp4")),
    (K.VOICE, dict(duration=5), "send_voice", dict(duration=5)),
    (K.DOCUMENT, {}, "send_document",
     dict(thumb="t.jpg", file_name="f.mp4", force_document=True)),
    (K.VIDEO_NOTE, dict(duration=4, length=240), "send_document",
     dict(thumb="t.jpg", file_name="f.mp4", force_document=True)),
    (K.STICKER, dict(width=512, height=512), "send_document",
     dict(thumb="t.jpg", file_name="f.mp4", force_document=True)),
])
def test_send_call_per_kind(kind, attrs, method, expected):
    assert mk.send_kwargs(_msg(kind, **attrs), "t.jpg", "f.mp4") == (method, expected)


def test_transfer_keywords_name_the_kind_sent_and_only_its_attributes():
    kw = mk.transfer_kwargs(_msg(K.VIDEO_NOTE, duration=4), "t.jpg", "n.mp4")
    assert kw == {"kind": "document", "thumb": "t.jpg", "file_name": "n.mp4"}
    kw = mk.transfer_kwargs(_msg(K.VOICE, duration=5), "t.jpg", "v.ogg")
    assert kw == {"kind": "voice", "thumb": None, "file_name": "v.ogg", "duration": 5}


def test_album_items_and_kinds():
    cap = {"caption": "c", "caption_entities": None, "parse_mode": enums.ParseMode.DISABLED}
    video = mk.album_item(_msg(K.VIDEO, **VIDEO), K.VIDEO, "v.mp4", "t.jpg", cap)
    assert isinstance(video, types.InputMediaVideo)
    assert (video.duration, video.width, video.height, video.thumb) == (12, 640, 360, "t.jpg")
    as_doc = mk.album_item(_msg(K.VIDEO, **VIDEO), K.DOCUMENT, "v.mp4", "t.jpg", cap)
    assert type(as_doc) is types.InputMediaDocument and as_doc.thumb == "t.jpg"
    photo = mk.album_item(_msg(K.PHOTO), K.PHOTO, "p.jpg", None, cap)
    assert type(photo) is types.InputMediaPhoto and photo.caption == "c"
    assert mk.album_kinds([_msg(K.PHOTO), _msg(K.VIDEO)]) == [K.PHOTO, K.VIDEO]
    assert mk.album_kinds([_msg(K.VIDEO_NOTE), _msg(K.DOCUMENT)]) == [K.DOCUMENT] * 2


def test_default_names():
    assert mk.default_name(_msg(K.PHOTO)) == "photo_7.jpg"
    assert mk.default_name(_msg(K.VOICE)) == "voice_7.ogg"
    assert mk.default_name(_msg(K.VIDEO_NOTE)) == "video_note_7"


_CLIENT = SimpleNamespace(guess_mime_type=lambda name: mimetypes.guess_type(name)[0])
_FILE = raw.types.InputFile(id=1, parts=2, name="x", md5_checksum="")
_THUMB = raw.types.InputFile(id=2, parts=1, name="t", md5_checksum="")


def _reference_media(client, kind: str, file, name: str, thumb, duration: int, width: int,
                 height: int, performer, title, supports_streaming: bool):
    """What the library's send_<kind> builds for a local file (kurigram 2.2.26, written out
    by hand: the table must give the same)."""
    if kind == "photo":
        return raw.types.InputMediaUploadedPhoto(file=file)
    guessed = client.guess_mime_type(name)
    filename = raw.types.DocumentAttributeFilename(file_name=name)
    if kind == "video":
        return raw.types.InputMediaUploadedDocument(
            mime_type=guessed or "video/mp4", file=file, thumb=thumb,
            attributes=[raw.types.DocumentAttributeVideo(
                supports_streaming=supports_streaming or None, duration=duration or 0,
                w=width or 0, h=height or 0), filename])
    if kind == "animation":
        return raw.types.InputMediaUploadedDocument(
            mime_type=guessed or "video/mp4", file=file, thumb=thumb,
            attributes=[raw.types.DocumentAttributeVideo(
                supports_streaming=True, duration=duration or 0, w=width or 0, h=height or 0),
                filename, raw.types.DocumentAttributeAnimated()])
    if kind == "audio":
        mime = guessed or "audio/mpeg"
        return raw.types.InputMediaUploadedDocument(
            mime_type="audio/opus" if mime == "audio/ogg" else mime, file=file, thumb=thumb,
            attributes=[raw.types.DocumentAttributeAudio(
                duration=int(duration or 0), performer=performer, title=title), filename])
    if kind == "voice":
        mime = guessed or "audio/ogg"
        return raw.types.InputMediaUploadedDocument(
            mime_type="audio/ogg" if mime == "audio/mpeg" else mime, file=file,
            attributes=[raw.types.DocumentAttributeAudio(voice=True,
                                                         duration=int(duration or 0))])
    return raw.types.InputMediaUploadedDocument(
        mime_type=guessed or "application/octet-stream", file=file, thumb=thumb,
        force_file=True, attributes=[filename])


@pytest.mark.parametrize("kind", sorted(mk.UPLOAD_KINDS))
@pytest.mark.parametrize("name", ["clip.mp4", "song.mp3", "note.ogg", "blob"])
def test_raw_media_is_what_the_library_builds(kind, name):
    """The table's raw media (what helpers/transfer.py sends) equals what the library's own
    send_<kind> builds, kind by kind."""
    meta = dict(duration=9, width=4, height=3, performer="P", title="T", supports_streaming=True)
    row = mk.upload_row(kind)
    ours = mk.uploaded_media(kind, _FILE, name, _THUMB, _CLIENT.guess_mime_type(name),
                             {f: meta[f] for f in row.fields})
    theirs = _reference_media(_CLIENT, kind, _FILE, name, _THUMB, 9, 4, 3, "P", "T", True)
    assert str(ours) == str(theirs)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError):
        mk.upload_row("poll")
