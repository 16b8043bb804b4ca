"""Benchmark: a multi-gigabyte round trip through tgsim with the real client, and tgsim's RSS.

Starts `python -m tgsim` as a separate process, samples its resident set size every 0.2 s,
signs a user up through a real pyrogram client, uploads a file of --size-mb to the user's own
Saved Messages with send_document, downloads it back with download_media, checks the bytes by
streaming sha256 of both files, and prints throughput and tgsim's RSS at idle, at peak and the
growth between them (PASS below 50 MiB).

    python -m bench.tgsim_2gb                    # 2048 MB (the default)
    python -m bench.tgsim_2gb --size-mb 256 --keep

Units: file sizes and throughput use MB = 1,000,000 bytes, so the default 2048 MB
(2,048,000,000 bytes = 1953.1 MiB) is a "2 GB" file that fits under the 2000 MiB a free account
may upload (pyrogram refuses more before sending, tgsim answers FILE_PARTS_INVALID past 4000
parts of 512 KiB). RSS figures are MiB (1,048,576 bytes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.files import FREE_UPLOAD_LIMIT, MB, MIB, write_random  # noqa: E402
from harness.files import file_digest as sha256_file  # noqa: E402
from harness.rss import RssSampler  # noqa: E402
from harness.runs import enough_disk, run_in  # noqa: E402
from harness.signin import API_HASH, API_ID, sign_in  # noqa: E402,F401
from harness.simserver import TgsimProcess  # noqa: E402

GROWTH_LIMIT_MIB = 50
SAMPLE_EVERY_S = 0.2
PHONE = "+15550002048"


def write_test_file(path: Path, size: int) -> None:
    """Real (non-sparse) random data, synced to disk before it is read back."""
    write_random(path, size, fsync=True)


async def login(address: tuple[str, int], key_path: Path):
    """The bench's user, signed up (or in) through the real code flow."""
    return await sign_in(address, key_path, PHONE, "Bench", client_name="bench")


async def run(args: argparse.Namespace, work: Path, result: dict) -> None:
    size = args.size_mb * MB
    data_dir = work / "tgsim-data"
    src = work / "upload.bin"
    dst = work / "download.bin"

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()  # run_in's: SIGTERM cancels it, as Ctrl-C does

    def tgsim_gone() -> None:  # the client would only keep reconnecting: stop the run
        result["tgsim_died"] = True
        task.cancel()

    sim = TgsimProcess(data_dir, work / "tgsim.log")
    sampler: RssSampler | None = None
    client = None
    try:
        t = time.monotonic()
        sim.start()
        await sim.ready()
        sampler = RssSampler(sim.pid, every=SAMPLE_EVERY_S,
                             on_gone=lambda: loop.call_soon_threadsafe(tgsim_gone)).start()
        print(f"tgsim pid {sim.pid} ready on {sim.address[0]}:{sim.address[1]} "
              f"in {time.monotonic() - t:.1f} s", flush=True)

        print(f"writing {size:,} bytes to {src} ...", flush=True)
        t = time.monotonic()
        write_test_file(src, size)
        print(f"  written in {time.monotonic() - t:.1f} s", flush=True)

        sampler.phase = "login"
        client = await login(sim.address, sim.key_path)
        print(f"signed in as {client.me.first_name} (id {client.me.id})", flush=True)

        # idle: after login, before upload; a second of samples, the settled (last) value
        sampler.phase = "idle"
        await asyncio.sleep(1.0)
        idle = sampler.sample()
        result["idle"] = idle

        sampler.phase = "upload"
        last_progress = [0.0]

        async def progress(current: int, total: int) -> None:
            last_progress[0] = time.monotonic()

        t0 = time.monotonic()
        message = await client.send_document("me", str(src), file_name="upload.bin",
                                             force_document=True, progress=progress)
        t1 = time.monotonic()
        result["upload_s"] = t1 - t0
        result["upload_parts_s"] = (last_progress[0] or t1) - t0
        result["peak_upload"] = sampler.peak("upload")
        print(f"  uploaded in {t1 - t0:.1f} s (parts {result['upload_parts_s']:.1f} s, "
              f"send_media {t1 - (last_progress[0] or t1):.1f} s); "
              f"RSS peak {result['peak_upload'] / MIB:.1f} MiB", flush=True)
        if message.document is None or message.document.file_size != size:
            got = message.document.file_size if message.document else None
            raise RuntimeError(f"server stored {got} bytes, sent {size}")

        sampler.phase = "download"
        t0 = time.monotonic()
        path = await client.download_media(message, file_name=str(dst))
        t1 = time.monotonic()
        result["download_s"] = t1 - t0
        result["peak_download"] = sampler.peak("download")
        print(f"  downloaded in {t1 - t0:.1f} s to {path}; "
              f"RSS peak {result['peak_download'] / MIB:.1f} MiB", flush=True)
        if not path or Path(path).resolve() != dst.resolve():
            raise RuntimeError(f"download_media returned {path!r}, expected {dst}")

        sampler.phase = "verify"
        t = time.monotonic()
        got_size = dst.stat().st_size
        h_src, h_dst = sha256_file(src), sha256_file(dst)
        result["identical"] = got_size == size and h_src == h_dst
        print(f"  sha256 upload   {h_src}\n  sha256 download {h_dst} "
              f"({got_size:,} bytes, {time.monotonic() - t:.1f} s)", flush=True)
    finally:
        if client is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(
                    client.stop() if client.is_initialized else client.disconnect(), 15)
        if sampler is not None:
            sampler.phase = "end"
            sampler.stop()
            result["peak"] = sampler.peak()
            result["end"] = sampler.last()
            result["samples"] = len(sampler.samples)
        rc = sim.stop(15)
        if rc not in (0, None):
            print(f"tgsim exited with {rc}:\n{sim.tail()}", file=sys.stderr)
        elif "Traceback" in sim.tail(200):
            print(f"tgsim logged errors:\n{sim.tail()}", file=sys.stderr)


