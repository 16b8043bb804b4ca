import random
import string
from dataclasses import FrozenInstanceError

import pytest

from helpers.links import (ACCEPTED_FORMS, MAX_MESSAGE_ID, LinkError, LinkRef, parse,
                           parse_batch)


def one(text, **kw) -> LinkRef:
    refs = parse(text, **kw)
    assert len(refs) == 1, refs
    return refs[0]


# --- every accepted form -------------------------------------------------------------

@pytest.mark.parametrize("prefix", [
    "https://t.me/", "http://t.me/", "t.me/", "https://telegram.me/", "telegram.me/",
    "https://www.t.me/", "www.telegram.me/", "HTTPS://T.ME/", "https://telegram.dog/",
])
def test_public_message_every_host_form(prefix):
    ref = one(prefix + "durov/123")
    assert ref == LinkRef("public", "durov", 123, 123)
    assert ref.chat_id == "durov"
    assert ref.ids() == range(123, 124)
    assert not ref.is_range and ref.count == 1


def test_private_message():
    ref = one("https://t.me/c/1234567890/45")
    assert (ref.kind, ref.chat, ref.msg_id, ref.end_id) == ("private", 1234567890, 45, 45)
    assert ref.chat_id == -1001234567890


def test_private_channel_id_beyond_int32():
    # Modern channel ids exceed 2**31; the link must still parse.
    assert one("t.me/c/2345678901/5").chat_id == -1002345678901


def test_topic_links():
    ref = one("https://t.me/c/1234567890/7/45")
    assert (ref.kind, ref.topic_id, ref.msg_id) == ("private", 7, 45)
    ref = one("t.me/somegroup/7/45")
    assert (ref.kind, ref.chat, ref.topic_id, ref.msg_id) == ("public", "somegroup", 7, 45)


def test_query_params():
    ref = one("https://t.me/durov/10?thread=3")
    assert ref.topic_id == 3 and ref.msg_id == 10
    ref = one("https://t.me/durov/10?comment=99")
    assert ref.comment_id == 99 and ref.msg_id == 10
    assert one("t.me/durov/10?single").single is True
    assert one("t.me/durov/10?single=1").single is True
    assert one("t.me/durov/10?single=").single is True
    assert one("t.me/durov/10").single is False
    ref = one("t.me/durov/10?thread=3&comment=4&single&utm_source=x")
    assert (ref.topic_id, ref.comment_id, ref.single) == (3, 4, True)
    assert one("t.me/c/5/7/10?thread=7").topic_id == 7


def test_bot_link():
    ref = one("https://t.me/b/examplebot/12")
    assert ref == LinkRef("bot", "examplebot", 12, 12)
    assert ref.chat_id == "examplebot"


def test_ranges():
    ref = one("https://t.me/c/1234567890/10-25")
    assert (ref.msg_id, ref.end_id) == (10, 25)
    assert ref.ids() == range(10, 26) and ref.count == 16 and ref.is_range
    ref = one("t.me/durov/10-25")
    assert ref.kind == "public" and list(ref.ids())[-1] == 25
    assert one("t.me/durov/5-5").is_range is False
    assert one("t.me/durov/1-200").count == 200
    assert one("t.me/durov/1-10", max_range=10).count == 10


def test_invite_links():
    ref = one("https://t.me/+AbCdEf123_-x")
    assert ref.kind == "invite" and ref.invite_hash == "AbCdEf123_-x" and ref.msg_id == 0
    assert ref.chat_id is None and ref.ids() == range(0)
    ref = one("t.me/joinchat/AAAAAEHbEkejzxUjAUCzYg")
    assert ref.kind == "invite" and ref.invite_hash == "AAAAAEHbEkejzxUjAUCzYg"


def test_web_preview_form():
    assert one("https://t.me/s/durov/55") == LinkRef("public", "durov", 55, 55)


def test_trailing_slash_fragment_and_punctuation():
    assert one("https://t.me/durov/5/").msg_id == 5
    assert one("https://t.me/durov/5#frag").msg_id == 5
    assert one("(see https://t.me/durov/5).").msg_id == 5
    assert one("«t.me/durov/5»,").msg_id == 5


def test_many_links_in_text_in_order_with_words_ignored():
    refs = parse("grab t.me/durov/1 and\nhttps://t.me/c/99/2\tplease t.me/durov/1 thanks")
    assert [(r.kind, r.msg_id) for r in refs] == [("public", 1), ("private", 2)]


def test_url_round_trip():
    for text in ["https://t.me/durov/5", "https://t.me/c/12/3/4", "https://t.me/durov/1-9",
                 "https://t.me/b/somebot/3?single", "https://t.me/+AbCdEfGh",
                 "https://t.me/durov/5?thread=2&comment=7"]:
        ref = one(text)
        assert one(ref.url) == ref


