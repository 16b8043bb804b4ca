"""What became of jobs: the bot's jobs table read through a connection of our own, what a
person received, and the checks every end-to-end test makes of them."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path

from harness.files import file_digest

FINAL = {"done", "failed", "cancelled"}
_FAULT_COLUMNS = "id, user_id, status, attempts, error, delivered"


def read_jobs(db_path, columns: str = _FAULT_COLUMNS) -> list[dict]:
    """The jobs table in id order, as dicts of `columns`."""
    con = sqlite3.connect(db_path, timeout=10)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(f"SELECT {columns} FROM jobs ORDER BY id")]
    finally:
        con.close()


async def until_final(read, expected: int, timeout: float = 60):
    """Poll read() (rows, or a dict of them) until `expected` jobs exist and every one is in a
    final state; returns what read() gave last."""
    deadline = time.monotonic() + timeout
    while True:
        rows = read()
        values = rows.values() if isinstance(rows, dict) else rows
        if len(rows) >= expected and all(r["status"] in FINAL for r in values):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs not final after {timeout} s: {rows}")
        await asyncio.sleep(0.1)


def jobs(env) -> list[dict]:
    """The in-process bot's jobs table (harness.botenv.Env)."""
    return read_jobs(env.app.settings.database_path)


async def all_final(env, expected: int, timeout: float = 60) -> list[dict]:
    """Until `expected` jobs of the in-process bot exist and every one is final."""
    return await until_final(lambda: jobs(env), expected, timeout)


async def collect(person, *, media: int, timeout: float = 60, until=None,
                  give_up=None) -> tuple[list, list[str]]:
    """Everything the person receives until `media` media messages (and `until(texts)`);
    fails at once when `give_up(texts)` says the outcome is already known to be wrong."""
    got, texts = [], []
    deadline = time.monotonic() + timeout
    while len(got) < media or (until is not None and not until(texts)):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {len(got)}/{media} media; texts: {texts}")
        try:
            msg = await asyncio.wait_for(person.inbox.get(), left)
        except TimeoutError:
            continue
        if msg.media is not None:
            got.append(msg)
        else:
            texts.append(msg.text or "")
            if give_up is not None and give_up(texts):
                raise AssertionError(f"got {len(got)}/{media} media; texts: {texts}")
    return got, texts


async def same_bytes(person, msg, digest: str, where: Path) -> bool:
    """Download msg's media as `person` and compare its sha256 (the copy is removed)."""
    path = await person.client.download_media(msg, file_name=str(where))
    try:
        return file_digest(path) == digest
    finally:
        os.remove(path)


def no_traceback(texts) -> None:
    for t in texts:
        assert "Traceback" not in t and "Error(" not in t, t
