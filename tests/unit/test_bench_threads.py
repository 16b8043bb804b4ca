"""bench.transfer_speed's CPU by thread: the figures the README quotes per thread."""

from __future__ import annotations

import os
import threading
import time

import pytest

from bench.transfer_speed import MB, per_thread, thread_cpu


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="Linux /proc only")
def test_cpu_is_told_apart_by_thread_and_pool_name():
    before = thread_cpu()
    burnt, done = threading.Barrier(3), threading.Event()

    def work() -> None:
        _burn(0.05)
        burnt.wait()
        done.wait()  # alive, so its name is known, until the figures are taken

    workers = [threading.Thread(target=work, name=f"transfer-decrypt_{i}") for i in range(2)]
    for t in workers:
        t.start()
    try:
        burnt.wait()
        _burn(0.05)
        got = per_thread(before, MB)
    finally:
        done.set()
        for t in workers:
            t.join()
    # 50 ms of CPU over 1 MB each, at a 10 ms clock tick
    assert got["loop"] >= 30
    assert got.get("transfer-decrypt", 0) >= 2 * 30  # two pool threads, one name
