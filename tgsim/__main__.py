"""`python -m tgsim --port PORT --data DIR`: run the simulator standalone on 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from tgsim.server import TgSim


async def _main(args: argparse.Namespace) -> int:
    sim = TgSim(args.data, port=args.port, login_code=args.code,
                update_log_size=args.update_log_size)
    sim.faults.latency_s = max(0.0, args.latency_ms) / 1000
    sim.faults.bandwidth_bps = int(max(0.0, args.bandwidth_mbps) * 1_000_000 / 8)
    bot = sim.world.add_bot(args.bot_username, first_name="Downloader Bot")
    await sim.start()
    data = Path(args.data)
    (data / "bot_token").write_text(bot.bot_token + "\n")
    (data / "bot_username").write_text(bot.username + "\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"tgsim ready on {sim.address} (key {sim.public_key_path}, bot @{bot.username})",
          flush=True)
    await stop.wait()
    await sim.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tgsim", description=__doc__)
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--data", default="tgsim-data")
    parser.add_argument("--code", default="12345", help="the login code every phone receives")
    parser.add_argument("--bot-username", default="sim_downloader_bot")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay added before every RPC answer (default 0)")
    parser.add_argument("--bandwidth-mbps", type=float, default=0.0,
                        help="cap per connection and direction in Mbit/s (default 0: none)")
    parser.add_argument("--update-log-size", type=int, default=1000,
                        help="events kept per account and channel for updates.getDifference; "
                             "older ones answer differenceTooLong (default 1000)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
