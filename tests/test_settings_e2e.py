"""/settings against tgsim: the buttons, the prompts they open, and what gets stored."""

from __future__ import annotations


import pytest

from tests.simclient import file_digest, write_random


@pytest.fixture
def env(env_both):
    """On SQLite and on PostgreSQL: settings are stored state."""
    return env_both


async def _menu(p):
    await p.say("/settings")
    return await p.expect(lambda m: (m.text or "").startswith("Your settings")
                          and m.reply_markup is not None)


async def _press(p, menu, data: str):
    """Click the button carrying `data`, as the Telegram app would."""
    buttons = [b.callback_data for row in menu.reply_markup.inline_keyboard for b in row]
    assert data in buttons, f"{data} not in {buttons}"
    return await p.client.request_callback_answer(menu.chat.id, menu.id, data)


async def _ask(p, field: str, fragment: str):
    menu = await _menu(p)
    await _press(p, menu, f"set:ask:{field}")
    await p.expect_text(fragment)


async def _answer(p, fragment: str):
    """The reply to a prompt answer, failing fast when it is a refusal instead."""
    msg = await p.expect(lambda m: fragment in (m.text or "") or "Try again" in (m.text or ""))
    assert fragment in msg.text, msg.text
    return msg


async def _no_link_reply(p):
    """The prompt answer must not have reached the link handler."""
    assert not [m.text for m in await p.settle() if "link" in (m.text or "").lower()]


async def test_caption_rename_words_and_caption_off(env):
    p, db = env.people[0], env.app.db
    await _ask(p, "caption", "Send me the caption")
    await p.say("From {caption} as {captoin}")
    await p.expect_text("Unknown placeholder {captoin}")
    await p.say("🎬 {caption}\n{filename}")
    await p.expect_text("Custom caption saved")
    await _no_link_reply(p)

    await _ask(p, "rename", "file name pattern")
    await p.say("{name} [{n}]")
    reply = await p.expect_text("Rename pattern saved")
    assert "Holiday video [42].mp4" in reply.text

    await _ask(p, "replace", "words to change")
    await p.say("@spam\n480p => HD")
    await p.expect_text("Saved 2 rule(s); you have 2 of 20")

    s = await db.get_settings(p.id)
    assert s["caption"] == "🎬 {caption}\n{filename}" and s["rename"] == "{name} [{n}]"
    assert s["replace"] == [["@spam", ""], ["480p", "HD"]] and s["caption_off"] is False

    menu = await _menu(p)
    assert "Caption: custom" in menu.text and "480p → HD" in menu.text
    answer = await _press(p, menu, "set:off")
    assert answer.message == "Captions off."
    edited = await p.expect(lambda m: m.id == menu.id and "Caption: off" in (m.text or ""))
    assert (await db.get_settings(p.id))["caption_off"] is True
    await _press(p, edited, "set:reset:replace")
    assert (await db.get_settings(p.id))["replace"] == []


async def test_cancel_keeps_the_value_and_does_not_cancel_downloads(env):
    p = env.people[0]
    await _ask(p, "rename", "file name pattern")
    await p.say("/cancel")
    await p.expect_text("your rename pattern stays as it was")
    assert not [m.text for m in await p.settle() if "jobs to cancel" in (m.text or "")]
    assert env.app.prompts.get(p.id) is None
    await p.say("not a link")  # the prompt is gone: this is an ordinary message again
    await p.expect_text("No Telegram link")
    assert (await env.app.db.get_settings(p.id)).get("rename") is None


async def test_thumbnail_from_a_photo(env):
    p = env.people[0]
    await _ask(p, "thumb", "Send me a photo")
    await p.say("a word is not a photo")
    await p.expect_text("Send the thumbnail as a photo")
    photo = write_random(env.work / "thumb.jpg", 20_000)
    sent = await p.client.send_photo(env.bot_username, str(photo))
    await p.expect_text("Thumbnail saved")
    s = await env.app.db.get_settings(p.id)
    assert s["thumb"] and s["thumb_msg"]
    got = await env.app.bot.download_media(s["thumb"], in_memory=True)
    assert got.getbuffer().nbytes == sent.photo.file_size
    menu = await _menu(p)
    await _press(p, menu, "set:reset:thumb")
    assert (await env.app.db.get_settings(p.id))["thumb"] is None


async def _channel(p, title: str, username: str):
    ch = await p.client.create_channel(title, "")
    await p.client.set_chat_username(ch.id, username)
    return ch


