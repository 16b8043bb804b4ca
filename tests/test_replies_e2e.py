"""One reply per thing the user did: an unknown command gets one line pointing at /help, and a
failed job one notice (its progress message edited to the failure, no second message)."""

from __future__ import annotations

import asyncio
import dataclasses


async def _settled(env) -> list:
    """Every message and edit that reached the person once the queue is idle and a /status
    round trip has gone through after it."""
    await env.app.queue.wait_idle()
    await env.say("/status")
    seen = []
    msg = await env.expect(lambda m: seen.append(m) or "no jobs in progress" in (m.text or ""))
    return [m for m in seen if m is not msg]


async def test_unknown_command_gets_one_reply(env):
    await env.say("/whatever now")
    reply = await env.expect(lambda m: "/whatever" in (m.text or ""))
    assert "/help" in reply.text and len(reply.text.splitlines()) == 1
    assert await _settled(env) == []
    # Known commands (with the bot's name, in any case) are not "unknown".
    await env.say(f"/HELP@{env.bot_username}")
    await env.expect_text("/batch")
    assert [m.text for m in await _settled(env)] == []


async def test_failed_job_gives_one_notice(env):
    ch = await env.user.create_channel("Feed", "")
    await env.user.set_chat_username(ch.id, "failfeed")
    post = await env.user.send_message("failfeed", "soon gone")
    await env.user.delete_messages("failfeed", post.id)
    await env.say(f"https://t.me/failfeed/{post.id}")
    await env.expect_text("does not exist or was deleted")
    late = [m.text for m in await _settled(env) if "failed" in (m.text or "")]
    assert late == [], late
    assert env.app.queue.failed_count == 1


async def test_two_broadcasts_at_once_start_one(env):
    admin = env.people[0]
    env.app.settings = dataclasses.replace(env.app.settings, admin_ids=(admin.id,),
                                           owner_ids=(admin.id,))
    for uid in range(10_001, 10_041):  # recipients that keep the first run busy ~2 s
        await env.app.db.ensure_user(uid)
    await asyncio.gather(admin.say("/broadcast one"), admin.say("/broadcast two"))
    seen = []
    await admin.expect(lambda m: seen.append(m.text or "") or "Broadcast finished" in seen[-1],
                       timeout=60)
    assert sum("Broadcasting to" in t for t in seen) == 1, seen
    assert sum("already running" in t for t in seen) == 1, seen
