"""Memory readings and the alerts they raise: RSS, peak, the last operations, trend, history.

Every reading is cheap (psutil + counters, never ``gc.get_objects``) and every piece of history
is a bounded deque, so a spike, a high reading or a steady rise is logged together with the
operations that led to it and the log alone tells what happened.

Log markers (stable, grep-able): ``MEMORY SPIKE DETECTED``, ``HIGH MEMORY USAGE``,
``MEMORY LEAK SUSPECTED``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable

import psutil

log = logging.getLogger("memory")

MB = 1024 * 1024

GaugeFn = Callable[[], "int | float"]


def _mb(n_bytes: float) -> float:
    return n_bytes / MB


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _format_context(context: dict | None, limit: int = 160) -> str:
    """Contexts end up in log lines and Telegram messages, so they are always clipped."""
    if not context:
        return ""
    text = ", ".join(f"{k}={_short(v)}" for k, v in context.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clip_context(context: dict | None, max_keys: int = 10) -> dict:
    """Operations outlive the caller's dict; keep a small shallow copy, never live objects."""
    if not context:
        return {}
    return {str(k): (v if isinstance(v, (int, float, bool, type(None))) else _short(v))
            for k, v in itertools.islice(context.items(), max_keys)}


@dataclass
class MemoryLimits:
    """The thresholds every part reads live (a test or an operator may change them at run time)."""

    limit_mb: float
    warn_mb: float
    spike_mb: float = 50
    critical_ratio: float = 0.9
    trend_window_s: float = 600
    leak_mb_per_min: float = 2.0

    @property
    def budget_mb(self) -> float:
        """Ceiling for rss + reservations; above it the relief already kicks in."""
        return self.limit_mb * self.critical_ratio


@dataclass(slots=True)
class Operation:
    """One finished unit of work, kept so a spike can be explained after the fact."""

    name: str
    started: float          # wall clock (seconds since epoch)
    rss_before: int         # bytes
    rss_after: int          # bytes
    duration: float         # seconds
    context: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def delta_mb(self) -> float:
        return _mb(self.rss_after - self.rss_before)

    def format(self) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.started))
        line = (f"{stamp} {self.name}: RSS {_mb(self.rss_before):.1f} -> "
                f"{_mb(self.rss_after):.1f} MB ({self.delta_mb:+.1f}), {self.duration:.2f}s")
        ctx = _format_context(self.context)
        if ctx:
            line += f" [{ctx}]"
        if self.error:
            line += f" !{_short(self.error, 80)}"
        return line


def format_operations(ops: Iterable[Operation]) -> str:
    ops = list(ops)
    if not ops:
        return "  (no operations recorded)"
    return "\n".join(f"  {i:2d}. {op.format()}" for i, op in enumerate(ops, 1))


