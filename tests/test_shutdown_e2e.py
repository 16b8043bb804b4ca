"""SIGTERM (what Render sends on every deploy) in the middle of a job read through a user's
session: exit 0 well within 20 s, the job back in the queue, every connection closed, and the
next start delivers it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

from pyrogram import filters

from helpers.secrets import SessionCipher, generate_key
from harness.processes import bot_environment, end
from harness.botenv import READER, wait_until
from harness.files import file_digest, write_random
from harness.ports import free_port
from harness.signin import API_HASH, API_ID

ROOT = Path(__file__).resolve().parent.parent


async def test_sigterm_mid_transfer_exits_zero_and_resumes(sim, clients, phone, tmp_path,
                                                          db_environ):
    bot_acc = sim.world.add_bot("term_test_bot", "Graceful")
    owner = await clients.user(phone, "Owner")
    reader_phone = phone[:-1] + ("8" if phone.endswith("9") else "9")  # never the owner's
    reader = await clients.user(reader_phone, "Reader")
    inbox: asyncio.Queue = asyncio.Queue()

    @reader.on_message(filters.private & filters.user(bot_acc.id))
    async def collect(_, message):
        await inbox.put(message)

    ch = await owner.create_channel("Private", "")
    await owner.set_chat_protected_content(ch.id, True)
    await reader.join_chat(await owner.export_chat_invite_link(ch.id))  # owner never saw reader
    src = write_random(tmp_path / "big.bin", 16 * 1024 * 1024)
    post = await owner.send_document(ch.id, str(src), caption="after the deploy")

    # The reader's session, stored the way /login stores it.
    key = generate_key()
    login_client = clients.new(device_model=READER)
    await login_client.connect()
    sent = await login_client.send_code(reader.me.phone_number or reader_phone)
    await login_client.sign_in(reader_phone, sent.phone_code_hash, sim.world.login_code)
    session_string = await login_client.export_session_string()
    await login_client.disconnect()
    db_path = tmp_path / "bot" / "bot.db"
    db_path.parent.mkdir()
    from helpers.database import Database

    db = await Database.open(db_environ.get("DATABASE_URL") or db_path)
    await db.save_session(reader.me.id, SessionCipher(key).encrypt(session_string))
    await db.close()

    env = bot_environment({
        "API_ID": str(API_ID), "API_HASH": API_HASH,
        "BOT_TOKEN": bot_acc.bot_token, "TELEGRAM_SERVER": sim.server_spec,
        "TELEGRAM_SERVER_KEY": str(sim.public_key_path), "SESSION_KEY": key,
        "DATABASE_PATH": str(db_path), "ASSETS_DIR": str(tmp_path / "bot" / "Assets"),
        "LOG_FILE": str(tmp_path / "logs.txt"), "PORT": str(free_port()),
        "PROGRESS_INTERVAL": "3", **db_environ})
    log = Path(env["LOG_FILE"])

    def spawn():
        return subprocess.Popen([sys.executable, "-m", "bot"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    sim.faults.bandwidth_bps = 2 * 1024 * 1024
    proc = spawn()
    try:
        # Connected is not ready: an update that comes before the dispatcher runs is lost.
        await wait_until(lambda: log.exists() and "MEMORY SNAPSHOT [startup]" in log.read_text(),
                         30, "the bot to start")
        await reader.send_message("term_test_bot", f"https://t.me/c/{str(ch.id)[4:]}/{post.id}")
        await wait_until(lambda: sim.stats["upload.GetFile"] >= 3, 30, "the transfer")
        assert sim.connection_count(reader.me.id, device_model=READER) >= 1, "session live"

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 25)
        took = time.monotonic() - started
        print(f"\nSIGTERM to exit: {took:.1f} s, exit code {code}")
        assert code == 0, proc.stderr.read()
        assert took < 20
        # the bot closed them before exiting; the server notices each close a moment later
        await wait_until(lambda: sim.connection_count(bot_acc.id) == 0
                         and sim.connection_count(reader.me.id, device_model=READER) == 0, 5,
                         "the server to see every connection of the bot closed")
        db = await Database.open(db_environ.get("DATABASE_URL") or db_path)
        try:
            rows = [tuple(r) for r in await db._page("SELECT status, delivered FROM jobs", ())]
        finally:
            await db.close()
        assert rows == [("queued", 0)], rows
        log = Path(env["LOG_FILE"]).read_text()
        assert "Shutting down" in log and "Stopped" in log
        assert "Session Disconnected" in log

        sim.faults.bandwidth_bps = 0
        proc = spawn()
        deadline = time.monotonic() + 90
        got = None
        while time.monotonic() < deadline:
            msg = await asyncio.wait_for(inbox.get(), deadline - time.monotonic())
            if msg.media:
                got = msg
                break
        assert got is not None and got.caption == "after the deploy"
        path = await reader.download_media(got, file_name=str(tmp_path / "out" / "s"))
        assert file_digest(path) == file_digest(src)
    finally:
        await end(proc, 25)
