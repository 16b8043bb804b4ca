import asyncio
import logging
import threading

import pytest
from pyrogram.errors import FloodWait, MessageNotModified

from helpers.progress import ProgressReporter, format_eta, format_size, render_progress

MB = 1024 * 1024


# --- render ------------------------------------------------------------------------

def test_render_half_way():
    text = render_progress("Downloading", 23 * MB, 46 * MB, 3.2 * MB, 65, "video.mp4")
    lines = text.splitlines()
    assert lines[0] == "Downloading: video.mp4"
    assert lines[1] == "[██████░░░░░░] 50.0%"
    assert lines[2] == "23.0 / 46.0 MB • 3.2 MB/s • ETA 1m 05s"


def test_render_bar_has_12_cells_and_bounds():
    for done in (0, 1, 5 * MB, 10 * MB, 11 * MB):
        text = render_progress("Uploading", done, 10 * MB, 0, None)
        bar = text.splitlines()[1]
        assert bar.startswith("[") and bar.index("]") == 13
        assert bar.count("█") + bar.count("░") == 12
    assert "[░░░░░░░░░░░░] 0.0%" in render_progress("Uploading", 0, 10, 0, None)
    assert "[████████████] 100.0%" in render_progress("Uploading", 10, 10, 0, 0)
    # more done than total (a size estimate was low) never overflows the bar
    assert "[████████████] 100.0%" in render_progress("Uploading", 20, 10, 0, 0)


def test_render_unknown_total():
    text = render_progress("Downloading", 5 * MB, 0, 1 * MB, None)
    assert "[░░░░░░░░░░░░] ?%" in text
    assert "5.0 MB of unknown size" in text
    assert "ETA --" in text
    text = render_progress("Downloading", None, None, None, None)  # type: ignore[arg-type]
    assert "0 B of unknown size" in text


def test_render_odd_values():
    text = render_progress("Downloading", -5, 100, float("nan"), float("inf"))
    assert "0 / 100 B" in text and "0 B/s" in text and "ETA --" in text
    text = render_progress("Downloading", 10, 100, -3.0, -1)
    assert "0 B/s" in text and "ETA --" in text


def test_render_name_is_one_line_and_bounded():
    text = render_progress("Downloading", 1, 2, 0, None, "a\nb\tc " + "x" * 500)
    first = text.splitlines()[0]
    assert first.startswith("Downloading: a b c x")
    assert len(first) <= len("Downloading: ") + 64
    assert len(text.splitlines()) == 3


def test_units_and_eta_format():
    assert format_size(0) == "0 B"
    assert format_size(1023) == "1023 B"
    assert format_size(1536) == "1.5 KB"
    assert format_size(45.6 * MB) == "45.6 MB"
    assert format_size(2.5 * 1024 * MB) == "2.5 GB"
    assert format_eta(None) == "--"
    assert format_eta(0) == "0s"
    assert format_eta(45) == "45s"
    assert format_eta(65) == "1m 05s"
    assert format_eta(3600 + 180) == "1h 03m"
    assert format_eta(10**7) == ">99h"
    text = render_progress("Downloading", 512 * MB, 2048 * MB, 0, None)
    assert "0.5 / 2.0 GB" in text


# --- throttle ----------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class FakeEdit:
    """Our own edit callback: records texts, can be told to fail or block."""

    def __init__(self):
        self.texts: list[str] = []
        self.raise_next: BaseException | None = None
        self.gate: asyncio.Event | None = None
        self.started = 0

    async def __call__(self, text: str) -> None:
        self.started += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.raise_next is not None:
            exc, self.raise_next = self.raise_next, None
            raise exc
        self.texts.append(text)


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


async def test_throttle_respects_interval():
    clock, edit = Clock(), FakeEdit()
    rep = ProgressReporter(edit, min_interval=5.0, clock=clock)
    for i in range(100):  # a burst within the first interval: nothing is sent
        rep.update("Downloading", i * 1000, 10**6)
    await settle()
    assert edit.texts == []
    clock.t += 5
    rep.update("Downloading", 200_000, 10**6)
    for i in range(50):
        rep.update("Downloading", 200_000 + i, 10**6)
    await settle()
    assert len(edit.texts) == 1 and "Downloading" in edit.texts[0]
    clock.t += 4.9
    rep.update("Downloading", 300_000, 10**6)
    await settle()
    assert len(edit.texts) == 1
    clock.t += 0.2
    rep.update("Downloading", 300_001, 10**6)
    await settle()
    assert len(edit.texts) == 2
    await rep.close()


async def test_speed_and_eta():
    clock, edit = Clock(), FakeEdit()
    rep = ProgressReporter(edit, min_interval=5.0, clock=clock)
    rep.update("Downloading", 0, 100 * MB)
    for step in range(1, 11):
        clock.t += 1
        rep.update("Downloading", step * 2 * MB, 100 * MB)
    assert rep.speed == pytest.approx(2 * MB)
    assert rep.eta == pytest.approx(40)
    await settle()
    # the one edit so far was made at t+5: 10 of 100 MB at 2 MB/s
    assert edit.texts == ["Downloading\n[█░░░░░░░░░░░] 10.0%\n10.0 / 100.0 MB • 2.0 MB/s • ETA 45s"]
    # a new phase starts its own speed measurement
    rep.update("Uploading", 0, 100 * MB)
    assert rep.speed == 0 and rep.eta is None
    await rep.close()