def test_linkref_is_immutable_and_slotted():
    ref = one("t.me/durov/5")
    with pytest.raises(FrozenInstanceError):
        ref.msg_id = 6  # type: ignore[misc]
    assert not hasattr(ref, "__dict__")


def test_max_boundaries_accepted():
    assert one(f"t.me/durov/{MAX_MESSAGE_ID}").msg_id == MAX_MESSAGE_ID
    assert one("t.me/abcd/1").chat == "abcd"
    assert one("t.me/" + "a" * 32 + "/1").chat == "a" * 32


# --- every rejection -----------------------------------------------------------------

def rejected(text, fragment="", **kw) -> str:
    with pytest.raises(LinkError) as info:
        parse(text, **kw)
    msg = str(info.value)
    assert ACCEPTED_FORMS in msg, msg
    assert fragment.lower() in msg.lower(), msg
    return msg


@pytest.mark.parametrize("text, fragment", [
    ("t.me/durov/0", "between 1 and"),
    ("t.me/c/0/5", "chat id must be between 1"),
    ("t.me/c/5/0", "between 1 and"),
    (f"t.me/durov/{MAX_MESSAGE_ID + 1}", "between 1 and 2147483647"),
    ("t.me/durov/1" + "0" * 40, "between 1 and"),
    ("t.me/c/99999999999999/5", "chat id must be between"),
    ("t.me/durov/-5", "must be a number"),
    ("t.me/durov/abc", "must be a number"),
    ("t.me/durov/25-10", "reversed"),
    ("t.me/durov/1-201", "at most 200 messages"),
    ("t.me/durov/1-1000000000", "at most 200"),
    ("t.me/durov/0-5", "between 1 and"),
    ("t.me/abc/5", "not a valid telegram username"),
    ("t.me/1durov/5", "not a valid telegram username"),
    ("t.me/" + "a" * 33 + "/5", "not a valid telegram username"),
    ("t.me/dur-ov/5", "not a valid telegram username"),
    ("t.me/b/ab/5", "not a valid telegram username"),
    ("t.me/durov", "not a message"),
    ("t.me/c/12345", "missing the message id"),
    ("t.me/b/examplebot", "missing the message id"),
    ("t.me/", "does not point at a message"),
    ("t.me/durov/1/2/3", "too many parts"),
    ("t.me/durov/5?thread=x", "thread id must be a number"),
    ("t.me/durov/5?comment=0", "between 1"),
    ("t.me/durov/3/5?thread=4", "disagree"),
    ("t.me/durov/1-5?comment=3", "cannot be combined"),
    ("https://example.com/durov/5", "not a telegram link"),
    ("https://t.me.evil.com/durov/5", "not a telegram link"),
    ("https://evil.com/t.me/durov/5", "not a telegram link"),
    ("https://t.me@evil.com/durov/5", "not a telegram link"),
    ("ftp://t.me/durov/5", "not a telegram link"),
    ("javascript://t.me/durov/5", "not a telegram link"),
    ("tg://resolve?domain=durov&post=5", "tg:// links are not supported"),
    ("t.me/+", "not a valid invite link"),
    ("t.me/+abc", "not a valid invite link"),
    ("t.me/joinchat/", "not a valid invite link"),
    ("t.me/+AbCdEfGh/5", "not a valid invite link"),
    ("t.me/+79991234567", "phone number"),
    ("t.me/addstickers/SomePack", "feature link"),
    ("t.me/share/url", "feature link"),
    ("t.me/durov/../5", "malformed"),
    ("t.me/durov//5", "malformed"),
    ("hello there", "no telegram link"),
    ("", "no telegram link"),
])
def test_rejections(text, fragment):
    rejected(text, fragment)


def test_custom_range_cap_in_message():
    assert "at most 10 messages; this one covers 11" in rejected("t.me/durov/1-11", max_range=10)


def test_too_many_links():
    text = " ".join(f"t.me/durov/{i}" for i in range(1, 52))
    rejected(text, "at most 50")
    assert len(parse(text, max_links=60)) == 51
    rejected("t.me/durov/1 t.me/durov/2", "at most 1", max_links=1)


def test_one_bad_link_fails_the_message():
    rejected("t.me/durov/1 t.me/durov/0", "between 1")


def test_problem_attribute_is_first_line():
    with pytest.raises(LinkError) as info:
        parse("t.me/durov/0")
    assert str(info.value).startswith(info.value.problem)


# --- hostile corpus ------------------------------------------------------------------

