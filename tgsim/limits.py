"""Telegram's length, album and upload-geometry rules, in one place for the api handlers.

Each rule names the core.telegram.org page it follows. The handlers call these checks; they
raise RpcFail with the error Telegram gives.
"""

from __future__ import annotations

from pyrogram import raw

from tgsim.server import RpcFail

# help.getConfig message_length_max; core.telegram.org/api/config: caption_length_limit_default
# 1024 and caption_length_limit_premium 4096 (a premium sender may post longer captions).
MESSAGE_MAX = 4096
CAPTION_MAX = 1024
CAPTION_MAX_PREMIUM = 4096

# core.telegram.org/api/files: part_size % 1024 == 0 and 524288 % part_size == 0, one size
# for every part but the last (smaller), saveBigFilePart for files over 10 MB.
KB = 1024
MAX_PART = 512 * KB
SMALL_FILE_MAX = 10 * KB * KB

# core.telegram.org/method/messages.sendMultiMedia: an album holds 2..10 items.
ALBUM_MIN, ALBUM_MAX = 2, 10


def u16len(text: str | None) -> int:
    """Length in UTF-16 code units, as Telegram counts text and entity offsets
    (core.telegram.org/api/entities)."""
    return len((text or "").encode("utf-16-le", "surrogatepass")) // 2


def check_text(text: str | None, entities, *, media: bool, premium: bool) -> None:
    """MESSAGE_TOO_LONG / MEDIA_CAPTION_TOO_LONG counted in UTF-16 units, and
    ENTITY_BOUNDS_INVALID for an entity that does not lie inside the text
    (core.telegram.org/api/entities: offsets and lengths are UTF-16 code units)."""
    size = u16len(text)
    if media:
        if size > (CAPTION_MAX_PREMIUM if premium else CAPTION_MAX):
            raise RpcFail(400, "MEDIA_CAPTION_TOO_LONG")
    elif size > MESSAGE_MAX:
        raise RpcFail(400, "MESSAGE_TOO_LONG")
    for e in entities or ():
        off, length = getattr(e, "offset", 0), getattr(e, "length", 0)
        if off < 0 or length <= 0 or off + length > size:
            raise RpcFail(400, "ENTITY_BOUNDS_INVALID")


def upload_kind(m) -> str:
    """The album kind of an uploaded document: force_file makes it a file whatever its
    attributes say (core.telegram.org/constructor/inputMediaUploadedDocument)."""
    if getattr(m, "force_file", False):
        return "document"
    return attribute_kind(m.attributes or [])


def attribute_kind(attributes) -> str:
    for a in attributes:
        if isinstance(a, raw.types.DocumentAttributeVideo) and not a.round_message:
            return "video"
        if isinstance(a, raw.types.DocumentAttributeAudio) and not a.voice:
            return "audio"
    return "document"


def check_album(items: list) -> None:
    """messages.sendMultiMedia: 2..10 items (MULTI_MEDIA_TOO_LONG above, MEDIA_INVALID
    below), each uploaded with messages.uploadMedia first ("using raw inputMediaUploaded*
    constructors is not supported", core.telegram.org/method/messages.sendMultiMedia)."""
    if len(items) > ALBUM_MAX:
        raise RpcFail(400, "MULTI_MEDIA_TOO_LONG")
    if len(items) < ALBUM_MIN:
        raise RpcFail(400, "MEDIA_INVALID")
    for single in items:
        if isinstance(single.media, (raw.types.InputMediaUploadedDocument,
                                     raw.types.InputMediaUploadedPhoto)):
            raise RpcFail(400, "MEDIA_INVALID")


def check_album_kinds(kinds: list[str]) -> None:
    """Photos and videos may mix in an album; documents and audio group only with their own
    kind (core.telegram.org/api/files, "Albums"; Telegram refuses the mix with MEDIA_INVALID)."""
    visual = {"photo": "visual", "video": "visual"}
    if len({visual.get(k, k) for k in kinds}) > 1:
        raise RpcFail(400, "MEDIA_INVALID")


def media_kind(media) -> str:
    """The album kind of a stored tgsim Media (a world.Media)."""
    if media.kind == "photo":
        return "photo"
    return media.album_kind or attribute_kind(media.attributes)


def check_part(data: bytes, file_part: int, total_parts: int | None, full_size: int | None
               ) -> None:
    """One saveFilePart / saveBigFilePart against core.telegram.org/api/files. A part of a
    big file that is not the last must have a valid size equal to the others'; a small file's
    last part is only known when the file is named, so check_parts finishes the job."""
    n = len(data)
    if n > MAX_PART:
        raise RpcFail(400, "FILE_PART_TOO_BIG")
    if n == 0:
        raise RpcFail(400, "FILE_PART_EMPTY")
    last = total_parts is not None and file_part == total_parts - 1
    if not last and total_parts is not None:
        if n % KB or MAX_PART % n:
            raise RpcFail(400, "FILE_PART_SIZE_INVALID")
        if full_size is not None and n != full_size:
            raise RpcFail(400, "FILE_PART_SIZE_CHANGED")


def check_parts(sizes: dict[int, int], parts: int, big: bool) -> None:
    """The whole file when a send call names it: every part present (FILE_PART_X_MISSING,
    "try repeating the method call to resave the part"), one valid size for all parts but a
    smaller last one, and the big method for files over 10 MB (core.telegram.org/api/files)."""
    if parts <= 0:
        raise RpcFail(400, "FILE_PARTS_INVALID")
    for i in range(parts):
        if i not in sizes:
            raise RpcFail(400, f"FILE_PART_{i}_MISSING")
    full = sizes[0]
    if parts > 1 and (full % KB or MAX_PART % full):
        raise RpcFail(400, "FILE_PART_SIZE_INVALID")
    for i in range(1, parts - 1):
        if sizes[i] != full:
            raise RpcFail(400, "FILE_PART_SIZE_CHANGED")
    if parts > 1 and sizes[parts - 1] > full:
        raise RpcFail(400, "FILE_PART_SIZE_INVALID")
    if not big and sum(sizes[i] for i in range(parts)) > SMALL_FILE_MAX:
        raise RpcFail(400, "FILE_PARTS_INVALID")
