"""The short rehearsal, `python -m bot --sim` (or `rehearse`): tgsim on loopback in this
process, the real bot against it, a simulated user sending links, and a table of what came
back. Needs no Telegram credentials and no network."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path

import psutil
from pyrogram import filters

from bot.config import Settings
from harness.botenv import sim_settings
from harness.files import file_digest
from harness.signin import sign_in
from helpers.links import bare_channel_id


async def rehearse(base: Settings) -> int:
    from bot.app import App
    from tgsim import TgSim

    work = Path(tempfile.mkdtemp(prefix="bot-rehearsal-"))
    sim = await TgSim(work / "tgsim").start()
    bot_acc = sim.world.add_bot("rehearsal_bot", "Rehearsal Bot")
    app = App(sim_settings(base, sim, bot_acc.bot_token, work))
    await app.start()
    user = await sign_in(sim.dc_table, sim.public_key_path, "+15550100", "Newcomer",
                         code=sim.world.login_code)
    received: asyncio.Queue = asyncio.Queue()

    @user.on_message(filters.private & filters.user(bot_acc.id))
    async def collect(_, message):
        if message.media:
            await received.put(message)

    try:
        ch = await user.create_channel("Rehearsal", "public test channel")
        await user.set_chat_username(ch.id, "rehearsalchan")
        src = work / "sample.bin"
        src.write_bytes(os.urandom(8 * 1024 * 1024))
        posts = [await user.send_document("rehearsalchan", str(src), caption=f"sample {i}")
                 for i in range(2)]
        locked = await user.create_channel("Locked", "protected channel")
        await user.set_chat_protected_content(locked.id, True)
        await user.add_chat_members(locked.id, "rehearsal_bot")
        await user.promote_chat_member(locked.id, "rehearsal_bot")
        secret = await user.send_document(locked.id, str(src), caption="protected sample")
        links = [f"https://t.me/rehearsalchan/{posts[0].id}-{posts[1].id}",
                 f"https://t.me/c/{bare_channel_id(locked.id)}/{secret.id}"]
        start = time.monotonic()
        await user.send_message("rehearsal_bot", "\n".join(links))
        want = file_digest(str(src))
        rows = []
        for _ in range(3):
            msg = await asyncio.wait_for(received.get(), 120)
            path = await user.download_media(msg, file_name=str(work / "got" / "x"))
            rows.append((msg.caption, file_digest(path) == want))
            os.remove(path)
        elapsed = time.monotonic() - start
        rss = psutil.Process().memory_info().rss / 1048576
        print(f"{'delivered':<22}{'bytes identical':>16}")
        for caption, same in rows:
            print(f"{caption:<22}{'yes' if same else 'NO':>16}")
        print(f"\n3 jobs in {elapsed:.1f} s; process RSS {rss:.0f} MB (bot + tgsim + user)")
        print(f"Logs of the rehearsal: {work / 'logs.txt'}")
        return 0 if all(same for _, same in rows) else 1
    finally:
        await user.stop()
        await app.stop()
        await sim.stop()
        _keep_only_logs(work)


def _keep_only_logs(work: Path) -> None:
    """The files of a rehearsal are tens of MB a run; its logs are what a newcomer reads."""
    for entry in work.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        elif not entry.name.startswith("logs.txt"):
            entry.unlink(missing_ok=True)