def _slope_mb_per_min(points: list[tuple[float, int]]) -> float:
    n = len(points)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / n
    mean_r = sum(r for _, r in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var <= 0:
        return 0.0
    cov = sum((t - mean_t) * (r - mean_r) for t, r in points)
    return _mb(cov / var) * 60.0


class MemoryReadings:
    """RSS readings, the operations that explain them, gauges owned elsewhere, and the alerts.

    ``on_reading(rss)`` is called after every tracked operation, so the owner can act on it.
    """

    OPS_KEPT = 20
    IN_FLIGHT_KEPT = 64
    TREND_KEPT = 720
    HISTORY_KEPT = 720
    HISTORY_SPAN_S = 3600.0
    HIGH_LOG_EVERY_S = 60.0

    def __init__(self, limits: MemoryLimits, rss_reader: Callable[[], int] | None = None, *,
                 clock: Callable[[], float] = time.time,
                 on_reading: Callable[[int], None] = lambda rss: None) -> None:
        self.limits = limits
        self._clock = clock
        self._on_reading = on_reading
        self._proc: psutil.Process | None
        try:
            self._proc = psutil.Process()
        except Exception:  # pragma: no cover - psutil unsupported platform
            self._proc = None
        self.rss_reader = rss_reader or self._psutil_rss

        self._gauges: dict[str, GaugeFn] = {}

        self._ops: deque[Operation] = deque(maxlen=self.OPS_KEPT)
        self._in_flight: dict[int, tuple[str, float, int]] = {}
        self._op_ids = itertools.count(1)

        # Spacing keeps dense readings (one per operation) from flushing the window.
        self.trend: deque[tuple[float, int]] = deque(maxlen=self.TREND_KEPT)
        self._trend_step = limits.trend_window_s / (self.TREND_KEPT / 2)
        self._history: deque[tuple[float, int]] = deque(maxlen=self.HISTORY_KEPT)
        self._history_step = self.HISTORY_SPAN_S / self.HISTORY_KEPT

        self._last_rss: int | None = None
        self._peak: int = 0
        self.spikes = 0
        self._last_high_log = float("-inf")
        self._last_leak_log = float("-inf")

    # ------------------------------------------------------------------ readings

    def _psutil_rss(self) -> int:
        if self._proc is None:
            return 0
        return int(self._proc.memory_info().rss)

    def rss_bytes(self) -> int:
        """Current RSS in bytes; also feeds the peak so no reading is wasted."""
        rss = int(self.rss_reader())
        if rss > self._peak:
            self._peak = rss
        return rss

    @property
    def peak_bytes(self) -> int:
        return self._peak

    def process_counts(self) -> tuple[int | None, int | None, int | None]:
        """(VMS bytes, threads, open files) of this process; None where psutil cannot tell."""
        vms = threads = fds = None
        if self._proc is not None:
            with contextlib.suppress(Exception):
                vms = self._proc.memory_info().vms
            with contextlib.suppress(Exception):
                threads = self._proc.num_threads()
            try:
                fds = self._proc.num_fds()
            except Exception:
                with contextlib.suppress(Exception):
                    fds = len(self._proc.open_files())
        return vms, threads, fds

    # ------------------------------------------------------------------ gauges

    def register_gauge(self, name: str, fn: GaugeFn) -> None:
        self._gauges[name] = fn

    def unregister_gauge(self, name: str) -> None:
        self._gauges.pop(name, None)

    def gauges(self) -> dict[str, float | int | str]:
        """Live gauge values; a broken provider must not break a snapshot taken under pressure."""
        out: dict[str, float | int | str] = {}
        for name, fn in list(self._gauges.items()):
            try:
                out[name] = fn()
            except Exception as exc:
                out[name] = f"error: {_short(exc, 40)}"
        return out

    # ------------------------------------------------------------------ operations

    @contextlib.asynccontextmanager
    async def track(self, name: str, context: dict | None = None) -> AsyncIterator[dict]:
        ctx = dict(context) if context else {}
        rss_before = self.rss_bytes()
        started = self._clock()
        t0 = time.perf_counter()
        op_id = next(self._op_ids)
        if len(self._in_flight) < self.IN_FLIGHT_KEPT:
            self._in_flight[op_id] = (name, started, rss_before)
        error: str | None = None
        try:
            yield ctx
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            self._in_flight.pop(op_id, None)
            rss_after = self.rss_bytes()
            self._ops.append(Operation(name, started, rss_before, rss_after,
                                       time.perf_counter() - t0, _clip_context(ctx), error))
            self._on_reading(rss_after)

    def tracked(self, name: str) -> Callable:
        def decorate(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            if not inspect.iscoroutinefunction(fn):
                raise TypeError("tracked() wraps async functions only")

            @functools.wraps(fn)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self.track(name):
                    return await fn(*args, **kwargs)
            return wrapper
        return decorate

    def operations(self) -> list[Operation]:
        """Last finished operations, oldest first."""
        return list(self._ops)

    def _format_in_flight(self) -> str:
        if not self._in_flight:
            return ""
        now = self._clock()
        parts = [f"{name} ({now - started:.0f}s, from {_mb(rss):.1f} MB)"
                 for name, started, rss in list(self._in_flight.values())[:10]]
        return "In flight: " + "; ".join(parts)

    # ------------------------------------------------------------------ alerts

    def alert(self, now: float, rss: int) -> None:
        """Record one reading; log a spike over the previous one and a high reading."""
        prev, self._last_rss = self._last_rss, rss
        self._record(now, rss)
        rss_mb = _mb(rss)
        limits = self.limits

        if prev is not None and rss - prev >= limits.spike_mb * MB:
            self.spikes += 1
            parts = [f"MEMORY SPIKE DETECTED: +{_mb(rss - prev):.1f} MB "
                     f"({_mb(prev):.1f} -> {rss_mb:.1f} MB)",
                     f"Last {len(self._ops)} operations (oldest first):",
                     format_operations(self._ops)]
            flying = self._format_in_flight()
            if flying:
                parts.append(flying)
            log.warning("\n".join(parts))

        if rss_mb >= limits.warn_mb and now - self._last_high_log >= self.HIGH_LOG_EVERY_S:
            self._last_high_log = now
            log.warning("HIGH MEMORY USAGE: %.1f MB / %.0f MB (warn %.0f MB)",
                        rss_mb, limits.limit_mb, limits.warn_mb)

    def _record(self, now: float, rss: int) -> None:
        if not self.trend or now - self.trend[-1][0] >= self._trend_step:
            self.trend.append((now, rss))
        if not self._history or now - self._history[-1][0] >= self._history_step:
            self._history.append((now, rss))

    # ------------------------------------------------------------------ trend

    def _trend_points(self, now: float | None = None) -> list[tuple[float, int]]:
        now = self._clock() if now is None else now
        start = now - self.limits.trend_window_s
        return [p for p in self.trend if p[0] >= start]

    def trend_mb_per_min(self) -> float:
        """Least-squares RSS slope over the trend window (0.0 with fewer than two readings)."""
        return _slope_mb_per_min(self._trend_points())

    def check_trend(self, now: float) -> None:
        """Log a steady rise over the trend window, at most once a window."""
        window = self.limits.trend_window_s
        if now - self._last_leak_log < max(window, 60.0):
            return
        points = self._trend_points(now)
        if len(points) < 3 or points[-1][0] - points[0][0] < window / 2:
            return
        slope = _slope_mb_per_min(points)
        if slope < self.limits.leak_mb_per_min:
            return
        self._last_leak_log = now
        span_start = points[0][0]
        span_min = (points[-1][0] - span_start) / 60.0
        seen = [op for op in self._ops if op.started + op.duration >= span_start]
        log.warning("MEMORY LEAK SUSPECTED: +%.2f MB/min over %.0f min (%.1f -> %.1f MB)\n"
                    "Operations in that span (oldest first):\n%s",
                    slope, span_min, _mb(points[0][1]), _mb(points[-1][1]),
                    format_operations(seen))

    def history(self, seconds: float = 3600) -> list[tuple[float, float]]:
        """(timestamp, rss_mb) for charts, oldest first, one point per ~5 s at most."""
        start = self._clock() - seconds
        return [(ts, _mb(rss)) for ts, rss in self._history if ts >= start]
