"""Free loopback ports, and the addresses of tgsim's DCs on them."""

from __future__ import annotations

import contextlib
import socket

TGSIM_DCS = (1, 2, 3, 4, 5)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tgsim_port_args() -> tuple[dict[int, int], list[str]]:
    """Free loopback ports for each of tgsim's DCs (all held open while picked, so no two are
    the same) and the `python -m tgsim` arguments that use them."""
    with contextlib.ExitStack() as stack:
        ports = {}
        for dc in TGSIM_DCS:
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports[dc] = s.getsockname()[1]
    return ports, ["--port", str(ports[2]), "--dc-ports",
                   ",".join(f"{dc}={p}" for dc, p in ports.items() if dc != 2)]


def server_spec(table: dict[int, tuple[str, int]]) -> str:
    """The bot's TELEGRAM_SERVER for a DC table: DC 2 first, then N=host:port."""
    host, port = table[2]
    return ",".join([f"{host}:{port}"] + [f"{dc}={h}:{p}" for dc, (h, p)
                                          in sorted(table.items()) if dc != 2])
