"""Per-user settings: validation, caption and name rewriting, hostile input."""

from types import SimpleNamespace

import pytest
from pyrogram import enums
from pyrogram.types import MessageEntity

from helpers.user_settings import (
    DEFAULTS, MAX_CAPTION, MAX_RULES, SettingsError, add_rules, apply_caption, apply_name,
    check_caption, check_rename, describe, may_post, normalize, parse_rules, parse_target,
    target, thumbnail,
)

B, M, U = enums.MessageEntityType.BOLD, enums.MessageEntityType.MENTION, \
    enums.MessageEntityType.URL


def ent(kind, offset, length, **kw):
    return MessageEntity(type=kind, offset=offset, length=length, **kw)


def u16(text):
    return len(text.encode("utf-16-le")) // 2


def spans(text, entities):
    """What each entity covers, read the way Telegram reads it (UTF-16 units)."""
    raw = text.encode("utf-16-le")
    return [(e.type, raw[2 * e.offset:2 * (e.offset + e.length)].decode("utf-16-le"))
            for e in entities or ()]


def rules(*pairs):
    return {"replace": [list(p) for p in pairs]}


# ------------------------------------------------------------------------ schema

def test_normalize_defaults_and_junk():
    assert normalize(None) == DEFAULTS and normalize({}) == DEFAULTS
    junk = {"caption": 5, "caption_off": "yes", "rename": "x" * 500, "thumb": ["x"],
            "replace": ["ab", [1, 2], ["", "x"], ["ok", "fine"], "zz"] + [["w", ""]] * 40,
            "target": {"chat": True}, "extra": 1}
    s = normalize(junk)
    assert s["caption"] is None and s["caption_off"] is False and s["rename"] is None
    assert s["thumb"] is None and s["target"] is None and "extra" not in s
    assert s["replace"][0] == ["ok", "fine"] and len(s["replace"]) == MAX_RULES
    assert normalize({"target": {"chat": "../etc", "topic": 1}})["target"] is None
    assert normalize({"target": {"chat": -1001, "topic": -3}})["target"]["topic"] is None


def test_defaults_are_not_shared():
    s = normalize({})
    s["replace"].append(["a", "b"])
    assert DEFAULTS["replace"] == [] and normalize({})["replace"] == []


def test_caption_bounds_and_placeholders():
    assert check_caption("  Hi {caption}\x00 ") == "Hi {caption}"
    assert check_caption("😀" * 512)  # 1024 UTF-16 units exactly
    with pytest.raises(SettingsError, match="too long"):
        check_caption("😀" * 513)
    with pytest.raises(SettingsError, match=r"Unknown placeholder \{captoin\}"):
        check_caption("{captoin}")
    with pytest.raises(SettingsError, match="Unknown placeholder"):
        check_caption("{0.__class__}")
    with pytest.raises(SettingsError):
        check_caption("   ")


def test_rename_bounds():
    assert check_rename("{name} [{n}].{ext}") == "{name} [{n}].{ext}"
    with pytest.raises(SettingsError, match="too long"):
        check_rename("a" * 129)
    with pytest.raises(SettingsError, match="placeholder"):
        check_rename("{caption}")


def test_rules_parsing_and_limits():
    assert parse_rules("foo => bar\n\n  @spam  \nx=>") == [("foo", "bar"), ("@spam", ""),
                                                         ("x", "")]
    with pytest.raises(SettingsError, match="no word"):
        parse_rules(" => bar")
    with pytest.raises(SettingsError, match="too long"):
        parse_rules("w" * 65)
    with pytest.raises(SettingsError, match="too long"):
        parse_rules("w => " + "r" * 65)
    with pytest.raises(SettingsError, match="At most"):
        parse_rules("\n".join(f"w{i}" for i in range(21)))
    s = add_rules({}, [("Foo", "1")])
    s = add_rules(s, [("foo", "2"), ("bar", "")])
    assert s["replace"] == [["foo", "2"], ["bar", ""]]
    full = add_rules({}, [(f"w{i}", "") for i in range(MAX_RULES)])
    with pytest.raises(SettingsError, match="at most 20"):
        add_rules(full, [("one more", "")])


