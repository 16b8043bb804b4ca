"""Transfers within Telegram-like budgets, against tgsim with its per-account limits on: one
window of requests per account shared by all its files, two big files at once per account and
DC, 1 MiB download parts, AIMD under floods, one exported authorisation per account and DC."""

from __future__ import annotations

import asyncio
import logging
import math
import time

from pyrogram.file_id import FileId

from harness.files import file_digest, write_random
from helpers.transfer import MIB, Transfers
from tgsim.faults import FloodRule


def _media_id(msg) -> int:
    return FileId.decode(msg.document.file_id).media_id


async def test_four_files_of_one_account_share_its_budget_without_a_flood(clients, phone, sim,
                                                                          tmp_path):
    """Four jobs of one user at once (two downloads, two uploads, all over 10 MB) never
    multiply the account's budget: tgsim (cap 16) floods none of them, at most
    account_inflight requests are in flight and at most two big files run per DC; another
    account's files are independent of it."""
    user = await clients.user(phone, "Four")
    other = await clients.user(phone[:-1] + str((int(phone[-1]) + 5) % 10), "Other")
    t = Transfers()
    try:
        srcs = [write_random(tmp_path / f"f{i}.bin", 11 * MIB + i) for i in range(2)]
        msgs = [await t.send_file(user, "me", str(s), kind="document") for s in srcs]
        theirs = await t.send_file(other, "me", str(srcs[0]), kind="document")
        sim.file_limit.peak.clear()
        sim.stats["file_cap_floods"] = 0
        sim.faults.method_latency_s.update({"upload.GetFile": 0.05,
                                            "upload.SaveBigFilePart": 0.05})
        big = t.budgets.big_file(user, await user.storage.dc_id())
        jobs = [t.download(user, m, str(tmp_path / "dl" / f"d{i}.bin"))
                for i, m in enumerate(msgs)]
        jobs += [t.upload(user, str(s)) for s in srcs]
        jobs.append(t.download(other, theirs, str(tmp_path / "dl" / "other.bin")))
        results = await asyncio.gather(*jobs)
        for i in range(2):
            assert file_digest(results[i]) == file_digest(srcs[i])
        assert file_digest(results[4]) == file_digest(srcs[0])
        assert sim.stats["file_cap_floods"] == 0, "tgsim had to flood the account"
        assert sim.file_limit.peak[user.me.id] <= t.account_inflight <= sim.file_limit.cap
        assert t.budgets.window(user).peak == t.account_inflight  # it was used to the full
        assert big.peak == 2, "more than two big files of one account at once"
        assert t.budgets.window(other) is not t.budgets.window(user)
        assert sim.file_limit.peak[other.me.id] >= 1
    finally:
        sim.faults.method_latency_s.clear()
        await t.close()


async def test_downloads_ask_for_whole_mebibytes(clients, phone, sim, tmp_path):
    """1 MiB getFile parts (the most the server gives, aligned so none crosses a 1 MiB
    boundary: core.telegram.org/api/files): fewer requests of the account's budget."""
    user = await clients.user(phone, "Parts")
    t = Transfers()
    try:
        size = 5 * MIB + 4097
        src = write_random(tmp_path / "p.bin", size)
        msg = await t.send_file(user, "me", str(src), kind="document")
        before = sim.stats["upload.GetFile"]
        out = await t.download(user, msg, str(tmp_path / "dl" / "p.bin"))
        assert file_digest(out) == file_digest(src)
        assert sim.stats["upload.GetFile"] - before == math.ceil(size / MIB)
    finally:
        await t.close()


async def test_a_flooding_server_shrinks_the_window_once_and_no_storm_follows(
        clients, phone, sim, tmp_path, caplog):
    """FLOOD_WAIT on getFile (FloodRule) and an account cap lower than our window: the window
    halves once per episode, logged once per change, the refusals stay few (no retry storm)
    and the file arrives whole."""
    user = await clients.user(phone, "Aimd")
    t = Transfers()
    try:
        src = write_random(tmp_path / "a.bin", 24 * MIB + 3)
        msg = await t.send_file(user, "me", str(src), kind="document")
        window = t.budgets.window(user)
        start = t.account_inflight
        assert window.limit == start
        sim.faults.method_latency_s["upload.GetFile"] = 0.05
        sim.faults.flood["upload.GetFile"] = FloodRule(every=3, seconds=1, limit=1)
        with caplog.at_level(logging.INFO, logger="transfer"):
            out = await t.download(user, msg, str(tmp_path / "dl" / "a.bin"))
        assert file_digest(out) == file_digest(src)
        assert sim.faults.flood["upload.GetFile"].fired == 1
        changes = [r.getMessage() for r in caplog.records if "transfer window" in r.getMessage()]
        assert changes and f"{start} -> {start // 2}" in changes[0], changes
        assert window.limit < start
        # Telegram's cap below what we ask for (another account, a fresh window): tgsim
        # refuses what is over it, and the window comes down to it instead of hammering it
        sim.faults.flood.clear()
        low = await clients.user(phone[:-1] + str((int(phone[-1]) + 5) % 10), "Low")
        msg = await t.send_file(low, "me", str(src), kind="document")
        sim.file_limit.cap = 5
        sim.faults.method_latency_s["upload.GetFile"] = 0.2  # many in flight at once
        out = await t.download(low, msg, str(tmp_path / "dl" / "b.bin"))
        assert file_digest(out) == file_digest(src)
        assert t.budgets.window(low).lowest <= 6  # (then it grows back, slowly, to probe)
        # refused: the first burst over the cap (12 asked, 5 allowed), then each halving's
        # overshoot (16 -> 8 -> 4); a storm would refuse every part again and again
        assert sim.file_limit.refused[low.me.id] <= 2 * t.max_inflight, "a retry storm"
    finally:
        sim.faults.method_latency_s.clear()
        sim.faults.flood.clear()
        sim.file_limit.cap = 16
        await t.close()


