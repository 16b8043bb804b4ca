"""The 420 family, per-account file limits and CDN redirects, as Telegram has them: tgsim
raises each (core.telegram.org/api/errors, /cdn), and the real bot waits them out under its one
FloodWait policy and still delivers byte-identical files."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest
from pyrogram import errors, raw
from pyrogram.file_id import FileId
from pyrogram.types import InputMediaDocument

from helpers import floodwait
from helpers.transfer import MIB, Transfers
from harness.botenv import bot_env, login
from harness.chats import bot_channel as _bot_channel
from harness.chats import chat_link as _link
from harness.chats import post_random as _post
from harness.chats import private_channel as _private_channel
from harness.files import file_digest, write_random
from harness.outcomes import all_final as _all_final
from harness.outcomes import collect as _collect
from harness.outcomes import no_traceback as _no_traceback
from harness.outcomes import same_bytes as _same_bytes
from harness.simclients import SimClients
from tgsim import TgSim
from tgsim.faults import FloodRule, error_code


def _location(msg):
    fid = FileId.decode(msg.document.file_id)
    return raw.types.InputDocumentFileLocation(
        id=fid.media_id, access_hash=fid.access_hash, file_reference=fid.file_reference,
        thumb_size="")


async def _get_file(client, loc):
    """One upload.getFile: "ok", or the X of the FLOOD_WAIT_X it was answered with."""
    try:
        await client.invoke(raw.functions.upload.GetFile(location=loc, offset=0, limit=4096),
                            sleep_threshold=0)
        return "ok"
    except errors.FloodWait as e:
        return e.value


def _media_id(msg) -> int:
    return FileId.decode(msg.document.file_id).media_id


# -- tgsim -------------------------------------------------------------------------------------
def test_error_codes_follow_telegram():
    assert error_code("FLOOD_PREMIUM_WAIT_5") == 420
    assert error_code("SLOWMODE_WAIT_30") == 420
    assert error_code("FILE_MIGRATE_4") == 303
    assert error_code("FILE_PART_3_MISSING") == 400
    assert error_code("RPC_CALL_FAIL") == 500
    assert error_code("AUTH_KEY_UNREGISTERED") == 401
    with pytest.raises(ValueError):
        FloodRule(every=1, seconds=1, kind="FLOOD_SOMETHING")


async def test_faults_raise_each_420_and_any_error_with_its_code(clients, phone, sim):
    user = await clients.user(phone, "Family")
    for kind, cls in (("FLOOD_WAIT", errors.FloodWait),
                      ("FLOOD_PREMIUM_WAIT", errors.FloodPremiumWait),
                      ("SLOWMODE_WAIT", errors.SlowmodeWait)):
        sim.faults.flood["messages.SendMessage"] = FloodRule(every=1, seconds=7, limit=1,
                                                             kind=kind)
        with pytest.raises(cls) as e:
            await user.invoke(raw.functions.messages.SendMessage(
                peer=raw.types.InputPeerSelf(), message="x", random_id=user.rnd_id()),
                sleep_threshold=0)
        assert e.value.value == 7 and e.value.CODE == 420
    sim.faults.flood.clear()
    sim.faults.errors["help.GetNearestDc"] = [
        "FILE_MIGRATE_4", "FILE_PART_3_MISSING", (500, "RPC_CALL_FAIL"), "INTERNAL_ERROR"]
    seen = []
    for _ in range(4):
        try:
            await user.invoke(raw.functions.help.GetNearestDc(), retries=1)
        except errors.RPCError as e:
            seen.append((e.CODE, type(e).__name__, e.value))
        except TimeoutError:  # the library retries a 500 and then gives up this way
            seen.append((500, "TimeoutError", None))
    assert seen[0] == (303, "FileMigrate", 4)
    assert seen[1] == (400, "FilePartMissing", 3)
    assert [s[0] for s in seen[2:]] == [500, 500]
    assert sim.faults.errors["help.GetNearestDc"] == []


async def test_file_requests_in_flight_are_capped_per_account(clients, phone, sim, tmp_path):
    """More than 16 file requests of one account in flight: the rest get FLOOD_WAIT_1; another
    account is not affected, and once they are answered requests pass again."""
    user = await clients.user(phone, "Cap")
    other = await clients.user(phone[:-1] + str((int(phone[-1]) + 1) % 10), "Other")
    msg = await user.send_document("me", str(write_random(tmp_path / "c.bin", 300_000)))
    loc = _location(msg)
    sim.faults.method_latency_s["upload.GetFile"] = 0.5

    def one(client):
        return _get_file(client, loc)

    *got, theirs = await asyncio.gather(*[one(user) for _ in range(20)], one(other))
    assert got.count("ok") == 16 and sorted(r for r in got if r != "ok") == [1] * 4, got
    assert theirs == "ok", "the cap is per account"
    assert sim.file_limit.peak[user.me.id] == 16 and sim.file_limit.refused[user.me.id] == 4
    assert await one(user) == "ok", "the cap counts requests in flight, not requests made"
    assert not sim.file_limit.inflight


async def test_file_cap_is_a_knob_in_process_and_on_the_command_line(tmp_path, phone):
    sim = await TgSim(tmp_path / "small", max_file_requests_per_account=2).start()
    pool = SimClients(sim)
    try:
        user = await pool.user(phone, "Small")
        msg = await user.send_document("me", str(write_random(tmp_path / "k.bin", 50_000)))
        sim.faults.method_latency_s["upload.GetFile"] = 0.3
        got = await asyncio.gather(*[_get_file(user, _location(msg)) for _ in range(3)])
        assert sorted(got, key=str) == [1, "ok", "ok"], got
    finally:
        await pool.stop_all()
        await sim.stop()
    out = subprocess.run([sys.executable, "-m", "tgsim", "--help"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert "--max-file-requests-per-account" in out


async def test_exporting_far_more_often_than_once_per_dc_floods(clients, phone, sim):
    user = await clients.user(phone, "Exporter")
    uid = user.me.id

    async def export(dc: int):
        return await user.invoke(raw.functions.auth.ExportAuthorization(dc_id=dc),
                                 sleep_threshold=0)

    for _ in range(sim.export_limit.burst):
        await export(4)
    with pytest.raises(errors.FloodWait) as e:
        await export(4)
    assert 200 <= e.value.value <= 300
    await export(5)  # each DC is its own budget
    assert sim.export_limit.exports[(uid, 4)] == sim.export_limit.burst
    assert sim.export_limit.exports[(uid, 5)] == 1 and sim.export_limit.floods == 1


# -- transfers -----------------------------------------------------------------------------------
async def test_transfers_of_one_account_stay_under_the_cap(clients, phone, sim, tmp_path):
    """K of 32 asked for a download and an upload at once: the account's gate keeps its file
    requests in flight within Telegram's limit, so tgsim never has to flood them."""
    user = await clients.user(phone, "Gate")
    t = Transfers(max_inflight=32, upload_inflight=32, max_connections=4)
    try:
        src = write_random(tmp_path / "g.bin", 12 * MIB + 7)
        msg = await t.send_file(user, "me", str(src), kind="document")
        sim.file_limit.peak.clear()
        sim.faults.method_latency_s.update({"upload.GetFile": 0.05,
                                            "upload.SaveBigFilePart": 0.05})
        down = t.download(user, msg, str(tmp_path / "dl" / "g.bin"))
        up = t.upload(user, str(src))
        out, _ = await asyncio.gather(down, up)
        assert file_digest(out) == file_digest(src)
        assert sim.stats["file_cap_floods"] == 0
        assert sim.file_limit.peak[user.me.id] <= t.account_inflight <= sim.file_limit.cap
    finally:
        await t.close()


