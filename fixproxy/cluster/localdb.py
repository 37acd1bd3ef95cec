"""A PostgreSQL server of our own on a directory, for tests, the benchmark and ``make run-cluster``.

``LocalPostgres(directory)`` keeps its data in ``directory/data``, its unix socket and log in
``directory``, listens on 127.0.0.1 only, trusts every loopback connection and has one superuser,
``fixproxy``. Run as root, the server runs as the ``postgres`` system user (initdb refuses root).
It is stopped by its process id (postmaster.pid), never by name.

``python -m fixproxy.cluster.localdb --dir D [--port P]`` runs one in the foreground until SIGINT or
SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from ..sim.process import free_port

#: The superuser initdb makes; every URL connects as it.
SUPERUSER = "fixproxy"
#: The database made with the cluster, the default of ``url()``.
DEFAULT_DB = "fixproxy"
#: The system user the server runs as when we are root.
SYSTEM_USER = "postgres"
#: Written by start() at every start and included from postgresql.conf.
OUR_CONF = "fixproxy.conf"
#: Settings for a throwaway server: a crash may lose it, nothing else may.
FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class LocalPostgresError(RuntimeError):
    """PostgreSQL is missing, or the server would not start or stop."""


#: Debian's layout: one <version>/bin per installed major version.
DEBIAN_ROOT = Path("/usr/lib/postgresql")


def find_bin_dir(debian_root: Path = DEBIAN_ROOT) -> Path:
    """The directory of initdb, pg_ctl and postgres: initdb's on PATH, else the newest Debian layout."""
    on_path = shutil.which("initdb")
    if on_path:
        for candidate in (Path(on_path).resolve().parent, Path(on_path).parent):
            if (candidate / "pg_ctl").exists() and (candidate / "postgres").exists():
                return candidate
    found = [p.parent for p in debian_root.glob("*/bin/initdb")]
    found = [d for d in found if (d / "pg_ctl").exists() and (d / "postgres").exists()]
    if not found:
        raise LocalPostgresError(
            f"PostgreSQL is not installed: no initdb on PATH nor under {debian_root}/*/bin; "
            "install Debian's package `postgresql` (`make postgresql` does)"
        )
    return max(found, key=lambda d: [int(x) for x in re.findall(r"\d+", d.parent.name)] or [0])


