#!/usr/bin/env python3
"""Memory over a steady run: the proxy (``fixproxy run``, either engine) between the benchmark's light
peers at a steady order rate, its RSS and its child processes' (the audit follower) sampled as it goes.

    .venv/bin/python scripts/soak_memory.py --engine native --minutes 30 [--rate 200] [--out mem.json]

The config is the shipped one as ``make bench`` adapts it (every rule, the audit follower and the
message logs on; bench/setups.py ``write_configs``); the venue simulator fills every order. Every
``--sample-s`` seconds it reads /proc/<pid>/status of the proxy and of each process it started:
RssAnon (the heap: what the proxy holds), RssFile (file pages mapped: libraries, the journal's and
the stores' mappings) and RssShmem. It prints a table, then the growth of each after the first
minute: (last - first sample at or after 60 s) / that sample. The load goes on in 60 s windows of
the load generator; orders acknowledged are counted from its reports.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The benchmark's peers and configs: the bench package of this checkout (it is not installed).
sys.path.insert(0, str(REPO))

from bench.setups import BENCH_ACCOUNT, BENCH_SYMBOL, Child, write_configs  # noqa: E402 - after the repository root is put on sys.path

FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem")


def status(pid: int) -> dict[str, int] | None:
    """The RSS fields of /proc/<pid>/status in KiB (None once the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in FIELDS:
            out[key] = int(value.split()[0])
    return out


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (the audit follower, quickfix helpers)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return sorted(set(out))


def name_of(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(c.decode(errors="replace") for c in cmd if c)
    if "resource_tracker" in text:
        return "multiprocessing resource tracker"
    if "multiprocessing" in text:
        return "audit follower"  # the proxy's one worker process (fixproxy/audit/follower.py)
    return text[-40:] or "?"


class Load(threading.Thread):
    """The load generator's windows back to back until ``stop``; orders acknowledged counted."""

    def __init__(self, oms: Child, rate: float, window_s: float = 60.0):
        super().__init__(name="soak-load", daemon=True)
        self.oms, self.rate, self.window_s = oms, rate, window_s
        self.stop = threading.Event()
        self.acked = 0
        self.planned = 0
        self.windows = 0
        self.error = ""

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                r = self.oms.request(
                    {
                        "cmd": "window",
                        "id": i,
                        "rate": self.rate,
                        "duration_s": self.window_s,
                        "max_in_flight": 1000,
                        "ack_timeout_s": 5.0,
                        "abort_lag_s": None,
                    },
                    "window",
                    self.window_s + 120,
                )
            except RuntimeError as exc:
                self.error = str(exc)
                return
            self.acked += r.get("acked", 0)
            self.planned += r.get("planned", 0)
            self.windows += 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", choices=("native", "quickfix"), default="native")
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=200.0, help="new orders per second")
    p.add_argument("--sample-s", type=float, default=10.0)
    p.add_argument("--config", type=Path, default=REPO / "cfg" / "fixproxy.toml")
    p.add_argument("--out", type=Path, help="also write the samples as JSON here")
    p.add_argument("--keep-run-dir", action="store_true")
    p.add_argument(
        "--wrap",
        type=Path,
        help="run the proxy through this Python script (given the arguments of "
        "``fixproxy``), e.g. one that takes tracemalloc snapshots",
    )
    args = p.parse_args(argv)

    run_id = "M" + format(int(time.time() * 1000), "x")[-8:]
    run_dir = REPO / "var" / "bench" / f"memory-{run_id}"
    cfgs, overrides = write_configs(args.config.resolve(), run_dir)
    cfg = cfgs["native_full" if args.engine == "native" else "qf_full"]
    state = cfg["state"]
    procs: list[Child] = []
    samples: list[dict] = []
    try:
        venue = Child(
            "venue",
            [
                "-m",
                "bench.venue",
                "--",
                "--config",
                str(cfg["path"]),
                "--venue",
                cfg["venue"]["name"],
                "--default",
                "fill",
                "--quiet",
                "--state-dir",
                str(state / "venue-sim"),
            ],
            state / "venue.stderr",
            stdin=False,
        )
        procs.append(venue)
        venue.expect("listening", 30)
        command = [str(args.wrap)] if args.wrap else ["-m", "fixproxy"]
        proxy = Child("proxy", [*command, "run", "--config", str(cfg["path"])], state / "proxy.stderr", stdin=False)
        procs.append(proxy)
        proxy.wait_log("session_up", 60, detail=cfg["venue"]["name"])
        oms = cfg["oms"]
        loadgen = Child(
            "oms",
            [
                "-m",
                "bench.oms",
                "--port",
                str(cfg["acceptor_port"]),
                "--sender",
                oms["comp_id"],
                "--target",
                cfg["acceptor_comp_id"],
                "--fix-version",
                oms.get("fix_version", "FIX.4.4"),
                "--state-dir",
                str(state / "bench-oms"),
                "--run-id",
                run_id,
                "--account",
                BENCH_ACCOUNT,
                "--symbol",
                BENCH_SYMBOL,
            ],
            state / "oms.stderr",
            stdin=True,
        )
        procs.insert(0, loadgen)
        loadgen.expect("logon", 30)
        print(
            f"engine {args.engine}, {args.rate:g} orders/s for {args.minutes:g} min; proxy pid {proxy.pid}; "
            f"config {cfg['path']}" + (f"; changes to the shipped config: {'; '.join(overrides)}" if overrides else ""),
            flush=True,
        )
        print(
            f"{'t s':>6} {'orders':>9}  {'proxy VmRSS':>11} {'RssAnon':>9} {'RssFile':>9} {'RssShmem':>9}   "
            "children (name: VmRSS / RssAnon / RssFile KiB)",
            flush=True,
        )
        load = Load(loadgen, args.rate)
        t0 = time.monotonic()
        load.start()
        end = t0 + args.minutes * 60
        next_at = t0
        while True:
            now = time.monotonic()
            if now >= next_at:
                main_status = status(proxy.pid)
                if main_status is None:
                    raise RuntimeError(f"the proxy ended; stderr tail:\n{proxy.tail(15)}")
                kids = {f"{name_of(c)} ({c})": s for c in children(proxy.pid) if (s := status(c)) is not None}
                done = load.acked + int(min(now - t0 - load.windows * load.window_s, load.window_s) * args.rate)
                row = {"t_s": round(now - t0, 1), "orders_about": done, "proxy": main_status, "children": kids}
                samples.append(row)
                kid_text = "  ".join(
                    f"{k}: {v.get('VmRSS', 0)}/{v.get('RssAnon', 0)}/{v.get('RssFile', 0)}" for k, v in kids.items()
                )
                print(
                    f"{row['t_s']:6.0f} {done:9,d}  {main_status['VmRSS']:11,d} {main_status['RssAnon']:9,d} "
                    f"{main_status['RssFile']:9,d} {main_status.get('RssShmem', 0):9,d}   {kid_text}",
                    flush=True,
                )
                next_at += args.sample_s
            if now >= end or load.error:
                break
            time.sleep(min(0.5, max(0.0, next_at - now)))
        load.stop.set()
        load.join(load.window_s + 130)
        if load.error:
            print(f"load generator failed: {load.error}", file=sys.stderr)
        summary = report(samples, load, args)
        if args.out is not None:
            args.out.write_text(
                json.dumps(
                    {
                        "engine": args.engine,
                        "rate": args.rate,
                        "minutes": args.minutes,
                        "summary": summary,
                        "samples": samples,
                    },
                    indent=1,
                )
                + "\n"
            )
        return 0 if not load.error else 1
    finally:
        for child in procs:
            if child.name == "oms":
                child.quit({"cmd": "quit"})
            else:
                child.stop()
        if args.keep_run_dir:
            print(f"run folder kept: {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


def report(samples: list[dict], load: Load, args) -> dict:
    """Growth after the first minute, per process and field."""
    base = next((s for s in samples if s["t_s"] >= 60), None)
    last = samples[-1] if samples else None
    out: dict = {"orders_acked": load.acked, "orders_planned": load.planned}
    print(f"\norders acknowledged: {load.acked:,d} of {load.planned:,d} planned in {load.windows} full windows")
    if base is None or last is None or last is base:
        print("run shorter than a minute: no growth to report")
        return out
    print(f"growth from t={base['t_s']:.0f} s to t={last['t_s']:.0f} s:")
    for field in FIELDS:
        a, b = base["proxy"].get(field, 0), last["proxy"].get(field, 0)
        pct = (b - a) * 100 / a if a else 0.0
        out[f"proxy_{field}"] = {"first_minute_kib": a, "last_kib": b, "growth_pct": round(pct, 2)}
        print(f"  proxy {field:9}: {a:9,d} -> {b:9,d} KiB  ({pct:+.1f}%)")
    for name in last["children"]:
        kind = name.rsplit(" (", 1)[0]
        first = next((v for k, v in base["children"].items() if k.rsplit(" (", 1)[0] == kind), None)
        if first is None:
            continue
        for field in ("VmRSS", "RssAnon", "RssFile"):
            a, b = first.get(field, 0), last["children"][name].get(field, 0)
            pct = (b - a) * 100 / a if a else 0.0
            out[f"{kind}_{field}"] = {"first_minute_kib": a, "last_kib": b, "growth_pct": round(pct, 2)}
            print(f"  {kind} {field:9}: {a:9,d} -> {b:9,d} KiB  ({pct:+.1f}%)")
    return out


if __name__ == "__main__":
    sys.exit(main())
