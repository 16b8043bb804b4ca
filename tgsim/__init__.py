"""tgsim: a Telegram-compatible MTProto 2.0 server on loopback, for tests and benchmarks.

It reads and writes with the client library's own TL classes (`pyrogram.raw`), so it always
speaks exactly the client's layer. See ../shared/DESIGN.md and README.md.
"""

from tgsim.server import TgSim

__all__ = ["TgSim"]
