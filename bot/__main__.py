"""`python -m bot` runs the bot; `python -m bot --sim` (or `rehearse`) rehearses it against
tgsim in one process; `python -m bot rehearse --users N ...` runs the load rehearsal with tgsim
and the bot as separate processes; `python -m bot genkey` prints a fresh SESSION_KEY;
`python -m bot migrate-db --to postgresql://...` moves a SQLite deployment into PostgreSQL;
`python -m bot front` / `python -m bot worker` run the scaled layout's roles over PostgreSQL
(bot/fleet.py).

The rehearsals live in the harness (harness/rehearsal.py, harness/rehearsal_load.py) and are
imported only inside their commands: running the bot never loads tgsim or the harness."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from bot.config import ConfigError, load_settings

USAGE = ("python -m bot [--sim | genkey | front | worker | "
         "rehearse [--users N --jobs M --file-mb S ...] | migrate-db --to postgresql://...]")


def _start_tracemalloc(loop: asyncio.AbstractEventLoop) -> None:
    """BOT_TRACEMALLOC=<dir>: trace allocations and write a snapshot on each SIGUSR1, so a
    harness can diff two moments of a live bot (debug only: tracing costs memory and time)."""
    folder = os.environ.get("BOT_TRACEMALLOC")
    if not folder:
        return
    import tracemalloc

    frames = int(os.environ.get("BOT_TRACEMALLOC_FRAMES", "12"))
    tracemalloc.start(frames)
    os.makedirs(folder, exist_ok=True)
    count = [0]

    def dump() -> None:
        count[0] += 1
        tracemalloc.take_snapshot().dump(os.path.join(folder, f"snap{count[0]:03d}.pickle"))

    loop.add_signal_handler(signal.SIGUSR1, dump)


def _run_bot(settings, role: str | None = None) -> int:
    # Render sends SIGTERM on every deploy, maybe while the heavy imports below still run.
    # Nothing is open during them, so a stop then leaves at once; after them it is noted
    # and honoured at whatever stage start-up has reached.
    early: list[int] = []
    previous = {sig: signal.signal(sig, lambda _signum, _frame: os._exit(0))
                for sig in (signal.SIGTERM, signal.SIGINT)}
    from bot.app import App
    from bot.startup import StartupError

    if role is not None:  # the scaled layout's front or worker (bot/fleet.py)
        from bot.fleet import app_for

        App = app_for(role)  # noqa: N806

    for sig in previous:
        signal.signal(sig, lambda signum, _frame: early.append(signum))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if early:
            stop.set()
        _start_tracemalloc(loop)
        await App(settings).run_forever(stop)

    try:
        asyncio.run(main())
    except ConfigError as e:
        print(f"Configuration error: {e}", file=sys.stderr)
        return 2
    except StartupError as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


class _OneLineParser(argparse.ArgumentParser):
    """A bad flag gets one clear line and exit code 2, not a usage block."""

    def error(self, message: str):
        # argparse quotes what it could not parse: a mistyped flag may carry a URL with its
        # password, so a quoted value is never echoed, only the complaint before it.
        message = message.split(":", 1)[0] if "unrecognized arguments" in message else message
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value
    parse.__name__ = kind.__name__
    return parse


def _parse_rehearse(argv: list[str]):
    from harness.rehearsal_load import FREE_UPLOAD_LIMIT, MB, LoadArgs

    d = LoadArgs()
    p = _OneLineParser(prog="python -m bot rehearse",
                       description="Load rehearsal: tgsim and the bot as processes, simulated "
                                   "users, the bot's RSS sampled, a table of figures.")
    p.add_argument("--users", type=_positive(int), default=d.users, help="simulated users")
    p.add_argument("--jobs", type=_positive(int), default=d.jobs, help="jobs per user")
    p.add_argument("--file-mb", type=_positive(float), default=d.file_mb,
                   help="file size in MB (1,000,000 bytes)")
    p.add_argument("--concurrency", type=_positive(int), default=d.concurrency,
                   help="MAX_CONCURRENT_DOWNLOADS of the bot")
    p.add_argument("--memory-limit-mb", type=_positive(int), default=d.memory_limit_mb,
                   help="MEMORY_LIMIT_MB of the bot; the peak RSS must stay under it")
    p.add_argument("--max-sessions", type=_positive(int), default=None,
                   help="MAX_SESSIONS of the bot (default: its profile's, 5 or 3)")
    p.add_argument("--constrained", action="store_true",
                   help="run the bot in the constrained (Render) profile")
    p.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    p.add_argument("--dir", default=None, help="where to make the work directory")
    a = p.parse_args(argv)
    if a.file_mb * MB > FREE_UPLOAD_LIMIT:
        p.error(f"--file-mb {a.file_mb:g} is over the {FREE_UPLOAD_LIMIT / MB:.0f} MB "
                "a free account or a bot may upload")
    if a.memory_limit_mb < 64:
        p.error("--memory-limit-mb must be at least 64 (the bot refuses less)")
    return LoadArgs(**vars(a))


def _migrate_db(argv: list[str], settings) -> int:
    """Copy the SQLite deployment (DATABASE_PATH) into PostgreSQL; stop the bot first."""
    p = _OneLineParser(prog="python -m bot migrate-db",
                       description="Copy every table of the SQLite database into PostgreSQL "
                                   "(sessions stay encrypted; safe to re-run).")
    p.add_argument("--to", default=settings.database_url or None,
                   help="postgresql://user:password@host:port/db (default: DATABASE_URL)")
    p.add_argument("--from", dest="source", default=settings.database_path,
                   help="the SQLite file (default: DATABASE_PATH)")
    p.add_argument("--force", action="store_true",
                   help="copy even over a target the bot has run on since")
    a = p.parse_args(argv)
    if not a.to or not a.to.startswith(("postgresql://", "postgres://")):
        print("Configuration error: migrate-db needs --to postgresql://... (or DATABASE_URL)",
              file=sys.stderr)
        return 2
    from helpers.database import StorageRefused, StorageUnavailable
    from helpers.storage_migrate import MigrationError, copy_sqlite_to_postgres

    try:
        counts = asyncio.run(copy_sqlite_to_postgres(a.source, a.to, force=a.force))
    except (MigrationError, StorageRefused) as e:
        print(f"Configuration error: {e}", file=sys.stderr)
        return 2
    except StorageUnavailable as e:  # the server is down or unreachable: try again later
        print(str(e), file=sys.stderr)
        return 1
    for table, n in counts.items():
        print(f"{table}: {n} rows")
    print(f"Copied {a.source} into PostgreSQL. Set DATABASE_URL to it and start the bot.")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["genkey"]:
        from helpers.secrets import generate_key

        print(generate_key())
        return 0
    if argv[:1] == ["rehearse"] and argv[1:]:
        from harness.rehearsal_load import run_load

        return run_load(_parse_rehearse(argv[1:]))
    try:
        settings = load_settings(env_file=os.environ.get("CONFIG_ENV", "config.env") or None)
    except ConfigError as e:
        print(f"Configuration error: {e}", file=sys.stderr)
        return 2
    if argv[:1] == ["migrate-db"]:
        return _migrate_db(argv[1:], settings)
    if argv in (["front"], ["worker"]):
        from bot.fleet import check_role

        problem = check_role(settings, argv[0])
        if problem:
            print(f"Configuration error: {problem}", file=sys.stderr)
            return 2
        return _run_bot(settings, argv[0])
    if argv in (["--sim"], ["rehearse"]):
        from harness.rehearsal import rehearse

        return asyncio.run(rehearse(settings))
    if argv:
        # Only a command word is echoed: an argument may be a URL with a password in it.
        word = argv[0] if argv[0].replace("-", "").isalnum() else "that argument"
        print(f"Unknown command: {word}. Use: {USAGE}", file=sys.stderr)
        return 2
    if not settings.has_telegram_credentials:
        missing = ", ".join(settings.missing_credentials())
        if settings.deployed:
            # A forgotten secret on a host must not turn into a loop of rehearsals.
            print(f"Configuration error: {missing} not set (required when deployed; see "
                  "config.env.example)", file=sys.stderr)
            return 2
        print(f"No Telegram credentials: set {missing} (see config.env.example).")
        print("This is a rehearsal, not the bot: it runs against tgsim, the simulated "
              "Telegram on loopback (python -m bot --sim), and exits.\n")
        from harness.rehearsal import rehearse

        return asyncio.run(rehearse(settings))
    return _run_bot(settings)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
