"""MemoryMonitor: driven by a fake RSS reader and a fake clock, so every path is deterministic."""

import asyncio
import logging

import pytest

from helpers.memory_monitor import MB, MemoryMonitor, sparkline


class FakeRSS:
    def __init__(self, mb: float) -> None:
        self.mb = mb

    def __call__(self) -> int:
        return int(self.mb * MB)


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make(rss_mb=100.0, **kw):
    rss = FakeRSS(rss_mb)
    clock = FakeClock()
    kw.setdefault("limit_mb", 512)
    kw.setdefault("warn_mb", 400)
    mon = MemoryMonitor(rss_reader=rss, clock=clock, **kw)
    return mon, rss, clock


def messages(caplog, marker):
    return [r.getMessage() for r in caplog.records if marker in r.getMessage()]


async def test_snapshot_tree_format(caplog):
    mon, rss, _ = make(123.4)
    mon.register_gauge("live sessions", lambda: 3)
    mon.register_gauge("queue length", lambda: 7)
    mon.register_gauge("broken", lambda: 1 / 0)
    caplog.set_level(logging.INFO, logger="memory")
    text = mon.snapshot("Download", {"job": 5})
    lines = text.splitlines()
    assert lines[0] == "MEMORY SNAPSHOT [Download]"
    assert lines[-1].startswith("└─ Context: job=5")
    assert sum(1 for ln in lines if ln.startswith("└─")) == 1
    for ln in lines[1:-1]:
        assert ln.startswith("├─ ") or ln.startswith("│  ")
    assert "├─ RSS: 123.4 MB" in text
    for field in ("VMS:", "System:", "% used", "MB available", "Threads:", "Open files:",
                  "Asyncio tasks:", "Reserved:", "Admission: open", "Gauges:",
                  "live sessions: 3", "queue length: 7", "broken: error"):
        assert field in text, field
    recs = [r for r in caplog.records if r.name == "memory" and "MEMORY SNAPSHOT" in r.getMessage()]
    assert len(recs) == 1 and recs[0].levelno == logging.INFO
    assert recs[0].getMessage() == text


async def test_spike_prints_last_20_operations_oldest_first(caplog):
    mon, rss, clock = make(100.0, spike_mb=50)
    mon.check()
    for i in range(25):
        async with mon.track(f"op{i}", {"job": i}) as ctx:
            rss.mb += 1
            clock.t += 1
            ctx["bytes"] = i * 10
    caplog.clear()
    caplog.set_level(logging.INFO, logger="memory")
    rss.mb += 60
    mon.check()
    spikes = messages(caplog, "MEMORY SPIKE DETECTED")
    assert len(spikes) == 1
    msg = spikes[0]
    assert msg.startswith("MEMORY SPIKE DETECTED: +60.0 MB (125.0 -> 185.0 MB)")
    names = [f"op{i}:" for i in range(5, 25)]
    positions = [msg.index(n) for n in names]
    assert positions == sorted(positions)
    assert "op4:" not in msg
    assert "RSS 105.0 -> 106.0 MB" in msg and "job=5" in msg and "bytes=50" in msg
    assert len(mon.operations()) == 20
    # below threshold: no new spike
    caplog.clear()
    rss.mb += 49
    mon.check()
    assert not messages(caplog, "MEMORY SPIKE DETECTED")


async def test_spike_detected_after_tracked_operation(caplog):
    mon, rss, _ = make(100.0, spike_mb=50)

    @mon.tracked("Upload")
    async def upload():
        rss.mb += 80
        return "done"

    caplog.set_level(logging.INFO, logger="memory")
    assert await upload() == "done"
    msg = messages(caplog, "MEMORY SPIKE DETECTED")
    # the first reading inside track() is not a check; the baseline is the first check
    assert not msg
    await upload()
    msg = messages(caplog, "MEMORY SPIKE DETECTED")
    assert msg and "Upload" in msg[0]
    assert mon.operations()[-1].name == "Upload"


async def test_track_records_errors():
    mon, rss, _ = make(100.0)
    with pytest.raises(ValueError):
        async with mon.track("Boom"):
            raise ValueError("x")
    assert mon.operations()[-1].error == "ValueError"


async def test_high_usage_is_rate_limited(caplog):
    mon, rss, clock = make(410.0, limit_mb=1000, warn_mb=400)
    caplog.set_level(logging.INFO, logger="memory")
    mon.check()
    clock.t += 10
    mon.check()
    assert len(messages(caplog, "HIGH MEMORY USAGE")) == 1
    assert "HIGH MEMORY USAGE: 410.0 MB / 1000 MB" in messages(caplog, "HIGH MEMORY USAGE")[0]
    clock.t += 61
    mon.check()
    assert len(messages(caplog, "HIGH MEMORY USAGE")) == 2