async def test_one_export_per_account_and_dc_for_every_connection_there(clients, phone, sim,
                                                                      tmp_path):
    """A file on DC 4: several pooled connections at once, closed when idle, opened again
    for the next downloads: auth.exportAuthorization / importAuthorization once for all of
    them in the client's lifetime (core.telegram.org/api/datacenter)."""
    user = await clients.user(phone, "Export")
    t = Transfers(idle_close_s=0.3)
    try:
        src = write_random(tmp_path / "far.bin", 12 * MIB + 5)
        msg = await t.send_file(user, "me", str(src), kind="document")
        sim.world.media[_media_id(msg)].dc_id = 4
        msg = await user.get_messages("me", msg.id)
        sim.faults.method_latency_s["upload.GetFile"] = 0.05
        uid = user.me.id
        peak = 0
        for round_ in range(2):
            outs = await asyncio.gather(*(
                t.download(user, msg, str(tmp_path / "dl" / f"r{round_}-{i}.bin"))
                for i in range(2)))
            assert all(file_digest(o) == file_digest(src) for o in outs)
            peak = max(peak, t.connections(user))
            while t.connections(user):  # idle: closed, so the next round opens new ones
                await asyncio.sleep(0.05)
        assert peak > 1, "the test needs several connections to DC 4"
        assert sim.exports[(4, uid)] == 1 and sim.export_limit.exports[(uid, 4)] == 1
        assert sim.imports[(4, uid)] == 1
        assert sim.export_limit.floods == 0
    finally:
        sim.faults.method_latency_s.clear()
        await t.close()


async def test_a_flood_on_export_is_waited_out_once_for_all_connections(clients, phone, sim,
                                                                        tmp_path):
    """auth.exportAuthorization answered FLOOD_WAIT (the library does not sleep: threshold
    0, as the bot's user sessions run): the connections opening at once to DC 4 do not each
    export again; the wait goes through the one policy and one export follows it."""
    user = await clients.user(phone, "ExportFlood")
    user.sleep_threshold = 0  # every 420 reaches the bot's policy, as in session_manager.py
    t = Transfers()
    try:
        src = write_random(tmp_path / "far.bin", 12 * MIB + 5)
        msg = await t.send_file(user, "me", str(src), kind="document")
        sim.world.media[_media_id(msg)].dc_id = 4
        msg = await user.get_messages("me", msg.id)
        sim.faults.flood["auth.ExportAuthorization"] = FloodRule(every=1, seconds=2, limit=2)
        uid = user.me.id
        seen: list[float] = []  # when each export attempt arrived

        async def watch() -> None:
            while True:
                while len(seen) < sim.stats["auth.ExportAuthorization"]:
                    seen.append(time.monotonic())
                await asyncio.sleep(0.01)

        watcher = asyncio.ensure_future(watch())
        try:
            out = await t.download(user, msg, str(tmp_path / "dl" / "far.bin"))
        finally:
            watcher.cancel()
        assert file_digest(out) == file_digest(src)
        assert t.connections(user) > 1, "the test needs several connections to DC 4"
        # two refused, each waited out before the next attempt, then one export for all
        assert len(seen) == 3, seen
        assert seen[1] - seen[0] >= 1.5 and seen[2] - seen[1] >= 1.5, seen
        assert sim.exports[(4, uid)] == 1 and sim.imports[(4, uid)] == 1
    finally:
        sim.faults.flood.clear()
        await t.close()


async def test_four_uploads_of_one_account_stay_within_its_window(clients, phone, sim,
                                                                  tmp_path):
    """Four big uploads of one account at once (two run, two wait for a big-file slot):
    tgsim (cap 16) floods none of them and never sees more in flight than the account's
    window, which counts a part from when it goes on the wire to its answer."""
    user = await clients.user(phone, "FourUp")
    t = Transfers()
    try:
        srcs = [write_random(tmp_path / f"u{i}.bin", 11 * MIB + i) for i in range(4)]
        sim.file_limit.peak.clear()
        sim.stats["file_cap_floods"] = 0
        sim.faults.method_latency_s["upload.SaveBigFilePart"] = 0.05
        big = t.budgets.big_file(user, await user.storage.dc_id())
        files = await asyncio.gather(*(t.upload(user, str(s)) for s in srcs))
        assert sim.stats["file_cap_floods"] == 0, "tgsim had to flood the account"
        assert sim.file_limit.peak[user.me.id] <= t.account_inflight <= sim.file_limit.cap
        assert t.budgets.window(user).peak == t.account_inflight  # it was used to the full
        assert big.peak == 2, "more than two big files of one account at once"
        stored = {fid: up for (_key, fid), up in sim.world.uploads.items()}
        for src, file in zip(srcs, files):  # every upload whole, each part in its place
            up = stored[file.id]
            assert len(up.sizes) == file.parts and up.placed(file.parts) == src.stat().st_size
            assert up.data.read_bytes() == src.read_bytes()
    finally:
        sim.faults.method_latency_s.clear()
        await t.close()
