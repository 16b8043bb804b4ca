"""`python -m bot` as its own process, the way Render runs it, pointed at a tgsim."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

from harness.metrics import Metrics, fetch_metrics
from harness.ports import free_port, server_spec
from harness.processes import Child, bot_environment
from harness.signin import API_HASH, API_ID


class BotProcess(Child):
    """The bot with its web face on a free port, every file under `work`, a fresh
    SESSION_KEY, a clean environment (bot_environment) and `settings` over all that."""

    def __init__(self, work: Path, *, bot_token: str, dc_table: dict[int, tuple[str, int]],
                 key_path: Path, settings: dict[str, object] | None = None):
        from helpers.secrets import generate_key

        work.mkdir(parents=True, exist_ok=True)
        self.web_port = free_port()
        self.settings = {
            "API_ID": API_ID, "API_HASH": API_HASH, "BOT_TOKEN": bot_token,
            "TELEGRAM_SERVER": server_spec(dc_table), "TELEGRAM_SERVER_KEY": key_path,
            "SESSION_KEY": generate_key(), "DATABASE_PATH": work / "bot.db",
            "ASSETS_DIR": work / "Assets", "LOG_FILE": work / "logs.txt",
            "PORT": self.web_port, **(settings or {})}
        super().__init__("bot", [sys.executable, "-m", "bot"], work / "bot.out",
                         env=bot_environment(self.settings))
        self.url = f"http://127.0.0.1:{self.web_port}"
        self._http = None

    def _session(self):
        import aiohttp

        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self._http

    async def _get(self, path: str) -> tuple[int, str]:
        async with self._session().get(self.url + path) as resp:
            return resp.status, await resp.text()

    async def healthy(self, timeout: float = 90.0) -> None:
        """Until /healthz answers 200: the bot is connected to Telegram (tgsim)."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise RuntimeError(f"the bot exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                if (await self._get("/healthz"))[0] == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the bot's /healthz not 200 after {timeout:.0f} s:\n"
                                   f"{self.tail()}")
            await asyncio.sleep(0.1)

    async def metrics(self) -> Metrics:
        return await fetch_metrics(self.url + "/metrics", self._session())

    async def close_http(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
