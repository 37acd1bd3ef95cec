#!/usr/bin/env python3
"""How long a halt made on one proxy of a cluster takes to be applied by the others.

    .venv/bin/python scripts/cluster_halt_latency.py [--halts 100] [--engine native] [--fail-above-ms 250]

Starts a PostgreSQL of its own (fixproxy/cluster/localdb.py) and three proxies sharing it (the
integration tests' Stack, without venue or OMS simulators), then halts the firm over HTTP on each
instance in turn and resumes it after. For each halt, the time from the moment the halt request
returned on instance X to the moment each other instance Y applied it: Y's own record of that moment
is the ``since_ns`` of its firm trading state (the ``now_ns`` its listener stamped on the command as it
handed it to its core, the AdminKill event journaled and audited there), read with GET
/api/v1/trading-states once Y shows the halt by ``<operator>@X``. Every process is on this machine, so
both ends read the same wall clock. docs/benchmarks.md, "Halt propagation across a cluster".
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fixproxy.cluster.localdb import LocalPostgres  # noqa: E402
from tests.integration import harness  # noqa: E402
from tests.integration.harness import TOKENS, Stack  # noqa: E402

NAMES = ("a", "b", "c")


def request(stack: Stack, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        stack.api_url + path, data=data, method=method, headers={"Authorization": f"Bearer {TOKENS['risk']}"}
    )
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.loads(response.read())


def firm_state(stack: Stack) -> dict[str, Any]:
    states = request(stack, "GET", "/trading-states")
    return next((s for s in states if s["scope"] == "firm"), {"state": "ACTIVE", "operator": "", "since_ns": 0})


def wait_state(stack: Stack, state: str, operator: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """The firm's trading state on ``stack`` once it is ``state`` set by ``operator`` (polled)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = firm_state(stack)
        if got["state"] == state and (not operator or got["operator"] == operator):
            return got
        if time.monotonic() > deadline:
            raise SystemExit(f"instance {stack.root.name}: firm not {state} by {operator!r} within {timeout_s}s: {got}")
        time.sleep(0.005)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def line(label: str, values: list[float]) -> str:
    """One row of figures in milliseconds (a negative one: Y applied the halt before X's answer arrived)."""
    return (
        f"{label:<10} n={len(values):<4} p50={percentile(values, 50):7.2f} ms  p99={percentile(values, 99):7.2f} ms  "
        f"max={max(values):7.2f} ms  min={min(values):6.2f} ms  mean={statistics.fmean(values):6.2f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--halts", type=int, default=100, help="halts to measure (each followed by a resume)")
    parser.add_argument("--engine", default="native", choices=("native", "quickfix"))
    parser.add_argument("--renew-ms", type=int, default=500, help="[cluster] renew_ms of the instances")
    parser.add_argument("--lease-ttl-ms", type=int, default=3000, help="[cluster] lease_ttl_ms of the instances")
    parser.add_argument("--fail-above-ms", type=float, default=None, help="exit 1 if the overall p99 is above this")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object too")
    args = parser.parse_args(argv)

    harness.current_engine["name"] = args.engine
    home = Path(tempfile.mkdtemp(prefix="fixproxy-halt-latency-"))
    home.chmod(0o711)  # as root the server runs as the postgres user, which must pass through
    db = LocalPostgres(home / "pg")
    stacks: dict[str, Stack] = {}
    samples: dict[tuple[str, str], list[float]] = {}  # from the request's return on X, by (X, Y)
    from_made: list[float] = []  # from X's own record of the halt (its trading state's since_ns)
    from_sent: list[float] = []  # from the moment the request was sent to X
    try:
        db.start()
        print(f"halt-latency: PostgreSQL {db.url()} (pid {db.pid}); engine {args.engine}", flush=True)
        for name in NAMES:
            section = (
                f'[cluster]\nurl = "{db.url()}"\ninstance = "{name}"\n'
                f"renew_ms = {args.renew_ms}\nlease_ttl_ms = {args.lease_ttl_ms}\n"
            )
            stacks[name] = Stack(home / name, venue=False, sections=section)
        for i in range(args.halts):
            origin = NAMES[i % len(NAMES)]
            x = stacks[origin]
            sent_ns = time.time_ns()
            request(x, "POST", "/kill-switch", {"scope": "firm", "action": "halt", "reason": f"latency {i}"})
            returned_ns = time.time_ns()
            made_ns = wait_state(x, "HALTED", "desk-risk")["since_ns"]  # X's own record of the halt
            for name, y in stacks.items():
                if name == origin:
                    continue
                applied_ns = wait_state(y, "HALTED", f"desk-risk@{origin}")["since_ns"]
                samples.setdefault((origin, name), []).append((applied_ns - returned_ns) / 1e6)
                from_made.append((applied_ns - made_ns) / 1e6)
                from_sent.append((applied_ns - sent_ns) / 1e6)
            request(x, "POST", "/kill-switch", {"scope": "firm", "action": "resume", "reason": f"latency {i} done"})
            for y in stacks.values():
                wait_state(y, "ACTIVE", "")
    finally:
        for s in stacks.values():
            s.close()
        db.stop()
        if not db.running:
            shutil.rmtree(home, ignore_errors=True)

    overall = [v for values in samples.values() for v in values]
    print(f"halt-latency: {args.halts} halts; from the halt request's return on X to its application on Y")
    for (origin, name), values in sorted(samples.items()):
        print(line(f"{origin} -> {name}", values))
    print(line("overall", overall))
    print("the same halts measured from X's own record of the halt, and from the request's sending:")
    print(line("X record", from_made))
    print(line("sent", from_sent))
    p99 = percentile(overall, 99)
    if args.json:
        figures = {
            f"{o}->{n}": {"p50": percentile(v, 50), "p99": percentile(v, 99), "max": max(v)}
            for (o, n), v in sorted(samples.items())
        }
        figures["overall"] = {"p50": percentile(overall, 50), "p99": p99, "max": max(overall)}
        for label, values in (("from_x_record", from_made), ("from_sent", from_sent)):
            figures[label] = {"p50": percentile(values, 50), "p99": percentile(values, 99), "max": max(values)}
        print(json.dumps(figures))
    if args.fail_above_ms is not None and p99 > args.fail_above_ms:
        print(f"halt-latency: p99 {p99:.2f} ms is above {args.fail_above_ms} ms", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
