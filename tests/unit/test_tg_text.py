"""The one UTF-16 truncation, the album kinds the pipeline sends, and tgsim's geometry rules."""

from types import SimpleNamespace

import pytest
from pyrogram import enums
from pyrogram.types import MessageEntity

from helpers.pipeline import _album_kinds
from helpers.tg_text import clip, truncate, u16len
from tgsim import limits
from tgsim.server import RpcFail

T = enums.MessageEntityType
K = enums.MessageMediaType


def ent(kind, offset, length):
    return MessageEntity(type=kind, offset=offset, length=length)


def test_u16len_counts_emoji_as_two():
    assert u16len("a😀b") == 4 and u16len("") == 0 and u16len(None) == 0


def test_truncate_never_splits_an_emoji_and_clips_what_crosses_the_cut():
    text = "ab" + "😀" * 3  # 8 units
    bold, italic = ent(T.BOLD, 0, 8), ent(T.ITALIC, 6, 2)
    cut, ents = truncate(text, [bold, italic], 5)
    assert cut == "ab😀" and u16len(cut) == 4  # unit 5 is inside the second emoji
    assert [(e.type, e.offset, e.length) for e in ents] == [(T.BOLD, 0, 4)]
    assert bold.length == 8, "the caller's entity is not mutated"


def test_truncate_keeps_short_text_and_its_entities():
    bold = ent(T.BOLD, 1, 2)
    assert truncate("hey", [bold], 1024) == ("hey", [bold])


def test_clip_drops_text_defined_entities_the_cut_goes_through():
    url, bold = ent(T.URL, 2, 10), ent(T.BOLD, 2, 10)
    got = clip([url, bold, ent(T.MENTION, 20, 3), ent(T.BOLD, -1, 3)], 6)
    assert [(e.type, e.offset, e.length) for e in got] == [(T.BOLD, 2, 4)]


def _msgs(*kinds):
    return [SimpleNamespace(media=k) for k in kinds]


def test_album_kinds_photos_and_videos_mix_documents_take_the_rest():
    assert _album_kinds(_msgs(K.PHOTO, K.VIDEO)) == [K.PHOTO, K.VIDEO]
    assert _album_kinds(_msgs(K.AUDIO, K.AUDIO)) == [K.AUDIO, K.AUDIO]
    assert _album_kinds(_msgs(K.DOCUMENT, K.VIDEO)) == [K.DOCUMENT] * 2
    assert _album_kinds(_msgs(K.AUDIO, K.DOCUMENT)) == [K.DOCUMENT] * 2
    assert _album_kinds(_msgs(K.PHOTO, K.ANIMATION)) == [K.DOCUMENT] * 2


def _fails(name, fn, *args):
    with pytest.raises(RpcFail) as e:
        fn(*args)
    assert e.value.message == name


def test_tgsim_part_geometry():
    kb = 1024
    limits.check_parts({0: 512 * kb, 1: 512 * kb, 2: 7}, 3, big=False)
    limits.check_parts({0: 999}, 1, big=False)  # one part: it is also the last
    _fails("FILE_PART_1_MISSING", limits.check_parts, {0: kb, 2: 5}, 3, False)
    _fails("FILE_PART_SIZE_INVALID", limits.check_parts, {0: 3 * kb, 1: 5}, 2, False)
    _fails("FILE_PART_SIZE_CHANGED", limits.check_parts, {0: kb, 1: 2 * kb, 2: 1}, 3, False)
    _fails("FILE_PART_SIZE_INVALID", limits.check_parts, {0: kb, 1: 2 * kb}, 2, False)
    _fails("FILE_PARTS_INVALID", limits.check_parts,
           {i: 512 * kb for i in range(21)}, 21, False)
    limits.check_parts({i: 512 * kb for i in range(21)}, 21, True)
