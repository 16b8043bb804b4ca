"""Benchmark: the CPU a transfer's disk I/O costs, through the page cache and past it (O_DIRECT).

Writes a file of 1 MiB parts (as a download does) and reads it back in 512 KiB parts (as the
upload of the same file does), each way with ordinary I/O and with helpers/direct_io.py,
interleaved, with a pause before each run so that pages freed by the previous one are as cold
as a new job finds them (on a VM with free page reporting the host takes them back within
seconds). Prints the system + user CPU per MB of each run and the ratio, measured side by
side in one run.

    python -m bench.disk_io                  # 256 MB, 3 rounds, 6 s pauses
    python -m bench.disk_io --mb 512 --rounds 2 --pause-s 0

Units: MB = 1,000,000 bytes; CPU of this process (os.times), so other load counts less.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from helpers.direct_io import DirectFile  # noqa: E402

MB = 1000 * 1000
MIB = 1024 * 1024
UP_PART = 512 * 1024


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def write_file(path: str, size: int, direct: bool) -> float:
    """CPU ms per MB of writing `size` bytes in 1 MiB parts."""
    part = os.urandom(MIB)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    out = DirectFile(path, fd, os.O_WRONLY, enabled=direct)
    if direct and out.direct is None:
        out.close()
        raise SystemExit(f"O_DIRECT is refused in {os.path.dirname(path)}: nothing to compare")
    c0 = _cpu()
    for offset in range(0, size, MIB):
        out.write(memoryview(part)[:min(MIB, size - offset)], offset)
    cpu = _cpu() - c0
    out.close()
    return 1000 * cpu / (size / MB)


def read_file(path: str, size: int, direct: bool) -> float:
    """CPU ms per MB of reading the file in 512 KiB parts into one buffer."""
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # not in the cache: as a later job
    out = DirectFile(path, fd, os.O_RDONLY, enabled=direct)
    buf = memoryview(bytearray(UP_PART))
    c0 = _cpu()
    for offset in range(0, size, UP_PART):
        out.read_into(buf[:min(UP_PART, size - offset)], offset)
    cpu = _cpu() - c0
    out.close()
    return 1000 * cpu / (size / MB)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.disk_io",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pause-s", type=float, default=6.0)
    parser.add_argument("--dir", default=None, help="where to write (default: the temp dir)")
    args = parser.parse_args(argv)
    size = args.mb * MB
    work = Path(tempfile.mkdtemp(prefix="disk_io_", dir=args.dir))
    path = str(work / "part.bin")
    figures: dict[str, list[float]] = {k: [] for k in
                                       ("write cache", "write direct", "read cache", "read direct")}
    try:
        for _ in range(args.rounds):
            for direct in (False, True):
                name = "direct" if direct else "cache"
                time.sleep(args.pause_s)
                figures[f"write {name}"].append(write_file(path, size, direct))
                time.sleep(args.pause_s)
                figures[f"read {name}"].append(read_file(path, size, direct))
                os.unlink(path)
    finally:
        for p in work.iterdir():
            p.unlink()
        work.rmdir()
    print(f"{args.mb} MB, {args.rounds} rounds, {args.pause_s:g} s pauses, in {work.parent}")
    for way in ("write", "read"):
        cache, direct = figures[f"{way} cache"], figures[f"{way} direct"]
        c, d = sum(cache) / len(cache), sum(direct) / len(direct)
        print(f"{way:<6} page cache {c:5.2f} CPU ms/MB ({', '.join(f'{x:.2f}' for x in cache)})"
              f"   O_DIRECT {d:5.2f} ({', '.join(f'{x:.2f}' for x in direct)})"
              f"   cache / direct x{c / d if d else float('inf'):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
