"""How a benchmark or a rehearsal runs from the command line: a work directory on a disk with
room, SIGTERM and Ctrl-C stopping it cleanly (every finally block runs), one line for
whatever broke, and the work directory removed unless kept."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from pathlib import Path
from typing import Awaitable, Callable

from harness.files import MB


def enough_disk(base: Path, need: int) -> bool:
    """Whether `base` has `need` bytes free; if not, says so in one line on stderr."""
    free = shutil.disk_usage(base).free
    if free < need:
        print(f"not enough disk in {base}: {free / MB:.0f} MB free, about {need / MB:.0f} MB "
              f"needed", file=sys.stderr)
    return free >= need


def run_in(work: Path, body: Callable[[Path], Awaitable[int]], *, keep: bool = False,
           failed: str = "FAIL", interrupted: Callable[[], int | None] = lambda: None,
           cleanup: Callable[[], None] = lambda: None) -> int:
    """body(work) in a new event loop where SIGTERM cancels it as Ctrl-C does; its exit code,
    or 130 when interrupted (unless interrupted() gives another), or 1 with one line
    `{failed}: <error>` for an exception. cleanup() runs and work goes (unless keep) after."""
    async def main() -> int:
        task = asyncio.current_task()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await body(work)

    try:
        return asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        rc = interrupted()
        if rc is not None:
            return rc
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line, whatever broke (an RPC error too)
        print(f"{failed}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        cleanup()
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
