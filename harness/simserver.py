"""tgsim for the harness: in this process (tests, the short rehearsal) or as its own process
(benchmarks and the load rehearsal, so its RSS and CPU are not the bot's)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path

from harness.ports import tgsim_port_args
from harness.processes import Child
from harness.signin import LOGIN_CODE


@contextlib.asynccontextmanager
async def tgsim_in_process(data_dir: Path, **options):
    """A started TgSim on free loopback ports, stopped on leaving."""
    from tgsim import TgSim

    sim = await TgSim(data_dir, **options).start()
    try:
        yield sim
    finally:
        await sim.stop()


class TgsimProcess(Child):
    """`python -m tgsim` on free ports, one per DC, its output in log_path."""

    def __init__(self, data_dir: Path, log_path: Path, extra: list[str] = ()):
        self.dc_ports, port_args = tgsim_port_args()
        self.port = self.dc_ports[2]
        self.data_dir = data_dir
        super().__init__("tgsim", [sys.executable, "-m", "tgsim", *port_args,
                                   "--data", str(data_dir), "--code", LOGIN_CODE, *extra],
                         log_path, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    async def ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while "tgsim ready on" not in self.tail(50):
            if not self.alive():
                raise RuntimeError(f"tgsim exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"tgsim not ready after {timeout:.0f} s:\n{self.tail()}")
            await asyncio.sleep(0.05)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def dc_table(self) -> dict[int, tuple[str, int]]:
        return {dc: ("127.0.0.1", port) for dc, port in self.dc_ports.items()}

    @property
    def key_path(self) -> Path:
        return self.data_dir / "public.pem"

    @property
    def bot_token(self) -> str:
        return (self.data_dir / "bot_token").read_text().strip()

    @property
    def bot_username(self) -> str:
        return (self.data_dir / "bot_username").read_text().strip()

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    def stored_files(self) -> set[Path]:
        """tgsim's stored media, to tell which files a phase added (and delete them)."""
        return set(self.files_dir.iterdir()) if self.files_dir.is_dir() else set()
