#!/usr/bin/env python3
"""Halt-to-last-cancel: how long from a halt-and-cancel command to the last cancel, for N working orders.

    .venv/bin/python -m bench halt --orders 1000 [--out var/bench/halt.json]

N orders rest at the venue simulator (behaviour ack); then POST /api/v1/kill-switch halt_and_cancel
on their account. Reported: the command's round trip (the proxy answers once every cancel has been
handed to the venue session), until the venue simulator has read the last cancel, and until the
OMS has the last cancel report. Everything on 127.0.0.1; every process stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import REPO
from fixproxy.sim.process import Proc, fixproxy_command, free_port

RISK_TOKEN = "halt-bench-risk-token-0123456789"


def write_config(root: Path, acceptor: int, venue: int, http: int) -> Path:
    """The soak's config (scripts/soak.py: audit store on, checkpoint key outside the state folder),
    with a risk token for the halt."""
    shutil.copy(REPO / "cfg" / "instruments.csv", root / "instruments.csv")
    (root / "audit.key").write_text("halt-bench-audit-checkpoint-key-0123\n")
    path = root / "fixproxy.toml"
    path.write_text(f"""
[proxy]
state_dir = "var"
engine = "quickfix"
[acceptor]
port = {acceptor}
[[oms]]
name = "oms1"
comp_id = "OMS1"
default_venue = "sim"
[[venues]]
name = "sim"
port = {venue}
[risk]
instruments = "instruments.csv"
self_match = "off"
sell_below_zero_is_short = false
[limits.firm]
max_order_qty = 10000
price_collar_pct = 5
[audit]
enabled = true
key_file = "audit.key"
[admin]
http_port = {http}
[[admin.tokens]]
name = "bench"
role = "risk"
token = "{RISK_TOKEN}"
""")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--orders", type=int, default=1000)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="fixproxy-halt-"))
    acceptor, venue_port, http = free_port(), free_port(), free_port()
    config = write_config(root, acceptor, venue_port, http)
    procs: list[Proc] = []
    try:
        venue = Proc(
            "venue",
            fixproxy_command(
                "sim", "venue", "--config", str(config), "--default", "ack", "--state-dir", str(root / "venue")
            ),
            root,
        )
        procs.append(venue)
        venue.wait_for(lambda r: r.get("event") == "listening", 30)
        proxy = Proc("proxy", fixproxy_command("run", "--config", str(config)), root)
        procs.append(proxy)
        proxy.wait_for(lambda r: r.get("event") == "session_up" and r.get("detail") == "sim", 30)
        oms = Proc(
            "oms",
            fixproxy_command("sim", "oms", "--config", str(config), "--stdin", "--state-dir", str(root / "oms")),
            root,
            stdin=True,
        )
        procs.append(oms)
        oms.wait_for(lambda r: r.get("event") == "logon", 30)
        for i in range(args.orders):
            oms.send_line(f"35=D|11=H{i}|55=MSFT|54=1|38=10|40=2|44=410|1=HALTME")
        deadline = time.monotonic() + 120
        while sum(1 for r in oms.snapshot() if r.get("dir") == "in" and r["fields"].get("39") == "0") < args.orders:
            if time.monotonic() > deadline:
                raise SystemExit("the orders were not all acknowledged within 120 s")
            time.sleep(0.1)

        body = json.dumps({"scope": "account:HALTME", "action": "halt_and_cancel", "reason": "benchmark"}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{http}/api/v1/kill-switch",
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {RISK_TOKEN}", "Content-Type": "application/json"},
        )
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=120) as r:
            result = json.load(r)
        t_command = time.perf_counter() - t0

        def count(proc: Proc, **tags) -> int:
            return sum(
                1
                for r in proc.snapshot()
                if r.get("dir") == "in" and all(r["fields"].get(k) == v for k, v in tags.items())
            )

        t_venue = t_oms = None
        while time.perf_counter() - t0 < 120 and (t_venue is None or t_oms is None):
            if t_venue is None and count(venue, **{"35": "F"}) >= args.orders:
                t_venue = time.perf_counter() - t0
            if t_oms is None and count(oms, **{"35": "8", "39": "4"}) >= args.orders:
                t_oms = time.perf_counter() - t0
            time.sleep(0.005)
        report = {
            "working_orders": args.orders,
            "orders_cancelled": result.get("orders_cancelled"),
            "command_round_trip_ms": round(t_command * 1000, 1),
            "last_cancel_read_by_venue_ms": round(t_venue * 1000, 1) if t_venue else None,
            "last_cancel_report_at_oms_ms": round(t_oms * 1000, 1) if t_oms else None,
            "note": "venue/OMS times include the simulators' JSON printing and this script's 5 ms polling",
        }
        print(json.dumps(report, indent=2))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n")
        return 0 if result.get("orders_cancelled") == args.orders and t_venue else 1
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
