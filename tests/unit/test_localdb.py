"""The throwaway PostgreSQL (fixproxy/cluster/localdb.py) and its pytest fixtures (tests/pg.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from fixproxy.cluster import localdb
from fixproxy.cluster.localdb import LocalPostgres, LocalPostgresError, pid_alive
from tests import pg


def _value(url: str, query: str) -> object:
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def _databases(server: LocalPostgres) -> set[str]:
    with psycopg.connect(server.url("postgres"), connect_timeout=10) as conn:
        return {name for (name,) in conn.execute("SELECT datname FROM pg_database")}


def test_pg_url_is_a_fresh_database_on_loopback(pg_url: str, pg_server: LocalPostgres) -> None:
    """A test's database is empty, reached on 127.0.0.1 as the fixproxy superuser, without durability."""
    assert pg_url.startswith(f"postgresql://fixproxy@127.0.0.1:{pg_server.port}/")
    assert _value(pg_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
    assert _value(pg_url, "SELECT current_user") == "fixproxy"
    assert _value(pg_url, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is True
    assert _value(pg_url, "SHOW fsync") == "off"
    assert _value(pg_url, "SHOW listen_addresses") == "127.0.0.1"
    assert _value(pg_url, "SHOW unix_socket_directories") == str(pg_server.socket_dir)


def test_fresh_database_dropped_after_use_with_a_session_open(pg_server: LocalPostgres) -> None:
    """pg_url's database is dropped after its test even while a connection to it is still open."""
    with pg.fresh_database(pg_server, "Dropped after[use]") as url:
        name = url.rsplit("/", 1)[1]
        assert name in _databases(pg_server)
        left_open = psycopg.connect(url)
    try:
        assert name not in _databases(pg_server)
    finally:
        left_open.close()


def test_stop_ends_the_server_process(own_pg: LocalPostgres) -> None:
    """stop() ends the postmaster by its pid; the URL no longer connects and postmaster.pid is gone."""
    pid = own_pg.pid
    assert pid is not None and pid_alive(pid) and own_pg.running
    own_pg.stop()
    assert not pid_alive(pid)
    assert not own_pg.running
    assert own_pg.pid is None
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(own_pg.url(), connect_timeout=5).close()


def test_restart_keeps_data_and_url(own_pg: LocalPostgres) -> None:
    """A restart runs a new postmaster on the same data directory and port: committed rows are there."""
    url = own_pg.url()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    before = own_pg.pid
    own_pg.restart()
    assert own_pg.url() == url
    assert before is not None and not pid_alive(before) and own_pg.pid != before
    assert _value(url, "SELECT x FROM kept") == 42


def test_durable_server_keeps_postgresql_defaults() -> None:
    """durable=True leaves fsync, synchronous_commit and full_page_writes on."""
    with pg.local_server(durable=True) as server:
        assert _value(server.url(), "SHOW fsync") == "on"
        assert _value(server.url(), "SHOW synchronous_commit") == "on"
        assert _value(server.url(), "SHOW full_page_writes") == "on"
        pid = server.pid
    assert pid is not None and not pid_alive(pid)
    assert not server.directory.exists()


def test_start_over_a_server_left_running_replaces_it(own_pg: LocalPostgres) -> None:
    """A start on a directory whose server a killed run left running stops that one first."""
    leftover = own_pg.pid
    other = LocalPostgres(own_pg.directory)
    try:
        other.start()
        assert leftover is not None and not pid_alive(leftover)
        assert other.running and other.pid != leftover
        assert _value(other.url(), "SELECT 1") == 1
    finally:
        other.stop()


def test_sweep_stops_servers_of_a_dead_run() -> None:
    """A server whose pytest is gone (its owner pid ended) is stopped by pid and its directory removed."""
    home = pg.server_home()
    server = LocalPostgres(home / "pg")
    try:
        server.start()
        pid = server.pid
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        (home / "owner").write_text(dead.stdout)
        pg.sweep_leftovers()
        assert pid is not None and not pid_alive(pid)
        assert not home.exists()
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_sweep_leaves_live_runs_alone(own_pg: LocalPostgres) -> None:
    """A server whose owner still runs (this pytest, or another at the same time) is not touched."""
    pg.sweep_leftovers()
    assert own_pg.running
    assert _value(own_pg.url(), "SELECT 1") == 1


def test_missing_postgresql_names_the_debian_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without initdb on PATH nor in Debian's layout, the error names Debian's postgresql package."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalPostgresError, match="package `postgresql`"):
        localdb.find_bin_dir(tmp_path)


def test_newest_debian_version_chosen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With initdb only in Debian's layout, the newest major version's bin directory is used."""
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    for version in ("9.6", "15", "13"):
        bin_dir = tmp_path / version / "bin"
        bin_dir.mkdir(parents=True)
        for tool in ("initdb", "pg_ctl", "postgres"):
            (bin_dir / tool).touch()
    assert localdb.find_bin_dir(tmp_path) == tmp_path / "15" / "bin"


def test_command_line_runs_until_sigterm() -> None:
    """`python -m fixproxy.cluster.localdb --dir D` serves until SIGTERM, then stops the server by pid."""
    home = pg.server_home()
    child = subprocess.Popen(
        [sys.executable, "-m", "fixproxy.cluster.localdb", "--dir", str(home / "pg"), "--no-durable"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        url = child.stdout.readline().split()[1]
        assert _value(url, "SELECT 1") == 1
        pid = LocalPostgres(home / "pg").pid
        child.terminate()
        assert child.wait(60) == 0
        assert pid is not None and not pid_alive(pid)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        LocalPostgres(home / "pg").stop()
        shutil.rmtree(home, ignore_errors=True)
