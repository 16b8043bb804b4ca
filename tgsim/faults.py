"""Faults and realism a test or benchmark turns on: latency, bandwidth, the 420 family, any
RPC error with its code, drops, CDN redirects."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

# 420 is a family (core.telegram.org/api/errors#420-flood): FLOOD_WAIT_X; FLOOD_PREMIUM_WAIT_X,
# met by non-premium accounts on uploads and downloads, which "must be automatically repeated
# after X seconds"; SLOWMODE_WAIT_X on sends to a chat in slow mode. Client libraries raise
# them as siblings, not one class, which is exactly what a test must be able to provoke.
FLOOD_KINDS = ("FLOOD_WAIT", "FLOOD_PREMIUM_WAIT", "SLOWMODE_WAIT")

# The code Telegram answers an error with (core.telegram.org/api/errors): 303 SEE_OTHER for
# the *_MIGRATE_X family, 401 for dead authorizations, 406 for the not-acceptable ones, 420
# for the waits, 500 for server-side failures; everything else is 400 BAD_REQUEST.
_CODES = ((re.compile(r"^(FILE|PHONE|NETWORK|USER|STATS)_MIGRATE_\d+$"), 303),
          (re.compile(r"^(FLOOD_WAIT|FLOOD_PREMIUM_WAIT|SLOWMODE_WAIT|FLOOD_TEST_PHONE_WAIT|"
                      r"TAKEOUT_INIT_DELAY)_\d+$"), 420),
          (re.compile(r"^(AUTH_KEY_UNREGISTERED|AUTH_KEY_INVALID|USER_DEACTIVATED(_BAN)?|"
                      r"SESSION_REVOKED|SESSION_EXPIRED|SESSION_PASSWORD_NEEDED)$"), 401),
          (re.compile(r"^(FILEREF_UPGRADE_NEEDED|AUTH_KEY_DUPLICATED|"
                      r"FRESH_RESET_AUTHORISATION_FORBIDDEN)$"), 406),
          (re.compile(r"^(INTERNAL.*|RPC_CALL_FAIL|RPC_MCGET_FAIL|HISTORY_GET_FAILED|"
                      r"WORKER_BUSY_TOO_LONG_RETRY|MEMORY_TOO_LOW|CHAT_ID_GENERATE_FAILED)$"),
           500))


def error_code(message: str) -> int:
    """The code Telegram sends `message` with."""
    for pattern, code in _CODES:
        if pattern.match(message):
            return code
    return 400


@dataclass
class FloodRule:
    """Answer <kind>_<seconds> to every Nth call of a method (1 = every call); kind is one of
    FLOOD_KINDS; user_id, when set, limits the rule to that account's calls."""
    every: int
    seconds: int
    count: int = 0
    fired: int = 0
    limit: int | None = None  # stop after this many floods
    kind: str = "FLOOD_WAIT"
    user_id: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in FLOOD_KINDS:
            raise ValueError(f"kind must be one of {FLOOD_KINDS}")

    @property
    def error(self) -> str:
        return f"{self.kind}_{self.seconds}"

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
    # the answer of a method held back this long after it took effect (its message is
    # posted, its reply still in transit): the moment a client may die knowing nothing
    answer_latency_s: dict[str, float] = field(default_factory=dict)
    bandwidth_bps: int = 0  # per connection and direction, 0 = unlimited
    flood: dict[str, FloodRule] = field(default_factory=dict)
    # drop a connection once it has sent this many bytes of file data (upload.getFile answers)
    drop_after_file_bytes: int | None = None
    # the same for file parts received (upload.saveFilePart / saveBigFilePart)
    drop_after_upload_bytes: int | None = None
    drops_left: int = 0
    # the next N upload.getFile calls are never answered (a silent server, for timeouts)
    stall_file_calls: int = 0
    # rpc errors to answer, once each, to the named method: {"messages.SendMedia": ["X"]};
    # an entry is a message (sent with the code Telegram uses for it, see error_code) or a
    # (code, message) pair: {"upload.GetFile": ["FILE_MIGRATE_2", (500, "RPC_CALL_FAIL")]}
    errors: dict[str, list[str | tuple[int, str]]] = field(default_factory=dict)
    # media ids whose upload.getFile is answered with upload.fileCdnRedirect, even to clients
    # that did not set cdn_supported, as Telegram does for popular files (pyrogram#1265,
    # Telethon#4485; core.telegram.org/cdn)
    cdn_redirect: set[int] = field(default_factory=set)
    # the next N redirected files are not on the CDN yet: upload.getCdnFile answers
    # upload.cdnFileReuploadNeeded until the client calls upload.reuploadCdnFile on the
    # master (core.telegram.org/cdn)
    cdn_reupload_needed: int = 0
    # the next N upload.getCdnFile answers carry one flipped byte: the CDN is "enemy
    # territory", and only the client's hash check stands between it and a corrupt file
    cdn_corrupt: int = 0

    def next_error(self, method: str) -> tuple[int, str] | None:
        """The (code, message) to answer this call of `method` with, if one is queued."""
        queued = self.errors.get(method)
        if not queued:
            return None
        entry = queued.pop(0)
        if isinstance(entry, tuple):
            return int(entry[0]), str(entry[1])
        return error_code(entry), entry

    def delay_for(self, method: str) -> float:
        return self.method_latency_s.get(method, self.latency_s)

    def flood_wait(self, method: str) -> int | None:
        rule = self.flood.get(method)
        if rule and rule.hit():
            return rule.seconds
        return None

    def flood_error(self, method: str, user_id: int | None = None) -> str | None:
        """The 420 error (FLOOD_WAIT_X, FLOOD_PREMIUM_WAIT_X, SLOWMODE_WAIT_X) for this call."""
        rule = self.flood.get(method)
        if rule and (rule.user_id is None or rule.user_id == user_id) and rule.hit():
            return rule.error
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
