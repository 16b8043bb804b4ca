"""What each kind of message media is, and how it is sent again: one table.

Download, upload, copy and album paths used to carry five copies of this mapping (the send
call per kind, the album InputMedia per kind, the raw InputMediaUploaded* per kind, which kinds
take a thumbnail, which attributes travel); they disagreed at the edges. Each row here says,
for a kind of media a Message can hold:

- `name`: the Message attribute that holds it (msg.video...), which is also `MessageMediaType`'s
  value and the kind `Transfers.send_file` takes;
- `upload_as`: the kind it is sent again as (a video note or a sticker goes as a document);
- `send`: the Client method that posts a local file of that kind;
- `album`: the pyrogram InputMedia class for send_media_group, and `family`: which kinds
  Telegram groups together in one album (method/messages.sendMultiMedia: photos with videos,
  audio only with audio, documents only with documents);
- `thumb`: whether the re-upload carries a thumbnail; `fields`: the source media's attributes
  it keeps (duration, width, height, performer, title, supports_streaming); `file_name`:
  whether the send call takes a file name;
- `ext`, `mime`: the extension of a nameless download and the MIME type of an upload whose
  name guesses none; `raw_attributes` / `force_file`: what the raw
  InputMediaUploadedDocument carries (None for a photo: InputMediaUploadedPhoto).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pyrogram import enums, raw, types

K = enums.MessageMediaType


def _video_attrs(m: dict) -> list:
    return [raw.types.DocumentAttributeVideo(
        supports_streaming=m.get("supports_streaming") or None, duration=m.get("duration") or 0,
        w=m.get("width") or 0, h=m.get("height") or 0)]


def _animation_attrs(m: dict) -> list:
    return [raw.types.DocumentAttributeVideo(
        supports_streaming=True, duration=m.get("duration") or 0, w=m.get("width") or 0,
        h=m.get("height") or 0), raw.types.DocumentAttributeAnimated()]


def _audio_attrs(m: dict) -> list:
    return [raw.types.DocumentAttributeAudio(duration=int(m.get("duration") or 0),
                                             performer=m.get("performer"),
                                             title=m.get("title"))]


def _voice_attrs(m: dict) -> list:
    return [raw.types.DocumentAttributeAudio(voice=True, duration=int(m.get("duration") or 0))]


def _no_attrs(m: dict) -> list:
    return []


@dataclass(frozen=True)
class MediaKind:
    name: str
    upload_as: str
    send: str
    album: type | None
    family: str
    thumb: bool
    fields: tuple[str, ...]
    file_name: bool
    ext: str
    mime: str
    raw_attributes: Callable[[dict], list] | None
    album_fields: tuple[str, ...] = ()  # of `fields`, those an album item keeps
    mime_fix: tuple[tuple[str, str], ...] = ()  # (guessed, sent instead), as the library does
    force_file: bool = False

    def meta(self, media) -> dict:
        """The attributes of the source media this kind keeps on re-upload."""
        out = {}
        for f in self.fields:
            value = getattr(media, f, None)
            if f == "supports_streaming":
                out[f] = bool(value)
            elif f in ("performer", "title"):
                out[f] = value
            else:
                out[f] = int(value or 0)
        return out

    def mime_for(self, guessed: str | None) -> str:
        mime = guessed or self.mime
        return dict(self.mime_fix).get(mime, mime)


_DUR_WH = ("duration", "width", "height")
_AS_DOCUMENT = dict(upload_as="document", send="send_document", album=types.InputMediaDocument,
                    family="document", thumb=True, fields=(), file_name=True, ext="",
                    mime="application/octet-stream", raw_attributes=_no_attrs, force_file=True)

_ROWS = [
    MediaKind(name="photo", upload_as="photo", send="send_photo", album=types.InputMediaPhoto,
              family="visual", thumb=False, fields=(), file_name=False, ext=".jpg",
              mime="image/jpeg", raw_attributes=None),
    MediaKind(name="video", upload_as="video", send="send_video", album=types.InputMediaVideo,
              family="visual", thumb=True, fields=_DUR_WH + ("supports_streaming",),
              file_name=True, ext=".mp4", mime="video/mp4", raw_attributes=_video_attrs,
              album_fields=_DUR_WH),
    MediaKind(name="audio", upload_as="audio", send="send_audio", album=types.InputMediaAudio,
              family="audio", thumb=True, fields=("duration", "performer", "title"),
              file_name=True, ext=".mp3", mime="audio/mpeg", raw_attributes=_audio_attrs,
              album_fields=("duration",), mime_fix=(("audio/ogg", "audio/opus"),)),
    # albums take no animations or voice notes (sendMultiMedia): those go as documents
    MediaKind(name="animation", upload_as="animation", send="send_animation", album=None,
              family="animation", thumb=True, fields=_DUR_WH, file_name=True, ext=".mp4",
              mime="video/mp4", raw_attributes=_animation_attrs),
    MediaKind(name="voice", upload_as="voice", send="send_voice", album=None, family="voice",
              thumb=False, fields=("duration",), file_name=False, ext=".ogg", mime="audio/ogg",
              raw_attributes=_voice_attrs, mime_fix=(("audio/mpeg", "audio/ogg"),)),
    MediaKind(name="document", **_AS_DOCUMENT),
    # sent again as documents: a round video note or a sticker cannot be posted from a file
    # with the attributes it came with
    MediaKind(name="video_note", **_AS_DOCUMENT),
    MediaKind(name="sticker", **_AS_DOCUMENT),
]

BY_NAME: dict[str, MediaKind] = {row.name: row for row in _ROWS}
DOCUMENT = BY_NAME["document"]
# Every Message attribute that may hold a downloadable file (a message holds at most one).
NAMES = tuple(BY_NAME)
# The kinds a local file can be sent as.
UPLOAD_KINDS = frozenset(row.upload_as for row in _ROWS)


def of(msg) -> MediaKind:
    """The row of a message's media; anything else with a file is sent as a document."""
    value = getattr(getattr(msg, "media", None), "value", None)
    return BY_NAME.get(value, DOCUMENT)


