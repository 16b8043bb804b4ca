"""helpers.transfer against tgsim with the real client: bytes, faults, cancel, resume, pool."""

from __future__ import annotations

import asyncio
import logging
import json
import os
import time

import pytest
from pyrogram import raw

from helpers import client_adapter as adapter
from helpers.transfer import MIB, Transfers, remove_partial, sidecar_path
from harness.botenv import wait_until
from harness.files import file_digest, write_random
from tgsim.faults import FloodRule
from tgsim.world import Msg

PART = Transfers().part_size  # the default download part


@pytest.fixture
async def transfers():
    t = Transfers()
    try:
        yield t
    finally:
        await t.close()


async def _settle(sim, user_id: int, expected: int, timeout: float = 3.0) -> int:
    """Server-side connection count, once it reaches `expected` (closing is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        n = sim.connection_count(user_id)
        if n == expected or time.monotonic() > deadline:
            return n
        await asyncio.sleep(0.05)


async def _upload(t: Transfers, user, tmp_path, name: str, size: int, **kw):
    src = write_random(tmp_path / name, size)
    msg = await t.send_file(user, "me", str(src), kind=kw.pop("kind", "document"), **kw)
    return str(src), msg


async def test_boundary_sizes_round_trip_byte_identical(clients, phone, tmp_path, transfers):
    """Around the default download part (256 KB), the 512 KB upload part, the 1 MB part the
    server allows (also as our part size), the 10 MB line between saveFilePart and
    saveBigFilePart; and off the 4 KB grid."""
    user = await clients.user(phone, "Sizes")
    one_mb = Transfers(part_size=MIB)
    sizes = [1, 4095, PART - 1, PART, PART + 1, 512 * 1024 - 1, 512 * 1024 + 1, MIB - 1, MIB,
             MIB + 1, 3 * MIB + 12345, 10 * MIB - 1, 10 * MIB + 1]
    lean = adapter.lean_receive_counts()
    try:
        for size in sizes:
            src, msg = await _upload(transfers, user, tmp_path, f"s{size}.bin", size)
            assert msg.document.file_size == size and msg.document.file_name == f"s{size}.bin"
            for t in (transfers, one_mb):
                seen = []
                dst = await t.download(user, msg, str(tmp_path / "dl" / f"s{size}.bin"),
                                       progress=lambda d, total: seen.append((d, total)))
                assert os.path.getsize(dst) == size, (size, t.part_size)
                assert file_digest(dst) == file_digest(src), (size, t.part_size)
                assert seen[-1] == (size, size) and not os.path.exists(sidecar_path(dst))
                os.remove(dst)
            os.remove(src)
        # the large answers came the lean way (helpers/transfer_wire.py), none the library's
        now = adapter.lean_receive_counts()
        assert now["parts"] > lean["parts"] and now["library"] == lean["library"]
        # and the upload parts' answers (acks, rpc_result -> boolTrue) on the loop
        assert now["simple"] > lean["simple"]
        # and the download parts written to disk from the decrypting thread
        assert now["written"] > lean["written"]
    finally:
        await one_mb.close()


async def test_empty_file(clients, phone, tmp_path, transfers, sim):
    """Telegram refuses empty uploads (as the library does before sending); a 0-byte
    document that exists server-side still downloads, to an empty file."""
    user = await clients.user(phone, "Empty")
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        await transfers.upload(user, str(empty))
    me = sim.world.accounts[user.me.id]
    media = sim.world.new_media("document", sim.world.store_bytes(b""), 0, attributes=[
        raw.types.DocumentAttributeFilename(file_name="empty.bin")])
    mid = me.new_msg_id()
    me.box[mid] = Msg(id=mid, peer=("user", me.id), date=int(time.time()), from_id=me.id,
                      media=media)
    msg = await user.get_messages("me", mid)
    out = await transfers.download(user, msg, str(tmp_path / "dl" / "empty.bin"))
    assert os.path.getsize(out) == 0


async def test_too_big_upload_is_refused_before_sending(clients, phone, tmp_path, transfers,
                                                        sim):
    user = await clients.user(phone, "Big")
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:  # sparse: nothing is read before the size check
        f.truncate(2000 * MIB + 1)
    before = sim.stats["upload.SaveBigFilePart"]
    with pytest.raises(ValueError, match="2000 MiB"):
        await transfers.upload(user, str(big))
    assert sim.stats["upload.SaveBigFilePart"] == before
    assert Transfers.upload_limit(user) == 2000 * MIB


async def test_cross_check_with_stock_client_and_media_kinds(clients, phone, tmp_path,
                                                             transfers):
    user = await clients.user(phone, "Cross")
    # ours up (with an async progress callback), stock down
    seen = []

    async def progress(done: int, total: int) -> None:
        seen.append(done)

    src, msg = await _upload(transfers, user, tmp_path, "ours.bin", 5 * PART + 7,
                             caption="plain *not markdown*", progress=progress)
    assert seen and seen[-1] == 5 * PART + 7 and sorted(seen) == seen
    assert msg.caption == "plain *not markdown*" and not msg.caption_entities
    stock = await user.download_media(msg, file_name=str(tmp_path / "stock" / "ours.bin"))
    assert file_digest(stock) == file_digest(src)
    # stock up, ours down
    src2 = str(write_random(tmp_path / "theirs.bin", 2 * PART + 99))
    msg2 = await user.send_document("me", src2)
    out = await transfers.download(user, msg2, str(tmp_path / "dl" / "theirs.bin"))
    assert file_digest(out) == file_digest(src2)
    # every kind, with its attributes
    thumb = str(write_random(tmp_path / "thumb.jpg", 5000))
    vid = await _upload(transfers, user, tmp_path, "clip.mp4", 300_000, kind="video",
                        duration=7, width=640, height=360, thumb=thumb,
                        supports_streaming=True)
    assert vid[1].video.duration == 7 and vid[1].video.width == 640 and vid[1].video.thumbs
    assert vid[1].video.mime_type == "video/mp4"
    aud = await _upload(transfers, user, tmp_path, "song.mp3", 200_000, kind="audio",
                        duration=3, performer="Band", title="Song")
    assert aud[1].audio.performer == "Band" and aud[1].audio.title == "Song"
    voice = await _upload(transfers, user, tmp_path, "note.ogg", 30_000, kind="voice",
                          duration=2)
    assert voice[1].voice.duration == 2
    anim = await _upload(transfers, user, tmp_path, "anim.mp4", 40_000, kind="animation")
    assert anim[1].animation is not None
    photo = await _upload(transfers, user, tmp_path, "pic.jpg", 150_000, kind="photo")
    assert photo[1].photo is not None
    for src_path, m in (vid, aud, voice, anim, photo):
        got = await transfers.download(user, m, str(tmp_path / "dl" / os.path.basename(src_path)))
        assert file_digest(got) == file_digest(src_path)


async def test_dropped_connection_and_flood_wait_mid_file(clients, phone, tmp_path, sim,
                                                          transfers, caplog):
    user = await clients.user(phone, "Faults")
    src, msg = await _upload(transfers, user, tmp_path, "f.bin", 12 * MIB + 5)
    sim.faults.drop_after_file_bytes = 2 * MIB
    sim.faults.drops_left = 1
    with caplog.at_level(logging.INFO, logger="transfer"):
        out = await transfers.download(user, msg, str(tmp_path / "dl" / "drop.bin"))
    assert sim.faults.drops_left == 0, "the connection was not dropped"
    assert file_digest(out) == file_digest(src)
    # the parts waiting on the dropped connection failed with it, at once, and were asked
    # again: none sat out the part timeout
    retries = [r.getMessage() for r in caplog.records if "; retry " in r.getMessage()]
    assert any("connection lost" in m for m in retries), retries
    assert not any("no answer" in m for m in retries), retries

    sim.faults.reset()
    sim.faults.flood["upload.GetFile"] = FloodRule(every=4, seconds=1, limit=2)
    floods = sim.stats["flood_waits"]
    start = time.monotonic()
    out = await transfers.download(user, msg, str(tmp_path / "dl" / "flood.bin"))
    assert sim.stats["flood_waits"] - floods == 2 and time.monotonic() - start >= 1.0
    assert file_digest(out) == file_digest(src)

    # the same on the way up: a FloodWait on one part, a dropped connection
    sim.faults.reset()
    sim.faults.flood["upload.SaveBigFilePart"] = FloodRule(every=7, seconds=1, limit=1)
    sim.faults.drop_after_upload_bytes = 3 * MIB
    sim.faults.drops_left = 1
    src2, msg2 = await _upload(transfers, user, tmp_path, "up.bin", 11 * MIB + 3)
    assert sim.faults.flood["upload.SaveBigFilePart"].fired == 1
    assert sim.faults.drops_left == 0, "the connection was not dropped"
    sim.faults.reset()
    out = await transfers.download(user, msg2, str(tmp_path / "dl" / "up.bin"))
    assert file_digest(out) == file_digest(src2)


async def _cancelled_within(task: asyncio.Future, seconds: float) -> None:
    """Cancel a transfer: it ends, every part with it, within `seconds`."""
    start = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - start < seconds


async def _start_slow_download(t: Transfers, user, msg, dst: str, sim, fraction: float):
    """A download slowed by latency and bandwidth, cancelled once `fraction` is done."""
    sim.faults.latency_s = 0.03
    sim.faults.bandwidth_bps = 4 * MIB
    reached = asyncio.Event()

    def progress(done: int, total: int) -> None:
        if done >= fraction * total:
            reached.set()

    task = asyncio.ensure_future(t.download(user, msg, dst, progress=progress))
    await asyncio.wait_for(reached.wait(), 20)
    return task


async def test_cancel_mid_file_stops_fast_and_leaves_nothing_open(clients, phone, tmp_path,
                                                                  sim):
    user = await clients.user(phone, "Cancel")
    t = Transfers(idle_close_s=60)
    try:
        src, msg = await _upload(t, user, tmp_path, "c.bin", 24 * PART)
        await t.close_client(user)
        assert t.connections(user) == 0
        baseline = await _settle(sim, user.me.id, 1)
        dst = str(tmp_path / "dl" / "c.bin")
        task = await _start_slow_download(t, user, msg, dst, sim, 0.3)
        assert sim.connection_count(user.me.id) > baseline  # parts over several connections
        await _cancelled_within(task, 2.0)
        await asyncio.sleep(0.1)  # requests already on the wire may still be counted
        calls = sim.stats["upload.GetFile"]
        await asyncio.sleep(0.5)
        assert sim.stats["upload.GetFile"] == calls, "part requests went on after cancel"
        assert t.connections(user) == 0
        assert await _settle(sim, user.me.id, baseline, 2.0) == baseline
        remove_partial(dst)
        assert not os.listdir(tmp_path / "dl")
    finally:
        sim.faults.reset()
        await t.close()


async def test_interrupted_download_resumes_only_missing_parts(clients, phone, tmp_path, sim):
    user = await clients.user(phone, "Resume")
    parts = 24
    t = Transfers()
    try:
        src, msg = await _upload(t, user, tmp_path, "r.bin", parts * PART - 1000)
        dst = str(tmp_path / "dl" / "r.bin")
        first = sim.stats["upload.GetFile"]
        task = await _start_slow_download(t, user, msg, dst, sim, 0.4)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        sim.faults.reset()
        with open(sidecar_path(dst)) as f:
            bits = bytes.fromhex(json.load(f)["done"])
        done = sum(bin(b).count("1") for b in bits)
        assert 0.4 * parts <= done < parts
        fetched_before = sim.stats["upload.GetFile"] - first
        assert fetched_before >= done
        # a new instance, as after a restart
        await t.close()
        t = Transfers()
        before = sim.stats["upload.GetFile"]
        state: dict = {}
        out = await t.download(user, msg, dst, job_dir_state=state)
        assert sim.stats["upload.GetFile"] - before == parts - done
        assert state["resumed"] == done and state["done"] == parts
        assert file_digest(out) == file_digest(src)
        assert not os.path.exists(sidecar_path(dst))
    finally:
        sim.faults.reset()
        await t.close()


async def test_pool_reuse_idle_close_and_close_client(clients, phone, tmp_path, sim):
    user = await clients.user(phone, "Pool")
    t = Transfers(idle_close_s=0.5)
    try:
        src, msg = await _upload(t, user, tmp_path, "p.bin", 8 * PART)
        assert 1 <= t.connections(user) <= 4
        opened = sim.stats["connections"]
        await t.download(user, msg, str(tmp_path / "dl" / "p1.bin"))
        assert sim.stats["connections"] == opened, "pooled connections were not reused"
        # two transfers of one client share its pool, within max_connections
        outs = await asyncio.gather(*(t.download(user, msg, str(tmp_path / "dl" / f"c{i}.bin"))
                                      for i in range(2)))
        assert all(file_digest(o) == file_digest(src) for o in outs)
        assert t.connections(user) <= t.max_connections
        await wait_until(lambda: t.connections(user) == 0, 1.5, "idle connections closed")
        assert await _settle(sim, user.me.id, 1) == 1
        # a small file needs one part over one connection
        _, small = await _upload(t, user, tmp_path, "small.bin", 1000)
        assert t.connections(user) == 1
        await t.download(user, small, str(tmp_path / "dl" / "small.bin"))
        assert t.connections(user) == 1
        await t.close_client(user)
        assert t.connections(user) == 0
        assert await _settle(sim, user.me.id, 1) == 1
    finally:
        await t.close()


async def test_memory_reservation_bounds_parts_in_flight(clients, phone, tmp_path):
    user = await clients.user(phone, "Budget")
    asked: list[float] = []
    released: list[float] = []

    class Held:
        def __init__(self, mb):
            self.mb = mb

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            released.append(self.mb)

    def reserve(name: str, mb: float):
        asked.append(mb)
        return Held(mb) if mb <= 2 else None  # room for two 1 MB parts only

    t = Transfers(part_size=MIB, reserve=reserve)
    try:
        src, msg = await _upload(t, user, tmp_path, "m.bin", 6 * MIB)
        asked.clear()
        released.clear()
        out = await t.download(user, msg, str(tmp_path / "dl" / "m.bin"))
        assert asked == [6.0, 3.0, 2.0] and released == [2.0]
        assert file_digest(out) == file_digest(src)
        # no room at all: one part at a time, and still done
        t.reserve = lambda name, mb: None
        out = await t.download(user, msg, str(tmp_path / "dl" / "m2.bin"))
        assert file_digest(out) == file_digest(src)
    finally:
        await t.close()


async def test_silent_part_times_out_and_is_fetched_again(clients, phone, tmp_path, sim):
    user = await clients.user(phone, "Silent")
    t = Transfers()
    t.PART_TIMEOUT_S = 0.5
    try:
        src, msg = await _upload(t, user, tmp_path, "t.bin", 3 * MIB + 1)
        parts = -(-os.path.getsize(src) // t.part_size)
        sim.faults.stall_file_calls = 1
        before = sim.stats["upload.GetFile"]
        out = await t.download(user, msg, str(tmp_path / "dl" / "t.bin"))
        assert sim.faults.stall_file_calls == 0
        assert sim.stats["upload.GetFile"] - before == parts + 1
        assert file_digest(out) == file_digest(src)
    finally:
        await t.close()


async def test_file_on_another_dc_goes_through_exported_authorization(clients, phone, tmp_path,
                                                                      sim, transfers):
    """The library's own path for a foreign DC (a session there, authorized by
    auth.exportAuthorization / importAuthorization) is what ours builds on."""
    from pyrogram.file_id import FileId

    user = await clients.user(phone, "Far")
    src, msg = await _upload(transfers, user, tmp_path, "far.bin", 2 * MIB + 3)
    sim.world.media[FileId.decode(msg.document.file_id).media_id].dc_id = 4
    msg = await user.get_messages("me", msg.id)
    assert FileId.decode(msg.document.file_id).dc_id == 4
    imports = sim.stats["auth.ImportAuthorization"]
    out = await transfers.download(user, msg, str(tmp_path / "dl" / "far.bin"))
    assert file_digest(out) == file_digest(src)
    assert sim.stats["auth.ImportAuthorization"] > imports


async def test_cancel_mid_upload_stops_fast_and_leaves_nothing_open(clients, phone, tmp_path,
                                                                    sim):
    """An upload cancelled a third of the way: it ends within 2 s, sends no part after, its
    connections close, and its file is closed once the last part being read is done."""
    user = await clients.user(phone, "CancelUp")
    t = Transfers(idle_close_s=60)
    fds = len(os.listdir("/proc/self/fd"))
    try:
        src = write_random(tmp_path / "u.bin", 48 * 512 * 1024 + 77)  # 48 parts, a big file
        baseline = await _settle(sim, user.me.id, 1)
        sim.faults.latency_s = 0.03
        sim.faults.bandwidth_bps = 4 * MIB
        reached = asyncio.Event()

        def progress(done: int, total: int) -> None:
            if done >= total / 3:
                reached.set()

        task = asyncio.ensure_future(t.upload(user, str(src), progress=progress))
        await asyncio.wait_for(reached.wait(), 20)
        assert sim.connection_count(user.me.id) > baseline  # parts over several connections
        await _cancelled_within(task, 2.0)
        assert t.connections(user) == 0
        assert await _settle(sim, user.me.id, baseline, 2.0) == baseline
        parts = sim.stats["upload.SaveBigFilePart"]
        await asyncio.sleep(0.5)
        assert sim.stats["upload.SaveBigFilePart"] == parts, "parts went on after cancel"
        assert parts < 48
        await wait_until(lambda: len(os.listdir("/proc/self/fd")) <= fds, 2.0,
                         "the upload's file and connections closed")
    finally:
        sim.faults.reset()
        await t.close()
