"""PostgreSQL fixtures (a pytest plugin loaded by tests/conftest.py; docs/testing.md).

``pg_server``: one throwaway server for the whole run. ``pg_url``: a fresh database on it per test.
``own_pg``: a server of the test's own, for tests that stop and restart the database.
Each server lives in a ``fixproxy-pg-*`` directory of the system's temporary directory (pytest's
own is private to root, and as root the server runs as the postgres user), with an ``owner`` file
naming the pytest process. A run killed before it stopped its servers leaves them behind; the next
run stops those (by pid) and removes their directories before it starts its own.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fixproxy.cluster.localdb import LocalPostgres, pid_alive

PREFIX = "fixproxy-pg-"
_db_ids = itertools.count(1)
_swept = False


def sweep_leftovers() -> None:
    """Stop the servers of earlier runs whose pytest is gone, and remove their directories."""
    for directory in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            owner = int((directory / "owner").read_text().strip())
        except (OSError, ValueError):
            continue  # not made here, or not yet written
        if owner == os.getpid() or pid_alive(owner):
            continue
        LocalPostgres(directory / "pg").stop()
        shutil.rmtree(directory, ignore_errors=True)


def server_home() -> Path:
    """A new directory for a server, owned by this run (the first call sweeps dead runs' servers)."""
    global _swept
    if not _swept:
        sweep_leftovers()
        _swept = True
    home = Path(tempfile.mkdtemp(prefix=PREFIX))
    home.chmod(0o711)  # mkdtemp's is private; as root the server runs as postgres, which must pass through
    (home / "owner").write_text(f"{os.getpid()}\n")
    return home


@contextmanager
def local_server(*, durable: bool = False) -> Iterator[LocalPostgres]:
    """A started server in a new home, stopped by its pid and its directory removed after."""
    home = server_home()
    server = LocalPostgres(home / "pg", durable=durable)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if not server.running:
            shutil.rmtree(home, ignore_errors=True)


@contextmanager
def fresh_database(server: LocalPostgres, label: str) -> Iterator[str]:
    """The URL of a new empty database on ``server``, dropped after."""
    name = (f"t{next(_db_ids)}_" + re.sub(r"[^a-z0-9]+", "_", label.lower()))[:63].rstrip("_")
    url = server.create_database(name)
    try:
        yield url
    finally:
        if server.running:
            server.drop_database(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[LocalPostgres]:
    """One PostgreSQL server for the whole run, stopped by its pid at the end."""
    with local_server() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: LocalPostgres, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a database made for this test alone on ``pg_server``, dropped after it."""
    with fresh_database(pg_server, request.node.name) as url:
        yield url


@pytest.fixture
def own_pg() -> Iterator[LocalPostgres]:
    """A started PostgreSQL server of this test's own (stop and restart it at will), stopped by pid after."""
    with local_server() as server:
        yield server
