#!/usr/bin/env python3
"""Soak: orders with random cancels, replaces and partial fills for N minutes, the proxy killed
with SIGKILL at random moments and restarted, then a reconciliation that must come out exact.

    .venv/bin/python scripts/soak.py --minutes 3 --rate 20 --kills 4

Reconciliation:
- every order the OMS sent has exactly one final outcome (rejected, filled or cancelled) and no
  order's final report arrived twice;
- the venue received exactly the orders the OMS saw forwarded, none twice;
- the proxy's positions equal the sum of the fills the OMS received;
- the audit chain verifies.
Everything runs on 127.0.0.1 with free ports, in a temporary folder; every process is stopped by
its pid at the end. Exit status 0 only if the reconciliation is exact.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKEN = "soak-viewer-token-0123456789"
# symbol -> (limit price, venue simulator behaviour); RSTR is restricted, so the proxy refuses it.
SYMBOLS = {"AAPL": ("190", "fill"), "MSFT": ("410", "ack"), "NVDA": ("120", "partial"), "JPM": ("200", "ack"),
           "RSTR": ("40", "fill")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A fixproxy child process whose JSON output lines are collected."""

    def __init__(self, args: list[str], cwd: Path, stdin: bool = False):
        self.lines: list[dict] = []
        self.text: list[str] = []  # the last lines, for a failure report
        self.lock = threading.Lock()
        self.popen = subprocess.Popen([sys.executable, "-m", "fixproxy", *args], cwd=cwd, text=True, bufsize=1,
                                      stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        for stream in (self.popen.stdout, self.popen.stderr):
            threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            with self.lock:
                self.text.append(line.rstrip("\n"))
                del self.text[:-50]
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                with self.lock:
                    self.lines.append(record)

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.lines)

    def wait_for(self, pred, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for r in self.snapshot():
                if pred(r):
                    return r
            time.sleep(0.05)
        with self.lock:
            tail = "\n".join(self.text[-20:])
        raise TimeoutError(f"no matching line within {timeout}s (exit status {self.popen.poll()}); last output:\n{tail}")

    def send(self, line: str) -> None:
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)


def write_config(root: Path, acceptor: int, venue: int, http: int, engine: str = "quickfix") -> Path:
    shutil.copy(REPO / "cfg" / "instruments.csv", root / "instruments.csv")
    path = root / "fixproxy.toml"
    path.write_text(f"""
[proxy]
state_dir = "var"
engine = "{engine}"
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
[admin]
http_port = {http}
[[admin.tokens]]
name = "soak"
role = "viewer"
token = "{TOKEN}"
""")
    return path