async def test_a_file_on_another_dc_exports_once_for_all_connections(clients, phone, sim,
                                                                     tmp_path):
    user = await clients.user(phone, "Far")
    t = Transfers(max_inflight=16, max_connections=4, part_size=128 * 1024)
    try:
        src = write_random(tmp_path / "far.bin", 8 * MIB + 5)
        msg = await t.send_file(user, "me", str(src), kind="document")
        sim.world.media[_media_id(msg)].dc_id = 4
        msg = await user.get_messages("me", msg.id)
        sim.faults.method_latency_s["upload.GetFile"] = 0.05
        out = await t.download(user, msg, str(tmp_path / "dl" / "far.bin"))
        assert file_digest(out) == file_digest(src)
        assert t.connections(user) > 1, "the test needs several connections to DC4"
        assert sim.export_limit.exports[(user.me.id, 4)] == 1
        assert sim.export_limit.floods == 0
    finally:
        await t.close()


async def test_cdn_redirect_delivers_identical_bytes_through_the_transfer(clients, phone, sim,
                                                                        tmp_path):
    """upload.getFile answered with upload.fileCdnRedirect (not asked for): the rest comes
    from the CDN DC, decrypted and checked; a chunk the CDN corrupts is fetched again, and a
    file not yet on the CDN is reuploaded by the master."""
    user = await clients.user(phone, "Cdn")
    t = Transfers()
    try:
        src = write_random(tmp_path / "cdn.bin", 3 * MIB + 4321)
        msg = await t.send_file(user, "me", str(src), kind="document")
        sim.faults.cdn_redirect.add(_media_id(msg))
        sim.faults.cdn_corrupt = 1
        sim.faults.cdn_reupload_needed = 1
        out = await t.download(user, msg, str(tmp_path / "dl" / "cdn.bin"))
        assert file_digest(out) == file_digest(src)
        cdn = sim.cdn.stats
        # every part once, and the corrupted one again (13 with 256 KB parts, 5 with 1 MiB)
        parts = -(-os.path.getsize(src) // t.part_size)
        assert cdn["redirects"] >= 1 and cdn["chunks"] >= parts + 1 and cdn["corrupted"] == 1
        assert cdn["reupload_needed"] >= 1 and cdn["reuploads"] == 1
        assert sim.stats["help.GetCdnConfig"] == 1
        small = Transfers(part_size=64 * 1024)  # parts smaller than the 128 KB hashed parts
        try:
            out = await small.download(user, msg, str(tmp_path / "dl" / "cdn64.bin"))
            assert file_digest(out) == file_digest(src)
        finally:
            await small.close()
    finally:
        await t.close()


# -- the bot ---------------------------------------------------------------------------------
async def _deliver_one(env, tmp_path, size: int, name: str, **flood):
    me = env.people[0]
    ch = await _bot_channel(env, me, f"Flood {name}")
    post, digest = await _post(me, ch, tmp_path / f"{name}.bin", size, name)
    env.sim.faults.flood.update(flood)
    await me.say(_link(ch, post.id))
    got, texts = await _collect(me, media=1, timeout=90,
                                give_up=lambda ts: any("failed" in t for t in ts))
    rows = await _all_final(env, 1)
    assert [r["status"] for r in rows] == ["done"], rows
    assert got[0].caption == name
    fired = {m: r.fired for m, r in env.sim.faults.flood.items()}
    env.sim.faults.reset()
    assert all(fired.values()), fired
    assert await _same_bytes(me, got[0], digest, tmp_path / "o" / name)
    _no_traceback(texts)


async def test_flood_premium_wait_on_download_is_waited_out(sim, clients, tmp_path):
    async with bot_env(sim, clients, tmp_path) as env:
        # 5 parts of 1 MiB, so every third getFile meets it (2 MB was 8 parts of 256 KB)
        await _deliver_one(env, tmp_path, 5_000_000, "premium-down", **{
            "upload.GetFile": FloodRule(every=3, seconds=2, limit=2,
                                        kind="FLOOD_PREMIUM_WAIT")})


async def test_flood_premium_wait_on_upload_is_waited_out(sim, clients, tmp_path):
    async with bot_env(sim, clients, tmp_path) as env:
        await _deliver_one(env, tmp_path, 2_000_000, "premium-up", **{
            "upload.SaveFilePart": FloodRule(every=2, seconds=2, limit=2,
                                             kind="FLOOD_PREMIUM_WAIT")})


async def test_slowmode_wait_on_a_group_delivery_is_waited_out(sim, clients, tmp_path):
    async with bot_env(sim, clients, tmp_path) as env:
        me = env.people[0]
        group = await me.client.create_supergroup("Slow group")
        await me.client.add_chat_members(group.id, env.bot_username)
        await me.client.promote_chat_member(group.id, env.bot_username)
        await env.app.db.set_settings(me.id, {"target": {"chat": group.id, "topic": None,
                                                         "title": "Slow group"}})
        ch = await _bot_channel(env, me, "Slow source")
        post, digest = await _post(me, ch, tmp_path / "slow.bin", 1_200_000, "slow")
        sim.faults.flood["messages.SendMedia"] = FloodRule(
            every=1, seconds=3, limit=1, kind="SLOWMODE_WAIT", user_id=env.bot_acc.id)
        started = time.monotonic()
        await me.say(_link(ch, post.id))
        await me.expect_text("delivered to Slow group", timeout=60)
        assert time.monotonic() - started >= 3, "the 3 s of slow mode were waited out"
        assert sim.faults.flood["messages.SendMedia"].fired == 1
        sim.faults.reset()
        docs = [m async for m in me.client.get_chat_history(group.id, limit=5) if m.document]
        assert len(docs) == 1, "delivered exactly once"
        assert await _same_bytes(me, docs[0], digest, tmp_path / "o" / "slow")


async def test_floodwait_on_fetch_through_a_user_session_is_waited_out(sim, clients, tmp_path):
    """A FloodWait on channels.getMessages goes to the bot's one policy: a short one is waited
    out and the job delivered; one longer than the policy waits ends the job at once with a
    clear reply (the library's get_messages would sleep through it silently, however long)."""
    async with bot_env(sim, clients, tmp_path) as env:
        me = env.people[0]
        owner = await env.person("Owner")
        await login(env, me)
        ch = await _private_channel(owner, "Fetch vault", me)
        src = write_random(tmp_path / "v.bin", 600_000)
        post = await owner.client.send_document(ch.id, str(src), caption="vault")
        sim.faults.flood["channels.GetMessages"] = FloodRule(every=1, seconds=2, limit=1,
                                                             user_id=me.id)
        started, counted = time.monotonic(), floodwait.STATS.count
        await me.say(_link(ch, post.id))
        got, texts = await _collect(me, media=1, timeout=60,
                                    give_up=lambda ts: any("failed" in t for t in ts))
        assert sim.faults.flood["channels.GetMessages"].fired == 1
        assert time.monotonic() - started >= 2
        assert floodwait.STATS.count > counted, "waited by the policy, counted in /metrics"
        assert await _same_bytes(me, got[0], file_digest(src), tmp_path / "o" / "v")
        _no_traceback(texts)

        sim.faults.flood["channels.GetMessages"] = FloodRule(every=1, seconds=5000, limit=1,
                                                             user_id=me.id)
        await me.say(_link(ch, post.id))
        failed = await me.expect_text("failed", timeout=30)
        assert "wait 5000 s" in failed.text and "internal error" not in failed.text
        sim.faults.reset()


async def test_floodwait_on_an_album_fetch_through_a_user_session_is_waited_out(
        sim, clients, tmp_path):
    async with bot_env(sim, clients, tmp_path) as env:
        me = env.people[0]
        owner = await env.person("Owner")
        await login(env, me)
        ch = await _private_channel(owner, "Album vault", me)
        files = [write_random(tmp_path / f"a{i}.bin", 300_000 + i) for i in range(2)]
        album = await owner.client.send_media_group(ch.id, [
            InputMediaDocument(str(files[0]), caption="a0"), InputMediaDocument(str(files[1]))])
        # the first call fetches the message, the second its album: that one floods
        sim.faults.flood["channels.GetMessages"] = FloodRule(every=2, seconds=2, limit=1,
                                                             user_id=me.id)
        counted = floodwait.STATS.count
        await me.say(_link(ch, album[0].id))
        got, texts = await _collect(me, media=2, timeout=60,
                                    give_up=lambda ts: any("failed" in t for t in ts))
        assert sim.faults.flood["channels.GetMessages"].fired == 1
        assert floodwait.STATS.count > counted and floodwait.STATS.last_where != ""
        sim.faults.reset()
        out = [await me.client.download_media(m, file_name=str(tmp_path / "o" / f"a{i}"))
               for i, m in enumerate(got)]
        assert sorted(map(file_digest, out)) == sorted(map(file_digest, files))
        _no_traceback(texts)


async def test_floodwait_on_resolve_through_a_user_session_is_waited_out(sim, clients,
                                                                        tmp_path):
    """A FloodWait while resolving the chat is waited out, not taken for "unknown chat". A
    cold session holds no access hash for a private channel, and Telegram accepts no other
    (core.telegram.org/api/peers), so resolving it is the dialog scan: flooded twice, it is
    asked again after each wait and the job is delivered. (kurigram's get_dialogs sleeps
    through a flood itself; the pipeline's policy around the scan covers a library that
    does not, and this pins the outcome either way.)"""
    async with bot_env(sim, clients, tmp_path) as env:
        me = env.people[0]
        owner = await env.person("Owner")
        await login(env, me)
        ch = await _private_channel(owner, "Resolve vault", me)
        src = write_random(tmp_path / "r.bin", 600_000)
        post = await owner.client.send_document(ch.id, str(src), caption="resolve")
        sim.faults.flood["messages.GetDialogs"] = FloodRule(every=1, seconds=1, limit=2,
                                                            user_id=me.id)
        dialogs = sim.stats["messages.GetDialogs"]
        await me.say(_link(ch, post.id))
        got, texts = await _collect(me, media=1, timeout=60,
                                    give_up=lambda ts: any("failed" in t for t in ts))
        assert sim.faults.flood["messages.GetDialogs"].fired == 2
        sim.faults.reset()
        # two flooded scans, then the one after the waits: never given up, never repeated
        assert sim.stats["messages.GetDialogs"] - dialogs == 3
        assert await _same_bytes(me, got[0], file_digest(src), tmp_path / "o" / "r")
        _no_traceback(texts)


async def test_cdn_redirect_on_a_job_delivers_the_file(sim, clients, tmp_path):
    async with bot_env(sim, clients, tmp_path) as env:
        me = env.people[0]
        ch = await _bot_channel(env, me, "Popular")
        post, digest = await _post(me, ch, tmp_path / "pop.bin", 2_500_000, "popular")
        sim.faults.cdn_redirect.add(_media_id(post))
        await me.say(_link(ch, post.id))
        got, texts = await _collect(me, media=1, timeout=60,
                                    give_up=lambda ts: any("failed" in t for t in ts))
        # every part of the file came from the CDN (10 of 256 KB when written, 3 of 1 MiB)
        parts = -(-2_500_000 // env.app.transfers.part_size)
        assert sim.cdn.stats["redirects"] >= 1 and sim.cdn.stats["chunks"] >= parts
        sim.faults.reset()
        assert await _same_bytes(me, got[0], digest, tmp_path / "o" / "pop")
        _no_traceback(texts)


async def test_concurrent_jobs_of_the_bot_stay_under_the_per_account_cap(sim, clients, tmp_path):
    """Three jobs at once, each file asking for 32 parts in flight: the bot's account stays
    within Telegram's limit of file requests in flight, so none is refused with FLOOD_WAIT."""
    async with bot_env(sim, clients, tmp_path, max_concurrent_downloads=3,
                       transfer_parts_in_flight=32) as env:
        me = env.people[0]
        ch = await _bot_channel(env, me, "Busy")
        posts = [await _post(me, ch, tmp_path / f"b{i}.bin", 6 * MIB + i, f"busy {i}")
                 for i in range(3)]
        sim.file_limit.peak.clear()
        sim.faults.method_latency_s.update({"upload.GetFile": 0.05,
                                            "upload.SaveFilePart": 0.05,
                                            "upload.SaveBigFilePart": 0.05})
        await me.say("\n".join(_link(ch, p.id) for p, _ in posts))
        got, texts = await _collect(me, media=3, timeout=120,
                                    give_up=lambda ts: any("failed" in t for t in ts))
        rows = await _all_final(env, 3)
        assert [r["status"] for r in rows] == ["done"] * 3, rows
        peak = sim.file_limit.peak[env.bot_acc.id]
        assert sim.stats["file_cap_floods"] == 0, f"refused over the cap (peak {peak})"
        assert peak <= 16
        sim.faults.reset()
        by_caption = {m.caption: m for m in got}
        for i, (_, digest) in enumerate(posts):
            assert await _same_bytes(me, by_caption[f"busy {i}"], digest, tmp_path / "o" / "b")
        _no_traceback(texts)
