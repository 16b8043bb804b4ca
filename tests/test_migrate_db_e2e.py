"""`python -m bot migrate-db`: a SQLite deployment populated through the bot (a logged-in
user, their settings, a finished job) moves into a real PostgreSQL, twice (safe to re-run),
and the bot started on PostgreSQL carries on: the same data, and the same session reads a
private chat again."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import subprocess
import sys
from pathlib import Path

from bot.app import App
from harness.botenv import bot_env
from harness.files import file_digest, write_random
from harness.processes import bot_environment
from helpers.database import Database
from helpers.secrets import generate_key
from helpers.storage_schema import TABLES

ROOT = Path(__file__).resolve().parent.parent


async def _caption_setting(p, template: str) -> None:
    await p.say("/settings")
    menu = await p.expect(lambda m: (m.text or "").startswith("Your settings")
                          and m.reply_markup is not None)
    await p.client.request_callback_answer(menu.chat.id, menu.id, "set:ask:caption")
    await p.expect_text("Send me the caption")
    await p.say(template)
    await p.expect_text("Custom caption saved")


def _migrate(db_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    env = bot_environment({"DATABASE_PATH": db_path})
    return subprocess.run([sys.executable, "-m", "bot", "migrate-db", "--to", url, *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


async def _dump(url: str) -> dict:
    db = await Database.open(url)
    try:
        return {t: [tuple(r) for r in await db._page(
            f"SELECT * FROM {t} ORDER BY {', '.join(k)}", ())] for t, k in TABLES}
    finally:
        await db.close()


async def test_migrate_db_moves_a_deployment_and_the_bot_carries_on(sim, clients, tmp_path,
                                                                     pg_url):
    async with bot_env(sim, clients, tmp_path, session_key=generate_key()) as env:
        me = env.people[0]
        owner = await env.person("Owner")
        await me.ask("/login", "phone number")
        await me.say(me.phone)
        await me.expect_text("login code")
        await me.say(" ".join(sim.world.login_code))
        await me.expect_text("Logged in as")
        await _caption_setting(me, "Moved: {caption}")

        # A private protected chat only the user's session can read.
        ch = await owner.client.create_channel("Archive", "")
        await owner.client.set_chat_protected_content(ch.id, True)
        await me.client.join_chat(await owner.client.export_chat_invite_link(ch.id))
        first = await owner.client.send_document(
            ch.id, str(write_random(tmp_path / "one.bin", 300_000)), caption="one")
        await me.say(f"https://t.me/c/{str(ch.id)[4:]}/{first.id}")
        got = await me.expect_media()
        assert got.caption == "Moved: one"
        db = env.app.db
        for _ in range(200):  # delivered first, then recorded as done
            if (await db.stats())["jobs"]["done"] == 1:
                break
            await asyncio.sleep(0.05)
        before = {"settings": await db.get_settings(me.id), "stats": await db.stats(),
                  "session": await db.load_session(me.id),
                  "jobs": await db.jobs_of_user(me.id)}
        assert before["stats"]["jobs"]["done"] == 1 and before["session"]
        settings = env.app.settings

    db_path = Path(settings.database_path)
    # A deployment from before bot_peers: the bot's peers only in pyrogram's bot.session.
    with sqlite3.connect(db_path) as con:
        con.execute("DELETE FROM bot_peers")
    done = _migrate(db_path, pg_url)
    assert done.returncode == 0, done.stderr
    assert "jobs: 1 rows" in done.stdout and "user_sessions: 1 rows" in done.stdout
    copied = await _dump(pg_url)
    again = _migrate(db_path, pg_url)  # safe to re-run: the same result
    assert again.returncode == 0, again.stderr
    assert await _dump(pg_url) == copied
    # sessions moved as ciphertext, never decrypted on the way
    assert copied["user_sessions"][0][1] == before["session"]
    assert me.id in {row[0] for row in copied["bot_peers"]}  # taken from bot.session

    app = App(dataclasses.replace(settings, database_url=pg_url))
    await app.start()
    try:
        assert app.db.dialect == "postgres"
        assert await app.db.get_settings(me.id) == before["settings"]
        assert await app.db.stats() == before["stats"]
        assert await app.db.jobs_of_user(me.id) == before["jobs"]
        src = write_random(tmp_path / "two.bin", 400_000)
        second = await owner.client.send_document(ch.id, str(src), caption="two")
        await me.say(f"https://t.me/c/{str(ch.id)[4:]}/{second.id}")
        got = await me.expect_media()
        assert got.caption == "Moved: two"  # the moved settings, through the moved session
        path = await me.client.download_media(got, file_name=str(tmp_path / "out" / "two"))
        assert file_digest(path) == file_digest(src)
        jobs = await app.db.jobs_of_user(me.id)
        assert len(jobs) == 2 and jobs[0]["id"] > jobs[1]["id"]  # ids go on from SQLite's
        for _ in range(200):  # the second job recorded as done on PostgreSQL
            if (await app.db.stats())["jobs"]["done"] == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await app.stop()

    # The bot has run on PostgreSQL since: copying the old SQLite file again would put its
    # sessions, settings and totals back over that, so it is refused, and nothing changes.
    used = await _dump(pg_url)
    stale = _migrate(db_path, pg_url)
    assert stale.returncode == 2, (stale.stdout, stale.stderr)
    assert "has been used since" in stale.stderr and "--force" in stale.stderr
    assert len(stale.stderr.strip().splitlines()) == 1, stale.stderr
    assert await _dump(pg_url) == used
    forced = _migrate(db_path, pg_url, "--force")
    assert forced.returncode == 0, forced.stderr
