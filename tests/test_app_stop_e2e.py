"""App.stop cancels the tasks it spawned and waits for them before closing what they use."""

from __future__ import annotations

import asyncio

from harness.botenv import bot_env


async def test_stop_awaits_spawned_tasks_before_closing_the_database(sim, clients, tmp_path):
    outcome = []

    async def background(app):
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            # A cancelled broadcast or notice on its way out: a slow step, then a query.
            await asyncio.sleep(1.5)
            outcome.append(await app.db.count_users())
            raise

    async with bot_env(sim, clients, tmp_path) as env:
        task = env.app.spawn(background(env.app), "background")
        await asyncio.sleep(0)
    assert task.done(), "stop() returned with its task still pending"
    assert outcome == [0], "the cleanup query did not run before the database closed"
