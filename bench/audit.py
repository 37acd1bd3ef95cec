#!/usr/bin/env python3
"""What the audit follower costs: CPU per journal record and per order, in process. Prints JSON.

    .venv/bin/python -m bench audit [--orders 20000] [--per-step 40] [--repeat 3] [--profile FILE]
    .venv/bin/python -m bench audit --journal DIR     # a journal from a proxy run instead

Writes a journal of N orders as the live proxy journals them (the real core behind the engines'
bridge: each order a NewOrderSingle in, the decision, the order forwarded, an acknowledgement and
a fill back, two ExecutionReports to the OMS; whole FIX messages with their session headers), then
feeds it to a ``Follower`` the way the running proxy does: ``--per-step`` orders are appended to
the segment file between two ``step`` calls (40: the follower's 20 ms cadence at 2,000 orders/s;
0: the whole journal at once, a catch-up). Only the follower's calls are timed (process CPU time).
A run is repeated ``--repeat`` times on fresh stores; the JSON has each run and the lowest.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import REPO
from fixproxy.assemble import build_core
from fixproxy.audit.follower import Follower
from fixproxy.config import load
from fixproxy.core import events as ev
from fixproxy.engines.bridge import CoreBridge, SessionInfo
from fixproxy.fix.build import build, stamp
from fixproxy.journal import format as fmt
from fixproxy.journal.reader import read_segment
from fixproxy.journal.writer import Journal

CONFIG = REPO / "tests" / "replay_fixtures" / "fixproxy.toml"
#: The follower's checkpoint key in the run (checkpoints on, as in production with a key).
KEY = b"bench-audit-key-0123456789abcdef"


class Wire(CoreBridge):
    """The bridge with sessions that always send whole messages (header, BodyLength, CheckSum), journaled
    as the native engine journals what it sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.comp_ids = {"oms1": ("FIXPROXY", "OMS1"), "sim": ("FIXPROXY", "VENUE")}
        self.seqs: Counter[str] = Counter()

    def _send(self, info: SessionInfo, msg_type: str, body: list[tuple[int, str]], now: int) -> bool:
        self.seqs[info.name] += 1
        sender, target = self.comp_ids[info.name]
        data = build("FIX.4.4", msg_type, self.seqs[info.name] + 1, sender, target, stamp(now), body)
        self._sent(info.name, data.decode("latin-1"), now)
        return True


def write_journal(directory: Path, orders: int) -> None:
    """A journal of ``orders`` orders at 2,000 a second (by the records' clock), each acknowledged and filled."""
    loaded = load(CONFIG)
    t0 = time.time_ns()
    journal = Journal(directory, 1, fmt.Start(1, t0, os.getpid(), f"config {CONFIG}"), chunk=64 << 20)
    infos = [SessionInfo("oms1", "oms", "FIX.4.4"), SessionInfo("sim", "venue", "FIX.4.4")]
    wire = Wire(build_core(loaded, t0), infos, lambda a: None, journal=journal)
    wire.submit(ev.SessionUp("sim", t0))
    oms, sim = infos
    for i in range(orders):
        now = t0 + i * 500_000
        ts = stamp(now)
        cl = f"B{i + 1}"
        side = 1 + i % 2
        order_body = [(11, cl), (1, f"ACC{i // 2 % 50}"), (55, "AAPL"), (54, str(side)), (38, "100"), (40, "2")]
        order = build("FIX.4.4", "D", i + 2, "OMS1", "FIXPROXY", ts, [*order_body, (44, "190"), (60, ts)])
        wire.receive(oms, order.decode("latin-1"), now)
        for n, (t, s, cum, leaves, last) in enumerate((("0", "0", 0, 100, 0), ("F", "2", 100, 0, 100))):
            body = [(11, f"oms1.{cl}"), (37, f"V{i}"), (55, "AAPL"), (54, str(side)), (38, "100"), (44, "190")]
            body += [(17, f"E{i}-{n}"), (150, t), (39, s), (151, str(leaves)), (14, str(cum))]
            body += [(6, "190" if cum else "0"), (32, str(last)), (31, "190")]
            report = build("FIX.4.4", "8", 2 * i + n + 2, "VENUE", "FIXPROXY", ts, body)
            wire.receive(sim, report.decode("latin-1"), now + 100_000 * (n + 1))
    journal.close()


