"""tgsim keeps what happened while a client was offline for updates.getDifference, as Telegram
does, and pushes none of it to a new session (core.telegram.org/api/updates, "Recovering
gaps")."""

from __future__ import annotations

import asyncio

from pyrogram import filters, raw


async def _offline_bot(clients, username: str):
    """A bot that ran once, stored its state and went away: (session string, its state)."""
    bot = await clients.bot(username)
    state = await bot.invoke(raw.functions.updates.GetState())
    session = await bot.export_session_string()
    await bot.stop()
    clients.started.remove(bot)
    return session, state


async def test_difference_has_what_happened_offline_and_nothing_old_is_pushed(clients, phone):
    session, state = await _offline_bot(clients, "offline_sim_bot")
    sender = await clients.user(phone, "Sender")
    for text in ("one", "two", "three"):
        await sender.send_message("offline_sim_bot", text)

    back = clients.new(session_string=session)
    pushed: list[str] = []
    fresh = asyncio.Event()

    @back.on_message(filters.private)
    async def on_message(_, message):
        pushed.append(message.text)
        if message.text == "fresh":
            fresh.set()

    await back.start()
    clients.started.append(back)
    await sender.send_message("offline_sim_bot", "fresh")  # the barrier: it is pushed live
    await asyncio.wait_for(fresh.wait(), 10)
    assert pushed == ["fresh"], "a new session got updates from before it existed"

    now = await back.invoke(raw.functions.updates.GetState())
    assert now.pts == state.pts + 4 and now.seq > state.seq
    diff = await back.invoke(raw.functions.updates.GetDifference(
        pts=state.pts, date=state.date, qts=0))
    assert isinstance(diff, raw.types.updates.Difference)
    assert [m.message for m in diff.new_messages] == ["one", "two", "three", "fresh"]
    assert diff.state.pts == now.pts
    assert any(u.id == sender.me.id for u in diff.users)
    empty = await back.invoke(raw.functions.updates.GetDifference(
        pts=now.pts, date=now.date, qts=0))
    assert isinstance(empty, raw.types.updates.DifferenceEmpty)


async def test_difference_too_long_past_the_horizon(clients, phone, sim):
    sim.updates.size = 5
    session, state = await _offline_bot(clients, "horizon_sim_bot")
    sender = await clients.user(phone, "Chatty")
    for i in range(8):
        await sender.send_message("horizon_sim_bot", f"m{i}")
    back = clients.new(session_string=session, no_updates=True)
    await back.start()
    clients.started.append(back)
    now = await back.invoke(raw.functions.updates.GetState())
    diff = await back.invoke(raw.functions.updates.GetDifference(
        pts=state.pts, date=state.date, qts=0))
    assert isinstance(diff, raw.types.updates.DifferenceTooLong) and diff.pts == now.pts
    recent = await back.invoke(raw.functions.updates.GetDifference(
        pts=now.pts - 3, date=state.date, qts=0))
    assert [m.message for m in recent.new_messages] == ["m5", "m6", "m7"]


async def test_channel_difference_and_its_horizon(clients, phone, sim):
    owner = await clients.user(phone, "Owner")
    ch = await owner.create_channel("Log", "")
    peer = await owner.resolve_peer(ch.id)
    start = await owner.invoke(raw.functions.updates.GetState())
    first = await owner.invoke(raw.functions.updates.GetChannelDifference(
        channel=peer, filter=raw.types.ChannelMessagesFilterEmpty(), pts=1, limit=100))
    base = first.pts if isinstance(first, raw.types.updates.ChannelDifference) else first.pts
    for text in ("p1", "p2", "p3"):
        await owner.send_message(ch.id, text)
    diff = await owner.invoke(raw.functions.updates.GetChannelDifference(
        channel=peer, filter=raw.types.ChannelMessagesFilterEmpty(), pts=base, limit=100))
    assert isinstance(diff, raw.types.updates.ChannelDifference) and diff.final
    assert [m.message for m in diff.new_messages] == ["p1", "p2", "p3"]
    assert diff.pts == base + 3
    # the common sequence points at the channel instead of carrying its posts
    common = await owner.invoke(raw.functions.updates.GetDifference(
        pts=start.pts, date=start.date - 1, qts=0))
    assert any(isinstance(u, raw.types.UpdateChannelTooLong) and u.channel_id == peer.channel_id
               for u in common.other_updates)
    assert not any(getattr(m, "message", None) == "p1" for m in common.new_messages)

    sim.updates.size = 2
    for text in ("p4", "p5", "p6"):
        await owner.send_message(ch.id, text)
    gone = await owner.invoke(raw.functions.updates.GetChannelDifference(
        channel=peer, filter=raw.types.ChannelMessagesFilterEmpty(), pts=base, limit=100))
    assert isinstance(gone, raw.types.updates.ChannelDifferenceTooLong)
    assert gone.dialog.pts == base + 6
    assert [m.message for m in gone.messages][-1] == "p6"


async def test_a_long_difference_comes_in_slices(clients, phone):
    session, state = await _offline_bot(clients, "sliced_sim_bot")
    sender = await clients.user(phone, "Verbose")
    for i in range(105):
        await sender.send_message("sliced_sim_bot", f"s{i}")
    back = clients.new(session_string=session, no_updates=True)
    await back.start()
    clients.started.append(back)
    first = await back.invoke(raw.functions.updates.GetDifference(
        pts=state.pts, date=state.date, qts=0))
    assert isinstance(first, raw.types.updates.DifferenceSlice)
    assert len(first.new_messages) == 100
    assert first.intermediate_state.pts == state.pts + 100
    rest = await back.invoke(raw.functions.updates.GetDifference(
        pts=first.intermediate_state.pts, date=first.intermediate_state.date, qts=0))
    assert isinstance(rest, raw.types.updates.Difference)
    assert [m.message for m in rest.new_messages] == [f"s{i}" for i in range(100, 105)]
