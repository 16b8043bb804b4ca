"""The bot's access hashes live in the shared database too: a bot process whose local disk
is new (a deploy on a host without a persistent disk, or a second process beside the first)
still reads a private chat the bot was introduced to before, through another process."""

from __future__ import annotations

import dataclasses

from bot.app import App
from tests.botenv import bot_env
from tests.simclient import file_digest, write_random


def _link(ch, msg_id: int) -> str:
    return f"https://t.me/c/{str(ch.id)[4:]}/{msg_id}"


async def test_a_fresh_disk_reads_a_private_chat_learned_before(sim, clients, tmp_path, pg_url):
    async with bot_env(sim, clients, tmp_path, database_url=pg_url) as env:
        owner = await env.person("Owner")
        reader = env.people[0]
        ch = await owner.client.create_channel("Members only", "")
        await owner.client.set_chat_protected_content(ch.id, True)
        first = await owner.client.send_document(
            ch.id, str(write_random(tmp_path / "a.bin", 200_000)), caption="before")
        # Telegram tells the bot this chat's access hash only in the update of being added.
        await owner.client.add_chat_members(ch.id, env.bot_username)
        await reader.say(_link(ch, first.id))
        assert (await reader.expect_media()).caption == "before"
        settings = env.app.settings

    # The next deploy: an empty disk (no pyrogram session file), the same PostgreSQL.
    fresh = tmp_path / "fresh"
    app = App(dataclasses.replace(settings, database_path=str(fresh / "bot.db"),
                                  assets_dir=str(fresh / "Assets")))
    await app.start()
    try:
        assert not (tmp_path / "bot" / "bot.session").samefile(fresh / "bot.session")
        src = write_random(tmp_path / "b.bin", 300_000)
        second = await owner.client.send_document(ch.id, str(src), caption="after")
        await reader.say(_link(ch, second.id))
        got = await reader.expect(lambda m: (m.caption == "after" and m.media is not None)
                                  or "add me" in (m.text or ""))
        assert got.media is not None, got.text
        path = await reader.client.download_media(got, file_name=str(tmp_path / "out" / "b"))
        assert file_digest(path) == file_digest(src)
    finally:
        await app.stop()