async def test_target_refused_until_the_bot_can_post(env):
    p, bot = env.people[0], env.bot_username
    ch = await _channel(p, "Deliveries", "mydeliveries")
    await _ask(p, "target", "channel or group to deliver to")
    await p.say("t.me/+invitehash")
    await p.expect_text("Invite links cannot be used")
    await p.say("@no_such_channel")
    await p.expect_text("no chat called @no_such_channel")
    await p.say("@mydeliveries/5")
    await p.expect_text("has no topics")
    await p.say("@mydeliveries")  # the bot is not a member
    await p.expect_text("add me to that channel as an admin")
    await p.client.add_chat_members(ch.id, bot)  # a plain member cannot post in a channel
    await p.say(f"t.me/c/{str(ch.id)[4:]}")
    await p.expect_text("add me to that channel as an admin")
    assert (await env.app.db.get_settings(p.id)).get("target") is None
    assert env.app.prompts.get(p.id) == "target", "a refused value keeps the prompt open"


async def test_target_accepted_when_both_can_post(env):
    p, bot = env.people[0], env.bot_username
    ch = await _channel(p, "Deliveries", "mydeliveries")
    await p.client.promote_chat_member(ch.id, bot)
    await _ask(p, "target", "channel or group to deliver to")
    await p.say(str(ch.id))
    await _answer(p, "I will deliver your files to Deliveries")
    s = await env.app.db.get_settings(p.id)
    assert s["target"] == {"chat": ch.id, "topic": None, "title": "Deliveries"}

    # someone who cannot post there may not pick it, even though the bot can
    other = await env.person("Other")
    await _ask(other, "target", "channel or group to deliver to")
    await other.say("@mydeliveries")
    await other.expect_text("You cannot post in that chat")
    assert (await env.app.db.get_settings(other.id)).get("target") is None


async def test_unknown_button_data_is_answered_politely(env):
    p = env.people[0]
    menu = await _menu(p)
    for data in ("set:bogus", "set:reset:everything", "set:ask:../../x", "set:"):
        answer = await p.client.request_callback_answer(menu.chat.id, menu.id, data)
        assert "no longer valid" in answer.message
    assert env.app.prompts.get(p.id) is None


async def test_settings_shape_what_the_pipeline_delivers(env):
    """Rename, word rules, custom caption and thumbnail on a protected file re-uploaded, and a
    copy delivered to a target channel's topic-less feed with the caption rewritten."""
    p = env.people[0]
    owner = await env.person("Owner")
    locked = await owner.client.create_channel("Locked", "")
    await owner.client.set_chat_protected_content(locked.id, True)
    await owner.client.add_chat_members(locked.id, env.bot_username)
    src = write_random(env.work / "Episode SPAM 01.bin", 1_500_000)
    post = await owner.client.send_document(locked.id, str(src), caption="Episode **one** SPAM")
    await env.app.db.set_settings(p.id, {
        "rename": "{name} [mine]", "replace": [["SPAM", ""]],
        "caption": "{caption} | {filename}"})
    await p.say(f"https://t.me/c/{str(locked.id)[4:]}/{post.id}")
    got = await p.expect_media()
    assert got.document.file_name == "Episode 01 [mine].bin"
    assert got.caption == "Episode one | Episode 01 [mine].bin"
    bold = [e for e in got.caption_entities or [] if e.type.name == "BOLD"]
    assert bold and got.caption[bold[0].offset:bold[0].offset + bold[0].length] == "one"
    path = await p.client.download_media(got, file_name=str(env.work / "out" / "x"))
    assert file_digest(path) == file_digest(src)

    # A public post, copied server-side into the user's own channel with captions off.
    feed = await p.client.create_channel("My feed", "")
    await p.client.add_chat_members(feed.id, env.bot_username)
    await p.client.promote_chat_member(feed.id, env.bot_username)
    pub = await owner.client.create_channel("Pub", "")
    await owner.client.set_chat_username(pub.id, "pubsettings")
    doc = await owner.client.send_document("pubsettings", str(src), caption="drop me")
    await env.app.db.set_settings(p.id, {"caption_off": True,
                                         "target": {"chat": feed.id, "topic": None,
                                                    "title": "My feed"}})
    await p.say(f"https://t.me/pubsettings/{doc.id}")
    await p.expect_text("delivered to My feed")
    copied = [m async for m in p.client.get_chat_history(feed.id, limit=5) if m.document]
    assert len(copied) == 1 and not copied[0].caption
