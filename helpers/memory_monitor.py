"""Memory governance: one place that measures, explains and relieves memory pressure.

The bot runs on a 512 MB instance where the kernel kills the process without a traceback.
So every reading here is cheap (psutil + counters, never ``gc.get_objects``), every piece of
history is a bounded deque, and every warning carries the operations that led to it, so the
log alone tells what happened.

Log markers (stable, grep-able): ``MEMORY SNAPSHOT``, ``MEMORY SPIKE DETECTED``,
``HIGH MEMORY USAGE``, ``GC performed``, ``MEMORY LEAK SUSPECTED``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import gc
import inspect
import itertools
import logging
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable

import psutil

from helpers.tasks import cancel_and_wait

__all__ = ["MemoryMonitor", "Operation", "Reservation", "sparkline", "MB"]

log = logging.getLogger("memory")

MB = 1024 * 1024
SPARK_CHARS = "▁▂▃▄▅▆▇█"

GaugeFn = Callable[[], "int | float"]
ActionFn = Callable[[], "Awaitable[str] | str"]


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


def sparkline(points: Iterable[Any], width: int = 40) -> str:
    """Text chart that fits in a Telegram message; buckets keep the max so spikes stay visible.

    ``points`` are numbers or ``(ts, value)`` pairs as returned by ``MemoryMonitor.history``.
    """
    values = [p[1] if isinstance(p, (tuple, list)) else p for p in points]
    if not values or width <= 0:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [max(values[int(i * step): max(int((i + 1) * step), int(i * step) + 1)])
                  for i in range(width)]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        return SPARK_CHARS[3] * len(values)
    top = len(SPARK_CHARS) - 1
    return "".join(SPARK_CHARS[round((v - lo) / (hi - lo) * top)] for v in values)


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


class Reservation:
    """A declared expected peak (e.g. part size x parts in flight) held against the budget."""

    __slots__ = ("name", "mb", "created", "_monitor", "_released")

    def __init__(self, monitor: "MemoryMonitor", name: str, mb: float, created: float) -> None:
        self.name = name
        self.mb = mb
        self.created = created
        self._monitor = monitor
        self._released = False

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        self._monitor.release(self)

    def __enter__(self) -> "Reservation":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> "Reservation":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<Reservation {self.name!r} {self.mb:.1f} MB {state}>"


_MALLOC_TRIM_UNSET = object()
_malloc_trim_fn: Any = _MALLOC_TRIM_UNSET


def _malloc_trim() -> bool | None:
    """Return glibc's freed heap pages to the OS; CPython's gc alone rarely lowers RSS.

    Returns True/False from malloc_trim, or None where it does not exist (musl, macOS).
    """
    global _malloc_trim_fn
    if _malloc_trim_fn is _MALLOC_TRIM_UNSET:
        _malloc_trim_fn = None
        if sys.platform.startswith("linux"):
            for lib in ("libc.so.6", ctypes.util.find_library("c")):
                if not lib:
                    continue
                try:
                    fn = ctypes.CDLL(lib).malloc_trim
                except (OSError, AttributeError):
                    continue
                fn.argtypes = [ctypes.c_size_t]
                fn.restype = ctypes.c_int
                _malloc_trim_fn = fn
                break
    if _malloc_trim_fn is None:
        return None
    try:
        return bool(_malloc_trim_fn(0))
    except Exception:  # pragma: no cover - defensive: never let trimming kill a relief
        return None


class MemoryMonitor:
    """Measures RSS, explains growth, relieves pressure and hands out the memory budget.

    Other parts plug in through ``register_gauge`` (figures shown in snapshots) and
    ``register_action`` (things to shed under pressure, called in registration order).
    """

    OPS_KEPT = 20
    IN_FLIGHT_KEPT = 64
    TREND_KEPT = 720
    HISTORY_KEPT = 720
    HISTORY_SPAN_S = 3600.0
    HIGH_LOG_EVERY_S = 60.0
    RELIEF_EVERY_S = 30.0
    FAST_CHECK_MAX_S = 15.0
    ACTION_TIMEOUT_S = 30.0
    RESERVE_POLL_S = 1.0
    MAX_RESERVATIONS = 1000
    MEMSTATS_MAX_CHARS = 4000

    def __init__(
        self,
        limit_mb: float,
        warn_mb: float,
        spike_mb: float = 50,
        check_interval: float = 300,
        critical_ratio: float = 0.9,
        trend_window_s: float = 600,
        leak_mb_per_min: float = 2.0,
        rss_reader: Callable[[], int] | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if limit_mb <= 0 or warn_mb <= 0:
            raise ValueError("limit_mb and warn_mb must be positive")
        self.limit_mb = float(limit_mb)
        self.warn_mb = float(warn_mb)
        self.spike_mb = float(spike_mb)
        self.check_interval = float(check_interval)
        self.critical_ratio = float(critical_ratio)
        self.trend_window_s = float(trend_window_s)
        self.leak_mb_per_min = float(leak_mb_per_min)
        self._clock = clock or time.time

        self._proc: psutil.Process | None
        try:
            self._proc = psutil.Process()
        except Exception:  # pragma: no cover - psutil unsupported platform
            self._proc = None
        self._rss_reader = rss_reader or self._psutil_rss

        self._gauges: dict[str, GaugeFn] = {}
        self._actions: list[tuple[str, ActionFn]] = []

        self._ops: deque[Operation] = deque(maxlen=self.OPS_KEPT)
        self._in_flight: dict[int, tuple[str, float, int]] = {}
        self._op_ids = itertools.count(1)

        # Spacing keeps dense readings (one per operation) from flushing the window.
        self._trend: deque[tuple[float, int]] = deque(maxlen=self.TREND_KEPT)
        self._trend_step = self.trend_window_s / (self.TREND_KEPT / 2)
        self._history: deque[tuple[float, int]] = deque(maxlen=self.HISTORY_KEPT)
        self._history_step = self.HISTORY_SPAN_S / self.HISTORY_KEPT

        self._last_rss: int | None = None
        self._peak: int = 0
        self.gc_runs = 0
        self.relief_runs = 0
        self.spikes = 0
        self.admission_paused = False

        self._last_high_log = float("-inf")
        self._last_relief = float("-inf")
        self._last_leak_log = float("-inf")
        self._relief_task: asyncio.Task | None = None
        self._relief_lock: asyncio.Lock | None = None
        self._task: asyncio.Task | None = None

        self._reservations: dict[int, Reservation] = {}
        self._reserved_mb = 0.0
        self._released_event: asyncio.Event | None = None

    # ------------------------------------------------------------------ readings

    def _psutil_rss(self) -> int:
        if self._proc is None:
            return 0
        return int(self._proc.memory_info().rss)

    def rss_bytes(self) -> int:
        """Current RSS in bytes; also feeds the peak so no reading is wasted."""
        rss = int(self._rss_reader())
        if rss > self._peak:
            self._peak = rss
        return rss

    @property
    def rss_mb(self) -> float:
        return _mb(self.rss_bytes())

    @property
    def peak_mb(self) -> float:
        return _mb(self._peak)

    @property
    def budget_mb(self) -> float:
        """Ceiling for rss + reservations; above it the relief already kicks in."""
        return self.limit_mb * self.critical_ratio

    # ------------------------------------------------------------------ registration

    def register_gauge(self, name: str, fn: GaugeFn) -> None:
        """Figures owned elsewhere (sessions, queue...) shown next to RSS; same name replaces."""
        self._gauges[name] = fn

    def unregister_gauge(self, name: str) -> None:
        self._gauges.pop(name, None)

    def register_action(self, name: str, fn: ActionFn) -> None:
        """Pressure actions run in registration order; re-registering keeps the original slot."""
        for i, (existing, _) in enumerate(self._actions):
            if existing == name:
                self._actions[i] = (name, fn)
                return
        self._actions.append((name, fn))

    def gauges(self) -> dict[str, float | int | str]:
        """Live gauge values; a broken provider must not break a snapshot taken under pressure."""
        out: dict[str, float | int | str] = {}
        for name, fn in list(self._gauges.items()):
            try:
                out[name] = fn()
            except Exception as exc:
                out[name] = f"error: {_short(exc, 40)}"
        return out

    # ------------------------------------------------------------------ snapshot

    def _snapshot_text(self, operation: str, context: dict | None = None) -> str:
        rss = self.rss_bytes()
        rows: list[str] = []
        rows.append(f"RSS: {_mb(rss):.1f} MB (peak {self.peak_mb:.1f} MB, warn {self.warn_mb:.0f} MB, "
                    f"limit {self.limit_mb:.0f} MB)")
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
        rows.append(f"VMS: {_mb(vms):.1f} MB" if vms is not None else "VMS: n/a")
        try:
            vm = psutil.virtual_memory()
            rows.append(f"System: {vm.percent:.1f}% used, {_mb(vm.available):.1f} MB available")
        except Exception:
            rows.append("System: n/a")
        rows.append(f"Threads: {threads if threads is not None else 'n/a'}")
        rows.append(f"Open files: {fds if fds is not None else 'n/a'}")
        try:
            tasks: int | str = len(asyncio.all_tasks(asyncio.get_running_loop()))
        except RuntimeError:
            tasks = "no loop"
        rows.append(f"Asyncio tasks: {tasks}")
        rows.append(f"Reserved: {self._reserved_mb:.1f} MB in {len(self._reservations)} reservations")
        rows.append(f"Admission: {'PAUSED' if self.admission_paused else 'open'}")
        rows.append(f"GC: {self.gc_runs} runs, gen counts {gc.get_count()}")
        gauges = self.gauges()
        if gauges:
            rows.append("Gauges:")
            items = list(gauges.items())
            for i, (name, value) in enumerate(items):
                branch = "└─" if i == len(items) - 1 else "├─"
                rows.append(f"│  {branch} {name}: {value}")
        else:
            rows.append("Gauges: none")
        rows.append(f"Context: {_format_context(context) or 'none'}")

        lines = [f"MEMORY SNAPSHOT [{operation}]"]
        for i, row in enumerate(rows):
            if row.startswith("│"):
                lines.append(row)
            else:
                lines.append(("└─ " if i == len(rows) - 1 else "├─ ") + row)
        return "\n".join(lines)

    def snapshot(self, operation: str, context: dict | None = None) -> str:
        """Log (one record) and return the tree view of where memory stands right now."""
        text = self._snapshot_text(operation, context)
        log.info(text)
        return text

    # ------------------------------------------------------------------ operations

    @contextlib.asynccontextmanager
    async def track(self, name: str, context: dict | None = None) -> AsyncIterator[dict]:
        """Record one operation; yields a dict the caller may enrich (e.g. bytes done)."""
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
            self._evaluate(rss_after)

    def tracked(self, name: str) -> Callable:
        """Decorator form of ``track`` for coroutine functions."""
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

    def format_operations(self, ops: Iterable[Operation] | None = None) -> str:
        ops = self.operations() if ops is None else list(ops)
        if not ops:
            return "  (no operations recorded)"
        return "\n".join(f"  {i:2d}. {op.format()}" for i, op in enumerate(ops, 1))

    def _format_in_flight(self) -> str:
        if not self._in_flight:
            return ""
        now = self._clock()
        parts = [f"{name} ({now - started:.0f}s, from {_mb(rss):.1f} MB)"
                 for name, started, rss in list(self._in_flight.values())[:10]]
        return "In flight: " + "; ".join(parts)

    # ------------------------------------------------------------------ checks

    def check(self) -> None:
        """Cheap reading: spike, threshold, critical relief, trend. Safe from sync code."""
        try:
            rss = self.rss_bytes()
        except Exception:
            log.debug("RSS reading failed", exc_info=True)
            return
        self._evaluate(rss)

    def _evaluate(self, rss: int) -> None:
        now = self._clock()
        prev, self._last_rss = self._last_rss, rss
        self._record(now, rss)
        rss_mb = _mb(rss)

        if prev is not None and rss - prev >= self.spike_mb * MB:
            self.spikes += 1
            parts = [f"MEMORY SPIKE DETECTED: +{_mb(rss - prev):.1f} MB "
                     f"({_mb(prev):.1f} -> {rss_mb:.1f} MB)",
                     f"Last {len(self._ops)} operations (oldest first):",
                     self.format_operations()]
            flying = self._format_in_flight()
            if flying:
                parts.append(flying)
            log.warning("\n".join(parts))

        if rss_mb >= self.warn_mb:
            if now - self._last_high_log >= self.HIGH_LOG_EVERY_S:
                self._last_high_log = now
                log.warning("HIGH MEMORY USAGE: %.1f MB / %.0f MB (warn %.0f MB)",
                            rss_mb, self.limit_mb, self.warn_mb)
        elif self.admission_paused:
            self.admission_paused = False
            log.info("admission resumed: RSS %.1f MB below warn %.0f MB", rss_mb, self.warn_mb)

        if rss_mb >= self.critical_ratio * self.limit_mb and now - self._last_relief >= self.RELIEF_EVERY_S:
            self._start_relief(f"critical: {rss_mb:.1f} MB >= "
                               f"{self.critical_ratio * self.limit_mb:.0f} MB")

        self._check_trend(now)

    def _record(self, now: float, rss: int) -> None:
        if not self._trend or now - self._trend[-1][0] >= self._trend_step:
            self._trend.append((now, rss))
        if not self._history or now - self._history[-1][0] >= self._history_step:
            self._history.append((now, rss))

    def _start_relief(self, reason: str) -> None:
        if self._relief_task is not None and not self._relief_task.done():
            return
        self._last_relief = self._clock()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # No loop here: actions may belong to another loop, so only the safe local step.
            self.relief_runs += 1
            self._gc_step()
            if _mb(self.rss_bytes()) >= self.warn_mb and not self.admission_paused:
                self.admission_paused = True
                log.warning("admission paused: still above warn %.0f MB after GC (no event loop "
                            "for pressure actions)", self.warn_mb)
            return
        task = loop.create_task(self.relieve(reason), name="memory-relief")
        task.add_done_callback(self._relief_done)
        self._relief_task = task

    @staticmethod
    def _relief_done(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("memory relief failed", exc_info=task.exception())

    # ------------------------------------------------------------------ trend

    def _trend_points(self, now: float | None = None) -> list[tuple[float, int]]:
        now = self._clock() if now is None else now
        start = now - self.trend_window_s
        return [p for p in self._trend if p[0] >= start]

    @staticmethod
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

    def trend_mb_per_min(self) -> float:
        """Least-squares RSS slope over the trend window (0.0 with fewer than two readings)."""
        return self._slope_mb_per_min(self._trend_points())

    def _check_trend(self, now: float) -> None:
        if now - self._last_leak_log < max(self.trend_window_s, 60.0):
            return
        points = self._trend_points(now)
        if len(points) < 3 or points[-1][0] - points[0][0] < self.trend_window_s / 2:
            return
        slope = self._slope_mb_per_min(points)
        if slope < self.leak_mb_per_min:
            return
        self._last_leak_log = now
        span_start = points[0][0]
        span_min = (points[-1][0] - span_start) / 60.0
        seen = [op for op in self._ops if op.started + op.duration >= span_start]
        log.warning("MEMORY LEAK SUSPECTED: +%.2f MB/min over %.0f min (%.1f -> %.1f MB)\n"
                    "Operations in that span (oldest first):\n%s",
                    slope, span_min, _mb(points[0][1]), _mb(points[-1][1]),
                    self.format_operations(seen))

    # ------------------------------------------------------------------ relief

    def _gc_step(self) -> dict:
        before = self.rss_bytes()
        collected = gc.collect()
        trimmed = _malloc_trim()
        after = self.rss_bytes()
        self.gc_runs += 1
        freed = _mb(before - after)
        trim_note = {True: ", malloc_trim released pages", False: ", malloc_trim: nothing to release",
                     None: ""}[trimmed]
        text = (f"GC performed: collected {collected} objects, freed {freed:.1f} MB "
                f"({_mb(before):.1f} -> {_mb(after):.1f} MB{trim_note})")
        log.info(text)
        return {"name": "gc+malloc_trim", "collected": collected, "trimmed": trimmed,
                "rss_before_mb": _mb(before), "rss_after_mb": _mb(after), "freed_mb": freed,
                "text": text}

    async def relieve(self, reason: str = "manual") -> dict:
        """Shed memory in order (GC+trim, then registered actions) until below warn."""
        if self._relief_lock is None:
            self._relief_lock = asyncio.Lock()
        async with self._relief_lock:
            self.relief_runs += 1
            start = self.rss_bytes()
            log.warning("memory relief started (%s): RSS %.1f MB", reason, _mb(start))
            steps = [self._gc_step()]
            for name, fn in list(self._actions):
                if _mb(self.rss_bytes()) < self.warn_mb:
                    break
                before = self.rss_bytes()
                try:
                    result = fn()
                    if inspect.isawaitable(result):
                        result = await asyncio.wait_for(result, self.ACTION_TIMEOUT_S)
                    outcome = str(result) if result is not None else "done"
                except asyncio.TimeoutError:
                    outcome = f"timed out after {self.ACTION_TIMEOUT_S:.0f}s"
                except Exception as exc:
                    log.exception("pressure action %r failed", name)
                    outcome = f"failed: {_short(exc, 80)}"
                after = self.rss_bytes()
                log.warning("pressure action %r: %s (RSS %.1f -> %.1f MB, freed %.1f MB)",
                            name, _short(outcome, 200), _mb(before), _mb(after), _mb(before - after))
                steps.append({"name": name, "result": outcome, "rss_before_mb": _mb(before),
                              "rss_after_mb": _mb(after), "freed_mb": _mb(before - after)})
            end = self.rss_bytes()
            if _mb(end) >= self.warn_mb:
                if not self.admission_paused:
                    log.warning("admission paused: RSS %.1f MB still >= warn %.0f MB after relief",
                                _mb(end), self.warn_mb)
                self.admission_paused = True
            return {"reason": reason, "rss_before_mb": _mb(start), "rss_after_mb": _mb(end),
                    "freed_mb": _mb(start - end), "steps": steps,
                    "admission_paused": self.admission_paused}

    async def force_gc(self) -> str:
        """For "/memstats gc": one GC + trim, answered in words."""
        return self._gc_step()["text"]

    # ------------------------------------------------------------------ admission budget

    async def admit(self) -> bool:
        """Whether a new job may start; a paused monitor re-reads so resumption is prompt."""
        if self.admission_paused:
            self.check()
        return not self.admission_paused

    @property
    def reserved_mb(self) -> float:
        return self._reserved_mb

    def reservations(self) -> list[Reservation]:
        return list(self._reservations.values())

    def try_reserve(self, name: str, mb: float) -> Reservation | None:
        """Hold ``mb`` against the budget, or None when rss + held + mb would exceed it.

        In-flight transfers are counted both in RSS and in their reservation: deliberately
        conservative on a box where running out means being killed.
        """
        mb = max(0.0, float(mb))
        if len(self._reservations) >= self.MAX_RESERVATIONS:
            return None
        if self.rss_mb + self._reserved_mb + mb > self.budget_mb:
            return None
        res = Reservation(self, name, mb, self._clock())
        self._reservations[id(res)] = res
        self._reserved_mb += mb
        return res

    reserve = try_reserve

    def release(self, reservation: Reservation) -> None:
        """Idempotent; wakes any ``reserve_wait`` callers."""
        if reservation._released:
            return
        reservation._released = True
        if self._reservations.pop(id(reservation), None) is not None:
            self._reserved_mb = max(0.0, self._reserved_mb - reservation.mb)
        event, self._released_event = self._released_event, None
        if event is not None:
            event.set()

    async def reserve_wait(self, name: str, mb: float, timeout: float) -> Reservation | None:
        """Wait up to ``timeout`` s for room; polls too, since RSS can fall without a release."""
        if mb > self.budget_mb:
            return None  # could never fit: fail now rather than after the timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            res = self.try_reserve(name, mb)
            if res is not None:
                return res
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            if self._released_event is None:
                self._released_event = asyncio.Event()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._released_event.wait(),
                                       min(remaining, self.RESERVE_POLL_S))

    # ------------------------------------------------------------------ periodic task

    def start(self) -> None:
        """Start the periodic task on the running loop (idempotent)."""
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="memory-monitor")

    async def stop(self) -> None:
        tasks = (self._task, self._relief_task)
        self._task = self._relief_task = None
        for task in tasks:
            if task is not None and not task.done():
                await cancel_and_wait(task)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        tick = max(0.01, min(self.check_interval, self.FAST_CHECK_MAX_S))
        next_full = loop.time() + self.check_interval
        self.check()
        while True:
            await asyncio.sleep(tick)
            try:
                self.check()
                if loop.time() >= next_full:
                    next_full = loop.time() + self.check_interval
                    self.snapshot("periodic")
                    self._gc_step()
            except Exception:
                log.exception("memory monitor tick failed")

    # ------------------------------------------------------------------ history / report

    def history(self, seconds: float = 3600) -> list[tuple[float, float]]:
        """(timestamp, rss_mb) for charts, oldest first, one point per ~5 s at most."""
        start = self._clock() - seconds
        return [(ts, _mb(rss)) for ts, rss in self._history if ts >= start]

    sparkline = staticmethod(sparkline)

    def memstats_text(self) -> str:
        """Body of /memstats; clipped to fit one Telegram message."""
        sections = [self._snapshot_text("memstats")]
        hist = self.history(3600)
        if hist:
            values = [v for _, v in hist]
            sections.append(f"RSS last hour ({min(values):.0f}-{max(values):.0f} MB, "
                            f"peak {self.peak_mb:.0f} MB):\n{sparkline(values, 40)}")
        else:
            sections.append("RSS last hour: no readings yet")
        sections.append(f"Trend: {self.trend_mb_per_min():+.2f} MB/min")
        numeric = [(k, v) for k, v in self.gauges().items() if isinstance(v, (int, float))]
        numeric.sort(key=lambda kv: kv[1], reverse=True)
        top = [f"  {k}: {v}" for k, v in numeric[:10]]
        held = sorted(self._reservations.values(), key=lambda r: r.mb, reverse=True)[:5]
        top += [f"  reservation {r.name}: {r.mb:.1f} MB" for r in held]
        sections.append("Top consumers:\n" + ("\n".join(top) if top else "  (none registered)"))
        sections.append(f"Last {len(self._ops)} operations (oldest first):\n{self.format_operations()}")
        text = "\n\n".join(sections)
        if len(text) > self.MEMSTATS_MAX_CHARS:
            text = text[: self.MEMSTATS_MAX_CHARS - 1] + "…"
        return text