def api(http: int, path: str):
    req = urllib.request.Request(f"http://127.0.0.1:{http}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def received(proc: Proc) -> list[dict]:
    return [r["fields"] for r in proc.snapshot() if r.get("dir") == "in" and "fields" in r]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--rate", type=float, default=20.0, help="order messages per second")
    p.add_argument("--kills", type=int, default=3, help="SIGKILL restarts of the proxy, at random moments")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--engine", choices=("quickfix", "native"), default="quickfix", help="the proxy's FIX engine")
    args = p.parse_args(argv)
    rnd = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="fixproxy-soak-"))
    acceptor, venue_port, http = free_port(), free_port(), free_port()
    config = write_config(root, acceptor, venue_port, http, args.engine)
    behaviours = [x for s, (_, b) in SYMBOLS.items() for x in ("--behaviour", f"{s}={b}")]
    procs: list[Proc] = []
    try:
        venue = Proc(["sim", "venue", "--config", str(config), *behaviours, "--state-dir", str(root / "venue")], root)
        procs.append(venue)
        venue.wait_for(lambda r: r.get("event") == "listening")

        def start_proxy() -> Proc:
            proxy = Proc(["run", "--config", str(config)], root)
            procs.append(proxy)
            proxy.wait_for(lambda r: r.get("event") == "session_up" and r.get("detail") == "sim")
            return proxy

        proxy = start_proxy()
        oms = Proc(["sim", "oms", "--config", str(config), "--stdin", "--state-dir", str(root / "oms")],
                   root, stdin=True)
        procs.append(oms)
        oms.wait_for(lambda r: r.get("event") == "logon")

        duration = args.minutes * 60
        kill_at = sorted(rnd.uniform(0.1, 0.85) * duration for _ in range(args.kills))
        start = time.monotonic()
        sent_orders: list[str] = []
        live: dict[str, tuple[str, str, str]] = {}  # current ClOrdID -> (symbol, qty, price) of orders that may rest
        n = restarts = 0
        while (elapsed := time.monotonic() - start) < duration:
            if kill_at and elapsed >= kill_at[0]:
                kill_at.pop(0)
                proxy.stop(signal.SIGKILL)
                time.sleep(rnd.uniform(0.2, 1.5))  # the OMS keeps sending into its own store meanwhile
                proxy = start_proxy()
                restarts += 1
            n += 1
            roll = rnd.random()
            if live and roll < 0.15:
                cl = rnd.choice(list(live))
                symbol, qty, _ = live.pop(cl)
                oms.send(f"35=F|11=C{n}|41={cl}|55={symbol}|54=1|38={qty}")
            elif live and roll < 0.30:
                cl = rnd.choice(list(live))
                symbol, qty, price = live.pop(cl)
                new_qty = str(int(qty) + rnd.choice((-10, 10, 20)))
                oms.send(f"35=G|11=R{n}|41={cl}|55={symbol}|54=1|38={new_qty}|40=2|44={price}")
                live[f"R{n}"] = (symbol, new_qty, price)
            else:
                symbol = rnd.choice(list(SYMBOLS))
                price, behaviour = SYMBOLS[symbol]
                qty = str(rnd.choice((50, 100, 200)))
                cl = f"D{n}"
                oms.send(f"35=D|11={cl}|55={symbol}|54=1|38={qty}|40=2|44={price}|1=SOAK")
                sent_orders.append(cl)
                if behaviour != "fill" and symbol != "RSTR":
                    live[cl] = (symbol, qty, price)
            time.sleep(1.0 / args.rate)

        # Quiesce, then cancel whatever still works so that every order ends.
        time.sleep(3)
        open_orders = api(http, "/api/v1/orders")
        for i, o in enumerate(open_orders):
            oms.send(f"35=F|11=END{i}|41={o['cl_ord_id']}|55={o['symbol']}|54=1|38={o['order_qty']}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and api(http, "/api/v1/orders"):
            time.sleep(0.5)
        time.sleep(2)
        return reconcile(args, root, config, http, oms, venue, sent_orders, restarts, n)
    finally:
        for proc in reversed(procs):
            proc.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def reconcile(args, root: Path, config: Path, http: int, oms: Proc, venue: Proc, sent: list[str], restarts: int,
              messages_sent: int) -> int:
    at_oms = received(oms)
    # Order chains: a replace's ClOrdID belongs to the original order.
    chain = {}
    for f in at_oms:
        if f.get("35") == "8" and f.get("150") == "5" and f.get("41"):
            chain[f["11"]] = chain.get(f["41"], f["41"])

    def root_of(cl: str) -> str:
        return chain.get(cl, cl)

    finals: dict[str, list[str]] = defaultdict(list)
    fills: Counter = Counter()
    seen_exec: Counter = Counter()
    for f in at_oms:
        if f.get("35") == "j" and f.get("372") == "D":
            finals[f["379"]].append("rejected:" + f.get("58", "").split(":")[0])
        elif f.get("35") == "8":
            exec_id = f.get("17", "")
            if exec_id and exec_id != "NONE":
                if exec_id in seen_exec:
                    # A repeat is fine only when marked a possible duplicate (43/97=Y): the OMS checks
                    # the ExecID and drops it, as this reconciliation does.
                    if f.get("43") != "Y" and f.get("97") != "Y":
                        seen_exec[exec_id] += 1
                    continue
                seen_exec[exec_id] = 1
            if f.get("150") in ("F", "1", "2") and f.get("32"):
                fills[f["55"]] += Decimal(f["32"])
            if f.get("39") in ("2", "4", "8") and (f.get("150") != "5" or f.get("39") == "2"):
                owner = root_of(f.get("41") or f["11"]) if f.get("39") == "4" else root_of(f["11"])
                finals[owner].append({"2": "filled", "4": "cancelled", "8": "rejected"}[f["39"]])
    missing = [cl for cl in sent if not finals.get(cl)]
    doubled = {cl: v for cl, v in finals.items() if len(v) > 1}
    repeated_exec = [x for x, c in seen_exec.items() if x and x != "NONE" and c > 1]
    venue_d = Counter(f["11"] for f in received(venue) if f.get("35") == "D")
    venue_twice = [cl for cl, c in venue_d.items() if c > 1]
    forwarded = {cl for cl in sent if not any(o.startswith("rejected:") for o in finals.get(cl, ()))}
    venue_set = {cl.split(".", 1)[1] for cl in venue_d}
    not_at_venue = sorted(forwarded - venue_set)
    unexpected_at_venue = sorted(venue_set - forwarded)
    positions = {p["symbol"]: Decimal(p["qty"]) for p in api(http, "/api/v1/positions") if p["account"] == "SOAK"}
    position_mismatch = {s: (positions.get(s, Decimal(0)), q) for s, q in fills.items() if positions.get(s, 0) != q}
    verify = subprocess.run([sys.executable, "-m", "fixproxy", "audit", "verify", "--config", str(config)],
                            capture_output=True, text=True)
    outcomes = Counter(v[0].split(":")[0] for v in finals.values() if v)
    report = {
        "minutes": args.minutes, "rate": args.rate, "restarts": restarts, "messages_sent": messages_sent,
        "orders": len(sent), "outcomes": dict(outcomes), "fills_by_symbol": {k: str(v) for k, v in fills.items()},
        "lost": len(missing), "final_reported_twice": len(doubled), "exec_reports_relayed_twice": len(repeated_exec),
        "sent_to_venue_twice": len(venue_twice), "forwarded_but_not_at_venue": len(not_at_venue),
        "at_venue_but_not_forwarded": len(unexpected_at_venue), "position_mismatches": len(position_mismatch),
        "audit_chain": "ok" if verify.returncode == 0 else verify.stdout.strip() + verify.stderr.strip(),
    }
    print(json.dumps(report, indent=2))
    problems = {"lost": missing[:10], "doubled": dict(list(doubled.items())[:10]), "exec_twice": repeated_exec[:10],
                "venue_twice": venue_twice[:10], "not_at_venue": not_at_venue[:10],
                "unexpected": unexpected_at_venue[:10], "positions": {k: [str(a), str(b)] for k, (a, b) in position_mismatch.items()}}
    exact = not any(problems.values()) and verify.returncode == 0
    if not exact:
        print(json.dumps(problems, indent=2), file=sys.stderr)
    print("reconciliation: " + ("EXACT" if exact else "NOT EXACT"))
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
