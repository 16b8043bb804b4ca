"""The real bot under faults injected in tgsim (and in its own database and disk): FloodWait
storms, dropped connections, a revoked session, a slow server, a locked database and a full
disk. Whatever happens, every job ends exactly once, nothing is lost or left in Assets/, and
the user is told what could not be done."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import re
import sqlite3
import time
from pathlib import Path

import pytest

from harness.botenv import READER, bot_env, login
from harness.chats import bot_channel as _bot_channel
from harness.chats import chat_link as _link
from harness.chats import post_random as _post
from harness.chats import private_channel as _private_channel
from harness.outcomes import all_final as _all_final
from harness.outcomes import collect as _collect
from harness.outcomes import no_traceback as _no_traceback
from harness.outcomes import same_bytes as _same_bytes
from harness.waits import wait_until
from tgsim.faults import FloodRule


# -- helpers ---------------------------------------------------------------------------------
def _assets_empty(env) -> bool:
    return not any(Path(env.app.settings.assets_dir).rglob("*"))


_wait_for = functools.partial(wait_until, every=0.02)  # these faults come and go quickly


# -- FloodWait ---------------------------------------------------------------------------------
async def test_floodwait_storm_on_sends_edits_and_file_parts(sim, clients, tmp_path):
    """FloodWait on every other send, edit and a share of file parts: every job finishes,
    byte-identical, each delivered once."""
    async with bot_env(sim, clients, tmp_path, progress_interval_s=0.3,
                       max_concurrent_downloads=3) as env:
        me = env.people[0]
        ch = await _bot_channel(env, me, "Storm")
        posts = [await _post(me, ch, tmp_path / f"s{i}.bin", 1_300_000 + i, f"storm {i}")
                 for i in range(3)]
        sim.faults.bandwidth_bps = 3 * 1024 * 1024
        sim.faults.flood = {
            "messages.SendMedia": FloodRule(every=2, seconds=2),
            "messages.SendMessage": FloodRule(every=2, seconds=1),
            "messages.EditMessage": FloodRule(every=2, seconds=2),
            "upload.GetFile": FloodRule(every=3, seconds=1),
            "upload.SaveFilePart": FloodRule(every=3, seconds=1),
        }
        await me.say("\n".join(_link(ch, p.id) for p, _ in posts))
        got, texts = await _collect(me, media=3, timeout=90)
        rows = await _all_final(env, 3)
        fired = {m: r.fired for m, r in sim.faults.flood.items()}
        sim.faults.reset()
        assert all(fired.values()), f"every storm fired: {fired}"
        assert [r["status"] for r in rows] == ["done"] * 3, rows
        by_caption = {m.caption: m for m in got}
        assert sorted(by_caption) == [f"storm {i}" for i in range(3)], "each file exactly once"
        for i, (_, digest) in enumerate(posts):
            assert await _same_bytes(me, by_caption[f"storm {i}"], digest, tmp_path / "o" / "x")
        _no_traceback(texts)
        assert not [m for m in await me.settle() if m.media], "no second copy arrives later"
        assert _assets_empty(env)
        print(f"\nfloods fired: {fired}; jobs 3 accepted / 3 finished / 0 lost")


async def test_progress_edits_back_off_after_a_long_floodwait(sim, clients, tmp_path):
    """A FloodWait on a progress edit longer than the client sleeps through pauses the edits
    of that message for the whole wait instead of retrying every interval."""
    async with bot_env(sim, clients, tmp_path, progress_interval_s=0.2) as env:
        me = env.people[0]
        ch = await _bot_channel(env, me, "Edits")
        post, digest = await _post(me, ch, tmp_path / "e.bin", 3_000_000, "edited")
        sim.faults.bandwidth_bps = 700 * 1024  # ~4 s down and ~4 s up
        sim.faults.flood = {"messages.EditMessage": FloodRule(every=1, seconds=15, limit=1)}
        start_edits = sim.stats["messages.EditMessage"]
        t0 = time.monotonic()
        await me.say(_link(ch, post.id))
        got, texts = await _collect(me, media=1, timeout=60)
        elapsed = time.monotonic() - t0
        edits = sim.stats["messages.EditMessage"] - start_edits
        await _all_final(env, 1)
        assert sim.faults.flood["messages.EditMessage"].fired == 1
        assert elapsed > 2, "long enough to have asked for 10+ edits without back-off"
        # Without back-off: one edit every 0.2 s. With it: the flooded one, then silence for
        # 15 s (longer than the job); the final edit may be tried once more.
        assert edits <= 3, f"{edits} edits in {elapsed:.1f} s after a 15 s FloodWait"
        sim.faults.reset()
        assert await _same_bytes(me, got[0], digest, tmp_path / "o" / "e")
        print(f"\nEditMessage calls during a {elapsed:.1f} s job after FLOOD_WAIT_15: {edits}; "
              f"status texts seen: {texts}")


async def test_final_status_is_shown_once_an_edit_floodwait_is_over(sim, clients, tmp_path):
    async with bot_env(sim, clients, tmp_path, progress_interval_s=0.2) as env:
        me = env.people[0]
        ch = await _bot_channel(env, me, "Final")
        post, _ = await _post(me, ch, tmp_path / "f.bin", 1_500_000, "final")
        sim.faults.bandwidth_bps = 1024 * 1024
        sim.faults.flood = {"messages.EditMessage": FloodRule(every=1, seconds=11, limit=1)}
        await me.say(_link(ch, post.id))
        await _collect(me, media=1, timeout=60)
        await _all_final(env, 1)
        await me.expect_text("Job #1 done", timeout=9)


async def test_floodwait_longer_than_the_sleep_threshold_on_the_upload_is_waited_out(
        sim, clients, tmp_path):
    """Telegram answers a busy bot's sendMedia with FLOOD_WAIT_X of tens of seconds; the
    client library only sleeps through waits up to 10 s and raises the rest to the bot."""
    async with bot_env(sim, clients, tmp_path) as env:
        me = env.people[0]
        ch = await _bot_channel(env, me, "LongFlood")
        post, digest = await _post(me, ch, tmp_path / "l.bin", 600_000, "patience")
        sim.faults.flood = {"messages.SendMedia": FloodRule(every=1, seconds=12, limit=1)}
        await me.say(_link(ch, post.id))
        got, texts = await _collect(me, media=1, timeout=60,
                                    give_up=lambda ts: any("failed" in t for t in ts))
        rows = await _all_final(env, 1)
        assert rows[0]["status"] == "done", rows
        assert got[0].caption == "patience"
        assert await _same_bytes(me, got[0], digest, tmp_path / "o" / "l")


# -- dropped connections ---------------------------------------------------------------------
async def test_dropped_connections_mid_download_and_mid_upload(sim, clients, tmp_path):
    """Job U's upload connection is dropped; while U waits to notice, job D's download
    connection is dropped too. Both recover (the client library notices a dead request only
    at its 15 s timeout, so the two waits are made to overlap) and deliver identical bytes."""
    async with bot_env(sim, clients, tmp_path, max_concurrent_downloads=2) as env:
        me = env.people[0]
        ch = await _bot_channel(env, me, "Drops")
        up, u_digest = await _post(me, ch, tmp_path / "u.bin", 1_500_000, "up")
        down, d_digest = await _post(me, ch, tmp_path / "d.bin", 2_000_000, "down")
        sim.faults.bandwidth_bps = 4 * 1024 * 1024
        # per connection: the bot's media connection carries U's 1.5 MB, then D's bytes
        sim.faults.drop_after_file_bytes = 1_500_000 + 600_000
        sim.faults.drop_after_upload_bytes = 600_000
        sim.faults.drops_left = 2
        t0 = time.monotonic()
        parts = sim.stats["upload.SaveFilePart"]
        await me.say(_link(ch, up.id))
        await _wait_for(lambda: sim.stats["upload.SaveFilePart"] > parts, 20, "U's upload")
        await me.say(_link(ch, down.id))
        got, texts = await _collect(me, media=2, timeout=90)
        took = time.monotonic() - t0
        rows = await _all_final(env, 2)
        left = sim.faults.drops_left
        sim.faults.reset()
        assert left == 0, "both connections were dropped"
        log = Path(env.app.settings.log_file).read_text(errors="replace")
        assert re.search(r'Retrying "upload.GetFile"|part at \d+: .*; retry \d', log), \
            "the download noticed its drop"
        assert re.search(r'Retrying "upload.SaveFilePart"|upload part \d+: .*; retry \d', log), \
            "the upload noticed its drop"
        assert [r["status"] for r in rows] == ["done", "done"], rows
        by_caption = {m.caption: m for m in got}
        assert sorted(by_caption) == ["down", "up"], "each file exactly once"
        assert await _same_bytes(me, by_caption["down"], d_digest, tmp_path / "o" / "d")
        assert await _same_bytes(me, by_caption["up"], u_digest, tmp_path / "o" / "u")
        _no_traceback(texts)
        assert not [m for m in await me.settle() if m.media], "no second copy"
        assert _assets_empty(env)
        print(f"\nupload dropped + download dropped: both jobs done in {took:.1f} s")


def _drop_device(sim, device_model: str) -> int:
    """Close every live connection of one kind of client (e.g. the bot's login client, not
    yet authorised, so sim.drop_connections(user_id) cannot name it)."""
    n = 0
    for conn in list(sim.connections):
        if not conn.closed and conn.device_model == device_model:
            conn.close()
            n += 1
    return n


async def test_dropped_connection_during_login(env):
    """The login client reconnects by itself and the conversation goes on: the user is never
    asked to start again for a connection the bot lost."""
    me = env.people[0]
    # 1. Between the phone number and the code: the next request goes on a new connection.
    await me.ask("/login", "phone number")
    await me.say(me.phone)
    await me.expect_text("login code")
    assert _drop_device(env.sim, READER) >= 1
    t0 = time.monotonic()
    await me.say(" ".join(env.sim.world.login_code))
    reply = await me.expect(lambda m: "Logged in as" in (m.text or "")
                            or "try again" in (m.text or "").lower(), timeout=45)
    took = time.monotonic() - t0
    assert "Logged in as" in reply.text, reply.text
    assert await env.app.db.load_session(me.id) is not None
    await me.ask("/logout", "Logged out")

    # 2. While the code is being checked: the request itself is cut, and the client library
    # sends it again once it notices (its 15 s request timeout).
    await me.ask("/login", "phone number")
    await me.say(me.phone)
    await me.expect_text("login code")
    env.sim.faults.method_latency_s["auth.SignIn"] = 1.0
    signins = env.sim.stats["auth.SignIn"]
    await me.say(" ".join(env.sim.world.login_code))
    await _wait_for(lambda: env.sim.stats["auth.SignIn"] > signins, 10, "the sign-in call")
    assert _drop_device(env.sim, READER) >= 1  # within the call's 1 s on the server
    t1 = time.monotonic()
    reply2 = await me.expect(lambda m: "Logged in as" in (m.text or "")
                             or "try again" in (m.text or "").lower(), timeout=60)
    took2 = time.monotonic() - t1
    env.sim.faults.reset()
    assert "Logged in as" in reply2.text, reply2.text
    assert env.sim.stats["auth.SignIn"] >= signins + 2, "the cut call was sent again"
    assert len(env.app.logins) == 0, "no login left pending"
    assert await env.app.db.load_session(me.id) is not None
    print(f"\nlogin, connection dropped between phone and code: logged in after {took:.1f} s; "
          f"dropped during sign-in: logged in after {took2:.1f} s")


# -- revocation ------------------------------------------------------------------------------
async def test_session_revoked_mid_transfer_fails_clearly_and_the_next_user_runs(
        sim, clients, tmp_path):
    async with bot_env(sim, clients, tmp_path, max_concurrent_downloads=1) as env:
        owner = env.people[0]
        a, b = await env.person("A"), await env.person("B")
        await login(env, a)
        await login(env, b)
        ch = await _private_channel(owner, "Private", a, b)
        # more 1 MiB parts than one download keeps in flight: whenever the revoke lands,
        # some of A's parts are still to be asked for, and those meet it
        parts = env.app.transfers.max_inflight + 4
        post, digest = await _post(owner, ch, tmp_path / "p.bin", parts * 1024 * 1024 - 1,
                                   "private")
        sim.faults.bandwidth_bps = 1024 * 1024
        await a.say(_link(ch, post.id))
        await a.expect_text("queued")
        await b.say(_link(ch, post.id))
        await b.expect_text("queued")
        base = sim.stats["upload.GetFile"]
        await _wait_for(lambda: sim.stats["upload.GetFile"] >= base + 2, 30,
                        "A's download through A's session")
        assert sim.connection_count(a.id, device_model=READER) >= 1
        assert sim.revoke(a.id, device_model=READER) >= 1
        told = await a.expect_text("/login", timeout=45)
        assert "no longer valid" in told.text or "terminated" in told.text, told.text
        assert "Traceback" not in told.text
        sim.faults.bandwidth_bps = 0  # B's job need not crawl
        got, _ = await _collect(b, media=1, timeout=60)
        rows = await _all_final(env, 2)
        sim.faults.reset()
        by_user = {r["user_id"]: r for r in rows}
        assert by_user[a.id]["status"] == "failed" and "/login" in by_user[a.id]["error"]
        assert by_user[b.id]["status"] == "done"
        assert await env.app.db.load_session(a.id) is None, "the refused session is deleted"
        assert not env.app.sessions.is_live(a.id)
        await _wait_for(lambda: sim.connection_count(a.id, device_model=READER) == 0, 5,
                        "A's reader connections to close")
        assert not [m for m in a.drain() if m.media], "A got no file"
        assert await _same_bytes(b, got[0], digest, tmp_path / "o" / "p")
        assert _assets_empty(env)


# -- slow server -----------------------------------------------------------------------------
async def test_slow_server_jobs_finish_without_a_timeout_storm(sim, clients, tmp_path):
    async with bot_env(sim, clients, tmp_path, max_concurrent_downloads=3) as env:
        me = env.people[0]
        ch = await _bot_channel(env, me, "Slow")
        posts = [await _post(me, ch, tmp_path / f"w{i}.bin", 1_000_000 + i, f"slow {i}")
                 for i in range(3)]
        log_file = Path(env.app.settings.log_file)
        log_before = log_file.stat().st_size
        # seconds per request on everything a job does
        slow = {"channels.GetMessages": 2.0, "messages.GetMessages": 2.0,
                "upload.GetFile": 1.0, "upload.SaveFilePart": 1.0,
                "messages.SendMedia": 2.0, "messages.SendMessage": 1.0,
                "messages.EditMessage": 1.5}
        sim.faults.method_latency_s = dict(slow)
        before = {m: sim.stats[m] for m in slow}
        t0 = time.monotonic()
        await me.say("\n".join(_link(ch, p.id) for p, _ in posts))
        got, texts = await _collect(me, media=3, timeout=120)
        elapsed = time.monotonic() - t0
        rows = await _all_final(env, 3)
        sim.faults.reset()
        calls = {m: sim.stats[m] - before[m] for m in slow}
        assert [r["status"] for r in rows] == ["done"] * 3, rows
        assert sorted(m.caption for m in got) == [f"slow {i}" for i in range(3)]
        for m in got:
            i = int(m.caption.split()[1])
            assert await _same_bytes(me, m, posts[i][1], tmp_path / "o" / "w")
        assert calls["messages.SendMedia"] == 3, f"no upload was sent twice: {calls}"
        # 1 MB files in 256 KB parts: 4 each (+1 for the odd byte), and one thumbnail-free try
        assert calls["upload.GetFile"] <= 3 * 5 + 2, f"no part fetched again: {calls}"
        log = log_file.read_text(errors="replace")[log_before:]
        assert "Retrying" not in log and "TimeoutError" not in log, "no timeouts"
        _no_traceback(texts)
        assert _assets_empty(env)
        print(f"\nslow server: 3 jobs in {elapsed:.1f} s; calls {calls}")


# -- database locked ---------------------------------------------------------------------------
@contextlib.contextmanager
def _locked_db(path: str):
    """Another process's write transaction on the bot's database (a backup, an operator's
    sqlite3 shell): BEGIN EXCLUSIVE, held until the block ends."""
    con = sqlite3.connect(path, timeout=10, isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")
    con.execute("UPDATE users SET settings_json = settings_json")
    try:
        yield con
    finally:
        con.execute("ROLLBACK")
        con.close()


async def test_database_locked_briefly_is_waited_out(sim, clients, tmp_path):
    """Locked for 3 s (under the bot's 5 s busy timeout) while one job downloads, two wait and
    a new link arrives: every job, the new one included, finishes once."""
    async with bot_env(sim, clients, tmp_path, max_concurrent_downloads=1) as env:
        me = env.people[0]
        ch = await _bot_channel(env, me, "Locked DB")
        posts = [await _post(me, ch, tmp_path / f"k{i}.bin", 900_000 + i, f"db {i}")
                 for i in range(4)]
        sim.faults.bandwidth_bps = 1024 * 1024
        await me.say("\n".join(_link(ch, p.id) for p, _ in posts[:3]))
        await me.expect_text("queued")
        base = sim.stats["upload.GetFile"]
        await _wait_for(lambda: sim.stats["upload.GetFile"] > base, 20, "the first download")
        t0 = time.monotonic()
        with _locked_db(env.app.settings.database_path):
            await me.say(_link(ch, posts[3][0].id))
            await asyncio.sleep(3.0)
        held = time.monotonic() - t0
        got, texts = await _collect(
            me, media=4, timeout=60,
            until=lambda ts: any("Job #4" in t and "queued" in t for t in ts))
        rows = await _all_final(env, 4, timeout=30)
        sim.faults.reset()
        assert [r["status"] for r in rows] == ["done"] * 4, rows
        assert sorted(m.caption for m in got) == [f"db {i}" for i in range(4)]
        _no_traceback(texts)
        assert _assets_empty(env)
        print(f"\ndatabase locked {held:.1f} s: 4 accepted / 4 finished / 0 lost")


async def test_link_sent_while_the_database_is_locked_is_answered(sim, clients, tmp_path):
    """Locked for 7 s (over the 5 s busy timeout) as a link arrives: the link is queued once the
    lock goes and delivered, never dropped nor bounced back to the user."""
    async with bot_env(sim, clients, tmp_path) as env:
        me = env.people[0]
        ch = await _bot_channel(env, me, "Locked link")
        post, digest = await _post(me, ch, tmp_path / "ll.bin", 300_000, "after the lock")
        with _locked_db(env.app.settings.database_path):
            await me.say(_link(ch, post.id))
            await asyncio.sleep(7.0)
        reply = await me.expect(lambda m: m.media is None, timeout=4)
        # the write waits out the lock (LOCKED_RETRY_S, 30 s): queued, not "send it again"
        assert "queued" in (reply.text or ""), reply.text
        got, _ = await _collect(me, media=1, timeout=30)
        assert got[0].caption == "after the lock"
        rows = await _all_final(env, 1)
        assert [r["status"] for r in rows] == ["done"], rows
        assert await _same_bytes(me, got[0], digest, tmp_path / "o" / "ll")


async def test_database_locked_during_the_bookkeeping_after_an_upload(sim, clients, tmp_path):
    """Locked for 7 s from the moment the file reaches the user: the job still ends 'done'
    exactly once and the job queued behind it runs."""
    async with bot_env(sim, clients, tmp_path, max_concurrent_downloads=1) as env:
        me = env.people[0]
        ch = await _bot_channel(env, me, "Locked books")
        posts = [await _post(me, ch, tmp_path / f"b{i}.bin", 400_000 + i, f"books {i}")
                 for i in range(2)]
        sim.faults.method_latency_s["messages.EditMessage"] = 1.0  # the final edit is slow
        await me.say("\n".join(_link(ch, p.id) for p, _ in posts))
        first = await me.expect_media(timeout=30)
        assert first.caption == "books 0"
        with _locked_db(env.app.settings.database_path):
            await asyncio.sleep(7.0)
        got, texts = await _collect(me, media=1, timeout=30)
        rows = await _all_final(env, 2, timeout=5)
        sim.faults.reset()
        assert got[0].caption == "books 1"
        assert [r["status"] for r in rows] == ["done", "done"], rows
        assert not any("#1 failed" in t for t in texts), texts
        # the rows read 'done' a moment before the queue has counted them
        await asyncio.wait_for(env.app.queue.wait_idle(), 10)
        assert env.app.queue.done_count == 2


# -- disk full ---------------------------------------------------------------------------------
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return _libc.mount(b"tmpfs", str(path).encode(), b"tmpfs", 0,
                       f"size={size}".encode()) == 0


def _umount(path: Path) -> None:
    _libc.umount2(str(path).encode(), 2)  # MNT_DETACH


@contextlib.asynccontextmanager
async def _small_disk(sim, clients, tmp_path, size: str = "2m"):
    """The bot with Assets/ on a tmpfs of `size`: writing past it fails with a real ENOSPC."""
    assets = tmp_path / "bot" / "Assets"
    if not _mount_tmpfs(assets, size):
        pytest.skip("cannot mount a tmpfs here (needs CAP_SYS_ADMIN)")
    try:
        async with bot_env(sim, clients, tmp_path, max_concurrent_downloads=1) as env:
            assert Path(env.app.settings.assets_dir) == assets
            yield env
    finally:
        _umount(assets)


async def _disk_full_run(env, tmp_path):
    me = env.people[0]
    ch = await _bot_channel(env, me, "Full")
    big, _ = await _post(me, ch, tmp_path / "big.bin", 3_000_000, "too big")
    small, digest = await _post(me, ch, tmp_path / "small.bin", 700_000, "fits")
    await me.say(f"{_link(ch, big.id)}\n{_link(ch, small.id)}")
    got, texts = await _collect(me, media=1, timeout=60,
                                until=lambda ts: any("#1 failed" in t for t in ts))
    rows = await _all_final(env, 2)
    return me, got, texts, rows, digest


async def test_disk_full_while_writing_a_part(sim, clients, tmp_path):
    """Assets/ on a 2 MB tmpfs: a 3 MB file cannot be written (ENOSPC mid-file). The job ends
    failed once and the user is told; no partial file is left; the next job still runs."""
    async with _small_disk(sim, clients, tmp_path) as env:
        me, got, texts, rows, digest = await _disk_full_run(env, tmp_path)
        assert [r["status"] for r in rows] == ["failed", "done"], rows
        assert got[0].caption == "fits"
        assert await _same_bytes(me, got[0], digest, tmp_path / "o" / "s")
        _no_traceback(texts)
        assets = Path(env.app.settings.assets_dir)
        assert _assets_empty(env), list(assets.rglob("*"))
        log = Path(env.app.settings.log_file).read_text(errors="replace")
        assert any(w in log for w in ("No space left", "ENOSPC", "Errno 28")), \
            "the write really failed for want of space"
        assert not [m for m in await me.settle() if m.media], "the failed job sends nothing later"
        told = [t for t in texts if t.startswith("Job #1 failed")]
        print(f"\ndisk full: 2 accepted / 1 finished / 1 failed and told {told!r} / 0 lost")


async def test_disk_full_reason_is_told_to_the_user(sim, clients, tmp_path):
    async with _small_disk(sim, clients, tmp_path) as env:
        _, _, texts, rows, _ = await _disk_full_run(env, tmp_path)
        told = " ".join(t for t in texts if t.startswith("Job #1 failed")).lower()
        assert "space" in told or "disk" in told or "storage" in told, told
