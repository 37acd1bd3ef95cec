#!/usr/bin/env python3
"""How long an active/passive pair takes to trade again after its active is killed -9.

    .venv/bin/python scripts/ha_takeover.py [--failovers 20] [--engine native|quickfix] [--copy sync|async]

Starts a PostgreSQL of its own (fixproxy/cluster/localdb.py), a venue simulator, a pair of proxies
(tests/integration/ha_harness.py: a active, b standby) and an OMS simulator with both proxies'
addresses sending orders at a steady rate. Then, ``--failovers`` times: SIGKILL the active; measure
from the kill to the first order acknowledged (35=8, 150=0) through the other instance (an ack the
OMS received after it logged on to the other instance's address); start the killed one again (it
comes back as the standby) and wait until the copy is in sync again (the active's view says
copy_state "sync", or "async" with ``--copy async``). Also measured, to tell the parts apart: from
the kill to the other instance saying it is active; to the OMS's logon to it (quickfix's initiator
tries its addresses in turn, one attempt a second); and to the first ack of an order the other
instance itself sent to the venue (the first ack through it may be one the killed instance had
journaled but not yet sent, delivered by the heir's resend).

Prints every sample and p50/p90/max; at the end, every order sent has an answer or is listed. Every
process is on this machine, so the kill and the ack are read on the same clock.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fixproxy.cluster.localdb import LocalPostgres  # noqa: E402
from scripts.cluster_halt_latency import percentile  # noqa: E402
from tests.integration import harness  # noqa: E402
from tests.integration.ha_harness import Pair  # noqa: E402
from tests.integration.test_order_path import order  # noqa: E402


@dataclass
class Sample:
    victim: str
    heir: str
    to_active_ms: float | None = None  # the heir's view says active
    to_logon_ms: float | None = None  # the OMS logged on to the heir
    to_ack_ms: float | None = None  # the first ack through the heir
    ack: str = ""  # its ClOrdID
    venue_via: str | None = None  # the instance the venue saw that order come from
    to_new_ack_ms: float | None = None  # the first ack of an order the heir itself sent to the venue
    new_ack: str = ""
    too_low: int = 0  # the heir's Logons the OMS refused: MsgSeqNum lower than the killed one had sent


@dataclass
class Orders:
    """A steady stream of orders from one OMS simulator, and what came back."""

    pair: Pair
    rate: float
    sent: dict[str, float] = field(default_factory=dict)  # ClOrdID -> when sent (monotonic)
    answered: dict[str, str] = field(default_factory=dict)  # ClOrdID -> "acked" or the refusal
    seen: int = 0
    count: int = 0
    next_due: float = 0.0

    def __post_init__(self) -> None:
        self.oms = self.pair.oms["oms1"]

    def pump(self) -> list[dict]:
        """Send what is due, read what came; the new lines, each stamped with when it was read."""
        now = time.monotonic()
        if self.next_due == 0.0:
            self.next_due = now
        lines = []
        while self.next_due <= now:
            self.count += 1
            cl = f"T{self.count}"
            self.sent[cl] = now
            lines.append(order(cl))
            self.next_due += 1.0 / self.rate
        if lines:
            self.oms.send_lines(lines)
        out = []
        records = self.oms.lines
        end = len(records)
        for rec in records[self.seen : end]:
            rec = {**rec, "seen": now}
            out.append(rec)
            f = rec.get("fields") or {}
            if rec.get("dir") != "in" or rec.get("duplicate"):
                continue
            if f.get("35") == "8" and f.get("11") in self.sent:
                if f.get("150") == "0":
                    self.answered.setdefault(f["11"], "acked")
                elif f.get("150") == "8":
                    self.answered.setdefault(f["11"], f.get("58", "rejected"))
            elif f.get("35") == "j" and f.get("379") in self.sent:
                self.answered.setdefault(f["379"], f.get("58", "rejected"))
        self.seen = end
        return out

    def run_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        """Pump (sending at the rate) until ``done()``; SystemExit after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise SystemExit(f"ha-takeover: not within {timeout}s: {what}")
            self.pump()
            time.sleep(0.001)


class RoleWatch:
    """Polls one instance's role on a thread of its own; ``when(role)`` is when it was first seen."""

    def __init__(self, pair: Pair, instance: str) -> None:
        self.pair, self.instance = pair, instance
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                role = self.pair.role(self.instance)
            except Exception:  # noqa: BLE001 - an instance starting or ending: ask again
                role = None
            if role:
                self.seen.setdefault(role, time.monotonic())
            time.sleep(0.01)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)


