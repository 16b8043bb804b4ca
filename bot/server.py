"""The bot's web face on $PORT: Render's health check, Prometheus metrics, a status page.

Render keeps a web service alive only while /healthz answers, and a 512 MB box is tuned by
looking at numbers, so this server reads live figures at request time and stores nothing.
"""

from __future__ import annotations

import hmac
import html
import logging
import time
from typing import Any, Callable, Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from helpers.memory_monitor import MB, MemoryMonitor

__all__ = ["WebServer", "BotCollector", "STATUS_KEYS"]

log = logging.getLogger("bot.server")

# status() keys read by /metrics and /; missing keys count as 0.
STATUS_KEYS = {
    "sessions_live": "live user sessions",
    "queue_waiting": "jobs waiting in the queue",
    "transfers_active": "transfers in progress",
    "bytes_transferred": "bytes downloaded + uploaded since start",
    "floodwaits": "FloodWait errors received since start",
    "session_evictions": "user sessions evicted since start",
    "jobs": "dict status -> count of jobs finished with that status",
}
# Optional detail lists in status(): rows of dicts shown on the page, ids masked without token.
DETAIL_KEYS = ("sessions", "queue", "workers")  # workers: the scaled layout's front
PRIVATE_FIELDS = frozenset({"user_id", "user", "username", "chat_id", "phone", "first_name",
                            "last_name", "name"})
MAX_ROWS = 50


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


class BotCollector(Collector):
    """Reads the monitor and status() at scrape time, so metrics are never stale or duplicated."""

    def __init__(self, monitor: MemoryMonitor, status: Callable[[], dict]) -> None:
        self._monitor = monitor
        self._status = status

    def _safe_status(self) -> dict:
        try:
            data = self._status()
            return data if isinstance(data, dict) else {}
        except Exception:
            log.exception("status() failed during scrape")
            return {}

    def collect(self) -> Iterable[Metric]:
        st = self._safe_status()
        m = self._monitor
        try:
            rss = m.rss_bytes()
        except Exception:
            rss = 0
        yield GaugeMetricFamily("bot_rss_bytes", "Resident set size of the bot process", value=rss)
        yield GaugeMetricFamily("bot_rss_peak_bytes", "Highest RSS seen since start",
                                value=m.peak_mb * MB)
        yield GaugeMetricFamily("bot_sessions_live", STATUS_KEYS["sessions_live"],
                                value=_num(st.get("sessions_live")))
        yield GaugeMetricFamily("bot_queue_waiting", STATUS_KEYS["queue_waiting"],
                                value=_num(st.get("queue_waiting")))
        yield GaugeMetricFamily("bot_transfers_active", STATUS_KEYS["transfers_active"],
                                value=_num(st.get("transfers_active")))
        yield CounterMetricFamily("bot_bytes_transferred", STATUS_KEYS["bytes_transferred"],
                                  value=_num(st.get("bytes_transferred")))
        yield CounterMetricFamily("bot_floodwaits", STATUS_KEYS["floodwaits"],
                                  value=_num(st.get("floodwaits")))
        yield CounterMetricFamily("bot_gc_runs", "Forced GC runs by the memory monitor",
                                  value=m.gc_runs)
        yield CounterMetricFamily("bot_session_evictions", STATUS_KEYS["session_evictions"],
                                  value=_num(st.get("session_evictions")))
        jobs = CounterMetricFamily("bot_jobs", "Jobs finished, by status", labels=["status"])
        job_counts = st.get("jobs")
        if isinstance(job_counts, dict):
            for status, count in list(job_counts.items())[:MAX_ROWS]:
                jobs.add_metric([str(status)], _num(count))
        yield jobs