async def test_critical_runs_actions_in_order_then_pauses_and_resumes(caplog):
    mon, rss, clock = make(100.0, limit_mb=200, warn_mb=150, critical_ratio=0.9)
    calls = []

    def trim_caches():
        calls.append("trim caches")
        rss.mb -= 5
        return "trimmed 10 items"

    async def evict_sessions():
        calls.append("evict idle sessions")
        rss.mb -= 5
        return "evicted 2 sessions"

    mon.register_action("trim caches", trim_caches)
    mon.register_action("evict idle sessions", evict_sessions)
    caplog.set_level(logging.INFO, logger="memory")
    mon.check()
    rss.mb = 190  # >= 180 critical, relief drops only 10 MB: stays above warn
    mon.check()
    assert mon.relief.task is not None
    await mon.relief.task
    assert calls == ["trim caches", "evict idle sessions"]
    assert mon.admission_paused is True
    assert await mon.admit() is False
    assert messages(caplog, "GC performed: collected")
    acts = messages(caplog, "pressure action")
    assert "trim caches" in acts[0] and "freed 5.0 MB" in acts[0]
    assert "evict idle sessions" in acts[1]
    # second critical reading within 30 s: no new relief
    clock.t += 5
    mon.check()
    assert mon.relief.task.done() and calls == ["trim caches", "evict idle sessions"]

    rss.mb = 120
    assert await mon.admit() is True
    assert mon.admission_paused is False
    assert messages(caplog, "admission resumed")


async def test_relieve_stops_early_once_below_warn():
    mon, rss, _ = make(170.0, limit_mb=200, warn_mb=150)
    calls = []

    def first():
        calls.append(1)
        rss.mb = 140
        return "freed"

    mon.register_action("first", first)
    mon.register_action("second", lambda: calls.append(2) or "x")
    report = await mon.relieve("test")
    assert calls == [1]
    assert report["admission_paused"] is False
    assert [s["name"] for s in report["steps"]] == ["gc+malloc_trim", "first"]
    assert report["freed_mb"] == pytest.approx(30.0)


async def test_failing_action_does_not_stop_relief():
    mon, rss, _ = make(190.0, limit_mb=200, warn_mb=150)
    mon.register_action("bad", lambda: 1 / 0)
    mon.register_action("good", lambda: "ok")
    report = await mon.relieve("test")
    assert report["steps"][1]["result"].startswith("failed")
    assert report["steps"][2]["result"] == "ok"
    assert mon.admission_paused


def test_critical_without_loop_runs_gc_and_pauses(caplog):
    mon, rss, _ = make(195.0, limit_mb=200, warn_mb=150)
    caplog.set_level(logging.INFO, logger="memory")
    mon.check()
    assert messages(caplog, "GC performed")
    assert mon.admission_paused


async def test_reservation_budget():
    mon, rss, _ = make(100.0, limit_mb=200, critical_ratio=0.9)  # budget 180 MB
    a = mon.try_reserve("dl1", 50)
    assert a is not None and mon.reserved_mb == 50
    b = mon.reserve("dl2", 30)
    assert b is not None and mon.reserved_mb == 80
    assert mon.try_reserve("dl3", 1) is None  # 100 + 80 + 1 > 180
    with b:
        pass
    assert b.released and mon.reserved_mb == 50
    b.release()  # idempotent
    assert mon.reserved_mb == 50
    c = mon.try_reserve("dl3", 30)
    assert c is not None
    mon.release(c)
    mon.release(a)
    assert mon.reserved_mb == 0 and mon.reservations() == []


async def test_reserve_wait_wakes_on_release_and_times_out():
    mon, rss, _ = make(100.0, limit_mb=200, critical_ratio=0.9)
    held = mon.try_reserve("big", 70)
    assert await mon.reserve_wait("x", 20, timeout=0.05) is None
    assert await mon.reserve_wait("huge", 500, timeout=10) is None  # can never fit: no wait

    async def later():
        await asyncio.sleep(0.05)
        held.release()

    task = asyncio.create_task(later())
    res = await mon.reserve_wait("x", 20, timeout=2)
    await task
    assert res is not None and mon.reserved_mb == 20
    async with res:
        pass
    assert mon.reserved_mb == 0