HOSTILE = [
    "x" * 4097,
    "t.me/durov/1 " + "y" * 4090,
    "t.me/durov/" + "9" * 4000,
    "t.me/durov/" + "9" * 2000 + "-" + "9" * 2000,
    "t.me/c/" + "1" * 4000 + "/5",
    "t.me/durov/1\x00",
    "\x00",
    "t.me/du\x00rov/1",
    "t.me/durov/1\x1b[31m",
    "t.me/durov/\u202e1",
    "t.me/durov/1\u200b",
    "t.me/дуров/1",
    "t.me/durov/١٢٣",
    "t.me/durov/１２３",
    "t.me/ｄｕｒｏｖ/1",
    "t.me/durov/1-" + str(10**9),
    "t.me/c/-100123/5",
    "t.me/c/-5/5",
    "t.me/durov/-1",
    "t.me/durov/0-0",
    "t.me/durov/+5",
    "t.me/durov/5.0",
    "t.me/durov/5e3",
    "t.me/durov/0x10",
    "t.me/../../etc/passwd",
    "t.me/durov/../../1",
    "t.me/c/../1/2",
    "https://t.me/%2e%2e/1",
    "https://t.me/durov/%31",
    "https://t.me:99999/durov/1",
    "https://user:pw@t.me/durov/1",
    "t.me/durov/1?thread=" + "9" * 500,
    "t.me/durov/1?comment=-1",
    "t.me/durov/1?thread=1?thread=2",
    "https://",
    "://",
    "http:///",
    "t.me/c//",
    "t.me/b//",
    "t.me/joinchat",
    "t.me/+" + "A" * 500,
    "/" * 4000,
    "t.me/" + "/" * 4000,
    "💥" * 2000,
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_only_linkerror(text):
    with pytest.raises(LinkError):
        parse(text)


@pytest.mark.parametrize("value", [None, 5, b"t.me/durov/1", ["t.me/durov/1"], object()])
def test_non_string_input(value):
    with pytest.raises(LinkError):
        parse(value)  # type: ignore[arg-type]
    with pytest.raises(LinkError):
        parse_batch(value, 10)  # type: ignore[arg-type]


def test_exactly_4096_chars_is_allowed():
    text = "t.me/durov/1 " + "z" * (4096 - 13)
    assert len(text) == 4096
    assert parse(text)[0].msg_id == 1


def test_fuzz_never_raises_anything_but_linkerror():
    rng = random.Random(1234)
    alphabet = string.printable + "/+-?=&#.:@\x00\u202eдж💥"
    pieces = ["t.me/", "https://", "c/", "b/", "+", "joinchat/", "durov", "/", "-", "?",
              "single", "thread=", "comment=", "&", "0", "1", "2147483648", "..", "www."]
    for _ in range(3000):
        if rng.random() < 0.5:
            text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        else:
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        for call in (lambda: parse(text), lambda: parse_batch(text, 50)):
            try:
                result = call()
            except LinkError:
                continue
            assert result


# --- /batch --------------------------------------------------------------------------

def test_batch():
    ref = parse_batch("https://t.me/c/1234567890/100 10", cap=20)
    assert (ref.kind, ref.msg_id, ref.end_id) == ("private", 100, 109)
    assert ref.ids() == range(100, 110)
    assert parse_batch("t.me/durov/5 1", cap=20).end_id == 5
    assert parse_batch("  t.me/durov/5   20 ", cap=20).count == 20
    assert parse_batch("t.me/c/5/7/100 3", cap=20).topic_id == 7


@pytest.mark.parametrize("args, fragment", [
    ("", "usage: /batch"),
    ("t.me/durov/5", "usage: /batch"),
    ("t.me/durov/5 3 4", "usage: /batch"),
    ("t.me/durov/5 0", "from 1 to 20"),
    ("t.me/durov/5 21", "from 1 to 20"),
    ("t.me/durov/5 -3", "from 1 to 20"),
    ("t.me/durov/5 abc", "from 1 to 20"),
    ("t.me/durov/5 " + "9" * 5000, "too long"),
    ("t.me/durov/5 " + "9" * 3000, "from 1 to 20"),
    ("hello 5", "not a telegram link"),
    ("t.me/durov/1-5 3", "not a range"),
    ("t.me/+AbCdEfGh 3", "invite link"),
    ("t.me/durov/5?comment=2 3", "comment"),
    (f"t.me/durov/{MAX_MESSAGE_ID} 2", "largest message id"),
    ("t.me/durov/0 3", "between 1"),
])
def test_batch_rejections(args, fragment):
    with pytest.raises(LinkError) as info:
        parse_batch(args, cap=20)
    assert fragment.lower() in str(info.value).lower(), str(info.value)


@pytest.mark.parametrize("bare", [1, 5, 99, 123456, 1234567890, 2345678901, 10**11 + 7,
                                  10**12 - 2**31])
def test_private_chat_id_is_arithmetic_at_every_width(bare):
    from helpers.links import bare_channel_id, channel_chat_id

    ref = one(f"https://t.me/c/{bare}/3")
    assert ref.chat_id == -(10**12 + bare) == channel_chat_id(bare)
    assert bare_channel_id(ref.chat_id) == bare
