"""`python -m tgsim --port PORT --data DIR`: run the simulator standalone on 127.0.0.1.

DC 2, where a new client starts, listens on PORT; DCs 1, 3, 4, 5 on PORT+1..PORT+4 unless
--dc-ports says otherwise. The ready line names every DC; point the bot at them with
TELEGRAM_SERVER=<that list> (it is printed too)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from tgsim.file_refs import DEFAULT_TTL_S
from tgsim.server import DC_IDS, TgSim


def _dc_ports(text: str) -> dict[int, int]:
    ports: dict[int, int] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        dc, sep, port = entry.partition("=")
        if not sep or not dc.isdigit() or int(dc) not in DC_IDS or int(dc) == 2:
            raise argparse.ArgumentTypeError(f"expected N=PORT with N in 1, 3, 4, 5: {entry!r}")
        if not port.isdigit() or not 0 <= int(port) < 65536:
            raise argparse.ArgumentTypeError(f"bad port in {entry!r}")
        ports[int(dc)] = int(port)
    return ports


async def _main(args: argparse.Namespace) -> int:
    sim = TgSim(args.data, port=args.port, login_code=args.code, dc_ports=args.dc_ports,
                file_reference_ttl=max(0.0, args.file_reference_ttl),
                max_file_requests_per_account=max(0, args.max_file_requests_per_account),
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
    dcs = " ".join(f"DC{dc}={host}:{port}" for dc, (host, port) in sim.dc_table.items())
    print(f"tgsim ready on {sim.address} (key {sim.public_key_path}, bot @{bot.username}) "
          f"{dcs}\nTELEGRAM_SERVER={sim.server_spec}", flush=True)
    await stop.wait()
    await sim.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tgsim", description=__doc__)
    parser.add_argument("--port", type=int, default=8443, help="DC 2's port (default 8443)")
    parser.add_argument("--dc-ports", type=_dc_ports, default=None, metavar="N=PORT,...",
                        help="ports of DCs 1, 3, 4, 5 (default PORT+1..PORT+4, in that order)")
    parser.add_argument("--data", default="tgsim-data")
    parser.add_argument("--code", default="12345", help="the login code every phone receives")
    parser.add_argument("--bot-username", default="sim_downloader_bot")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay added before every RPC answer (default 0)")
    parser.add_argument("--bandwidth-mbps", type=float, default=0.0,
                        help="cap per connection and direction in Mbit/s (default 0: none)")
    parser.add_argument("--file-reference-ttl", type=float, default=DEFAULT_TTL_S,
                        metavar="SECONDS",
                        help="every document/photo's file_reference rotates after this long; "
                             "a stale one gets FILE_REFERENCE_EXPIRED (default 3600; 0: never)")
    parser.add_argument("--max-file-requests-per-account", type=int, default=16,
                        help="upload.getFile/saveFilePart requests one account may have in "
                             "flight before FLOOD_WAIT_1 (default 16; 0: no cap)")
    parser.add_argument("--update-log-size", type=int, default=1000,
                        help="events kept per account and channel for updates.getDifference; "
                             "older ones answer differenceTooLong (default 1000)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
