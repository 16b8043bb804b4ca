"""Benchmark: the client library's own transfers vs helpers.transfer, side by side, in one run.

For each latency, starts `python -m tgsim` in a separate process with that latency added to
every request and a bandwidth cap per connection, signs a user in, and for each file size runs
four transfers of the same random file, each in a fresh child process (so its RSS is its own):

    upload    stock `send_document`     vs  ours `Transfers.send_file(kind="document")`
    download  stock `download_media`    vs  ours `Transfers.download`

It checks every download byte for byte (sha256) and prints MB/s of each, the ratio, and the
RSS growth of the process doing the transfer (peak while transferring minus just before,
sampled every 10 ms by a thread in that process).

    python -m bench.transfer_speed                                  # 64,512 MB at 50,150 ms
    python -m bench.transfer_speed --sizes-mb 64 --latency-ms 150 --bandwidth-mbps 80

Units: sizes and throughput in MB = 1,000,000 bytes; bandwidth in Mbit/s; RSS in MiB.
Goals (issue 6): download >= 6x stock at 150 ms, upload >= 3x, RSS growth <= 16 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.tgsim_2gb import (  # noqa: E402
    API_HASH, API_ID, MIB, RssSampler, login, sha256_file, tgsim_port_args,
    write_test_file)

MB = 1000 * 1000
GOAL_DOWN, GOAL_UP, GOAL_RSS_MIB = 6.0, 3.0, 16.0


class Tgsim:
    """`python -m tgsim` with latency and bandwidth set on its command line."""

    def __init__(self, data_dir: Path, latency_ms: float, bandwidth_mbps: float):
        self.data_dir = data_dir
        dc_ports, port_args = tgsim_port_args()  # one port per DC
        self.port = dc_ports[2]
        self.args = ["--latency-ms", str(latency_ms), "--bandwidth-mbps", str(bandwidth_mbps),
                     *port_args[2:]]
        self.proc: subprocess.Popen | None = None
        self.address: tuple[str, int] | None = None

    def start(self, timeout: float = 60.0) -> None:
        self._log = open(self.data_dir.parent / f"tgsim-{self.port}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tgsim", "--port", str(self.port), "--data",
             str(self.data_dir), *self.args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
            text=True)
        ready = threading.Event()

        def drain() -> None:
            for line in self.proc.stdout:
                if not ready.is_set() and "ready" in line:
                    m = re.search(r"ready on ([\d.]+):(\d+)", line)
                    self.address = (m.group(1), int(m.group(2))) if m else ("127.0.0.1",
                                                                            self.port)
                    ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(timeout):
            self.stop()
            raise RuntimeError("tgsim did not start")

    @property
    def key_path(self) -> Path:
        return self.data_dir / "public.pem"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(Exception):
            self._log.close()


# the child: one transfer, its own RSS ---------------------------------------------------------
async def child(spec: dict) -> dict:
    from pyrogram import Client

    from helpers.telegram_server import client_options
    from helpers.transfer import Transfers

    address = tuple(spec["address"])
    opts = client_options("child", address, spec["key"], spec["session"])
    client = Client("child", api_id=API_ID, api_hash=API_HASH, no_updates=True, **opts)
    await client.start()
    transfers = Transfers(**spec["settings"])
    op = spec["op"]
    message = None
    if op.startswith("down"):
        message = await client.get_messages("me", spec["msg_id"])
    gc.collect()
    await asyncio.sleep(0.3)
    sampler = RssSampler(os.getpid(), every=0.01)
    sampler.phase = "idle"
    sampler.start()
    await asyncio.sleep(0.1)
    base = sampler.sample()
    sampler.phase = "run"
    cpu0 = sum(os.times()[:2])
    t0 = time.monotonic()
    result: dict = {"op": op}
    if op == "up-stock":
        msg = await client.send_document("me", spec["src"], file_name="bench.bin",
                                         force_document=True)
        result["msg_id"] = msg.id
    elif op == "up-ours":
        msg = await transfers.send_file(client, "me", spec["src"], kind="document",
                                        file_name="bench.bin")
        result["msg_id"] = msg.id
    elif op == "down-stock":
        await client.download_media(message, file_name=spec["dst"])
    elif op == "down-ours":
        await transfers.download(client, message, spec["dst"])
    result["seconds"] = time.monotonic() - t0
    result["cpu_percent"] = 100 * (sum(os.times()[:2]) - cpu0) / result["seconds"]
    sampler.stop()
    result["rss_base_mib"] = base / MIB
    result["rss_delta_mib"] = (sampler.peak("run") - base) / MIB
    await transfers.close_client(client)
    await client.stop()
    return result


def run_child(spec: dict, timeout: float) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.transfer_speed", "--child",
                          json.dumps(spec)], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{spec['op']} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


# the parent ------------------------------------------------------------------------------------
async def session_for(sim: Tgsim) -> str:
    client = await login(sim.address, sim.key_path)
    try:
        return await client.export_session_string()
    finally:
        await client.stop()


def bench_one(args, sim: Tgsim, session: str, work: Path, size_mb: int, latency: float) -> dict:
    size = size_mb * MB
    src = work / f"src-{size_mb}.bin"
    if not src.exists():
        write_test_file(src, size)
    digest = sha256_file(src)
    settings = {"part_size": args.part_kb * 1024, "max_inflight": args.inflight,
                "max_connections": args.connections, "upload_inflight": args.upload_inflight}
    base = {"address": list(sim.address), "key": str(sim.key_path), "session": session,
            "settings": {k: v for k, v in settings.items() if v}}
    # generous: stock at 150 ms and a narrow cap can be slow
    timeout = 120 + size / MB * 3
    row = {"size_mb": size_mb, "latency_ms": latency}
    up_stock = run_child({**base, "op": "up-stock", "src": str(src)}, timeout)
    up_ours = run_child({**base, "op": "up-ours", "src": str(src)}, timeout)
    for name, r in (("up_stock", up_stock), ("up_ours", up_ours)):
        row[name] = r
    for name, op, msg_id in (("down_stock", "down-stock", up_ours["msg_id"]),
                             ("down_ours", "down-ours", up_stock["msg_id"])):
        dst = work / f"{name}-{size_mb}.bin"
        r = run_child({**base, "op": op, "msg_id": msg_id, "dst": str(dst)}, timeout)
        r["identical"] = dst.stat().st_size == size and sha256_file(dst) == digest
        dst.unlink()
        row[name] = r
    for key in ("up_stock", "up_ours", "down_stock", "down_ours"):
        row[key]["mbps"] = size / MB / row[key]["seconds"]
    return row


def print_row(row: dict) -> None:
    lat, size = row["latency_ms"], row["size_mb"]
    for kind, stock, ours in (("download", "down_stock", "down_ours"),
                              ("upload", "up_stock", "up_ours")):
        s, o = row[stock], row[ours]
        ok = "" if kind == "upload" else ("  bytes ok" if s["identical"] and o["identical"]
                                          else "  BYTES DIFFER")
        print(f"{lat:>6.0f} ms {size:>5d} MB  {kind:<8}  stock {s['mbps']:6.2f} MB/s "
              f"(RSS +{s['rss_delta_mib']:4.1f} MiB, CPU {s['cpu_percent']:3.0f}%)   "
              f"ours {o['mbps']:6.2f} MB/s (RSS +{o['rss_delta_mib']:4.1f} MiB, CPU "
              f"{o['cpu_percent']:3.0f}%)   x{o['mbps'] / s['mbps']:5.2f}{ok}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transfer_speed",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mb", default="64,512")
    parser.add_argument("--latency-ms", default="50,150")
    parser.add_argument("--bandwidth-mbps", type=float, default=80.0,
                        help="cap per connection and direction, Mbit/s (default 80 = 10 MB/s)")
    parser.add_argument("--part-kb", type=int, default=0,
                        help="download part size in KB (default: Transfers' own)")
    parser.add_argument("--inflight", type=int, default=0,
                        help="download parts in flight (default: Transfers' own)")
    parser.add_argument("--connections", type=int, default=0,
                        help="media sessions per DC (default: Transfers' own)")
    parser.add_argument("--upload-inflight", type=int, default=0,
                        help="upload parts in flight (default: Transfers' own)")
    parser.add_argument("--dir", default=None, help="where to put the temporary files")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(child(json.loads(args.child)))), flush=True)
        return 0
    sizes = [int(s) for s in args.sizes_mb.split(",") if s]
    latencies = [float(s) for s in args.latency_ms.split(",") if s]
    work = Path(tempfile.mkdtemp(prefix="transfer_speed_", dir=args.dir))
    need = 3 * sum(sizes) * MB * 2 + 256 * MIB
    if shutil.disk_usage(work).free < need:
        print(f"not enough disk space in {work}", file=sys.stderr)
        return 2
    from helpers.transfer import Transfers
    t = Transfers(**{k: v for k, v in {
        "part_size": args.part_kb * 1024, "max_inflight": args.inflight,
        "max_connections": args.connections, "upload_inflight": args.upload_inflight}.items()
        if v})
    print(f"tgsim: latency {', '.join(f'{x:g}' for x in latencies)} ms per request, cap "
          f"{args.bandwidth_mbps:g} Mbit/s ({args.bandwidth_mbps / 8:g} MB/s) per connection "
          f"and direction; ours: {t.max_inflight} download parts of {t.part_size // 1024} KB "
          f"and {t.upload_inflight} upload parts of 512 KB in flight, over up to "
          f"{t.max_connections} connections", flush=True)
    rows = []
    ok = True
    try:
        for latency in latencies:
            data = work / f"tgsim-{latency:g}"
            sim = Tgsim(data, latency, args.bandwidth_mbps)
            sim.start()
            try:
                session = asyncio.run(session_for(sim))
                for size_mb in sizes:
                    row = bench_one(args, sim, session, work, size_mb, latency)
                    rows.append(row)
                    print_row(row)
            finally:
                sim.stop()
                shutil.rmtree(data, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
          "(other work on the machine lowers the ratios)")
    for row in rows:
        down = row["down_ours"]["mbps"] / row["down_stock"]["mbps"]
        up = row["up_ours"]["mbps"] / row["up_stock"]["mbps"]
        rss = max(row["down_ours"]["rss_delta_mib"], row["up_ours"]["rss_delta_mib"])
        identical = row["down_ours"]["identical"] and row["down_stock"]["identical"]
        goals = [f"bytes {'ok' if identical else 'DIFFER'}", f"RSS +{rss:.1f} MiB "
                 f"{'ok' if rss <= GOAL_RSS_MIB else 'OVER'}"]
        if row["latency_ms"] >= 150:
            goals.insert(0, f"download x{down:.2f} {'ok' if down >= GOAL_DOWN else 'BELOW'} "
                            f"(goal {GOAL_DOWN:g})")
            goals.insert(1, f"upload x{up:.2f} {'ok' if up >= GOAL_UP else 'BELOW'} "
                            f"(goal {GOAL_UP:g})")
            ok &= down >= GOAL_DOWN and up >= GOAL_UP
        ok &= identical and rss <= GOAL_RSS_MIB
        print(f"{row['latency_ms']:>6.0f} ms {row['size_mb']:>5d} MB: " + ", ".join(goals))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
