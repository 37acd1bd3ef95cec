#!/usr/bin/env python3
"""Where the core's memory goes per order: tracemalloc over N orders (new order, ack, fill) driven
straight through ProxyCore (no sockets), with the shipped config's rules and limits.

    .venv/bin/python -m bench memory --orders 10000 [--rate 200] [--top 15]

Orders arrive ``1/rate`` seconds apart on the core's clock, so grace periods and day rolls see the
time a real run would. Prints the bytes still held per order after the run, and the source lines
that hold the most.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import sys
import tracemalloc
from decimal import Decimal
from pathlib import Path

from bench import REPO
from fixproxy.assemble import build_core
from fixproxy.config import load
from fixproxy.core import events as ev
from fixproxy.core.model import ExecReport, ExecType, OrderRequest, OrdStatus, OrdType, Side


def run(n: int, rate: float, top: int, config: Path) -> int:
    loaded = load(config, secrets=False)
    ids = itertools.count(1)
    core = build_core(loaded, 1_700_000_000 * 10**9, next_id=lambda: f"X{next(ids)}")
    session = loaded.config.oms[0].name
    venue = loaded.config.venues[0].name
    symbol = next(iter(loaded.instruments))
    price = loaded.instruments[symbol].reference_price or Decimal(100)
    now = 1_700_000_000 * 10**9
    step = int(1e9 / rate)
    core.handle(ev.SessionUp(venue, now))
    core.handle(ev.SessionUp(session, now))

    def one(i: int) -> None:
        nonlocal now
        now += step
        side = Side.BUY if i % 2 else Side.SELL
        req = OrderRequest(f"M{i:09d}", symbol, side, Decimal(100), OrdType.LIMIT, price, "ACC1")
        acts = core.handle(ev.NewOrder(session, i, now, req))
        sent = [a for a in acts if isinstance(a, ev.VenueNewOrder)]
        if not sent:
            return
        vid = sent[0].cl_ord_id
        core.handle(
            ev.VenueReport(
                venue, now, ExecReport(ExecType.NEW, OrdStatus.NEW, vid, f"V{i}", f"E{i}a", leaves_qty=Decimal(100))
            )
        )
        core.handle(
            ev.VenueReport(
                venue,
                now,
                ExecReport(
                    ExecType.TRADE,
                    OrdStatus.FILLED,
                    vid,
                    f"V{i}",
                    f"E{i}b",
                    last_qty=Decimal(100),
                    last_px=price,
                    cum_qty=Decimal(100),
                    avg_px=price,
                ),
            )
        )

    # Warm-up: caches, the first dict resizes, and (with a grace period) the orders finished within
    # it, which memory holds in the steady state: what is measured is what stays per order beyond.
    grace = core.retention.grace_ns / 1e9 if core.retention.grace_ns is not None else 0
    warm = 2000 + int(grace * rate * 1.5)
    tracemalloc.start(1)  # before the warm-up: what it made and the run frees must be traced too
    for i in range(1, warm + 1):
        one(i)
    gc.collect()
    before = tracemalloc.take_snapshot()
    held_before = core.orders.held()
    for i in range(warm + 1, warm + 1 + n):
        one(i)
    gc.collect()
    after = tracemalloc.take_snapshot()
    stats = after.compare_to(before, "lineno")
    total = sum(s.size_diff for s in stats)
    print(
        f"{n} orders (new, ack, fill) at {rate:g}/s of core time after {warm} warm-up orders "
        f"(finished_grace_s {grace:g}; orders held {held_before} -> {core.orders.held()}): "
        f"{total / n:.1f} bytes held per order ({total / 1e6:.2f} MB)"
    )
    print(f"{'bytes/order':>11}  line")
    for s in stats[:top]:
        if s.size_diff <= 0:
            break
        frame = s.traceback[0]
        print(f"{s.size_diff / n:11.1f}  {Path(frame.filename).name}:{frame.lineno}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=200.0, help="orders per second of the core's clock")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--config", type=Path, default=REPO / "cfg" / "fixproxy.toml")
    args = p.parse_args(argv)
    return run(args.orders, args.rate, args.top, args.config)


if __name__ == "__main__":
    sys.exit(main())