async def test_unchanged_text_not_resent():
    clock, edit = Clock(), FakeEdit()
    rep = ProgressReporter(edit, min_interval=5.0, clock=clock)
    clock.t += 5
    rep.update("Downloading", 10, 0)
    await settle()
    clock.t += 5
    rep.update("Downloading", 10, 0)  # same text (no speed, unknown total)
    await settle()
    assert len(edit.texts) == 1
    await rep.close()


async def test_at_most_one_edit_in_flight():
    clock, edit = Clock(), FakeEdit()
    edit.gate = asyncio.Event()
    rep = ProgressReporter(edit, min_interval=5.0, clock=clock)
    for i in range(10):
        clock.t += 6
        rep.update("Downloading", i + 1, 100)
        await settle()
    assert edit.started == 1 and rep.in_flight
    edit.gate.set()
    await settle()
    assert len(edit.texts) == 1 and not rep.in_flight
    clock.t += 6
    rep.update("Downloading", 50, 100)
    await settle()
    assert edit.started == 2
    await rep.close()


async def test_floodwait_skips_edits_without_blocking():
    clock, edit = Clock(), FakeEdit()
    rep = ProgressReporter(edit, min_interval=5.0, clock=clock)
    edit.raise_next = FloodWait(value=30)
    clock.t += 5
    rep.update("Downloading", 1, 100)
    await settle()
    assert edit.started == 1 and edit.texts == []
    assert rep.flood_until == pytest.approx(clock.t + 30)
    # During the wait: updates return at once and never call edit.
    loop = asyncio.get_running_loop()
    for i in range(5):
        clock.t += 5
        before = loop.time()
        rep.update("Downloading", 2 + i, 100)
        assert loop.time() - before < 0.05
        await settle()
    assert edit.started == 1
    assert rep.skipped_flood >= 5
    # finish during the wait also refuses rather than sleeping
    assert await asyncio.wait_for(rep.finish("Done"), 0.5) is False
    assert edit.started == 1
    clock.t += 6  # past the wait (30s after the flood)
    rep.update("Downloading", 90, 100)
    await settle()
    assert edit.started == 2 and len(edit.texts) == 1
    await rep.close()


async def test_message_not_modified_and_other_errors_ignored(caplog):
    clock, edit = Clock(), FakeEdit()
    rep = ProgressReporter(edit, min_interval=5.0, clock=clock)
    edit.raise_next = MessageNotModified()
    clock.t += 5
    rep.update("Downloading", 1, 100)
    await settle()
    assert rep.flood_until == 0
    edit.raise_next = RuntimeError("network down")
    with caplog.at_level(logging.DEBUG, logger="helpers.progress"):
        clock.t += 5
        rep.update("Downloading", 2, 100)
        await settle()
    assert "network down" in caplog.text
    clock.t += 5
    rep.update("Downloading", 3, 100)
    await settle()
    assert len(edit.texts) == 1
    await rep.close()


async def test_finish_awaits_final_edit_and_cancels_in_flight():
    clock, edit = Clock(), FakeEdit()
    rep = ProgressReporter(edit, min_interval=5.0, clock=clock)
    edit.gate = asyncio.Event()
    clock.t += 5
    rep.update("Downloading", 1, 100)
    await settle()
    assert rep.in_flight
    edit.gate = None  # the final edit goes straight through
    assert await rep.finish("Done ✅") is True
    assert edit.texts == ["Done ✅"]
    assert not rep.in_flight
    assert await rep.finish("Done ✅") is True  # already shown: no second call
    assert edit.texts == ["Done ✅"]


async def test_finish_reports_failure():
    clock, edit = Clock(), FakeEdit()
    rep = ProgressReporter(edit, min_interval=5.0, clock=clock)
    edit.raise_next = RuntimeError("gone")
    assert await rep.finish("Done") is False


async def test_close_cancels_and_silences():
    clock, edit = Clock(), FakeEdit()
    edit.gate = asyncio.Event()
    rep = ProgressReporter(edit, min_interval=5.0, clock=clock)
    clock.t += 5
    rep.update("Downloading", 1, 100)
    await settle()
    assert rep.in_flight
    await rep.close()
    assert not rep.in_flight
    clock.t += 50
    rep.update("Downloading", 2, 100)
    await settle()
    assert edit.started == 1 and edit.texts == []


async def test_update_from_worker_thread():
    # The client library runs synchronous progress callbacks in an executor thread.
    clock, edit = Clock(), FakeEdit()
    rep = ProgressReporter(edit, min_interval=5.0, clock=clock)
    clock.t += 5
    thread = threading.Thread(target=rep.update, args=("Uploading", 5, 10))
    thread.start()
    thread.join()
    await settle()
    assert len(edit.texts) == 1 and edit.texts[0].startswith("Uploading")
    await rep.close()


async def test_default_clock_first_edit_waits_interval():
    edit = FakeEdit()
    rep = ProgressReporter(edit, min_interval=5.0)
    rep.update("Downloading", 1, 100)
    await settle()
    assert edit.started == 0  # the message was just sent; do not edit it immediately
    await rep.close()
