"""Faults and realism a test or benchmark turns on: latency, bandwidth, FloodWait, drops."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class FloodRule:
    """Answer FLOOD_WAIT_<seconds> to every Nth call of a method (1 = every call)."""
    every: int
    seconds: int
    count: int = 0
    fired: int = 0
    limit: int | None = None  # stop after this many floods

    def hit(self) -> bool:
        self.count += 1
        if self.limit is not None and self.fired >= self.limit:
            return False
        if self.count % self.every == 0:
            self.fired += 1
            return True
        return False


@dataclass
class Faults:
    latency_s: float = 0.0  # added before every RPC answer
    method_latency_s: dict[str, float] = field(default_factory=dict)
    bandwidth_bps: int = 0  # per connection and direction, 0 = unlimited
    flood: dict[str, FloodRule] = field(default_factory=dict)
    # drop a connection once it has sent this many bytes of file data (upload.getFile answers)
    drop_after_file_bytes: int | None = None
    # the same for file parts received (upload.saveFilePart / saveBigFilePart)
    drop_after_upload_bytes: int | None = None
    drops_left: int = 0
    # the next N upload.getFile calls are never answered (a silent server, for timeouts)
    stall_file_calls: int = 0
    # rpc errors to answer, once each, to the named method: {"messages.SendMedia": ["X"]}
    errors: dict[str, list[str]] = field(default_factory=dict)

    def delay_for(self, method: str) -> float:
        return self.method_latency_s.get(method, self.latency_s)

    def flood_wait(self, method: str) -> int | None:
        rule = self.flood.get(method)
        if rule and rule.hit():
            return rule.seconds
        return None

    def reset(self) -> None:
        self.__init__()


class Throttle:
    """Token bucket for one connection direction; sleeps instead of buffering."""

    def __init__(self, faults: Faults):
        self.faults = faults
        self.next_free = 0.0

    async def spend(self, nbytes: int) -> None:
        bps = self.faults.bandwidth_bps
        if not bps:
            return
        now = time.monotonic()
        start = max(now, self.next_free)
        self.next_free = start + nbytes / bps
        delay = self.next_free - now
        if delay > 0:
            await asyncio.sleep(delay)