async def test_periodic_task_logs_snapshot_and_gc(caplog):
    mon = MemoryMonitor(limit_mb=100_000, warn_mb=100_000, check_interval=0.05)
    caplog.set_level(logging.INFO, logger="memory")
    mon.start()
    mon.start()  # idempotent
    await asyncio.sleep(0.3)
    await mon.stop()
    assert messages(caplog, "MEMORY SNAPSHOT [periodic]")
    gcs = messages(caplog, "GC performed: collected")
    assert gcs and "freed" in gcs[0]
    assert mon.gc_runs >= 1
    assert mon._task is None


async def test_leak_warning_with_fake_clock(caplog):
    mon, rss, clock = make(100.0, trend_window_s=600, leak_mb_per_min=2.0, spike_mb=1000)
    caplog.set_level(logging.INFO, logger="memory")
    async with mon.track("Download", {"job": 1}):
        pass
    # 3 MB/min for 4 min: not yet half a window of data
    for _ in range(24):
        clock.t += 10
        rss.mb += 0.5
        mon.check()
    assert not messages(caplog, "MEMORY LEAK SUSPECTED")
    for _ in range(40):
        clock.t += 10
        rss.mb += 0.5
        mon.check()
    leaks = messages(caplog, "MEMORY LEAK SUSPECTED")
    assert len(leaks) == 1
    assert leaks[0].startswith("MEMORY LEAK SUSPECTED: +3.00 MB/min over 5 min")
    assert mon.trend_mb_per_min() == pytest.approx(3.0, rel=1e-6)
    # rate limited
    clock.t += 10
    rss.mb += 0.5
    mon.check()
    assert len(messages(caplog, "MEMORY LEAK SUSPECTED")) == 1


async def test_flat_memory_is_not_a_leak(caplog):
    mon, rss, clock = make(100.0)
    caplog.set_level(logging.INFO, logger="memory")
    for i in range(120):
        clock.t += 10
        rss.mb = 100 + (i % 2)
        mon.check()
    assert not messages(caplog, "MEMORY LEAK SUSPECTED")
    assert abs(mon.trend_mb_per_min()) < 0.1


def test_history_is_bounded_and_windowed():
    mon, rss, clock = make(100.0)
    for i in range(2000):
        clock.t += 5
        rss.mb = 100 + i % 10
        mon.check()
    hist = mon.history(3600)
    assert len(hist) <= MemoryMonitor.HISTORY_KEPT
    assert hist[0][0] >= clock.t - 3600
    assert len(mon.history(60)) <= 13
    assert mon.peak_mb == pytest.approx(109.0)
    assert len(mon.readings.trend) <= MemoryMonitor.TREND_KEPT


def test_sparkline():
    assert sparkline([]) == ""
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([(0, 5.0), (1, 5.0)]) == "▄▄"
    line = sparkline(list(range(1000)), width=40)
    assert len(line) == 40 and line[0] == "▁" and line[-1] == "█"
    # a single spike survives downsampling
    assert "█" in sparkline([0] * 500 + [100] + [0] * 499, width=10)
    assert MemoryMonitor.sparkline([1, 2]) == "▁█"


async def test_memstats_text_and_force_gc(caplog):
    mon, rss, clock = make(100.0)
    mon.register_gauge("cache items", lambda: 12)
    mon.register_gauge("live sessions", lambda: 3)
    for i in range(5):
        clock.t += 10
        async with mon.track("Download", {"job": i}):
            rss.mb += 1
    held = mon.try_reserve("transfer 7", 16)
    text = mon.memstats_text()
    assert text.startswith("MEMORY SNAPSHOT [memstats]")
    assert "RSS last hour" in text
    assert "Top consumers:" in text
    assert text.index("cache items: 12", text.index("Top consumers:")) < \
        text.index("live sessions: 3", text.index("Top consumers:"))
    assert "reservation transfer 7: 16.0 MB" in text
    assert "Last 5 operations (oldest first):" in text and "job=4" in text
    assert any(c in text for c in "▁▂▃▄▅▆▇█")
    assert len(text) <= MemoryMonitor.MEMSTATS_MAX_CHARS
    held.release()
    caplog.set_level(logging.INFO, logger="memory")
    out = await mon.force_gc()
    assert out.startswith("GC performed: collected") and "freed" in out
    assert mon.gc_runs == 1


async def test_register_action_replaces_in_place():
    mon, rss, _ = make(190.0, limit_mb=200, warn_mb=150)
    order = []
    mon.register_action("a", lambda: order.append("a1"))
    mon.register_action("b", lambda: order.append("b"))
    mon.register_action("a", lambda: order.append("a2"))
    await mon.relieve("t")
    assert order == ["a2", "b"]
