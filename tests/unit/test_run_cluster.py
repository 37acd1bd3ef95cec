"""scripts/run_cluster.py (`make run-cluster`): the database it starts and the configs it writes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import psycopg

from fixproxy.cluster.localdb import LocalPostgres
from fixproxy.config import load
from tests import pg

ROOT = Path(__file__).resolve().parents[2]


def test_configs_written_per_instance_and_database_kept() -> None:
    """Each instance gets its own state, ports and [cluster] name on one durable database; it is stopped after."""
    home = pg.server_home()
    try:
        done = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "run_cluster.py"), "--dir", str(home), "--configs-only"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        template = load(ROOT / "cfg" / "fixproxy.toml", secrets=False)
        a = load(home / "a" / "fixproxy.toml", secrets=False)
        b = load(home / "b" / "fixproxy.toml", secrets=False)
        assert a.config.cluster is not None and b.config.cluster is not None
        assert (a.config.cluster.instance, b.config.cluster.instance) == ("a", "b")
        assert a.config.cluster.url == b.config.cluster.url
        assert (a.state_dir, b.state_dir) == (home / "a" / "state", home / "b" / "state")
        ports = [(c.config.acceptor.port, c.config.admin.http_port, c.config.venues[0].port) for c in (template, a, b)]
        assert ports[1] == tuple(p + 100 for p in ports[0])
        assert ports[2] == tuple(p + 200 for p in ports[0])
        assert a.instruments == template.instruments == b.instruments
        assert a.positions == template.positions and template.positions and b.positions == ()

        assert "fsync" not in (home / "pg" / "data" / "fixproxy.conf").read_text()  # durable: the defaults
        port = int(a.config.cluster.url.rsplit(":", 1)[1].split("/", 1)[0])
        db = LocalPostgres(home / "pg", port=port, durable=True)
        assert not db.running  # stopped by the script
        with db:
            assert db.url() == a.config.cluster.url
            with psycopg.connect(db.url(), connect_timeout=10) as conn:
                assert conn.execute("SHOW fsync").fetchone() == ("on",)
    finally:
        LocalPostgres(home / "pg").stop()
        shutil.rmtree(home, ignore_errors=True)
