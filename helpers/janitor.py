"""Assets/ cleanup and the pruning of old job history; names inside it: helpers.filenames.

Each job downloads into Assets/<job_id>/ and the pipeline deletes that folder when the
job ends. The janitor catches what a crash or a bug left behind, so the disk of a small
instance never fills up with orphans. It only ever deletes entries directly inside
assets_dir and never follows a symlink, so nothing outside can be touched. Given the
database, it also deletes jobs that ended more than history_s ago and compacts the file,
so months of uptime do not grow the database (the /stats totals live in counters).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Callable, Iterable

from helpers.filenames import safe_filename
from helpers.tasks import cancel_and_wait

__all__ = ["Janitor", "safe_filename"]

log = logging.getLogger(__name__)


def _tree_stat(path: str) -> tuple[float, int]:
    """Newest mtime and total size under path, without following symlinks.

    The newest mtime, not the folder's own: writing parts into an existing file does
    not touch the folder's mtime, and a live transfer must not look old.
    """
    st = os.lstat(path)
    newest, size = st.st_mtime, (st.st_size if stat.S_ISREG(st.st_mode) else 0)
    if not stat.S_ISDIR(st.st_mode):
        return newest, size
    stack = [path]
    while stack:
        try:
            it = os.scandir(stack.pop())
        except OSError:
            continue
        with it:
            for entry in it:
                try:
                    est = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                newest = max(newest, est.st_mtime)
                if stat.S_ISDIR(est.st_mode):
                    stack.append(entry.path)
                elif stat.S_ISREG(est.st_mode):
                    size += est.st_size
    return newest, size


def _remove(path: str) -> None:
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        # On Linux rmtree uses the fd-based variant, safe against symlink races.
        shutil.rmtree(path)
    else:
        os.unlink(path)  # a file or a symlink itself, never its target


class Janitor:
    def __init__(
        self,
        assets_dir: str | os.PathLike,
        max_age_s: float = 1800,
        interval_s: float = 300,
        owned: Callable[[], Iterable[str | int]] | None = None,
        db=None,
        history_s: float | None = None,
    ):
        self.assets_dir = Path(assets_dir).absolute()
        self.assets_dir.mkdir(parents=True, exist_ok=True)
        self.max_age_s = max_age_s
        self.interval_s = interval_s
        self._owned = owned or (lambda: ())
        self._task: asyncio.Task | None = None
        self.removed_total = 0
        self.freed_total = 0
        self.db = db  # a helpers.database.Database; its clock dates the history
        self.history_s = history_s
        self.pruned_total = 0

    # ------------------------------------------------------------------ job folders

    def job_dir(self, job_id: int) -> Path:
        """int() first: a job id is never a path, whatever type the caller passes."""
        path = self.assets_dir / str(int(job_id))
        if path.is_symlink():
            path.unlink()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def file_path(self, job_id: int, name: str | None, fallback: str = "file") -> Path:
        return self.job_dir(job_id) / safe_filename(name, fallback)

    async def remove_job_dir_async(self, job_id: int) -> int:
        """remove_job_dir in a thread: the walk and the unlink of a 4 GB file take long
        enough on a slow disk to stall every other job's progress and every reply."""
        return await asyncio.to_thread(self.remove_job_dir, job_id)

    def remove_job_dir(self, job_id: int) -> int:
        """Blocking. Returns the bytes freed (0 when the folder was already gone)."""
        path = str(self.assets_dir / str(int(job_id)))
        try:
            _, size = _tree_stat(path)
            _remove(path)
        except FileNotFoundError:
            return 0
        return size

    # ------------------------------------------------------------------ sweeping

    def sweep(self, owned: Iterable[str | int] | None = None, now: float | None = None,
              max_age_s: float | None = None) -> tuple[int, int]:
        """Blocking; the periodic loop runs it in a thread. Returns (removed, bytes freed).
        max_age_s=0 at start-up removes whatever no waiting job owns, however fresh."""
        keep = {str(x) for x in (self._owned() if owned is None else owned)}
        now = time.time() if now is None else now
        max_age = self.max_age_s if max_age_s is None else max_age_s
        removed = freed = 0
        try:
            it = os.scandir(self.assets_dir)
        except FileNotFoundError:
            return 0, 0
        with it:
            for entry in it:
                if entry.name in keep:
                    continue
                try:
                    newest, size = _tree_stat(entry.path)
                    if now - newest < max_age:
                        continue
                    _remove(entry.path)
                except FileNotFoundError:
                    continue
                except OSError as e:
                    log.warning("janitor: cannot remove %s: %s", entry.path, e)
                    continue
                removed += 1
                freed += size
        self.removed_total += removed
        self.freed_total += freed
        if removed:
            log.info("janitor: removed %d stale entries, freed %.1f MB", removed, freed / 2**20)
        return removed, freed

    async def sweep_async(self) -> tuple[int, int]:
        # owned() reads the queue's live state: call it on the loop, not in the thread.
        owned = {str(x) for x in self._owned()}
        return await asyncio.to_thread(self.sweep, owned)

    async def prune_history(self) -> int:
        """Delete the jobs that ended more than history_s ago and give their space back;
        returns how many went. Waiting and running jobs are never touched."""
        if self.db is None or not self.history_s:
            return 0
        n = await self.db.prune_jobs(self.db.now() - self.history_s)
        if n:
            await self.db.compact()
            self.pruned_total += n
            log.info("janitor: pruned %d jobs older than %.0f days; database %.1f MiB",
                     n, self.history_s / 86400, self.db.file_bytes() / 2**20)
        return n

    async def tick(self) -> None:
        """One round: stale Assets/ entries, then old history."""
        await self.sweep_async()
        await self.prune_history()

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("janitor sweep failed")
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="janitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