class WebServer:
    """aiohttp server for /healthz, /metrics and /; ``port=0`` binds a free port (tests)."""

    def __init__(
        self,
        port: int,
        host: str = "0.0.0.0",
        *,
        is_connected: Callable[[], bool],
        monitor: MemoryMonitor,
        status: Callable[[], dict],
        metrics_token: str | None = None,
    ) -> None:
        self.port = port
        self.host = host
        self._is_connected = is_connected
        self._monitor = monitor
        self._status = status
        self._token = metrics_token or None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(BotCollector(monitor, status))
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None
        self._started = time.time()

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/", self._index)
        return app

    async def start(self) -> None:
        if self._runner is not None:
            return
        # access_log off: Render probes /healthz every few seconds and the log is precious.
        runner = web.AppRunner(self._app(), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        addresses = runner.addresses
        self.bound_port = int(addresses[0][1]) if addresses else self.port
        log.info("web server listening on %s:%s", self.host, self.bound_port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # ------------------------------------------------------------------ handlers

    async def _healthz(self, request: web.Request) -> web.Response:
        try:
            ok = bool(self._is_connected())
        except Exception:
            log.exception("is_connected() failed")
            ok = False
        if ok:
            return web.Response(text="ok")
        return web.Response(status=503, text="not connected")

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(self.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    def _authorized(self, request: web.Request) -> bool:
        given = request.query.get("token", "")
        return bool(self._token and given) and hmac.compare_digest(
            given.encode(), self._token.encode())

    async def _index(self, request: web.Request) -> web.Response:
        authorized = self._authorized(request)
        try:
            st = self._status()
            st = st if isinstance(st, dict) else {}
        except Exception:
            log.exception("status() failed for status page")
            st = {}
        try:
            connected = bool(self._is_connected())
        except Exception:
            connected = False
        page = self._render(st, connected, authorized)
        return web.Response(text=page, content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------------ page

    def _svg(self, points: list[tuple[float, float]], width: int = 600, height: int = 140) -> str:
        m = self._monitor
        top = max([m.limit_mb] + [v for _, v in points]) or 1.0
        now = time.time()
        if points:
            t0 = min(points[0][0], now - 3600)
            t1 = max(points[-1][0], t0 + 1)
        else:
            t0, t1 = now - 3600, now

        def xy(ts: float, mb: float) -> str:
            x = (ts - t0) / (t1 - t0) * width
            y = height - mb / top * height
            return f"{x:.1f},{y:.1f}"

        def hline(mb: float, color: str, label: str) -> str:
            y = height - mb / top * height
            return (f'<line x1="0" y1="{y:.1f}" x2="{width}" y2="{y:.1f}" stroke="{color}" '
                    f'stroke-dasharray="4 3"/><text x="4" y="{max(y - 3, 10):.1f}" '
                    f'font-size="10" fill="{color}">{html.escape(label)}</text>')

        poly = " ".join(xy(ts, mb) for ts, mb in points)
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                f'viewBox="0 0 {width} {height}" role="img" aria-label="RSS last hour">'
                f'<rect width="{width}" height="{height}" fill="#fafafa" stroke="#ccc"/>'
                + hline(m.limit_mb, "#c00", f"limit {m.limit_mb:.0f} MB")
                + hline(m.warn_mb, "#e80", f"warn {m.warn_mb:.0f} MB")
                + f'<polyline fill="none" stroke="#06c" stroke-width="1.5" points="{poly}"/>'
                + "</svg>")

    @staticmethod
    def _table(rows: Any, authorized: bool) -> str:
        if not isinstance(rows, (list, tuple)) or not rows:
            return "<p>none</p>"
        rows = [r for r in list(rows)[:MAX_ROWS] if isinstance(r, dict)]
        cols: list[str] = []
        for r in rows:
            for k in r:
                if k not in cols and (authorized or k not in PRIVATE_FIELDS):
                    cols.append(str(k))
        if not cols:
            return f"<p>{len(rows)} entries</p>"
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols)
                       + "</tr>" for r in rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    def _render(self, st: dict, connected: bool, authorized: bool) -> str:
        m = self._monitor
        try:
            rss_mb = m.rss_mb
        except Exception:
            rss_mb = 0.0
        hist = m.history(3600)
        esc = html.escape
        figures = [
            ("Telegram", "connected" if connected else "NOT connected"),
            ("RSS", f"{rss_mb:.1f} MB (peak {m.peak_mb:.1f}, warn {m.warn_mb:.0f}, "
                    f"limit {m.limit_mb:.0f})"),
            ("Reserved", f"{m.reserved_mb:.1f} MB"),
            ("Admission", "PAUSED" if m.admission_paused else "open"),
            ("Trend", f"{m.trend_mb_per_min():+.2f} MB/min"),
            ("Live sessions", str(int(_num(st.get("sessions_live"))))),
            ("Queue waiting", str(int(_num(st.get("queue_waiting"))))),
            ("Transfers active", str(int(_num(st.get("transfers_active"))))),
            ("Uptime", f"{(time.time() - self._started) / 60:.0f} min"),
        ]
        jobs = st.get("jobs")
        if isinstance(jobs, dict) and jobs:
            figures.append(("Jobs", ", ".join(f"{k}: {v}" for k, v in list(jobs.items())[:MAX_ROWS])))
        dl = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in figures)
        details = "".join(f"<h2>{esc(key.capitalize())}</h2>{self._table(st.get(key), authorized)}"
                          for key in DETAIL_KEYS if key != "workers" or key in st)
        return (
            "<!doctype html><html><head><meta charset='utf-8'>"
            "<meta http-equiv='refresh' content='30'><title>bot status</title>"
            "<style>body{font-family:sans-serif;margin:1em}th{text-align:left;padding-right:1em}"
            "td,th{border-bottom:1px solid #eee;padding:2px 6px}</style></head><body>"
            f"<h1>Bot status</h1><table>{dl}</table>"
            f"<h2>Memory, last hour</h2>{self._svg(hist)}"
            f"{details}</body></html>"
        )