def report(args: argparse.Namespace, r: dict) -> bool:
    size = args.size_mb * MB
    idle, peak = r["idle"], r["peak"]
    growth = (peak - idle) / MIB
    ok = r.get("identical", False) and growth < GROWTH_LIMIT_MIB
    print()
    print(f"file size         {size:,} bytes ({args.size_mb} MB = {size / MIB:.1f} MiB)")
    print(f"upload            {size / MB / r['upload_s']:8.1f} MB/s  ({r['upload_s']:.1f} s, "
          f"send_document incl. server-side join)")
    print(f"download          {size / MB / r['download_s']:8.1f} MB/s  ({r['download_s']:.1f} s)")
    print(f"bytes identical   {'yes' if r.get('identical') else 'NO'} (sha256)")
    print(f"tgsim RSS idle    {idle / MIB:8.1f} MiB  (after login, before upload)")
    print(f"tgsim RSS peak    {peak / MIB:8.1f} MiB  (upload {r['peak_upload'] / MIB:.1f}, "
          f"download {r['peak_download'] / MIB:.1f}, at end {r['end'] / MIB:.1f}; "
          f"{r['samples']} samples)")
    print(f"RSS growth        {growth:8.1f} MiB  (peak - idle, limit {GROWTH_LIMIT_MIB} MiB)")
    print("PASS" if ok else "FAIL")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tgsim_2gb",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=2048,
                        help="file size in MB of 1,000,000 bytes (default 2048)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the test files and tgsim's data directory")
    parser.add_argument("--dir", default=None,
                        help="where to make the temporary directory (default: the system's)")
    args = parser.parse_args(argv)
    size = args.size_mb * MB
    if args.size_mb <= 0:
        parser.error("--size-mb must be positive")
    if size > FREE_UPLOAD_LIMIT:
        parser.error(f"{size:,} bytes is over the {FREE_UPLOAD_LIMIT:,} bytes (2000 MiB) a free "
                     f"account may upload; pyrogram and tgsim both refuse it")

    base = Path(args.dir or tempfile.gettempdir())
    # source, server copy (parts, then the joined file), download
    if not enough_disk(base, 3 * size + 256 * MIB):
        return 2
    work = Path(tempfile.mkdtemp(prefix="tgsim_2gb_", dir=base))
    print(f"work dir {work} ({shutil.disk_usage(base).free / 2**30:.1f} GiB free)", flush=True)

    result: dict = {}

    async def body(work: Path) -> int:
        await run(args, work, result)
        return 0 if report(args, result) else 1

    def tgsim_died() -> int | None:
        if result.get("tgsim_died"):
            print("FAIL: tgsim exited during the run", file=sys.stderr)
            return 1
        return None

    return run_in(work, body, keep=args.keep, interrupted=tgsim_died)


if __name__ == "__main__":
    sys.exit(main())