def pid_alive(pid: int) -> bool:
    """Whether the process runs (a zombie counts as ended: nobody may be reaping it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _is_postgres(pid: int) -> bool:
    try:
        return b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class LocalPostgres:
    """One PostgreSQL server on ``directory``: ``start()``, ``url()``, ``stop()`` by pid, ``restart()``."""

    def __init__(
        self,
        directory: str | Path,
        *,
        port: int = 0,
        durable: bool = False,
        start_timeout_s: float = 60.0,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self.directory = Path(directory).absolute()
        self.data_dir = self.directory / "data"
        self.log_path = self.directory / "postgres.log"
        #: 0 until start() picks a free one; kept across restarts so URLs stay valid.
        self.port = port
        self._port_given = port != 0
        self.durable = durable
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._as_system_user = os.geteuid() == 0
        self._bin: Path | None = None
        self._started_pid: int | None = None

    # --- what it is -----------------------------------------------------------------------------

    @property
    def socket_dir(self) -> Path:
        return self.directory

    @property
    def pid(self) -> int | None:
        """The postmaster's process id, from postmaster.pid; None when there is no such file."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0].strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return int(first) if first.isdigit() else None

    @property
    def running(self) -> bool:
        pid = self.pid
        return pid is not None and pid_alive(pid) and _is_postgres(pid)

    def url(self, dbname: str = DEFAULT_DB) -> str:
        if not self.port:
            raise LocalPostgresError(f"{self.directory}: not started yet, so it has no port")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    # --- life -----------------------------------------------------------------------------------

    def start(self) -> LocalPostgres:
        """Make the cluster if the directory is new, then start the server and wait until it accepts."""
        if self.running:
            if self.pid == self._started_pid:
                return self
            self.stop()  # left running by a run killed before it stopped it: start afresh, on our settings
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._as_system_user:
            self._prepare_for_system_user()
        fresh = not (self.data_dir / "PG_VERSION").exists()
        if fresh:
            self._initdb()
        tries = 1 if self._port_given else 3
        for attempt in range(tries):
            if not self._port_given and (not self.port or attempt):
                self.port = free_port()
            self._write_conf()
            failure = self._pg_ctl_start()
            if failure is None:
                break
            if attempt == tries - 1 or "could not bind" not in failure:
                raise LocalPostgresError(f"{self.directory}: PostgreSQL did not start:\n{failure}")
        self._started_pid = self.pid
        self._port_given = True  # a restart keeps this port (the URL others hold) or fails, never moves
        if fresh:
            self.create_database(DEFAULT_DB)
        return self

    def stop(self) -> None:
        """Stop the server by its pid: SIGINT (fast shutdown), then SIGKILL after ``stop_timeout_s``."""
        pid = self.pid
        if pid is None or not pid_alive(pid) or not _is_postgres(pid):
            return
        os.kill(pid, signal.SIGINT)
        if self._wait_gone(pid, self.stop_timeout_s):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        if not self._wait_gone(pid, 10.0):
            raise LocalPostgresError(f"{self.directory}: PostgreSQL (pid {pid}) did not end after SIGKILL")

    def restart(self) -> LocalPostgres:
        """Stop, then start on the same data directory and port."""
        self.stop()
        return self.start()

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- databases ------------------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Make an empty database; returns its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending the sessions still connected to it."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    # --- inside ---------------------------------------------------------------------------------

    def _tool(self, name: str) -> str:
        if self._bin is None:
            self._bin = find_bin_dir()
        return str(self._bin / name)

    def _run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        if self._as_system_user:
            argv = self._as_postgres() + argv
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        env.pop("PGDATA", None)
        return subprocess.run(
            argv, cwd=self.directory, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def _as_postgres(self) -> list[str]:
        if shutil.which("setpriv"):
            return ["setpriv", f"--reuid={SYSTEM_USER}", f"--regid={SYSTEM_USER}", "--init-groups", "--"]
        if shutil.which("runuser"):
            return ["runuser", "-u", SYSTEM_USER, "--"]
        raise LocalPostgresError("running as root needs setpriv or runuser (util-linux) to run PostgreSQL")

    def _prepare_for_system_user(self) -> None:
        try:
            user = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise LocalPostgresError(
                f"running as root, PostgreSQL runs as the `{SYSTEM_USER}` system user, and there is none: "
                "install Debian's package `postgresql`"
            ) from None
        os.chown(self.directory, user.pw_uid, user.pw_gid)
        if self._run(["test", "-w", str(self.directory), "-a", "-x", str(self.directory)], 10).returncode:
            raise LocalPostgresError(
                f"{self.directory}: the `{SYSTEM_USER}` user cannot reach it; "
                "let it traverse the parent directories (chmod o+x) or use a directory under /tmp"
            )

    def _initdb(self) -> None:
        argv = [
            self._tool("initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ]
        done = self._run(argv, 300)
        if done.returncode:
            raise LocalPostgresError(f"{self.directory}: initdb failed:\n{done.stdout}{done.stderr}")
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(f"\ninclude_if_exists = '{OUR_CONF}'\n")

    def _write_conf(self) -> None:
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": _quote(str(self.socket_dir)),
        }
        if not self.durable:
            settings.update(FAST)
        path = self.data_dir / OUR_CONF
        path.write_text(
            "# written by fixproxy.cluster.localdb at every start\n"
            + "".join(f"{k} = {v}\n" for k, v in settings.items())
        )
        if self._as_system_user:
            user = pwd.getpwnam(SYSTEM_USER)
            os.chown(path, user.pw_uid, user.pw_gid)

    def _pg_ctl_start(self) -> str | None:
        """None once the server accepts connections, else what went wrong."""
        argv = [
            self._tool("pg_ctl"),
            "start",
            "-w",
            "-t",
            str(int(self.start_timeout_s)),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
        ]
        try:
            done = self._run(argv, self.start_timeout_s + 30)
        except subprocess.TimeoutExpired:
            self.stop()
            return f"pg_ctl start did not return within {self.start_timeout_s + 30:.0f} s"
        if done.returncode == 0 and self.running:
            return None
        self.stop()  # pg_ctl may give up on a server that is still coming up
        return f"{done.stdout}{done.stderr}{_tail(self.log_path)}"

    @staticmethod
    def _wait_gone(pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while pid_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fixproxy.cluster.localdb",
        description="Run a PostgreSQL server of our own on a directory until SIGINT or SIGTERM.",
    )
    parser.add_argument("--dir", required=True, help="its directory: data in DIR/data, socket and log in DIR")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one)")
    parser.add_argument(
        "--durable",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep PostgreSQL's durability settings (default); --no-durable turns fsync off, as the tests do",
    )
    args = parser.parse_args(argv)
    stop_now: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stop_now.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server = LocalPostgres(args.dir, port=args.port, durable=args.durable)
    try:
        server.start()
        print(f"PostgreSQL {server.url()} (pid {server.pid}, log {server.log_path})", flush=True)
        while not stop_now and server.running:
            time.sleep(0.2)
    except LocalPostgresError as exc:
        print(f"localdb: {exc}", file=sys.stderr)
        return 1
    finally:
        server.stop()
    if not stop_now:
        print(f"localdb: PostgreSQL ended by itself; see {server.log_path}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
