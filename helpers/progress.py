"""Progress text and the one flood-safe edit throttle of the project.

Transfers report progress many times a second; Telegram tolerates an edit every few
seconds per message and answers more with FloodWait. :class:`ProgressReporter` sits
between the two: ``update`` is cheap and synchronous, at most one edit is ever in
flight, and a FloodWait pauses edits instead of the transfer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from typing import Awaitable, Callable

from pyrogram.errors import MessageNotModified

from helpers import floodwait

__all__ = ["render_progress", "format_size", "format_eta", "ProgressReporter"]

log = logging.getLogger(__name__)

BAR_CELLS = 12
_FULL, _EMPTY = "█", "░"
_UNITS = ("B", "KB", "MB", "GB", "TB")
_NAME_MAX = 64
_SAMPLE_MIN_DT = 0.5  # shorter windows make the speed jitter wildly
_EMA_ALPHA = 0.3


def _unit_for(n: float) -> int:
    idx = 0
    while n >= 1024 and idx < len(_UNITS) - 1:
        n /= 1024
        idx += 1
    return idx


def _in_unit(n: float, idx: int) -> str:
    if idx == 0:
        return f"{int(n)}"
    return f"{n / 1024 ** idx:.1f}"


def format_size(n: float) -> str:
    """Human size, e.g. ``45.6 MB``."""
    n = max(0.0, float(n)) if math.isfinite(n) else 0.0
    idx = _unit_for(n)
    return f"{_in_unit(n, idx)} {_UNITS[idx]}"


def format_eta(seconds: float | None) -> str:
    """``45s``, ``1m 05s``, ``2h 03m``; ``--`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "--"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 100 * 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return ">99h"


def render_progress(phase: str, done: int, total: int, speed_bps: float,
                    eta_s: float | None, name: str = "") -> str:
    """Three short lines: phase and name, the bar with percent, sizes/speed/ETA.

    Plain text: send it with parse mode disabled, since file names may contain markup.
    """
    done = max(0, int(done or 0))
    total = max(0, int(total or 0))
    speed = speed_bps if speed_bps and math.isfinite(speed_bps) and speed_bps > 0 else 0.0
    name = " ".join(str(name).split())
    if len(name) > _NAME_MAX:
        name = name[: _NAME_MAX - 1] + "…"
    head = f"{phase}: {name}" if name else f"{phase}"
    if total > 0:
        frac = min(1.0, done / total)
        cells = min(BAR_CELLS, int(frac * BAR_CELLS))
        bar = f"[{_FULL * cells}{_EMPTY * (BAR_CELLS - cells)}] {frac * 100:.1f}%"
        idx = _unit_for(max(total, done))
        sizes = f"{_in_unit(min(done, total), idx)} / {_in_unit(total, idx)} {_UNITS[idx]}"
    else:
        bar = f"[{_EMPTY * BAR_CELLS}] ?%"
        sizes = f"{format_size(done)} of unknown size"
    return f"{head}\n{bar}\n{sizes} • {format_size(speed)}/s • ETA {format_eta(eta_s)}"


class ProgressReporter:
    """Throttled progress edits for one message.

    ``update`` may be called from the event loop or from a worker thread (the client
    library runs synchronous progress callbacks in an executor); edits always run as
    tasks on the loop the reporter was created in or first updated from.
    """

    def __init__(self, edit: Callable[[str], Awaitable[None]], min_interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, *, name: str = ""):
        self._edit = edit
        self._min_interval = float(min_interval)
        self._clock = clock
        self.name = name
        self._lock = threading.Lock()
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._task: asyncio.Task | None = None
        self._pending = False  # an edit has been handed to the loop but not started
        self._closed = False
        # The message being edited was just sent by the caller: count that as an edit.
        self._last_edit = clock()
        self._last_text = ""  # last text handed to an edit
        self._shown = ""  # last text known to be on screen
        self._flood_until = 0.0
        self._phase = ""
        self._sample_t = 0.0
        self._sample_done = 0
        self.speed = 0.0
        self.eta: float | None = None
        self.edits = 0
        self.skipped_flood = 0

    @property
    def flood_until(self) -> float:
        return self._flood_until

    @property
    def in_flight(self) -> bool:
        return self._pending or (self._task is not None and not self._task.done())

    def _sample(self, phase: str, done: int, total: int, now: float) -> None:
        if phase != self._phase or done < self._sample_done:
            # New phase (download -> upload) or a restart: old speed means nothing.
            self._phase = phase
            self._sample_t, self._sample_done = now, done
            self.speed, self.eta = 0.0, None
            return
        dt = now - self._sample_t
        if dt >= _SAMPLE_MIN_DT:
            inst = (done - self._sample_done) / dt
            self.speed = inst if self.speed <= 0 else (
                _EMA_ALPHA * inst + (1 - _EMA_ALPHA) * self.speed)
            self._sample_t, self._sample_done = now, done
        if total > 0 and self.speed > 0:
            self.eta = max(0, total - done) / self.speed
        elif total > 0 and done >= total:
            self.eta = 0.0
        else:
            self.eta = None

    def update(self, phase: str, done: int, total: int) -> None:
        """Record progress; maybe start an edit in the background. Never blocks."""
        if self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            now = self._clock()
            self._sample(phase, int(done or 0), int(total or 0), now)
            if now < self._flood_until:
                self.skipped_flood += 1
                return
            if now - self._last_edit < self._min_interval or self.in_flight:
                return
            text = render_progress(phase, done, total, self.speed, self.eta, self.name)
            if text == self._last_text:
                return
            self._last_edit = now
            self._last_text = text
            self._pending = True
        if loop is not None:
            self._loop = loop
            self._start(text)
        else:
            try:
                self._loop.call_soon_threadsafe(self._start, text)  # type: ignore[union-attr]
            except (AttributeError, RuntimeError):  # no loop known, or it has closed
                self._pending = False

    def _start(self, text: str) -> None:
        self._pending = False
        if self._closed:
            return
        self._task = asyncio.get_running_loop().create_task(self._run_edit(text))

    async def _run_edit(self, text: str) -> bool:
        try:
            await self._edit(text)
        except floodwait.FAMILY as exc:
            try:
                wait = floodwait.record(floodwait.seconds_of(exc), "progress edit")
            except (TypeError, ValueError):
                wait = 60.0
            self._flood_until = self._clock() + max(wait, 0.0)
            log.debug("progress edit hit FloodWait; pausing edits for %ss", wait)
            return False
        except MessageNotModified:
            self._shown = text
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the transfer matters more than its progress bar
            log.debug("progress edit failed: %r", exc)
            return False
        self.edits += 1
        self._shown = text
        return True

    async def finish(self, text: str) -> bool:
        """Final edit, awaited. False when it could not be made (flood wait or error)."""
        await self._cancel_in_flight()
        if text == self._shown:
            return True
        if self._clock() < self._flood_until:
            self.skipped_flood += 1
            return False
        self._last_text = text
        self._last_edit = self._clock()
        return await self._run_edit(text)

    async def close(self) -> None:
        """Stop all edits; cancels one in flight."""
        self._closed = True
        await self._cancel_in_flight()

    async def _cancel_in_flight(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            # wait() neither raises the task's outcome nor swallows our own cancellation.
            await asyncio.wait({task})
