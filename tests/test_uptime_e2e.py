"""Months of uptime in a minute: the bot busy with hundreds of jobs over simulated weeks (its
database's clock advanced between rounds) keeps its jobs table and database file bounded, and
/stats still counts every job."""

from __future__ import annotations

import asyncio
import time

from harness.botenv import bot_env

DAY = 86400.0
ROUNDS, PEOPLE, LINKS = 10, 3, 10  # 300 jobs, a round every STEP_DAYS
STEP_DAYS, HISTORY_DAYS = 3, 7
PAGE = 4096


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


async def _all_done(app, want: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        st = await app.db.stats()
        if st["jobs"]["done"] >= want and not (app.queue.waiting or app.queue.running):
            assert st["jobs"]["done"] == want, st
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{want} jobs not done after {timeout} s: {st['jobs']}")
        await asyncio.sleep(0.1)


async def test_weeks_of_jobs_keep_the_jobs_table_and_database_file_bounded(sim, clients,
                                                                           tmp_path):
    clock = Clock()
    async with bot_env(sim, clients, tmp_path, clock=clock, job_history_days=HISTORY_DAYS,
                       max_queue=100, max_jobs_per_user=20) as env:
        app = env.app
        people = [env.people[0]] + [await env.person(f"P{i}") for i in range(1, PEOPLE)]
        ch = await env.user.create_channel("Feed", "")
        await env.user.set_chat_username(ch.id, "weeksfeed")
        first = (await env.user.send_message("weeksfeed", "line 0")).id
        for i in range(1, LINKS):
            await env.user.send_message("weeksfeed", f"line {i}")
        rows, sizes = [], []
        for k in range(1, ROUNDS + 1):
            for p in people:
                await p.ask(f"/batch https://t.me/weeksfeed/{first} {LINKS}", "queued")
            await _all_done(app, k * PEOPLE * LINKS)
            for p in people:
                p.drain()
            clock.t += STEP_DAYS * DAY
            await app.janitor.tick()
            rows.append(await app.db.count_jobs())
            sizes.append(app.db.file_bytes())
        per_round = PEOPLE * LINKS
        # kept: the last two rounds (ended 3 and 6 days before the tick); each older round is
        # pruned by the tick that puts it past HISTORY_DAYS
        assert rows == [per_round] + [2 * per_round] * (ROUNDS - 1), rows
        assert app.janitor.pruned_total == (ROUNDS - 2) * per_round
        # the file (main + WAL) stops growing once the history is full: pages freed by the
        # prune go back, and the WAL is emptied
        steady = sizes[2:]
        assert max(steady) <= sizes[2] + 2 * PAGE, sizes
        assert (tmp_path / "bot" / "bot.db-wal").stat().st_size == 0
        st = await app.db.stats()
        assert st["jobs"]["done"] == ROUNDS * per_round and st["users"] == PEOPLE, st
        assert f"done {ROUNDS * per_round}" in await app.stats_text()
        print(f"\n[uptime] {ROUNDS * per_round} jobs over {ROUNDS * STEP_DAYS} days; jobs "
              f"table after each prune {rows}; database bytes {sizes}")