def follow(source: Path, work: Path, per_step_records: int, profile: cProfile.Profile | None) -> dict:
    """Copy ``source``'s segments into ``work`` record batch by record batch, a follower step after each;
    the follower's CPU time, its records and store."""
    journal_dir, store = work / "journal", work / "audit.sqlite"
    journal_dir.mkdir(parents=True)
    segments = sorted(source.glob("*.journal"))
    follower = Follower(store, journal_dir, key=KEY)
    cpu = 0.0
    steps = 0

    def timed(call: Callable[[], object]) -> None:
        nonlocal cpu, steps
        if profile is not None:
            profile.enable()
        t = time.process_time()
        call()
        cpu += time.process_time() - t
        if profile is not None:
            profile.disable()
        steps += 1

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter()
    timed(follower.open)
    records = 0
    for path in segments:
        data = path.read_bytes()
        ends = [end for end, _, _ in read_segment(path)]
        records += len(ends)
        target = journal_dir / path.name
        with open(target, "wb") as f:
            f.truncate(len(data))  # allocated ahead, zeros after what is written: as the writer's file
        fd = os.open(target, os.O_WRONLY)
        try:
            os.pwrite(fd, data[: len(fmt.MAGIC)], 0)
            done = len(fmt.MAGIC)
            step = per_step_records or len(ends)
            for i in range(step - 1, len(ends) + step - 1, step):
                end = ends[min(i, len(ends) - 1)]
                os.pwrite(fd, data[done:end], done)
                done = end
                timed(follower.step)
        finally:
            os.close(fd)
    timed(lambda: follower.close(checkpoint=True))
    wall = time.perf_counter() - wall
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "journal_records": records,
        "audit_records": follower.seq,
        "checkpoints": follower.checkpoints,
        "steps": steps,
        "cpu_s": cpu,
        "wall_s": round(wall, 3),
        # Both sides of the process (the copying included): how much of the CPU is the kernel's.
        "user_s": round(usage1.ru_utime - usage0.ru_utime, 3),
        "system_s": round(usage1.ru_stime - usage0.ru_stime, 3),
        "store_bytes": store.stat().st_size + sum(p.stat().st_size for p in work.glob("audit.sqlite-*")),
    }


def count_orders(source: Path) -> int:
    """NewOrderSingles received in the journal: the orders."""
    return sum(
        1
        for path in sorted(source.glob("*.journal"))
        for _, kind, payload in read_segment(path)
        if kind == fmt.INBOUND and "\x0135=D\x01" in fmt.decode_message(payload)[2]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--orders", type=int, default=20000, help="orders in the generated journal")
    p.add_argument("--journal", default="", help="follow this journal folder (a proxy run's) instead")
    p.add_argument(
        "--per-step", type=int, default=40, help="orders appended between two follower steps (0: all at once)"
    )
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--profile", default="", help="write a cProfile of the follower's calls here (every run)")
    p.add_argument("--dir", default="", help="where to work, kept after (default: a temporary folder under var/)")
    args = p.parse_args(argv)
    var = Path("var").resolve()
    base = (
        Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-audit-", dir=var if var.is_dir() else None))
    )
    base.mkdir(parents=True, exist_ok=True)
    profile = cProfile.Profile() if args.profile else None
    try:
        if args.journal:
            source = Path(args.journal)
        else:
            source = base / "source"
            source.mkdir()
            write_journal(source, args.orders)
        orders = count_orders(source)
        records = sum(1 for path in sorted(source.glob("*.journal")) for _ in read_segment(path))
        per_step = round(args.per_step * records / orders) if orders else 0
        runs = []
        for n in range(args.repeat):
            run = follow(source, base / f"run{n}", per_step, profile)
            run["cpu_us_per_record"] = round(run["cpu_s"] / run["journal_records"] * 1e6, 2)
            run["cpu_us_per_order"] = round(run["cpu_s"] / orders * 1e6, 1)
            run["cpu_s"] = round(run["cpu_s"], 3)
            runs.append(run)
            shutil.rmtree(base / f"run{n}", ignore_errors=True)
    finally:
        if not args.dir:  # a folder given is kept (the generated journal in it, under source/)
            shutil.rmtree(base, ignore_errors=True)
    best = min(runs, key=lambda r: r["cpu_s"])
    if profile is not None:
        profile.dump_stats(args.profile)
        pstats.Stats(args.profile, stream=sys.stderr).sort_stats("tottime").print_stats(20)
    out = {
        "orders": orders,
        "journal_records": records,
        "records_per_order": round(records / orders, 2) if orders else None,
        "journal_records_per_step": per_step or records,
        "cpu_us_per_record": best["cpu_us_per_record"],
        "cpu_us_per_order": best["cpu_us_per_order"],
        "runs": runs,
        "journal": args.journal or "generated",
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
