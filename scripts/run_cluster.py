#!/usr/bin/env python3
"""Two proxies sharing one firm's limits and kill switch through one PostgreSQL, on one machine.

    make run-cluster            (FIXPROXY_DESK_PASSWORD from var/desk-password, as `make run`)
    .venv/bin/python scripts/run_cluster.py --config cfg/fixproxy.toml [--dir var/cluster]

Starts a PostgreSQL of our own on DIR/pg (durable: it keeps the cluster's tables between runs),
writes one config per instance from the given one under DIR/<instance>/fixproxy.toml (its own
state, the acceptor, HTTP and venue ports moved by --port-step per instance, ``[cluster]`` pointing
at the database) and runs each with ``fixproxy run --with-venue-sim``, their output prefixed with
the instance's name. Ctrl-C (or SIGTERM) stops the proxies, then the database by its pid; so does
any of them ending.
"""

from __future__ import annotations

import argparse
import copy
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import IO, Any

import tomli_w

from fixproxy.cluster.localdb import LocalPostgres, LocalPostgresError
from fixproxy.config import ConfigError, LoadedConfig, load

ROOT = Path(__file__).resolve().parent.parent


def derive(
    template: Path, loaded: LoadedConfig, directory: Path, name: str, offset: int, db_url: str, *, first: bool
) -> Path:
    """Write ``directory/name/fixproxy.toml``: the template with its own state, ports and ``[cluster]``."""
    cfg: dict[str, Any] = copy.deepcopy(tomllib.loads(template.read_text()))
    home = directory / name
    home.mkdir(parents=True, exist_ok=True)
    eff = loaded.config

    def rel(path_in_template: str) -> str:
        return os.path.relpath((template.parent / path_in_template).resolve(), home.resolve())

    cfg.setdefault("proxy", {})["state_dir"] = "state"
    acceptor = cfg.setdefault("acceptor", {})
    acceptor["port"] = eff.acceptor.port + offset
    if eff.acceptor.quickfix_port:
        acceptor["quickfix_port"] = eff.acceptor.quickfix_port + offset
    cfg["venues"] = [{**raw, "port": venue.port + offset} for raw, venue in zip(cfg["venues"], eff.venues, strict=True)]
    if eff.admin.http_port:
        cfg.setdefault("admin", {})["http_port"] = eff.admin.http_port + offset
    risk = cfg.setdefault("risk", {})
    risk["instruments"] = rel(eff.risk.instruments)
    # Start-of-day positions are facts of the instance that holds them: loaded by the first only, so
    # the firm-wide view does not count them twice.
    risk["positions"] = rel(eff.risk.positions) if eff.risk.positions and first else ""
    if "audit" in cfg:
        cfg["audit"]["path"] = ""  # each instance's own store, in its state dir
        if eff.audit.key_file:
            cfg["audit"]["key_file"] = rel(eff.audit.key_file)
    cfg["cluster"] = {**cfg.get("cluster", {}), "url": db_url, "instance": name}
    path = home / "fixproxy.toml"
    path.write_text(f"# written by scripts/run_cluster.py from {template}: instance {name!r}\n" + tomli_w.dumps(cfg))
    return path


def _relay(prefix: str, stream: IO[bytes]) -> None:
    for line in iter(stream.readline, b""):
        sys.stdout.write(f"[{prefix}] {line.decode(errors='replace')}")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", default=str(ROOT / "cfg" / "fixproxy.toml"), help="the config both derive from")
    parser.add_argument("--dir", default=str(ROOT / "var" / "cluster"), help="where the database and configs go")
    parser.add_argument("--instances", nargs="+", default=["a", "b"], help="instance names (default: a b)")
    parser.add_argument("--port-step", type=int, default=100, help="port offset between instances (default 100)")
    parser.add_argument("--db-port", type=int, default=0, help="PostgreSQL's port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--configs-only", action="store_true", help="start the database, write the configs, stop")
    args = parser.parse_args(argv)

    template = Path(args.config).resolve()
    directory = Path(args.dir).absolute()
    try:
        loaded = load(template, secrets=False)
    except ConfigError as exc:
        print(f"run-cluster: bad configuration: {exc}", file=sys.stderr)
        return 2
    db = LocalPostgres(directory / "pg", port=args.db_port, durable=True)
    stopping: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, _frame: stopping.append(signum))
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        try:
            db.start()
        except LocalPostgresError as exc:
            print(f"run-cluster: {exc}", file=sys.stderr)
            return 1
        print(f"run-cluster: PostgreSQL {db.url()} (pid {db.pid}; data {db.data_dir}, log {db.log_path})")
        configs = {
            name: derive(template, loaded, directory, name, args.port_step * (i + 1), db.url(), first=i == 0)
            for i, name in enumerate(args.instances)
        }
        for name, path in configs.items():
            cfg = load(path, secrets=False).config
            http = f"http://{cfg.admin.http_host}:{cfg.admin.http_port}/" if cfg.admin.http_port else "off"
            print(
                f"run-cluster: instance {name}: config {path}; OMS and risk-desk sessions on 127.0.0.1:"
                f"{cfg.acceptor.port} (TargetCompID {cfg.acceptor.comp_id}); dashboard and HTTP API {http}; "
                "venue simulators " + ", ".join(f"{v.name} on {v.port}" for v in cfg.venues)
            )
        if args.configs_only:
            return 0
        for name, path in configs.items():
            child = subprocess.Popen(
                [sys.executable, "-m", "fixproxy", "run", "--config", str(path), "--with-venue-sim"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches this script alone: it stops them in order
            )
            children[name] = child
            assert child.stdout is not None
            threading.Thread(target=_relay, args=(name, child.stdout), daemon=True).start()
            print(f"run-cluster: instance {name} started (pid {child.pid}); Ctrl-C stops everything")
        while not stopping:
            ended = [name for name, child in children.items() if child.poll() is not None]
            if ended:
                print(f"run-cluster: instance {ended[0]} ended (exit {children[ended[0]].returncode}); stopping")
                break
            time.sleep(0.2)
        return 0 if stopping else 1
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        db.stop()
        print(f"run-cluster: stopped ({len(children)} instance(s) and PostgreSQL)")


if __name__ == "__main__":
    raise SystemExit(main())