def failover(pair: Pair, orders: Orders, args: argparse.Namespace) -> Sample:
    """Kill the active, measure, bring it back as the standby in copy."""
    victim = pair.active()
    assert victim is not None, f"no active instance: {pair.roles()}"
    heir = pair.other(victim)
    heir_address = f"127.0.0.1:{pair.nodes[heir].acceptor_port}"
    acks_before = sum(1 for v in orders.answered.values() if v == "acked")
    orders.run_until(
        lambda: sum(1 for v in orders.answered.values() if v == "acked") > acks_before, 30, "an ack before the kill"
    )
    sample = Sample(victim, heir)
    watch = RoleWatch(pair, heir)
    orders.pump()
    killed = time.monotonic()
    pair.kill(victim, signal.SIGKILL)
    logged_on: float | None = None
    acks: list[tuple[str, float]] = []  # (ClOrdID, when read) of the acks through the heir
    try:
        deadline = killed + args.timeout
        while sample.to_new_ack_ms is None:
            if time.monotonic() > deadline:
                raise SystemExit(f"ha-takeover: no new order acked through {heir} within {args.timeout}s")
            for rec in orders.pump():
                if args.verbose and ("event" in rec or (rec.get("fields") or {}).get("35") in ("3", "5")):
                    print(f"     +{(rec['seen'] - killed) * 1000:8.1f} ms  OMS: {_brief(rec)}", flush=True)
                out = rec.get("fields") or {}
                if rec.get("dir") == "out" and out.get("35") == "5" and "too low" in out.get("58", ""):
                    sample.too_low += 1
                if rec.get("event") == "logon" and rec.get("address") == heir_address:
                    logged_on = rec["seen"]
                    sample.to_logon_ms = (logged_on - killed) * 1000
                f = rec.get("fields") or {}
                if (
                    logged_on is not None
                    and rec.get("dir") == "in"
                    and not rec.get("duplicate")
                    and f.get("35") == "8"
                    and f.get("150") == "0"
                ):
                    acks.append((f.get("11", ""), rec["seen"]))
                    if sample.to_ack_ms is None:
                        sample.to_ack_ms = (rec["seen"] - killed) * 1000
                        sample.ack = f.get("11", "")
            if acks:
                via = venue_via(pair)
                sample.venue_via = via.get(sample.ack)
                new = next(((cl, t) for cl, t in acks if via.get(cl) == heir), None)
                if new is not None:
                    sample.new_ack, sample.to_new_ack_ms = new[0], (new[1] - killed) * 1000
            time.sleep(0.001)
        active_at = watch.seen.get("active")
        sample.to_active_ms = (active_at - killed) * 1000 if active_at else None
    finally:
        watch.close()
    # back as the standby, the copy in step again, orders flowing all along
    pair.start(victim)
    orders.run_until(lambda: pair.role(victim) == "standby", args.timeout, f"{victim} back as the standby")
    orders.run_until(lambda: _copy_state(pair) == args.copy, args.timeout, "the copy in step again")
    return sample


def venue_via(pair: Pair) -> dict[str, str | None]:
    """OMS ClOrdID -> the instance the venue received that order from (the last time)."""
    conns = pair.venue_conns()
    out = {}
    for rec in list(pair.venue.lines):
        f = rec.get("fields") or {}
        if rec.get("dir") == "in" and f.get("35") == "D" and f.get("11", "").startswith("oms1."):
            out[f["11"][5:]] = conns.get(rec.get("conn") or 0)
    return out


def venue_twice(pair: Pair) -> list[str]:
    """The venue ClOrdIDs of orders the venue received more than once (as new messages, not resent)."""
    seen: dict[str, int] = {}
    for rec in list(pair.venue.lines):
        f = rec.get("fields") or {}
        if rec.get("dir") == "in" and f.get("35") == "D" and f.get("43") != "Y":
            seen[f["11"]] = seen.get(f["11"], 0) + 1
    return sorted(cl for cl, n in seen.items() if n > 1)


def _copy_state(pair: Pair) -> str | None:
    active = pair.active()
    view = pair.view(active) if active else None
    return view.get("copy_state") if view else None


