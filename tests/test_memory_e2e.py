"""Memory governance in the running bot: /memstats, /metrics, and what happens under pressure
(forced with a tiny budget): caches trimmed, idle sessions evicted, admission and logins
paused, then resumed once memory is back under the warning level."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from harness.botenv import READER, bot_env, login
from harness.chats import chat_link as _link
from harness.chats import private_channel as _private_channel
from harness.metrics import Metrics, fetch_metrics


async def _metrics(env) -> Metrics:
    return await fetch_metrics(f"http://127.0.0.1:{env.app.web.bound_port}/metrics")


def _make_admin(env, person) -> None:
    env.app.settings = dataclasses.replace(env.app.settings, admin_ids=(person.id,),
                                           owner_ids=(person.id,))


async def test_memstats_for_admins_and_metrics_parse(env):
    admin = env.people[0]
    other = await env.person("Other")
    _make_admin(env, admin)
    await other.ask("/memstats", "for the bot's admins only")
    async with env.app.monitor.track("Download", {"job": 1}):
        pass
    stats = await admin.ask("/memstats", "RSS")
    for part in ("├─", "└─", "live sessions", "cache items", "RSS last hour",
                 "Top consumers", "operations (oldest first)", "Download"):
        assert part in stats.text, part
    gc = await admin.ask("/memstats gc", "GC performed")
    assert "collected" in gc.text and "MB" in gc.text

    m = await _metrics(env)
    assert m.get_value("bot_rss_bytes") > 20 * 1024 * 1024
    assert m.get_value("bot_rss_peak_bytes") >= m.get_value("bot_rss_bytes") * 0.5
    assert m.sessions_live == 0 and m.queue_waiting == 0
    assert m.get_value("bot_gc_runs_total") >= 1
    for name in ("bot_transfers_active", "bot_bytes_transferred_total",
                 "bot_floodwaits_total", "bot_session_evictions_total"):
        assert m.has(name), name


async def test_pressure_evicts_idle_sessions_pauses_admission_and_resumes(sim, clients,
                                                                        tmp_path):
    async with bot_env(sim, clients, tmp_path) as env:
        me, owner = env.people[0], await env.person("Owner")
        await login(env, me)
        ch = await _private_channel(owner, "Notes", me)
        notes = [await owner.client.send_message(ch.id, f"note {i}") for i in range(2)]
        await me.say(_link(ch, notes[0].id))
        await me.expect_text("note 0")
        assert env.app.sessions.is_live(me.id)
        assert (await _metrics(env)).sessions_live == 1
        env.app.prompts.set(12345, "caption")

        monitor = env.app.monitor
        warn, limit = monitor.warn_mb, monitor.limit_mb
        monitor.warn_mb, monitor.limit_mb = 1, 2  # every reading is now critical
        monitor.check()
        for _ in range(100):
            if monitor.admission_paused and not env.app.sessions.live_count:
                break
            await asyncio.sleep(0.05)
        assert not env.app.sessions.is_live(me.id), "idle session evicted under pressure"
        assert env.sim.connection_count(me.id, device_model=READER) == 0
        assert monitor.admission_paused
        assert len(env.app.prompts) == 1  # unexpired prompts are kept: users are mid-answer

        # Paused: a new job waits in the queue, a new login is refused.
        await me.say(_link(ch, notes[1].id))
        await me.expect_text("queued at position 1")
        await asyncio.sleep(1.5)
        assert env.app.queue.waiting == 1 and env.app.queue.running == 0
        other = await env.person("Other")
        await other.ask("/login", "short of memory")

        monitor.warn_mb, monitor.limit_mb = warn, limit
        await me.expect_text("note 1", timeout=15)  # the paused job ran once memory is back
        assert not monitor.admission_paused
        log = Path(env.app.settings.log_file).read_text()
        assert "HIGH MEMORY USAGE" in log
        assert "pressure action 'evict idle user sessions'" in log
        assert "pressure action 'trim caches'" in log
        assert "admission resumed" in log
