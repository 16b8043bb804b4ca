"""Child processes of the harness (tgsim, the bot), each with its output in one log file, and
the clean environment a `python -m bot` child gets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository: where `python -m bot` runs


class Child:
    """A child process whose stdout and stderr go to one log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None):
        self.name, self.argv, self.log_path, self.env = name, argv, log_path, env
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # a terminal's Ctrl-C is ours

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 25) -> str:
        with contextlib.suppress(OSError):
            lines = self.log_path.read_text(errors="replace").splitlines()
            return "\n".join(lines[-n:]) or "(no output)"
        return "(no output)"

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, wait, then SIGKILL; returns the exit code (None if never started)."""
        if self.proc is None:
            return None
        terminate(self.proc, timeout)
        with contextlib.suppress(OSError):
            self._log.close()
        return self.proc.returncode


def terminate(proc: subprocess.Popen, grace_s: float) -> int:
    """SIGTERM, up to grace_s for a clean exit, then SIGKILL; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


async def end(proc: subprocess.Popen, grace_s: float, sig: int = signal.SIGTERM) -> int:
    """terminate() for a caller whose event loop runs tgsim: the child's shutdown talks to
    the simulator, so its exit is awaited, never waited for with the loop blocked (which
    stalls every client in the loop and made their requests time out)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        deadline = time.monotonic() + grace_s
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)
    return proc.returncode


_SETTING = re.compile(r"^#?\s*([A-Z][A-Z0-9_]+)=", re.M)


# What a child process needs from ours to run at all; nothing else of the caller's leaks in.
_KEEP_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


def bot_environment(overrides: dict[str, object]) -> dict[str, str]:
    """The environment of a `python -m bot` child: a clean one (the caller's variables do
    not leak in, only _KEEP_ENV), every documented setting blank (so a config.env in the repo,
    read from the bot's working directory, does not either), then the overrides."""
    env = {k: os.environ[k] for k in _KEEP_ENV if k in os.environ}
    names = set(_SETTING.findall((ROOT / "config.env.example").read_text()))
    names |= {"RENDER", "RENDER_EXTERNAL_URL", "CONSTRAINED"}
    env.update({name: "" for name in names})
    env.update({k: str(v) for k, v in overrides.items() if v is not None})
    env["PYTHONUNBUFFERED"] = "1"
    return env