def figures(label: str, values: list[float]) -> str:
    if not values:
        return f"{label:<22} no samples"
    return (
        f"{label:<22} n={len(values):<3} p50={percentile(values, 50):8.1f} ms  "
        f"p90={percentile(values, 90):8.1f} ms  max={max(values):8.1f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--failovers", type=int, default=20, help="kills of the active to measure")
    parser.add_argument("--engine", default="native", choices=("native", "quickfix"))
    parser.add_argument("--copy", default="sync", choices=("sync", "async"), help="[ha] copy of the pair")
    parser.add_argument("--rate", type=float, default=50.0, help="orders per second from the OMS")
    parser.add_argument("--lease-ttl-ms", type=int, default=None, help="[ha] lease_ttl_ms (default: the config's)")
    parser.add_argument("--renew-ms", type=int, default=None, help="[ha] renew_ms (default: the config's)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds allowed for each step")
    parser.add_argument("--json", action="store_true", help="print the samples as one JSON object too")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (state, logs) afterwards")
    parser.add_argument("--verbose", action="store_true", help="print the OMS's session events during each failover")
    args = parser.parse_args(argv)

    harness.current_engine["name"] = args.engine
    home = Path(tempfile.mkdtemp(prefix="fixproxy-ha-takeover-"))
    home.chmod(0o711)  # as root the server runs as the postgres user, which must pass through
    db = LocalPostgres(home / "pg")
    pair: Pair | None = None
    orders: Orders | None = None
    samples: list[Sample] = []
    unanswered: list[str] = []
    twice: list[str] = []
    try:
        db.start()
        print(f"ha-takeover: PostgreSQL {db.url()} (pid {db.pid}); engine {args.engine}; copy {args.copy}", flush=True)
        pair = Pair(
            home / "pair",
            db.url(),
            copy=args.copy,
            lease_ttl_ms=args.lease_ttl_ms,
            renew_ms=args.renew_ms,
            timeout=args.timeout,
        )
        orders = Orders(pair, args.rate)
        for i in range(args.failovers):
            s = failover(pair, orders, args)
            samples.append(s)
            print(
                f"#{i + 1:<3} {s.victim} killed -> {s.heir}: active {_ms(s.to_active_ms)}  OMS logon "
                f"{_ms(s.to_logon_ms)}  first ack {_ms(s.to_ack_ms)} ({s.ack}, sent to the venue by "
                f"{s.venue_via})  first ack of an order {s.heir} sent {_ms(s.to_new_ack_ms)} ({s.new_ack})"
                + (f"  {s.too_low} Logon(s) of {s.heir} refused by the OMS: MsgSeqNum too low" if s.too_low else ""),
                flush=True,
            )
        orders.run_until(lambda: len(orders.answered) >= len(orders.sent), args.timeout, "an answer to every order")
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        if pair is not None:
            for name in ("a", "b"):
                proc = pair.nodes[name].proxy
                if proc is not None:
                    print(f"--- {name} (pid {proc.pid}, exit {proc.popen.poll()}):\n{proc.tail(15)}", file=sys.stderr)
        return 1
    finally:
        if orders is not None:
            unanswered = sorted(set(orders.sent) - set(orders.answered))
        if pair is not None:
            twice = venue_twice(pair)
            pair.close()
        db.stop()
        if not args.keep and not db.running:
            shutil.rmtree(home, ignore_errors=True)
        elif args.keep:
            print(f"ha-takeover: kept {home}")

    acks = [s.to_ack_ms for s in samples if s.to_ack_ms is not None]
    print(f"ha-takeover: {len(samples)} failovers; engine {args.engine}; copy {args.copy}; {args.rate:g} orders/s")
    print(figures("kill -> first ack", acks))
    print(figures("kill -> first new ack", [s.to_new_ack_ms for s in samples if s.to_new_ack_ms is not None]))
    print(figures("kill -> heir active", [s.to_active_ms for s in samples if s.to_active_ms is not None]))
    print(figures("kill -> OMS logon", [s.to_logon_ms for s in samples if s.to_logon_ms is not None]))
    if twice:
        print(f"ha-takeover: {len(twice)} orders reached the venue twice: {' '.join(twice[:20])}")
    regressed = [i + 1 for i, s in enumerate(samples) if s.too_low]
    if regressed:
        print(f"ha-takeover: the OMS refused the heir's sequence numbers (too low) after failovers {regressed}")
    sent = len(orders.sent) if orders is not None else 0
    listed = ": " + " ".join(unanswered[:20]) if unanswered else ""
    print(f"ha-takeover: {sent} orders sent, {len(unanswered)} without an answer{listed}")
    if args.json:
        print(json.dumps({"samples": [s.__dict__ for s in samples], "unanswered": unanswered, "twice": twice}))
    return 1 if unanswered or twice else 0


def _brief(rec: dict) -> str:
    rec = {k: v for k, v in rec.items() if k not in ("seen", "raw")}
    return json.dumps(rec, separators=(",", ":"))[:300]


def _ms(value: float | None) -> str:
    return f"{value:8.1f} ms" if value is not None else "       - ms"


if __name__ == "__main__":
    sys.exit(main())
