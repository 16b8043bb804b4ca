"""Memory in words: the tree-formatted ``MEMORY SNAPSHOT``, the /memstats body, a sparkline.

Everything here reads the monitor's parts and writes text; nothing here decides or changes
anything.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any, Iterable

import psutil

from helpers.memory_budget import MemoryBudget
from helpers.memory_readings import MemoryReadings, _format_context, _mb, format_operations
from helpers.memory_relief import MemoryRelief

SPARK_CHARS = "▁▂▃▄▅▆▇█"


def sparkline(points: Iterable[Any], width: int = 40) -> str:
    """Text chart that fits in a Telegram message; buckets keep the max so spikes stay visible.

    ``points`` are numbers or ``(ts, value)`` pairs as returned by ``history``.
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


def snapshot_text(readings: MemoryReadings, budget: MemoryBudget, relief: MemoryRelief,
                  operation: str, context: dict | None = None) -> str:
    """The tree view of where memory stands right now (one log record, so it stays together)."""
    rss = readings.rss_bytes()
    limits = readings.limits
    rows: list[str] = []
    rows.append(f"RSS: {_mb(rss):.1f} MB (peak {_mb(readings.peak_bytes):.1f} MB, "
                f"warn {limits.warn_mb:.0f} MB, limit {limits.limit_mb:.0f} MB)")
    vms, threads, fds = readings.process_counts()
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
    rows.append(f"Reserved: {budget.reserved_mb:.1f} MB in {len(budget.reservations())} "
                "reservations")
    rows.append(f"Admission: {'PAUSED' if budget.paused else 'open'}")
    rows.append(f"GC: {relief.gc_runs} runs, gen counts {gc.get_count()}")
    gauges = readings.gauges()
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


def memstats_text(readings: MemoryReadings, budget: MemoryBudget, relief: MemoryRelief,
                  max_chars: int) -> str:
    """Body of /memstats; clipped to ``max_chars`` so it fits one Telegram message."""
    sections = [snapshot_text(readings, budget, relief, "memstats")]
    hist = readings.history(3600)
    if hist:
        values = [v for _, v in hist]
        sections.append(f"RSS last hour ({min(values):.0f}-{max(values):.0f} MB, "
                        f"peak {_mb(readings.peak_bytes):.0f} MB):\n{sparkline(values, 40)}")
    else:
        sections.append("RSS last hour: no readings yet")
    sections.append(f"Trend: {readings.trend_mb_per_min():+.2f} MB/min")
    numeric = [(k, v) for k, v in readings.gauges().items() if isinstance(v, (int, float))]
    numeric.sort(key=lambda kv: kv[1], reverse=True)
    top = [f"  {k}: {v}" for k, v in numeric[:10]]
    held = sorted(budget.reservations(), key=lambda r: r.mb, reverse=True)[:5]
    top += [f"  reservation {r.name}: {r.mb:.1f} MB" for r in held]
    sections.append("Top consumers:\n" + ("\n".join(top) if top else "  (none registered)"))
    ops = readings.operations()
    sections.append(f"Last {len(ops)} operations (oldest first):\n{format_operations(ops)}")
    text = "\n\n".join(sections)
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text