def upload_row(kind: str) -> MediaKind:
    """The row a file is sent as, by kind name ('video', or 'video_note' -> the document)."""
    row = BY_NAME.get(kind)
    if row is None:
        raise ValueError(f"unknown kind {kind!r}")
    return BY_NAME[row.upload_as]


def media_of(msg):
    """The media object a message holds (msg.video...), or None."""
    return getattr(msg, msg.media.value, None) if getattr(msg, "media", None) else None


def default_name(msg) -> str:
    """The name of a nameless file: photo_12.jpg, video_12.mp4..."""
    return f"{msg.media.value}_{msg.id}{of(msg).ext if msg.media.value in BY_NAME else ''}"


def send_kwargs(msg, thumb: str | None, file_name: str) -> tuple[str, dict]:
    """The Client method that sends `msg`'s media again from a local file, with its
    attributes (besides the chat, the path, the caption and the progress callback)."""
    row = upload_row(of(msg).name)
    kw = row.meta(media_of(msg)) if of(msg) is row else {}
    if row.thumb:
        kw["thumb"] = thumb
    if row.file_name:
        kw["file_name"] = file_name
    if row.force_file:
        kw["force_document"] = True
    return row.send, kw


def transfer_kwargs(msg, thumb: str | None, file_name: str) -> dict:
    """Transfers.send_file's keywords for the same message: kind and attributes."""
    row = upload_row(of(msg).name)
    kw = row.meta(media_of(msg)) if of(msg) is row else {}
    return {"kind": row.name, "thumb": thumb if row.thumb else None, "file_name": file_name,
            **kw}


def album_kinds(group: list) -> list:
    """What each item of an album is sent as. Telegram groups photos with videos, and
    documents or audio only with their own kind; the library reads a file that carries video
    (or audio) attributes as a video even inside a documents album, so anything but an
    all-visual or all-audio album goes as documents."""
    rows = [upload_row(of(m).name) for m in group]
    families = {row.family for row in rows}
    if families in ({"visual"}, {"audio"}):
        return [m.media for m in group]
    return [K.DOCUMENT] * len(group)


def album_item(msg, kind, path: str, thumb: str | None, caption: dict):
    """The InputMedia for one album item sent as `kind` (a MessageMediaType)."""
    row = BY_NAME[kind.value]
    kw = dict(caption)
    if row.thumb:
        kw["thumb"] = thumb
    if row is of(msg):
        kw.update({f: v for f, v in row.meta(media_of(msg)).items() if f in row.album_fields})
    return row.album(path, **kw)


def uploaded_media(kind: str, file, name: str, thumb, guessed_mime: str | None,
                   meta: dict):
    """The raw InputMediaUploaded* that the library's send_<kind> builds for an uploaded
    file: `file` the InputFile, `thumb` the uploaded thumbnail's InputFile (or None),
    `guessed_mime` what the library guesses from `name`, `meta` the row's fields."""
    row = upload_row(kind)
    if row.raw_attributes is None:
        return raw.types.InputMediaUploadedPhoto(file=file)
    attrs = row.raw_attributes(meta)
    if row.file_name:  # after the kind's own attribute, as the library orders them
        attrs.insert(1 if attrs else 0, raw.types.DocumentAttributeFilename(file_name=name))
    kw = {"thumb": thumb} if row.thumb else {}
    if row.force_file:
        kw["force_file"] = True
    return raw.types.InputMediaUploadedDocument(mime_type=row.mime_for(guessed_mime), file=file,
                                                attributes=attrs, **kw)

