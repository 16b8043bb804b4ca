"""`python -m bot` runs the bot; `python -m bot --sim` rehearses it against tgsim;
`python -m bot genkey` prints a fresh SESSION_KEY."""

from __future__ import annotations

import asyncio
import signal
import sys

from bot.config import ConfigError, load_settings


def _run_bot(settings) -> int:
    from bot.app import App

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await App(settings).run_forever(stop)

    try:
        asyncio.run(main())
    except ConfigError as e:
        print(f"Configuration error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["genkey"]:
        from helpers.secrets import generate_key

        print(generate_key())
        return 0
    try:
        settings = load_settings()
    except ConfigError as e:
        print(f"Configuration error: {e}", file=sys.stderr)
        return 2
    if argv[:1] == ["--sim"] or argv[:1] == ["rehearse"]:
        from bot.rehearsal import rehearse

        return asyncio.run(rehearse(settings))
    if argv:
        print(f"Unknown arguments: {' '.join(argv)}. Use: python -m bot [--sim | genkey]",
              file=sys.stderr)
        return 2
    if not settings.has_telegram_credentials:
        missing = ", ".join(settings.missing_credentials())
        print(f"No Telegram credentials: set {missing} (see config.env.example).")
        print("Meanwhile, here is the bot rehearsing against tgsim, the simulated Telegram "
              "on loopback (python -m bot --sim):\n")
        from bot.rehearsal import rehearse

        return asyncio.run(rehearse(settings))
    return _run_bot(settings)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
