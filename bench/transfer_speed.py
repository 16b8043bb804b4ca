"""Benchmark: the client library's own transfers vs helpers.transfer, side by side, in one run.

For each latency, starts `python -m tgsim` in a separate process with that latency added to
every request and a bandwidth cap per connection, signs a user in, and for each file size runs
four transfers of the same random file, each in a fresh child process (so its RSS is its own):

    upload    stock `send_document`     vs  ours `Transfers.send_file(kind="document")`
    download  stock `download_media`    vs  ours `Transfers.download`

It checks every download byte for byte (sha256) and prints, for each: MB/s, the ratio ours /
stock, the fraction of the link's ceiling (connections used x the per-connection cap), CPU
ms per MB of the process doing the transfer, and its RSS growth (peak while transferring
minus just before, sampled every 10 ms by a thread in that process, psutil). tgsim runs with
its per-account limits on (its defaults: 16 file requests in flight per account). The crypto
floor, AES-256-IGE + SHA-256 over the payload (what MTProto 2.0 costs per byte each way, with
the library's installed cipher), is measured in the same run on the same machine.

    python -m bench.transfer_speed                                  # 64,512 MB at 50,150 ms
    python -m bench.transfer_speed --sizes-mb 128 --latency-ms 150 --bandwidth-mbps 80

Units: sizes and throughput in MB = 1,000,000 bytes; bandwidth in Mbit/s; RSS in MiB.
Goals (issues 6, 13), at 150 ms: download >= 6x stock and >= 90 % of the ceiling, upload >= 3x
and >= 80 %; CPU per MB <= 1.5x the crypto floor; RSS growth <= 16 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.crypto_floor import floor_ms_per_mb  # noqa: E402
from bench.tgsim_2gb import (  # noqa: E402
    API_HASH, API_ID, MIB, RssSampler, login, sha256_file, write_test_file)
from harness.simserver import TgsimProcess  # noqa: E402

MB = 1000 * 1000
GOAL_DOWN, GOAL_UP, GOAL_RSS_MIB = 6.0, 3.0, 16.0
GOAL_CEIL_DOWN, GOAL_CEIL_UP, GOAL_CPU_X = 0.90, 0.80, 1.5


class PeakRss:
    """Peak RSS of this process while transferring: the kernel's high-water mark (VmHWM),
    reset just before (clear_refs 5), so nothing samples in the process being measured (a
    psutil thread every 10 ms cost several CPU ms per MB, counted as the transfer's). Falls
    back to sampling where /proc does not allow the reset."""

    def __init__(self) -> None:
        import psutil
        self._proc = psutil.Process()
        self._sampler = None

    def start(self) -> int:
        base = self._proc.memory_info().rss
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self._sampler = RssSampler(os.getpid(), every=0.01)
            self._sampler.phase = "run"
            self._sampler.start()
        return base

    def stop(self) -> int:
        if self._sampler is not None:
            self._sampler.stop()
            return self._sampler.peak("run")
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc/self/status")



def thread_cpu() -> dict[int, float]:
    """CPU seconds of each thread of this process so far (/proc/self/task; {} elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


def per_thread(before: dict[int, float], size: int) -> dict[str, float]:
    """CPU ms per MB of each kind of thread since `before` (pool threads summed by name)."""
    import threading

    names = {t.native_id: t.name.rsplit("_", 1)[0] for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid, seconds in thread_cpu().items():
        spent = seconds - before.get(tid, 0.0)
        if spent > 0:
            name = "loop" if tid == os.getpid() else names.get(tid, "other")
            out[name] = out.get(name, 0.0) + 1000 * spent / (size / MB)
    return out


async def child(spec: dict) -> dict:
    from pyrogram import Client

    from helpers.allocator import pin_mmap_threshold
    from helpers.telegram_server import client_options
    from helpers.transfer import Transfers

    pin_mmap_threshold()  # as the bot does at start (bot/app.py), for stock and ours alike

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
    peak = PeakRss()
    base = peak.start()
    profiler = None
    if spec.get("profile"):
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    cpu0 = sum(os.times()[:2])
    threads0 = thread_cpu()
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
    cpu = sum(os.times()[:2]) - cpu0
    result["threads"] = per_thread(threads0, spec["size"])
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(os.path.join(spec["profile"], f"{op}.prof"))
    result["cpu_percent"] = 100 * cpu / result["seconds"]
    result["cpu_ms_per_mb"] = 1000 * cpu / (spec["size"] / MB)
    # connections the transfer used: the library's one media session, or our pooled ones
    result["connections"] = 1 if op.endswith("stock") else max(1, transfers.connections(client))
    result["rss_base_mib"] = base / MIB
    result["rss_delta_mib"] = (peak.stop() - base) / MIB
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
async def session_for(sim: TgsimProcess) -> str:
    client = await login(sim.address, sim.key_path)
    try:
        return await client.export_session_string()
    finally:
        await client.stop()


def transfer_settings(args) -> dict:
    """The Transfers arguments given on the command line (the rest: Transfers' defaults)."""
    given = {"part_size": args.part_kb * 1024, "max_inflight": args.inflight,
             "max_connections": args.connections, "upload_inflight": args.upload_inflight,
             "account_inflight": args.account_inflight}
    return {k: v for k, v in given.items() if v}


def bench_one(args, sim: TgsimProcess, session: str, work: Path, size_mb: int, latency: float) -> dict:
    size = size_mb * MB
    src = work / f"src-{size_mb}.bin"
    if not src.exists():
        write_test_file(src, size)
    digest = sha256_file(src)
    settings = transfer_settings(args)
    base = {"address": list(sim.address), "key": str(sim.key_path), "session": session,
            "size": size, "profile": args.profile, "settings": settings}
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
    cap = args.bandwidth_mbps / 8  # MB/s per connection and direction
    for key in ("up_stock", "up_ours", "down_stock", "down_ours"):
        row[key]["mbps"] = size / MB / row[key]["seconds"]
        row[key]["ceiling"] = row[key]["connections"] * cap
        row[key]["of_ceiling"] = row[key]["mbps"] / row[key]["ceiling"]
    floor = floor_ms_per_mb()  # measured here, between the runs, while nothing else runs
    row["floor_down"], row["floor_up"] = floor["receive"], floor["send"]
    return row


def print_row(row: dict) -> None:
    lat, size = row["latency_ms"], row["size_mb"]
    for kind, stock, ours in (("download", "down_stock", "down_ours"),
                              ("upload", "up_stock", "up_ours")):
        s, o = row[stock], row[ours]
        ok = "" if kind == "upload" else ("  bytes ok" if s["identical"] and o["identical"]
                                          else "  BYTES DIFFER")
        print(f"{lat:>6.0f} ms {size:>5d} MB  {kind:<8}  "
              + "   ".join(f"{who} {r['mbps']:6.2f} MB/s ({100 * r['of_ceiling']:3.0f}% of "
                           f"{r['ceiling']:g} over {r['connections']} conn, "
                           f"{r['cpu_ms_per_mb']:5.1f} CPU ms/MB, RSS +{r['rss_delta_mib']:4.1f}"
                           " MiB)" for who, r in (("stock", s), ("ours", o)))
              + f"   x{o['mbps'] / s['mbps']:5.2f}{ok}", flush=True)
    for kind, ours in (("download", "down_ours"), ("upload", "up_ours")):
        threads = row[ours].get("threads") or {}
        if threads:
            print(f"{'':>15}ours, {kind}, CPU ms/MB by thread: " + ", ".join(
                f"{name} {ms:.1f}" for name, ms in sorted(threads.items(), key=lambda kv: -kv[1])
                if ms >= 0.05), flush=True)
    print(f"{'':>15}crypto floor (bench/crypto_floor.py, this machine, now): receive "
          f"{row['floor_down']:.1f}, send {row['floor_up']:.1f} CPU ms/MB", flush=True)


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
    parser.add_argument("--account-inflight", type=int, default=0,
                        help="file requests in flight per account (default: Transfers' own)")
    parser.add_argument("--dir", default=None, help="where to put the temporary files")
    parser.add_argument("--profile", default=None,
                        help="a directory: each transfer runs under cProfile, stats saved "
                             "there as <op>.prof (slower; for finding CPU, not for figures)")
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
    t = Transfers(**transfer_settings(args))
    print(f"tgsim: latency {', '.join(f'{x:g}' for x in latencies)} ms per request, cap "
          f"{args.bandwidth_mbps:g} Mbit/s ({args.bandwidth_mbps / 8:g} MB/s) per connection "
          f"and direction; ours: {t.max_inflight} download parts of {t.part_size // 1024} KB "
          f"and {t.upload_inflight} upload parts of 512 KB in flight, {t.account_inflight} "
          f"per account, over up to {t.max_connections} connections", flush=True)
    rows = []
    ok = True
    try:
        for latency in latencies:
            data = work / f"tgsim-{latency:g}"
            data.mkdir(parents=True, exist_ok=True)
            sim = TgsimProcess(data, work / f"tgsim-{latency:g}.log",
                               extra=["--latency-ms", str(latency),
                                      "--bandwidth-mbps", str(args.bandwidth_mbps)])
            sim.start()
            try:
                asyncio.run(sim.ready())
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
        cpu_down = row["down_ours"]["cpu_ms_per_mb"] / row["floor_down"]
        cpu_up = row["up_ours"]["cpu_ms_per_mb"] / row["floor_up"]
        # one job is a download and its upload: both directions' CPU for each MB it moves
        job_ms = row["down_ours"]["cpu_ms_per_mb"] + row["up_ours"]["cpu_ms_per_mb"]
        goals = [f"bytes {'ok' if identical else 'DIFFER'}", f"RSS +{rss:.1f} MiB "
                 f"{'ok' if rss <= GOAL_RSS_MIB else 'OVER'}",
                 f"CPU down {cpu_down:.2f}x / up {cpu_up:.2f}x the floor "
                 f"{'ok' if max(cpu_down, cpu_up) <= GOAL_CPU_X else 'OVER'} "
                 f"(goal {GOAL_CPU_X:g}x; one job, down and up, on 0.5 CPU: {500 / job_ms:.1f} MB/s)"]
        ceil_down, ceil_up = row["down_ours"]["of_ceiling"], row["up_ours"]["of_ceiling"]
        if row["latency_ms"] >= 150:
            goals.insert(0, f"download x{down:.2f} {'ok' if down >= GOAL_DOWN else 'BELOW'} "
                            f"(goal {GOAL_DOWN:g})")
            goals.insert(1, f"upload x{up:.2f} {'ok' if up >= GOAL_UP else 'BELOW'} "
                            f"(goal {GOAL_UP:g})")
            goals.insert(2, f"ceiling down {100 * ceil_down:.0f}% "
                            f"{'ok' if ceil_down >= GOAL_CEIL_DOWN else 'BELOW'} / up "
                            f"{100 * ceil_up:.0f}% {'ok' if ceil_up >= GOAL_CEIL_UP else 'BELOW'}")
            ok &= down >= GOAL_DOWN and up >= GOAL_UP
            ok &= ceil_down >= GOAL_CEIL_DOWN and ceil_up >= GOAL_CEIL_UP
        ok &= identical and rss <= GOAL_RSS_MIB and max(cpu_down, cpu_up) <= GOAL_CPU_X
        print(f"{row['latency_ms']:>6.0f} ms {row['size_mb']:>5d} MB: " + ", ".join(goals))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
