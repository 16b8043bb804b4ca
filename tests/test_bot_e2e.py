"""The real bot (App) against tgsim, driven by a real user client: link in, media out."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

from pyrogram import filters
from pyrogram.types import InputMediaDocument

from harness.processes import bot_environment, end
from harness.botenv import wait_until
from harness.files import file_digest, write_random
from harness.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


async def _public_channel(env, name="pubfeed"):
    ch = await env.user.create_channel("Feed", "")
    await env.user.set_chat_username(ch.id, name)
    return ch


async def test_public_document_is_copied_with_caption(env):
    await _public_channel(env)
    src = write_random(env.work / "a.bin", 3_000_001)
    post = await env.user.send_document("pubfeed", str(src), caption="**hello** world")
    await env.say(f"https://t.me/pubfeed/{post.id}")
    await env.expect_text("queued at position 1")
    got = await env.expect_media()
    assert got.caption == "hello world" and got.caption_entities[0].length == 5
    assert env.sim.stats["upload.GetFile"] == 0  # copied server-side, not downloaded by the bot
    path = await env.user.download_media(got, file_name=str(env.work / "out" / "a"))
    assert file_digest(path) == file_digest(src)


async def test_protected_channel_where_bot_is_member_is_downloaded_and_reuploaded(env):
    ch = await env.user.create_channel("Locked", "")
    await env.user.set_chat_protected_content(ch.id, True)
    await env.user.add_chat_members(ch.id, env.bot_username)
    src = write_random(env.work / "video.mp4", 5_000_000)
    thumb = write_random(env.work / "t.jpg", 5_000)
    post = await env.user.send_video(ch.id, str(src), duration=9, width=320, height=240,
                                     thumb=str(thumb), caption="secret __clip__")
    await env.say(f"t.me/c/{str(ch.id)[4:]}/{post.id}")
    got = await env.expect_media()
    assert got.video.duration == 9 and got.video.width == 320
    assert got.caption == "secret clip" and got.caption_entities
    assert got.video.thumbs, "thumbnail carried over"
    path = await env.user.download_media(got, file_name=str(env.work / "out" / "v"))
    assert file_digest(path) == file_digest(src)
    await wait_until(lambda: not any(Path(env.app.settings.assets_dir).iterdir()), 5,
                     "the job files removed")


async def test_text_message_range_album_and_batch(env):
    await _public_channel(env)
    t = await env.user.send_message("pubfeed", "just **text**")
    await env.say(f"https://telegram.me/pubfeed/{t.id}")
    got = await env.expect_text("just text")
    assert got.entities

    ids = [(await env.user.send_message("pubfeed", f"line {i}")).id for i in range(3)]
    await env.say(f"t.me/pubfeed/{ids[0]}-{ids[-1]}")
    seen = set()
    while len(seen) < 3:
        msg = await env.expect(lambda m: (m.text or "").startswith("line "))
        seen.add(msg.text)

    files = [write_random(env.work / f"p{i}.bin", 200_000 + i) for i in range(3)]
    album = await env.user.send_media_group("pubfeed", [
        InputMediaDocument(str(files[0]), caption="album"), InputMediaDocument(str(files[1])),
        InputMediaDocument(str(files[2]))])  # documents group only with documents
    await env.say(f"https://t.me/pubfeed/{album[0].id}")
    parts = [await env.expect_media() for _ in range(3)]
    assert len({p.media_group_id for p in parts}) == 1

    await env.say(f"/batch https://t.me/pubfeed/{ids[0]} 2")
    await env.expect_text("queued")
    texts = {(await env.expect(lambda m: (m.text or "").startswith("line "))).text
             for _ in range(2)}
    assert texts == {"line 0", "line 1"}


async def test_bad_input_gets_clear_replies(env):
    await env.say("hello there, no link here")
    await env.expect_text("No Telegram link")
    await env.say("https://example.com/pubfeed/5")
    await env.expect_text("t.me")
    await env.say("https://t.me/c/123/0")
    await env.expect_text("t.me/c/")
    await env.say("https://t.me/no_such_chat_here/5")
    await env.expect_text("cannot read that chat")
    await _public_channel(env)
    post = await env.user.send_message("pubfeed", "soon gone")
    await env.user.delete_messages("pubfeed", post.id)
    await env.say(f"https://t.me/pubfeed/{post.id}")
    await env.expect_text("does not exist or was deleted")


async def test_over_cap_submissions_are_refused_clearly(env):
    await _public_channel(env)
    env.sim.faults.latency_s = 0.3  # keep jobs in the queue while we submit more
    ids = [(await env.user.send_message("pubfeed", f"m{i}")).id for i in range(8)]
    env.sim.faults.latency_s = 0.3
    await env.say("\n".join(f"https://t.me/pubfeed/{i}" for i in ids))
    reply = await env.expect_text("refused")
    assert "at most 5 jobs" in reply.text


async def test_cancel_mid_file_stops_within_two_seconds_and_removes_files(env):
    ch = await env.user.create_channel("Slow", "")
    await env.user.set_chat_protected_content(ch.id, True)
    await env.user.add_chat_members(ch.id, env.bot_username)
    src = write_random(env.work / "big.bin", 40 * 1024 * 1024)
    post = await env.user.send_document(ch.id, str(src))
    env.sim.faults.bandwidth_bps = 4 * 1024 * 1024
    await env.say(f"https://t.me/c/{str(ch.id)[4:]}/{post.id}")
    await env.expect_text("started")
    assets = Path(env.app.settings.assets_dir)
    await wait_until(lambda: any(p.is_file() and p.stat().st_size for p in assets.rglob("*")),
                     10, "the first bytes on disk")
    start = time.monotonic()
    await env.say("/canceldownload")
    await env.expect_text("Cancelled 1 job")
    assert time.monotonic() - start < 2.0
    assert not any(assets.rglob("*")), "partial files removed"
    job = await env.app.db.get_job(1)
    assert job["status"] == "cancelled"


async def test_two_hundred_megabyte_file(env):
    ch = await env.user.create_channel("Big", "")
    await env.user.set_chat_protected_content(ch.id, True)
    await env.user.add_chat_members(ch.id, env.bot_username)
    src = write_random(env.work / "huge.bin", 200 * 1024 * 1024)
    post = await env.user.send_document(ch.id, str(src), caption="200 MB")
    await env.say(f"https://t.me/c/{str(ch.id)[4:]}/{post.id}")
    got = await env.expect_media(timeout=240)
    assert got.document.file_size == src.stat().st_size and got.caption == "200 MB"
    path = await env.user.download_media(got, file_name=str(env.work / "out" / "h"))
    assert file_digest(path) == file_digest(src)


async def test_kill_minus_nine_mid_transfer_then_restart_completes(sim, clients, phone,
                                                                   tmp_path, db_environ):
    bot_acc = sim.world.add_bot("crash_test_bot", "Crashy")
    user = await clients.user(phone, "Patient")
    inbox: asyncio.Queue = asyncio.Queue()

    @user.on_message(filters.private & filters.user(bot_acc.id))
    async def collect(_, message):
        await inbox.put(message)

    ch = await user.create_channel("Slow", "")
    await user.set_chat_protected_content(ch.id, True)
    src = write_random(tmp_path / "big.bin", 24 * 1024 * 1024)
    post = await user.send_document(ch.id, str(src), caption="survivor")
    log = tmp_path / "logs.txt"
    env = bot_environment({
        "API_ID": "12345", "API_HASH": "0123456789abcdef0123456789abcdef",
        "BOT_TOKEN": bot_acc.bot_token, "TELEGRAM_SERVER": sim.server_spec,
        "TELEGRAM_SERVER_KEY": str(sim.public_key_path),
        "DATABASE_PATH": str(tmp_path / "bot" / "bot.db"),
        "ASSETS_DIR": str(tmp_path / "bot" / "Assets"), "LOG_FILE": str(log),
        "PORT": str(free_port()), "PROGRESS_INTERVAL": "3", **db_environ})

    def spawn():
        return subprocess.Popen([sys.executable, "-m", "bot"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    sim.faults.bandwidth_bps = 3 * 1024 * 1024
    proc = spawn()
    try:
        # Connected is not ready: an update that comes before the dispatcher runs is lost.
        await wait_until(lambda: log.exists() and "MEMORY SNAPSHOT [startup]" in log.read_text(),
                         30, "the bot to start")
        # Added while it runs: Telegram tells a bot a private chat's hash only in that update.
        await user.add_chat_members(ch.id, "crash_test_bot")
        await user.send_message("crash_test_bot", f"https://t.me/c/{str(ch.id)[4:]}/{post.id}")
        await wait_until(lambda: sim.stats["upload.GetFile"] >= 3, 30, "the transfer")
        await end(proc, 10, signal.SIGKILL)
        sim.faults.bandwidth_bps = 0
        proc = spawn()
        deadline = time.monotonic() + 90
        got = None
        while time.monotonic() < deadline:
            msg = await asyncio.wait_for(inbox.get(), deadline - time.monotonic())
            if msg.media:
                got = msg
                break
        assert got is not None and got.caption == "survivor"
        path = await user.download_media(got, file_name=str(tmp_path / "out" / "s"))
        assert file_digest(path) == file_digest(src)
    finally:
        await end(proc, 25)


async def test_file_over_the_upload_limit_arrives_as_numbered_parts(sim, clients, tmp_path):
    from harness.botenv import bot_env

    async with bot_env(sim, clients, tmp_path, split_mb=1) as env:
        me = env.people[0]
        ch = await env.user.create_channel("Huge", "")
        await env.user.set_chat_protected_content(ch.id, True)
        await env.user.add_chat_members(ch.id, env.bot_username)
        src = write_random(tmp_path / "huge.bin", 2 * 1024 * 1024 + 12345)
        post = await env.user.send_document(ch.id, str(src), caption="the **big** one")
        await me.say(f"https://t.me/c/{str(ch.id)[4:]}/{post.id}")
        parts = [await me.expect_media() for _ in range(3)]
        names = [m.document.file_name for m in parts]
        assert names == ["huge.bin.001", "huge.bin.002", "huge.bin.003"]
        assert parts[0].caption.startswith("the big one\n\nPart 1 of 3 of huge.bin")
        assert parts[0].caption_entities and "Part 3 of 3" in parts[2].caption
        joined = tmp_path / "joined.bin"
        with open(joined, "wb") as out:
            for i, m in enumerate(parts):
                got = await env.user.download_media(m, file_name=str(tmp_path / "p" / str(i)))
                out.write(Path(got).read_bytes())
        assert file_digest(joined) == file_digest(src)
        await me.expect_text("Job #1 done")
        assert not any(Path(env.app.settings.assets_dir).rglob("*"))
