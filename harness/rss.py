"""A process's resident set size sampled from outside with psutil, and where it sits.

Sampled from outside because a figure taken inside the process under load would include the
harness (users, tgsim) and could not be trusted while that process is the one being measured.
RSS in MiB, the unit of MEMORY_LIMIT_MB.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

from harness.files import disk_usage


@dataclass
class Sample:
    t: float
    rss: int
    phase: str


@dataclass
class RssSampler:
    """A thread that reads one process's RSS every `every` s, each sample tagged with the
    current phase; and once a second the space used under each of `dirs` (peaks kept).
    on_gone is called from the thread if the process ends while sampled."""

    pid: int
    every: float = 0.1
    dirs: dict[str, Path] = field(default_factory=dict)
    phase: str = "start"
    samples: list[Sample] = field(default_factory=list)
    space_peak: dict[str, int] = field(default_factory=dict)
    on_gone: Callable[[], None] | None = None

    def __post_init__(self):
        self._proc = psutil.Process(self.pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._disk_at = 0.0

    def start(self) -> "RssSampler":
        self.sample()
        self._thread.start()
        return self

    def sample(self) -> int | None:
        """One reading now (None once the process is gone)."""
        try:
            rss = self._proc.memory_info().rss
            if not rss or self._proc.status() == psutil.STATUS_ZOMBIE:
                return None
        except psutil.Error:
            return None
        self.samples.append(Sample(time.monotonic(), rss, self.phase))
        return rss

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            if self.sample() is None:
                if self.on_gone is not None and not self._stop.is_set():
                    self.on_gone()
                return
            if self.dirs and time.monotonic() - self._disk_at >= 1.0:
                self._disk_at = time.monotonic()
                for name, path in self.dirs.items():
                    self.space_peak[name] = max(self.space_peak.get(name, 0), disk_usage(path))

    def stop(self) -> None:
        """Stop the thread and take a last reading (if the process is still there)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        self.sample()

    def since(self, t0: float, t1: float | None = None) -> list[int]:
        return [s.rss for s in self.samples if s.t >= t0 and (t1 is None or s.t <= t1)]

    def peak(self, when: str | float | None = None, t1: float | None = None) -> int:
        """The highest reading: of a phase (`when` a phase name), of the window from `when`
        to t1 (monotonic times), or of the whole run."""
        if isinstance(when, str):
            return max((s.rss for s in self.samples if s.phase == when), default=0)
        return max(self.since(when or 0.0, t1), default=0)

    def last(self) -> int:
        return self.samples[-1].rss if self.samples else 0

    async def settled(self, seconds: float = 1.0) -> int:
        """The median RSS over the next `seconds`: one reading can catch a passing spike."""
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        values = self.since(t0) or [self.sample() or 0]
        return int(statistics.median(values))


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    if len({x for x, _ in points}) < 2:
        return 0.0
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    return (sum((x - mx) * (y - my) for x, y in points)
            / sum((x - mx) ** 2 for x, _ in points))


def rss_by_kind(pid: int) -> dict[str, int]:
    """Where the process's RSS is, from /proc/PID/smaps (Linux): the main malloc heap,
    other anonymous mappings (thread arenas, big mmapped buffers, stacks) and files (code,
    libraries). {} where smaps is not readable."""
    out = {"heap": 0, "anon": 0, "file": 0}
    kind = None
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split(maxsplit=6)
                if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
                    name = head[5].strip() if len(head) > 5 else ""
                    kind = ("heap" if name == "[heap]" else
                            "anon" if not name or name.startswith("[") else "file")
                elif line.startswith("Rss:") and kind:
                    out[kind] += int(line.split()[1]) * 1024
    except OSError:
        return {}
    out["total"] = sum(out.values())
    return out
