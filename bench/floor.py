#!/usr/bin/env python3
"""The floor under the proxy's CPU per order in this interpreter: the FIX text and recording work every
order needs whatever the code around it, done with the proxy's own functions and nothing else.

    .venv/bin/python -m bench floor [--orders 50000] [--dir /dev/shm]

An order that is acknowledged and filled is three messages in (the NewOrderSingle, the ack and the
fill: each framed, parsed, journaled and written to its session's message log) and three out (the
order to the venue and the two ExecutionReports to the OMS: each built, kept in the session store
for resend, logged and journaled), plus one journal record for the decision. Each part is timed on
its own (process CPU time, µs per order), and the parts added up: what one core spends per order
before any session check, risk rule, position or socket. The audit follower's work is not in it
(``python -m bench audit``). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fixproxy.core import events as ev
from fixproxy.engines.native.store import FileLog, FileStore
from fixproxy.fix import build, parse
from fixproxy.journal import format as fmt
from fixproxy.journal.writer import Journal
from fixproxy.timefmt import fix_timestamp_ms

ORDER = [(11, "B1"), (1, "BENCH"), (55, "AAPL"), (54, "1"), (38, "10"), (40, "2"), (44, "189")]
REPORT = [
    (37, "V1"),
    (17, "F1"),
    (11, "B1"),
    (150, "F"),
    (39, "2"),
    (1, "BENCH"),
    (55, "AAPL"),
    (54, "1"),
    (38, "10"),
    (44, "189"),
    (32, "10"),
    (31, "189"),
    (151, "0"),
    (14, "10"),
    (6, "189"),
]


def _time(orders: int, step: Callable[[int], None]) -> float:
    """Process CPU µs per call of ``step`` (one order's worth of one part)."""
    started = time.process_time()
    for i in range(orders):
        step(i)
    return (time.process_time() - started) / orders * 1e6


def measure(root: Path, orders: int) -> dict:
    now = time.time_ns()
    stamp = fix_timestamp_ms(now)
    inbound = [
        build.build("FIX.4.4", "D", 7, "OMS1", "FIXPROXY", stamp, [*ORDER, (60, stamp)]),
        build.build("FIX.4.4", "8", 7, "VENUE", "FIXPROXY", stamp, [*REPORT, (60, stamp)]),
        build.build("FIX.4.4", "8", 8, "VENUE", "FIXPROXY", stamp, [*REPORT, (60, stamp)]),
    ]
    texts = [raw.decode("latin-1") for raw in inbound]
    outbound = [*inbound]
    journal = Journal(root / "journal", 1, fmt.Start(1, now, os.getpid(), "bench floor"))
    log = FileLog(root / "log", "floor", deferred=True)
    store = FileStore(root / "store", "floor", now)
    decision = ev.Notice("bench_floor", now, "a decision's journal record stands in for the core's")
    framer = parse.Framer()

    def text_in(i: int) -> None:
        for raw in inbound:
            for frame in framer.feed(raw):
                parse.fields(frame.decode("latin-1"))

    def text_out(i: int) -> None:
        ts = fix_timestamp_ms(time.time_ns())
        outbound[0] = build.build("FIX.4.4", "D", i, "FIXPROXY", "VENUE", ts, [*ORDER, (60, ts)])
        outbound[1] = build.build("FIX.4.4", "8", i, "FIXPROXY", "OMS1", ts, [*REPORT, (60, ts)])
        outbound[2] = build.build("FIX.4.4", "8", i, "FIXPROXY", "OMS1", ts, [*REPORT, (60, ts)])

    def journal_all(i: int) -> None:
        t = time.time_ns()
        for text in texts:
            journal.inbound("oms1", t, text)
        journal.action(decision)
        for raw in outbound:
            journal.outbound("oms1", t, raw.decode("latin-1"))

    def logs(i: int) -> None:
        t = time.time_ns()
        for raw in inbound:
            log.message(raw, t)
        for raw in outbound:
            log.message(raw, t)
        if i % 200 == 0:
            log.flush()

    def stored(i: int) -> None:
        for k, raw in enumerate(outbound):
            store.sent(i * 3 + k + 1, raw)

    parts = {
        "fix_in_us": _time(orders, text_in),
        "fix_out_us": _time(orders, text_out),
        "journal_us": _time(orders, journal_all),
        "message_logs_us": _time(orders, logs),
        "session_store_us": _time(orders, stored),
    }
    log.close()
    store.close()
    journal.close()
    return {
        "orders": orders,
        **{k: round(v, 1) for k, v in parts.items()},
        "floor_us_per_order": round(sum(parts.values()), 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench floor", description=__doc__.split("\n\n")[0])
    p.add_argument("--orders", type=int, default=50_000)
    p.add_argument("--dir", default=None, help="where the files go (default: a temporary folder)")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-floor-", dir=args.dir))
    try:
        print(json.dumps(measure(root, args.orders)))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
