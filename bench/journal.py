#!/usr/bin/env python3
"""The journal's cost per record under each ``[journal] sync`` policy, on this machine's disk.

    .venv/bin/python -m bench journal [--records 20000] [--dir var/bench-journal]

Appends inbound records the size of a NewOrderSingle (as the order path does: one per message,
before the core sees it) and reports µs per append, for sync none, interval (100 ms) and always.
"always" syncs each input record: its cost is the disk's flush latency. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from fixproxy.journal import format as fmt
from fixproxy.journal.writer import Journal

ORDER = (
    "8=FIX.4.4\x019=150\x0135=D\x0134=12345\x0149=OMS1\x0152=20261206-10:00:00.000\x0156=FIXPROXY\x01"
    "11=ORD-000012345\x011=ACC1\x0155=AAPL\x0154=1\x0138=100\x0140=2\x0144=190.25\x0160=20261206-10:00:00.000\x01"
    "10=123\x01"
)


def run(directory: Path, sync: str, records: int) -> dict:
    seg = Journal(
        directory,
        {"none": 1, "interval": 2, "always": 3}[sync],
        fmt.Start(1, time.time_ns(), 0),
        sync=sync,
        sync_interval_ms=100,
    )
    times = []
    now = time.time_ns()
    for i in range(records):
        t0 = time.perf_counter_ns()
        seg.inbound("oms1", now + i, ORDER)
        times.append(time.perf_counter_ns() - t0)
    seg.close()
    times.sort()
    return {
        "sync": sync,
        "records": records,
        "mean_us": round(statistics.fmean(times) / 1000, 2),
        "p50_us": round(times[len(times) // 2] / 1000, 2),
        "p99_us": round(times[int(len(times) * 0.99)] / 1000, 2),
        "bytes_per_record": (seg.size - 8) // (records + 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=20000)
    p.add_argument("--dir", default="", help="where to write (default: a temporary folder under var/)")
    args = p.parse_args(argv)
    base = (
        Path(args.dir)
        if args.dir
        else Path(
            tempfile.mkdtemp(prefix="bench-journal-", dir=Path("var").resolve() if Path("var").is_dir() else None)
        )
    )
    base.mkdir(parents=True, exist_ok=True)
    try:
        out = [
            run(base, "none", args.records),
            run(base, "interval", args.records),
            run(base, "always", max(200, args.records // 50)),
        ]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps({"journal_append": out, "dir": str(base)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
