"""WebServer on a free port with a real aiohttp client; status figures come from a plain dict."""

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.server import WebServer
from helpers.memory_monitor import MB, MemoryMonitor

USER_ID = 987654321


class FakeRSS:
    def __init__(self, mb):
        self.mb = mb

    def __call__(self):
        return int(self.mb * MB)


@pytest.fixture
def state():
    return {
        "connected": True,
        "status": {
            "sessions_live": 2,
            "queue_waiting": 5,
            "transfers_active": 1,
            "bytes_transferred": 12345,
            "floodwaits": 3,
            "session_evictions": 4,
            "jobs": {"done": 10, "failed": 2},
            "sessions": [{"user_id": USER_ID, "idle_s": 42}],
            "queue": [{"job_id": 77, "user_id": USER_ID, "position": 1}],
        },
    }


@pytest.fixture
async def server(state):
    rss = FakeRSS(150.0)
    mon = MemoryMonitor(limit_mb=512, warn_mb=400, rss_reader=rss)
    for mb in (120, 150):
        rss.mb = mb
        mon.check()
    srv = WebServer(0, "127.0.0.1", is_connected=lambda: state["connected"], monitor=mon,
                    status=lambda: state["status"], metrics_token="s3cret")
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def get(srv, path):
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{srv.bound_port}{path}") as r:
            return r.status, await r.text(), r.headers.get("Content-Type", "")


async def test_binds_free_port(server):
    assert server.bound_port and server.bound_port > 0


async def test_healthz(server, state):
    assert (await get(server, "/healthz"))[:2] == (200, "ok")
    state["connected"] = False
    assert (await get(server, "/healthz"))[:2] == (503, "not connected")


async def test_healthz_when_probe_raises(server, state):
    server._is_connected = lambda: 1 / 0
    assert (await get(server, "/healthz"))[0] == 503


async def test_metrics(server):
    status, body, ctype = await get(server, "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    samples = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert samples[("bot_rss_bytes", ())] == 150 * MB
    assert samples[("bot_rss_peak_bytes", ())] == 150 * MB
    assert samples[("bot_sessions_live", ())] == 2
    assert samples[("bot_queue_waiting", ())] == 5
    assert samples[("bot_transfers_active", ())] == 1
    assert samples[("bot_bytes_transferred_total", ())] == 12345
    assert samples[("bot_floodwaits_total", ())] == 3
    assert samples[("bot_gc_runs_total", ())] == 0
    assert samples[("bot_session_evictions_total", ())] == 4
    assert samples[("bot_jobs_total", (("status", "done"),))] == 10
    assert samples[("bot_jobs_total", (("status", "failed"),))] == 2
    assert str(USER_ID) not in body


async def test_metrics_live_and_missing_keys(server, state):
    state["status"] = {}
    server._monitor._rss_reader = FakeRSS(200.0)
    _, body, _ = await get(server, "/metrics")
    names = {s.name: s.value for f in text_string_to_metric_families(body) for s in f.samples}
    assert names["bot_rss_bytes"] == 200 * MB
    assert names["bot_queue_waiting"] == 0
    assert names["bot_floodwaits_total"] == 0


async def test_metrics_uses_private_registry(server):
    from prometheus_client import REGISTRY
    assert server.registry is not REGISTRY
    assert REGISTRY.get_sample_value("bot_rss_bytes") is None


async def test_status_page_hides_user_ids_without_token(server):
    status, body, ctype = await get(server, "/")
    assert status == 200 and ctype.startswith("text/html")
    assert "<svg" in body and "<polyline" in body
    assert "<script" not in body
    assert str(USER_ID) not in body
    assert "Live sessions" in body and "Queue waiting" in body
    assert "77" in body  # job id is not private
    _, body, _ = await get(server, "/?token=wrong")
    assert str(USER_ID) not in body


async def test_status_page_shows_user_ids_with_token(server):
    _, body, _ = await get(server, "/?token=s3cret")
    assert str(USER_ID) in body


async def test_status_page_survives_broken_status(server):
    def broken():
        raise RuntimeError("db gone")
    server._status = broken
    status, body, _ = await get(server, "/")
    assert status == 200 and "<svg" in body


async def test_stop_is_idempotent(state):
    mon = MemoryMonitor(limit_mb=512, warn_mb=400)
    srv = WebServer(0, "127.0.0.1", is_connected=lambda: True, monitor=mon, status=dict)
    await srv.start()
    port = srv.bound_port
    await srv.stop()
    await srv.stop()
    with pytest.raises(aiohttp.ClientError):
        async with aiohttp.ClientSession() as s:
            await s.get(f"http://127.0.0.1:{port}/healthz")