@pytest.mark.parametrize("text,expected", [
    ("@mychan", ("mychan", None)),
    ("mychan/5", ("mychan", 5)),
    ("https://t.me/mychan/5", ("mychan", 5)),
    ("-1001234567890", (-1001234567890, None)),
    ("-1001234567890/7", (-1001234567890, 7)),
    ("t.me/c/1234567890/7", (-1001234567890, 7)),
    ("https://t.me/c/1234567890/7/99", (-1001234567890, 7)),
    ("t.me/c/1234567890", (-1001234567890, None)),
])
def test_parse_target(text, expected):
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["", "t.me/+AbCdEf123", "t.me/joinchat/abcdef", "12345",
                                  "@ab", "../../etc", "@chan/0", "@chan/x", "-100", None,
                                  "@chan\x00", "@сhannel"])
def test_parse_target_refuses(text):
    with pytest.raises(SettingsError):
        parse_target(text)


def test_getters():
    assert thumbnail({}) is None and target({}) is None
    s = {"thumb": "AgAD", "target": {"chat": -1001, "topic": 3, "title": "T"}}
    assert thumbnail(s) == "AgAD" and target(s) == (-1001, 3)
    assert target({"target": {"chat": "mychan"}}) == ("mychan", None)


# ------------------------------------------------------------------------ captions

def test_caption_untouched_by_default_and_off():
    ents = [ent(B, 0, 5)]
    text, out = apply_caption({}, "hello world", ents)
    assert text == "hello world" and spans(text, out) == [(B, "hello")]
    assert apply_caption({"caption_off": True, "caption": "x"}, "hello", ents) == ("", None)
    assert apply_caption({}, None, None) == ("", None)


def test_custom_caption_places_original_with_its_entities():
    s = {"caption": "😀 New: {caption} | {filename} {caption}"}
    text, out = apply_caption(s, "bold 🎉 tail", [ent(B, 0, 4), ent(B, 5, 2)],
                              file_name="a.mp4")
    assert text == "😀 New: bold 🎉 tail | a.mp4 bold 🎉 tail"
    assert spans(text, out) == [(B, "bold"), (B, "🎉"), (B, "bold"), (B, "🎉")]


def test_placeholder_in_values_is_not_expanded():
    text, _ = apply_caption({"caption": "{caption}!"}, "{filename}", None, file_name="x")
    assert text == "{filename}!"
    assert apply_name({"rename": "{name}-{n}"}, "{ext}.txt", n=3) == "{ext}-3.txt"


def test_replace_shifts_following_entities_in_utf16():
    # the emoji before the rule match makes Python and UTF-16 offsets differ
    text = "🎉 see @spam now 🔥 bold"
    ents = [ent(B, 0, 2), ent(M, 7, 5), ent(B, u16("🎉 see @spam now 🔥 "), 4)]
    out_text, out = apply_caption(rules(("@spam", "@eggsandham")), text, ents)
    assert out_text == "🎉 see @eggsandham now 🔥 bold"
    assert spans(out_text, out) == [(B, "🎉"), (B, "bold")]  # the mention it changed is gone


def test_delete_swallows_one_space_and_drops_overlaps():
    text = "Join @chan for more"
    out_text, out = apply_caption(rules(("@chan", "")), text,
                                  [ent(M, 5, 5), ent(B, 0, 4), ent(B, 15, 4), ent(U, 3, 4)])
    assert out_text == "Join for more"
    assert spans(out_text, out) == [(B, "Join"), (B, "more")]


def test_edit_inside_formatting_resizes_it():
    text = "all bold words here"
    out_text, out = apply_caption(rules(("bold", "strong")), text, [ent(B, 0, len(text))])
    assert spans(out_text, out) == [(B, "all strong words here")]


def test_case_insensitive_longest_first_one_pass():
    s = rules(("foo", "X"), ("FOOBAR", "Y"), ("x", "foo"))
    assert apply_caption(s, "FooBar foo x", None)[0] == "Y X foo"


