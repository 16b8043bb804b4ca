"""A throwaway PostgreSQL cluster for tests and benchmarks: initdb in a temp directory,
pg_ctl start on a free loopback port, and everything removed at stop.

initdb and pg_ctl refuse to run as root (PostgreSQL will not own its data as the
superuser of the machine), so as root they run as the distribution package's `postgres`
user (`runuser -u postgres --`), and the temp directory is handed to that user. The cluster
trusts loopback connections (it lives for one test run and listens on 127.0.0.1 only), and
runs with fsync off: a lost cluster costs a test run, never data.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SUPERUSER = "postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine (or no user to run them as)."""


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres: PATH first, then Debian's
    /usr/lib/postgresql/<version>/bin (newest), where the server package puts them
    without linking them onto PATH."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                        key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0)
    for pg_ctl in reversed(candidates):
        bindir = Path(pg_ctl).parent
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return bindir
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin; "
        "install them: apt-get install -y postgresql")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """start() -> url(); create_database(name) -> its URL; stop() removes everything."""

    def __init__(self, bindir: Path | None = None):
        self.bindir = bindir or find_bindir()
        self.port: int | None = None
        self.root: Path | None = None
        self._as_root = os.geteuid() == 0
        self._serial = 0

    # running the binaries ---------------------------------------------------------------
    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", SUPERUSER, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def _check(self, proc: subprocess.CompletedProcess, what: str) -> None:
        if proc.returncode != 0:
            log = ""
            if self.root and (self.root / "server.log").exists():
                log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr.strip()}\n{log}")

    # lifecycle ----------------------------------------------------------------------------
    def start(self) -> "PostgresCluster":
        self.root = Path(tempfile.mkdtemp(prefix="pgtest-"))
        if self._as_root:
            try:
                pw = pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root and there is no {SUPERUSER!r} user to run initdb as") from None
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            # the parent temp dir must be traversable by that user (it is: /tmp is 1777)
        data = self.root / "data"
        self._check(self._run("initdb", "-D", str(data), "-U", SUPERUSER, "--auth=trust",
                              "-E", "UTF8", "--locale=C", "--no-sync"), "initdb")
        last = None
        for _ in range(5):  # a free port can be taken between the probe and the bind
            self.port = _free_port()
            opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                    "-c max_connections=200 -c shared_buffers=32MB")
            proc = self._run("pg_ctl", "-D", str(data), "-l", str(self.root / "server.log"),
                             "-o", opts, "-w", "-t", "60", "start")
            if proc.returncode == 0:
                return self
            last = proc
        self._check(last, "pg_ctl start")
        return self

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            if self.port is not None:
                self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w",
                          "stop", timeout=60)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            self.port = None

    def __enter__(self) -> "PostgresCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # databases ----------------------------------------------------------------------------
    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        """A fresh, empty database; returns its URL. Each test takes its own, so tests
        never see each other's rows and need no cleanup beyond the cluster's removal."""
        if name is None:
            self._serial += 1
            name = f"t{os.getpid()}_{self._serial}_{int(time.time() * 1000) % 100000}"
        proc = subprocess.run(
            [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
             "-U", SUPERUSER, "-T", "template0", name],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        self._check(proc, f"createdb {name}")
        return self.url(name)

    def drop_database(self, url_or_name: str) -> None:
        """Remove a database made by create_database (its connections are ended first), so
        a long run does not keep one copy of template0 (about 7 MB) per test on disk."""
        name = url_or_name.rsplit("/", 1)[-1]
        proc = subprocess.run(
            [str(self.bindir / "dropdb"), "-h", "127.0.0.1", "-p", str(self.port),
             "-U", SUPERUSER, "--force", "--if-exists", name],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        self._check(proc, f"dropdb {name}")
