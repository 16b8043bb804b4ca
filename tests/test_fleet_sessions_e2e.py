"""One live Telegram session per user across the fleet: a user's private-chat jobs on two
workers never have the user's auth key connected from two processes at once (tgsim answers
that with AUTH_KEY_DUPLICATED, as Telegram does), sampled throughout the run."""

from __future__ import annotations

import asyncio
import os

from harness.files import file_digest, write_random
from harness.fleetrig import Inbox, check_bytes, until
from harness.fleetrig import phone as _phone
from harness.fleetrig import serial as _serial
from tgsim.key_places import places_by_account


async def _login(fleet, client, inbox, phone: str) -> None:
    async def step(text: str, fragment: str) -> None:
        n = len(inbox.texts)
        await client.send_message(fleet.bot_acc.username, text)
        await until(lambda: any(fragment in t for t in inbox.texts[n:]), 30, fragment)

    await step("/login", "phone number")
    await step(phone, "login code")
    await step(" ".join(fleet.sim.world.login_code), "Logged in as")


async def test_a_users_session_is_live_in_one_process_at_a_time(fleet, clients, tmp_path):
    sim = fleet.sim
    owner = await clients.user(_phone(), "Owner")
    ch = await owner.create_channel(f"Vault {next(_serial)}", "")
    await owner.set_chat_protected_content(ch.id, True)
    phone = _phone()
    client = await clients.user(phone, "Reader")
    inbox = Inbox(client, fleet.bot_acc.id)
    await client.join_chat(await owner.export_chat_invite_link(ch.id))
    links, digests = [], {}
    for i in range(4):
        src = write_random(tmp_path / f"v{i}.bin", 600_000 + 1000 * i)
        post = await owner.send_document(ch.id, str(src), caption=f"vault {i}")
        links.append(f"https://t.me/c/{str(ch.id)[4:]}/{post.id}")
        digests[f"vault {i}"] = file_digest(src)
    await fleet.start("front", "front")
    await asyncio.gather(fleet.start("w1", "worker"), fleet.start("w2", "worker"))
    await _login(fleet, client, inbox, phone)
    me = client.me.id
    worst = 0
    sampling = True

    async def sample():
        nonlocal worst
        while sampling:
            places = places_by_account(sim).get(me, set())
            # the test's own client is one place; the bot's processes are the others
            worst = max(worst, len(places - {f"pid:{os.getpid()}"}))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    sim.faults.bandwidth_bps = 1_500_000  # transfers overlap
    try:
        await client.send_message(fleet.bot_acc.username, "\n".join(links))
        rows = await fleet.all_final(4, timeout=180)
    finally:
        sampling = False
        await sampler
        sim.faults.bandwidth_bps = 0
    print(f"\n[fleet] private jobs of one user on 2 workers: at most {worst} process(es) with "
          f"the user's session at once; AUTH_KEY_DUPLICATED {sim.stats['auth_key_duplicated']}")
    assert sim.stats["auth_key_duplicated"] == 0
    assert me not in sim.duplicated_accounts
    assert worst == 1, worst
    assert [r["status"] for r in rows] == ["done"] * 4, rows
    await until(lambda: len(inbox.media) >= 4, 30, "4 files")
    assert sorted(inbox.captions()) == sorted(digests), inbox.captions()
    await check_bytes(client, inbox.media, digests, tmp_path)
