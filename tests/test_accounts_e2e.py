"""Accounts against tgsim: the /login conversation, private and protected chats read through
the user's session, the live-session cap, revocation, admin commands and bans."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest


from tests.botenv import bot_env, wait_until
from tests.simclient import file_digest, write_random
from tests.stored_state import stored_bytes

READER = "Downloader bot reader"  # the device_model of the bot's user clients


@pytest.fixture
def env(env_both):
    """On SQLite and on PostgreSQL: sessions are stored state."""
    return env_both


def _spaced(code: str) -> str:
    return " ".join(code)


async def login(env, person, password: str | None = None) -> list[int]:
    """The whole conversation; returns the ids of the messages that held secrets."""
    await person.ask("/login", "phone number")
    secret_ids = [(await person.say(person.phone)).id]
    await person.expect_text("login code")
    secret_ids.append((await person.say(_spaced(env.sim.world.login_code))).id)
    if password:
        await person.expect_text("two-step verification")
        secret_ids.append((await person.say(password)).id)
    await person.expect_text("Logged in as")
    return secret_ids


def _deleted(env, person, ids: list[int]) -> bool:
    box = env.sim.world.accounts[person.id].box
    return not any(i in box for i in ids)


async def _wait_deleted(env, person, ids, timeout=5.0) -> bool:
    for _ in range(int(timeout / 0.05)):
        if _deleted(env, person, ids):
            return True
        await asyncio.sleep(0.05)
    return False


async def _private_channel(owner, title: str, *members, protected=True):
    ch = await owner.client.create_channel(title, "")
    if protected:
        await owner.client.set_chat_protected_content(ch.id, True)
    # Members join by invite link: the owner never saw them, and Telegram only lets an
    # account add a user whose access_hash it was given (core.telegram.org/api/peers).
    link = await owner.client.export_chat_invite_link(ch.id) if members else None
    for m in members:
        await m.client.join_chat(link)
    return ch


def _link(ch, msg_id: int) -> str:
    return f"https://t.me/c/{str(ch.id)[4:]}/{msg_id}"


async def _secrets_absent(env, *values: str) -> None:
    logs = Path(env.app.settings.log_file).read_text(errors="replace")
    db = await stored_bytes(env.app)
    for value in values:
        assert value not in logs, "secret in logs.txt"
        assert value.encode() not in db, "plaintext secret in the database"


async def test_login_with_2fa_reads_private_protected_channel(env):
    me = env.people[0]
    owner = await env.person("Owner")
    secure = await env.person("Secure", password="correct horse 42")
    # Without a session the bot says how to get in.
    ch = await _private_channel(owner, "Vault", me, secure)
    src = write_random(env.work / "doc.bin", 2_500_000)
    post = await owner.client.send_document(ch.id, str(src), caption="vault file")
    await secure.say(_link(ch, post.id))
    await secure.expect_text("/login")

    await secure.ask("/login", "phone number")
    ids = [(await secure.say(secure.phone)).id]
    await secure.expect_text("login code")
    ids.append((await secure.say(_spaced(env.sim.world.login_code))).id)
    await secure.expect_text("two-step verification")
    ids.append((await secure.say("wrong password")).id)
    await secure.expect_text("That password is wrong")
    ids.append((await secure.say("correct horse 42")).id)
    await secure.expect_text("Logged in as Secure")
    assert await _wait_deleted(env, secure, ids), "secret messages deleted from the chat"
    await secure.ask("/login", "already logged in")

    # A fresh session knows no peers, and tgsim refuses access_hash 0 like Telegram:
    # the bot must find the channel through the session's dialogs.
    await secure.say(_link(ch, post.id))
    got = await secure.expect_media()
    assert got.caption == "vault file"
    path = await secure.client.download_media(got, file_name=str(env.work / "out" / "d"))
    assert file_digest(path) == file_digest(src)

    blob = await env.app.db.load_session(secure.id)
    session_string = env.app.cipher.decrypt(blob)
    await _secrets_absent(env, session_string, secure.phone.lstrip("+"), "correct horse 42",
                    env.sim.world.login_code)

    await secure.ask("/logout", "Logged out")
    assert await env.app.db.load_session(secure.id) is None
    assert env.sim.connection_count(secure.id, device_model=READER) == 0
    await secure.ask("/logout", "not logged in")


async def test_login_wrong_code_then_right_and_protected_media_via_session(env):
    me = env.people[0]
    owner = await env.person("Owner")
    await me.ask("/login", "phone number")
    await me.say("not a phone")
    await me.expect_text("does not look like a phone number")
    ids = [(await me.say(me.phone)).id]
    await me.expect_text("login code")
    ids.append((await me.say("9 9 9 9 9")).id)
    await me.expect_text("That code is wrong")
    ids.append((await me.say("12")).id)
    await me.expect_text("That is not the code")
    await me.say("/status")
    await me.expect_text("You are logging in")
    ids.append((await me.say("1-2-3-4-5")).id)
    await me.expect_text("Logged in as")
    assert await _wait_deleted(env, me, ids)
    await _secrets_absent(env, me.phone.lstrip("+"))

    ch = await _private_channel(owner, "Clips", me)
    src = write_random(env.work / "v.mp4", 1_200_000)
    post = await owner.client.send_video(ch.id, str(src), duration=5, width=64, height=48,
                                         caption="clip")
    await me.say(_link(ch, post.id))
    got = await me.expect_media()
    assert got.video and got.video.duration == 5 and got.caption == "clip"


async def test_login_cancel_expired_code_and_flooded_phone(env):
    me = env.people[0]
    await me.ask("/login", "phone number")
    await me.say(me.phone)
    await me.expect_text("login code")
    await me.ask("/cancel", "Login cancelled")
    assert len(env.app.logins) == 0
    assert await env.app.db.load_session(me.id) is None
    # Ordinary messages are links again after a cancel.
    await me.ask("hello", "link")

    await me.ask("/login", "phone number")
    await me.say(me.phone)
    await me.expect_text("login code")
    env.sim.world.phone_codes.clear()  # the code expires
    await me.say(_spaced(env.sim.world.login_code))
    await me.expect_text("has expired")
    assert len(env.app.logins) == 0

    env.sim.flooded_phones[me.phone.lstrip("+")] = 125
    await me.ask("/login", "phone number")
    await me.say(me.phone)
    await me.expect_text("try again in 2 min 5 s")
    env.sim.flooded_phones.clear()
    await login(env, me)


async def test_session_cap_evicts_idle_keeps_busy_and_finishes_every_job(sim, clients,
                                                                        tmp_path):
    cap = 2
    async with bot_env(sim, clients, tmp_path, max_sessions=cap, session_idle_s=3,
                       max_concurrent_downloads=4) as env:
        owner = env.people[0]
        readers = [await env.person(f"Reader{i}") for i in range(cap + 2)]
        for r in readers:
            await login(env, r)
        ch = await _private_channel(owner, "Shared", *readers)
        # The file sits on DC 4: each reader opens a session to another DC to fetch it,
        # which pyrogram's stop() alone would leave connected.
        src = write_random(tmp_path / "f.bin", 3_000_000)
        post = await owner.client.send_document(ch.id, str(src), caption="shared")
        for media in env.sim.world.media.values():
            media.dc_id = 4
        env.sim.faults.bandwidth_bps = 4 * 1024 * 1024

        most = 0
        stop = asyncio.Event()

        async def sample():
            nonlocal most
            while not stop.is_set():
                most = max(most, len(env.sim.users_connected(READER)))
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        for r in readers:
            await r.say(_link(ch, post.id))
        for r in readers:
            got = await r.expect_media(timeout=90)
            assert got.caption == "shared"
        env.sim.faults.bandwidth_bps = 0
        assert most <= cap, f"{most} user clients were connected at once (cap {cap})"
        assert env.app.sessions.evicted_count >= 2
        await asyncio.wait_for(env.app.queue.wait_idle(), 10)
        assert env.app.queue.done_count == len(readers)
        # Idle ones are closed by the reaper, every connection of them included.
        for _ in range(100):
            if not env.sim.users_connected(READER):
                break
            await asyncio.sleep(0.1)
        stop.set()
        await sampler
        assert env.app.sessions.live_count == 0
        assert env.sim.connection_count(device_model=READER) == 0
        log = Path(env.app.settings.log_file).read_text()
        assert "Session Created: user" in log and "Session Disconnected: user" in log
        assert "RSS" in log.split("Session Created: user", 1)[1].splitlines()[0]


async def test_busy_session_is_not_evicted_the_next_job_waits(sim, clients, tmp_path):
    async with bot_env(sim, clients, tmp_path, max_sessions=1,
                       max_concurrent_downloads=2) as env:
        owner = env.people[0]
        a, b = await env.person("A"), await env.person("B")
        await login(env, a)
        await login(env, b)
        ch = await _private_channel(owner, "Big", a, b)
        src = write_random(tmp_path / "big.bin", 6_000_000)
        post = await owner.client.send_document(ch.id, str(src), caption="big")
        env.sim.faults.bandwidth_bps = 3 * 1024 * 1024
        await a.say(_link(ch, post.id))
        await wait_until(lambda: env.app.sessions.busy_count, 10, "A's session busy")
        await b.say(_link(ch, post.id))
        await b.expect_text("waiting for a free session slot")
        assert env.app.sessions.is_live(a.id) and not env.app.sessions.is_live(b.id)
        await a.expect_media(timeout=60)
        got = await b.expect_media(timeout=60)
        assert got.caption == "big"
        await asyncio.wait_for(env.app.queue.wait_idle(), 10)
        assert env.app.queue.failed_count == 0


async def test_revoked_session_mid_queue_tells_the_user_and_the_next_job_runs(sim, clients,
                                                                             tmp_path):
    async with bot_env(sim, clients, tmp_path, max_concurrent_downloads=1) as env:
        owner = env.people[0]
        a, b, c = await env.person("A"), await env.person("B"), await env.person("C")
        for p in (a, b, c):
            await login(env, p)
        ch = await _private_channel(owner, "Feed", a, b, c)
        src = write_random(tmp_path / "x.bin", 4_000_000)
        post = await owner.client.send_document(ch.id, str(src), caption="x")
        note = await owner.client.send_message(ch.id, "a note")
        env.sim.faults.bandwidth_bps = 2 * 1024 * 1024
        await b.say(_link(ch, post.id))  # runs first, slowly
        await b.expect_text("queued")
        await wait_until(lambda: env.sim.stats["upload.GetFile"], 10, "B's download")
        await a.say(f"{_link(ch, post.id)}\n{_link(ch, note.id)}")  # two jobs, both queued
        await a.expect_text("queued")
        await c.say(_link(ch, post.id))
        await c.expect_text("queued")
        # A terminates the bot's session from their devices list; A's own app stays in.
        assert env.sim.revoke(a.id, device_model=READER) >= 1
        assert (await b.expect_media(timeout=60)).caption == "x"
        told = await a.expect_text("Send /login to log in again", timeout=60)
        assert "no longer valid" in told.text
        await a.expect_text("log in with /login", timeout=30)  # A's second job, told why
        assert (await c.expect_media(timeout=60)).caption == "x"
        await asyncio.wait_for(env.app.queue.wait_idle(), 10)
        assert await env.app.db.load_session(a.id) is None
        assert not env.app.sessions.is_live(a.id)
        assert env.app.queue.done_count == 2 and env.app.queue.failed_count == 2


async def test_session_revoked_while_live_is_dropped(env):
    owner, me = await env.person("Owner"), env.people[0]
    await login(env, me)
    ch = await _private_channel(owner, "Live", me)
    posts = [await owner.client.send_message(ch.id, f"note {i}") for i in range(2)]
    await me.say(_link(ch, posts[0].id))
    await me.expect_text("note 0")
    assert env.app.sessions.is_live(me.id)
    env.sim.revoke(me.id, device_model=READER)
    await me.say(_link(ch, posts[1].id))
    told = await me.expect_text("Send /login", timeout=30)
    assert "no longer valid" in told.text
    assert not env.app.sessions.is_live(me.id)
    assert env.sim.connection_count(me.id, device_model=READER) == 0
    await login(env, me)  # and logging in again works
    await me.say(_link(ch, posts[1].id))
    await me.expect_text("note 1")


async def test_a_session_start_telegram_never_answers_is_cut_short(env):
    """A user client whose start Telegram never answers (a key it dropped is answered with
    -404, which the library leaves to a background task) fails the job with a clear line
    after the bound, holds no slot or connection, and the next link works."""
    owner, me = await env.person("Owner"), env.people[0]
    await login(env, me)
    ch = await _private_channel(owner, "Mute", me)
    note = await owner.client.send_message(ch.id, "heard at last")
    env.app.sessions.start_timeout_s = 2
    env.sim.faults.method_latency_s["updates.GetState"] = 600  # a start that never ends
    await me.say(_link(ch, note.id))
    told = await me.expect_text("did not answer while I was opening your session", timeout=20)
    assert "Traceback" not in told.text
    assert not env.app.sessions.is_live(me.id)
    await wait_until(lambda: env.sim.connection_count(me.id, device_model=READER) == 0, 10,
                     "the stuck client's connections closed")
    assert await env.app.db.load_session(me.id) is not None  # not the session's fault
    env.sim.faults.method_latency_s.pop("updates.GetState")
    await me.say(_link(ch, note.id))
    await me.expect_text("heard at last", timeout=30)


async def test_admin_commands_refused_to_others_and_bans(sim, clients, tmp_path):
    async with bot_env(sim, clients, tmp_path) as env:
        stranger = env.people[0]
        boss = await env.person("Boss")
        env.app.settings = env.app.settings.__class__(
            **{**env.app.settings.__dict__, "admin_ids": (boss.id,), "owner_ids": (boss.id,)})
        for cmd in ("/stats", f"/ban {boss.id}", "/broadcast hi", f"/addpremium {stranger.id} 3"):
            await stranger.ask(cmd, "for the bot's admins only")
        assert "Refused admin command" in Path(env.app.settings.log_file).read_text()

        await boss.ask("/addpremium", "Usage: /addpremium")
        await boss.ask(f"/addpremium {stranger.id} 30", "is premium until")
        await stranger.expect_text("You now have premium")
        assert await env.app.db.is_premium(stranger.id)
        await boss.ask(f"/rmpremium {stranger.id}", "back on the free tier")
        assert not await env.app.db.is_premium(stranger.id)
        stats = await boss.ask("/stats", "Users:")
        assert "RSS" in stats.text and "live 0/" in stats.text

        await boss.ask(f"/ban {stranger.id}", "is banned")
        for text in ("https://t.me/somewhere/5", "/start", "/login"):
            await stranger.say(text)
            reply = await stranger.expect(lambda m: True)
            assert reply.text == "You are banned from using this bot."
        await boss.ask(f"/unban {stranger.id}", "is unbanned")
        assert await stranger.settle() == [], "one refusal per message, nothing else"
        await stranger.ask("/start", "Hello")

        third = await env.person("Third")
        await third.ask("/start", "Hello")
        await boss.ask("/broadcast maintenance at noon", "Broadcasting to")
        await stranger.expect_text("maintenance at noon")
        await third.expect_text("maintenance at noon")
        report = await boss.expect_text("Broadcast finished")
        assert "2 delivered" in report.text


async def test_daily_allowance_and_invite_link_joined_on_consent(sim, clients, tmp_path):
    async with bot_env(sim, clients, tmp_path, free_daily_jobs=2) as env:
        me = env.people[0]
        owner = await env.person("Owner")
        pub = await owner.client.create_channel("Pub", "")
        await owner.client.set_chat_username(pub.id, "pubdaily")
        ids = [(await owner.client.send_message("pubdaily", f"m{i}")).id for i in range(3)]
        await me.say(f"https://t.me/pubdaily/{ids[0]}-{ids[2]}")
        reply = await me.expect_text("queued")
        assert "over today's allowance of 2" in reply.text
        await me.say(f"https://t.me/pubdaily/{ids[0]}")
        await me.expect_text("You have used all 2 jobs of today's free allowance")

        private = await _private_channel(owner, "Club", protected=False)
        invite = (await owner.client.create_chat_invite_link(private.id)).invite_link
        await me.say(invite)
        await me.expect_text("log in with /login first")
        await login(env, me)
        await me.say(invite)
        offer = await me.expect_text("Join «Club»")
        assert me.id not in env.sim.world.channels[int(str(private.id)[4:])].members
        await offer.click(0)
        await me.expect_text("Joined «Club»")
        assert me.id in env.sim.world.channels[int(str(private.id)[4:])].members


async def test_wrong_session_key_at_start_is_one_clear_error(tmp_path):
    import subprocess
    import sys

    from bot.rehearsal_load import bot_environment, free_port
    from helpers.database import Database
    from helpers.secrets import SessionCipher, generate_key

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    (tmp_path / "server.pem").write_bytes(pem.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1))
    db_path = tmp_path / "bot.db"
    db = await Database.open(db_path)
    await db.save_session(7, SessionCipher(generate_key()).encrypt("stored-session"))
    await db.close()
    root = Path(__file__).resolve().parent.parent
    env = bot_environment({
        "API_ID": "1", "API_HASH": "0123456789abcdef0123456789abcdef",
        "BOT_TOKEN": "1:x", "DATABASE_PATH": str(db_path), "SESSION_KEY": generate_key(),
        "LOG_FILE": str(tmp_path / "logs.txt"), "PORT": str(free_port()),
        "TELEGRAM_SERVER": "127.0.0.1:9", "TELEGRAM_SERVER_KEY": str(tmp_path / "server.pem")})
    proc = subprocess.run([sys.executable, "-m", "bot"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "SESSION_KEY does not match" in lines[0]
    assert "Traceback" not in proc.stderr

    env["SESSION_KEY"] = "short"
    proc = subprocess.run([sys.executable, "-m", "bot"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "SESSION_KEY is malformed" in proc.stderr