def test_hostile_entities_are_clipped_or_dropped():
    text = "short 😀"
    ents = [ent(B, 0, 100), ent(B, 50, 3), ent(B, -2, 4), ent(B, 3, 0), ent(B, 6, 2)]
    out_text, out = apply_caption({}, text, ents)
    assert spans(out_text, out) == [(B, text), (B, "😀")]
    for e in out:
        assert 0 <= e.offset and e.offset + e.length <= u16(out_text)
    assert ents[0].length == 100, "the caller's entities are not mutated"


def test_truncation_never_splits_an_emoji_or_leaves_entities_past_the_end():
    long = "😀" * 600  # 1200 UTF-16 units
    text, out = apply_caption({"caption": "a{caption}"}, long, [ent(B, 0, 1200),
                                                                ent(B, 1100, 2)])
    assert u16(text) == MAX_CAPTION - 1 and text == "a" + "😀" * 511
    assert [(e.offset, e.length) for e in out] == [(1, 1022)]
    text, _ = apply_caption({}, "x" * 5000, None)
    assert len(text) == MAX_CAPTION


def test_empty_entities_become_none():
    assert apply_caption({}, "plain", [])[1] is None


# ------------------------------------------------------------------------ names

def test_names():
    assert apply_name({}, "Movie.mkv") == "Movie.mkv"
    assert apply_name({"rename": "{name} [{n}]"}, "Movie.mkv", n=7) == "Movie [7].mkv"
    assert apply_name({"rename": "{n}_{name}.{ext}"}, "a.tar.gz", n=1) == "1_a.tar.gz"
    assert apply_name({"rename": "Show"}, "x.mp4") == "Show.mp4"
    assert apply_name({"rename": "{name}.{ext}"}, "README") == "README"
    s = {"replace": [["@spam", ""], ["480p", "HD"]]}
    assert apply_name(s, "@spam film 480p.mp4") == "film HD.mp4"


def test_hostile_names_stay_one_safe_component():
    cases = [
        ({"rename": "../../etc/passwd"}, "a.txt"),
        ({"rename": "{name}"}, "../../../root/.ssh/id_rsa"),
        ({"rename": "CON"}, "x"),
        ({"rename": "{name}\x00.sh"}, "a"),
        ({"replace": [["safe", "../"]]}, "safe.txt"),
        ({"rename": "{ext}"}, "...."),
        ({}, None),
    ]
    for settings, name in cases:
        out = apply_name(settings, name)
        assert out and "/" not in out and "\\" not in out and "\x00" not in out
        assert out not in (".", "..") and not out.startswith(".")
        assert out.split(".")[0].upper() not in ("CON", "NUL")


def test_rules_cannot_erase_a_name():
    assert apply_name({"replace": [["movie", ""]]}, "Movie.mp4") == "Movie.mp4"


def test_unicode_names_and_emoji():
    assert apply_name({"rename": "🎬 {name}"}, "Фильм.mp4") == "🎬 Фильм.mp4"


# ------------------------------------------------------------------------ posting rights

def member(status, **kw):
    return SimpleNamespace(status=getattr(enums.ChatMemberStatus, status), **kw)


def test_may_post():
    admin = member("ADMINISTRATOR", privileges=SimpleNamespace(can_post_messages=True))
    editor = member("ADMINISTRATOR", privileges=SimpleNamespace(can_post_messages=False))
    assert may_post(member("OWNER"), True) and may_post(admin, True)
    assert not may_post(editor, True) and may_post(editor, False)
    assert not may_post(member("MEMBER"), True)
    assert may_post(member("MEMBER"), False) and may_post(member("MEMBER"), False, None)
    assert not may_post(member("MEMBER"), False, False)
    muted = member("RESTRICTED", is_member=True,
                   permissions=SimpleNamespace(can_send_messages=False))
    assert not may_post(muted, False)
    for status in ("LEFT", "BANNED"):
        assert not may_post(member(status), False)
    assert not may_post(None, False)


def test_describe_is_plain_and_short():
    s = {"caption": "c" * 500, "replace": [["a", ""], ["b", "c"]], "thumb": "x",
         "target": {"chat": -1001, "topic": 4, "title": "My channel"}}
    text = describe(s)
    assert "Caption: custom" in text and "a → (deleted); b → c" in text
    assert "My channel (topic 4)" in text and len(text) < 400
    assert "Caption: original" in describe({}) and "this chat" in describe({})
