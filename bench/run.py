"""``make bench``: what the proxy costs, measured against a direct link in one run.

Nine setups, each a set of real FIX sessions in separate processes on 127.0.0.1 free ports, started
once and reused for every window. Every setup is driven by the same light peers (bench/peers.py: a
load-generating OMS and a venue in one uvloop process, a few µs a message), so the figures are the
proxy's and not its peers'. The peers run on core 0; the proxy or relay and every process it
starts (the audit follower) on core 1 (not on a one-core machine: the report says so).

- ``direct``: OMS -> venue;
- ``relay``: OMS -> a byte relay (bench/relay.py) -> venue: one more hop that does no work;
- ``native_full``: OMS -> proxy, native engine, the shipped config (every rule, journal, audit,
  message logs) -> venue;
- ``native_cluster``: ``native_full`` with ``[cluster]`` on: one instance of a cluster, its leases,
  status and fills mirror in a PostgreSQL the benchmark starts for the run (durable: PostgreSQL's
  default settings), its processes on the peers' core; their CPU is a column of its own;
- ``native_ha_async``, ``native_ha_sync``: ``native_full`` as the active of an HA pair (``[ha]``,
  copy "async" / "sync"), its lease in the same PostgreSQL, a standby (a second ``fixproxy run`` of
  the pair, on the peers' core) in copy before the first window; the standby's CPU is a column of
  its own;
- ``native_pass``: ``native_full`` with ``[risk] rules = []``;
- ``qf_full``: ``native_full`` on the quickfix engine, for reference;
- ``qf_relay``: OMS -> the proxy's quickfix sessions with nothing of the proxy in them
  (bench/qfrelay.py) -> venue: the floor under the quickfix engine.

Latency windows run interleaved (direct, relay, native_full, ..., direct, ...) at fixed offered
rates, the lowest rate's windows first, open loop, measured from each order's intended send time
to its ExecutionReport 39=0 (see bench/peers.py); added latency is a setup's percentile minus
direct's. CPU per order is the proxy's process tree's user + system time (/proc) over the windows,
divided by the orders acknowledged (each one a new order, its acknowledgement and its fill).
Throughput is the highest rate on a ladder up to 60,000/s a setup sustains for a whole step (see
bench/measure.py SUSTAIN): found with short probes, then confirmed with full-length steps. The full
run then records the native_full proxy with py-spy at that rate. The proxy runs under bench/proxy.py
(``fixproxy run`` plus a residence timer and garbage-collector pause counts). Results go to a JSON
file and a printed report, targets first.

    .venv/bin/python -m bench run                   # full run, under 9 minutes on 2 cores
    .venv/bin/python -m bench run --quick           # about 3 minutes (nine setups)
    .venv/bin/python -m bench run --quick --profile # ... and a py-spy profile of native_full
    .venv/bin/python -m bench run --smoke           # seconds: the harness works, figures mean little
    .venv/bin/python -m bench run --quick --timeline  # where an order's time goes in the native proxy
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from bench.measure import LADDER, Bench, aggregate
from bench.report import (
    added,
    caveats,
    cluster,
    ha,
    idle_cluster,
    idle_ha,
    machine,
    ratios,
    render,
    settings,
    targets,
    versions,
)
from bench.setups import (
    HA,
    NEEDS_DB,
    PEERS_CPU,
    PROXY_CPU,
    REPO,
    SETUPS,
    Database,
    Setup,
    can_pin,
    check_config,
    write_configs,
)

SCHEMA = 2

# Per mode: latency rates and windows, throughput search and confirmation. The full run's time
# budget ends the harness by about 540 s, so that `make bench`, with its halt and replay runs
# (about 40 s), stays within 10 minutes; reserve_s is kept back for the profiles and the shutdown.
PRESETS: dict[str, dict[str, Any]] = {
    "full": dict(
        rates=[1000, 5000, 10000],
        windows=2,
        window_s=4.0,
        warmup_s=1.0,
        ack_timeout_s=2.0,
        probe_s=2.0,
        step_s=30.0,
        search_start=5000,
        max_probes=5,
        confirm_tries=2,
        time_budget_s=540,
        reserve_s=40,
        profile=True,
        profile_s=15.0,
    ),
    "quick": dict(
        rates=[1000, 5000, 10000],
        windows=1,
        window_s=1.0,
        warmup_s=0.3,
        ack_timeout_s=1.0,
        probe_s=0.6,
        step_s=1.5,
        search_start=5000,
        max_probes=3,
        confirm_tries=1,
        time_budget_s=95,
        reserve_s=5,
        profile=False,
        profile_s=5.0,
    ),
    "smoke": dict(
        rates=[200, 500],
        windows=1,
        window_s=0.5,
        warmup_s=0.3,
        ack_timeout_s=1.0,
        probe_s=0.5,
        step_s=0.5,
        search_start=1000,
        max_probes=1,
        confirm_tries=1,
        time_budget_s=60,
        reserve_s=5,
        profile=False,
        profile_s=3.0,
    ),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="fixproxy benchmark: nine setups with light peers, one run.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="about 3 minutes")
    mode.add_argument("--smoke", action="store_true", help="seconds; checks the harness, not the proxy")
    p.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "bench.json", help="JSON result file")
    p.add_argument(
        "--config",
        type=Path,
        default=REPO / "cfg" / "fixproxy.toml",
        help="config the setups are made from (default %(default)s)",
    )
    p.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], help="latency rates, orders/s")
    p.add_argument("--windows", type=int, help="latency windows per setup and rate")
    p.add_argument("--window-s", type=float, help="latency window length")
    p.add_argument("--step-s", type=float, help="throughput step length (30 in the full run)")
    p.add_argument(
        "--max-probes",
        type=int,
        help="short throughput probes per setup (0 with --confirm-tries 0: no throughput search)",
    )
    p.add_argument("--confirm-tries", type=int, help="full-length throughput steps per setup, at most")
    p.add_argument(
        "--p99-limit-ms",
        type=float,
        default=10.0,
        help="p99 bound of a sustained step (default %(default)s)",
    )
    p.add_argument("--max-in-flight", type=int, default=1000, help="orders sent but not answered (default %(default)s)")
    p.add_argument("--ack-timeout-s", type=float, help="an ack later than this after the last send is missing")
    p.add_argument(
        "--abort-lag-s",
        type=float,
        default=1.0,
        help="a window gives up when its sender is this far behind schedule (the rate is not carried)",
    )
    p.add_argument("--settle-s", type=float, default=0.3, help="pause between windows (counted in the CPU figures)")
    profile = p.add_mutually_exclusive_group()
    profile.add_argument(
        "--profile",
        action="store_const",
        const=True,
        dest="profile",
        help="py-spy records the native_full proxy at its sustained rate (always in the full run)",
    )
    profile.add_argument("--no-profile", action="store_const", const=False, dest="profile", help="no py-spy profile")
    p.add_argument("--profile-s", type=float, help="the profile's length")
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="leave the processes to the scheduler (default: peers on core 0, the proxy's processes on core 1)",
    )
    p.add_argument(
        "--proxy-switch-interval",
        type=float,
        metavar="SECONDS",
        help="experiment: sys.setswitchinterval in the proxies (default: Python's 0.005)",
    )
    p.add_argument(
        "--timeline",
        action="store_true",
        help="native-engine proxies also time an order's arrival, its write to the venue, the ack's "
        "arrival and its write to the OMS (a few µs per message: explains, does not measure)",
    )
    p.add_argument(
        "--proxy-gc-freeze-s",
        type=float,
        metavar="SECONDS",
        help="experiment: gc.freeze() in the proxies this often (default: never)",
    )
    p.add_argument(
        "--no-cluster",
        action="store_true",
        help="leave out native_cluster and the HA setups (and their PostgreSQL): for a machine without PostgreSQL",
    )
    p.add_argument(
        "--no-ha",
        action="store_true",
        help="leave out native_ha_async and native_ha_sync (the HA pairs and their standbys)",
    )
    p.add_argument(
        "--setups",
        type=lambda text: [x for x in text.split(",") if x],
        help="only these setups, comma-separated (direct and native_full always run: the figures are "
        "measured against them); default every setup",
    )
    p.add_argument("--keep-run-dir", action="store_true", help="keep configs, stores, message logs and stderr")
    args = p.parse_args(argv)
    unknown = sorted(set(args.setups or ()) - set(SETUPS))
    if unknown:
        p.error(f"--setups: unknown {', '.join(unknown)} (known: {', '.join(SETUPS)})")
    args.mode = "quick" if args.quick else "smoke" if args.smoke else "full"
    for key, value in PRESETS[args.mode].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def pinning(args: argparse.Namespace, setups: dict[str, Setup], db: Database | None = None) -> dict[str, Any]:
    """Where each process ran, read back from /proc: the report says what was pinned, not what was meant."""
    pinned = not args.no_pin and can_pin()
    if args.no_pin:
        why = "not pinned (--no-pin): the scheduler placed every process"
    elif pinned:
        why = (
            f"the peers (OMS and venue, one process) on core {PEERS_CPU}; the proxy or relay and every "
            f"process it starts (audit follower, ...) on core {PROXY_CPU} (taskset -c {PROXY_CPU})"
        )
    elif len(os.sched_getaffinity(0)) < 2:
        why = "not pinned: this machine gives the benchmark one core, so peers and proxy share it"
    else:
        why = "not pinned: taskset is not installed"
    if db is not None:
        why += (
            f"; the PostgreSQL of native_cluster and the HA pairs on core {PEERS_CPU} with the peers (the proxy's "
            "core stays its own, as with a database on another machine)"
            if db.pin
            else "; the PostgreSQL not pinned"
        )
    if any(name in HA for name in setups):
        why += (
            f"; each HA setup's standby on core {PEERS_CPU} with the peers (as on another machine)"
            if pinned
            else "; the HA standbys not pinned"
        )
    processes = {name: setup.pinning() for name, setup in setups.items()}
    if db is not None:
        processes["postgres"] = db.pinning()
    return {"pinned": pinned, "how": why, "processes": processes}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    args.log = lambda text: print(f"[{time.monotonic() - started:6.1f}s] {text}", file=sys.stderr, flush=True)
    run_id = "B" + format(int(time.time() * 1000), "x")[-8:]  # ClOrdIDs unique per session per day
    run_dir = REPO / "var" / "bench" / f"run-{run_id}"
    run_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    info = machine()

    # Stop the children on SIGTERM/SIGHUP too, not only on ^C or an error.
    def _terminate(signum: int, frame: FrameType | None) -> NoReturn:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)

    names = [
        n
        for n in SETUPS
        if not (args.no_cluster and n in NEEDS_DB)
        and not (args.no_ha and n in HA)
        and (args.setups is None or n in ("direct", "native_full", *args.setups))
    ]
    db = Database(pin=not args.no_pin) if any(n in NEEDS_DB for n in names) else None
    try:
        db_url = db.start() if db is not None else None
        cfgs, overrides = write_configs(args.config, run_dir, db_url)
    except BaseException:
        if db is not None:
            db.stop()
        raise
    proxy_args = ["--switch-interval", str(args.proxy_switch_interval)] if args.proxy_switch_interval else []
    if args.proxy_gc_freeze_s:
        proxy_args += ["--gc-freeze-every", str(args.proxy_gc_freeze_s)]
    setups = {
        name: Setup(
            name,
            cfgs[name],
            run_id,
            proxy_args + (["--timeline"] if args.timeline and cfgs[name]["engine"] == "native" else []),
            pin=not args.no_pin,
        )
        for name in names
    }
    bench = Bench(args, setups, db)
    shutdown: dict[str, dict] = {}
    pids: dict[str, dict] = {}
    pinned: dict[str, Any] = {}
    profile: dict | None = None
    cluster_profile: dict | None = None
    error = None
    try:
        for name in names:
            cfgs[name]["check"] = check_config(cfgs[name]["path"])
            if cfgs[name].get("standby"):
                check_config(cfgs[name]["standby"]["path"])
        for name in names:
            args.log(f"starting {name} ...")
            setups[name].start()
            pids[name] = setups[name].pids()
        args.log("warm-up")
        bench.warm_up()
        pinned = pinning(args, setups, db)  # after the warm-up: the proxies' children have started
        args.log(f"pinning: {pinned['how']}")
        args.log("latency windows")
        bench.run_latency()
        args.log("throughput")
        bench.run_throughput()
        if args.profile:
            t = bench.throughput["native_full"]
            rate = t["sustained_rate"] or t["highest_passing_probe"] or LADDER[1]
            out = args.out.parent / "native_full.pyspy.txt"
            args.log(f"profiling the native_full proxy at {rate}/s for {args.profile_s:g} s into {out}")
            profile = bench.profile(out, rate, args.profile_s)
            if "native_cluster" in setups:  # at the same rate: the two profiles compare
                out = args.out.parent / "native_cluster.pyspy.txt"
                args.log(f"profiling the native_cluster proxy at {rate}/s for {args.profile_s:g} s into {out}")
                cluster_profile = bench.profile(out, rate, args.profile_s, "native_cluster")
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - reported, then re-raised after cleanup
        error = exc
    finally:
        for name in reversed(names):
            shutdown[name] = setups[name].stop()
        if db is not None:
            db.stop()
    found = {
        "book": importlib.util.find_spec("fixproxy.core.book") is not None,
        "audit_files": sorted(
            str(p.relative_to(run_dir))
            for p in (run_dir / "native_full").rglob("*")
            if p.is_file() and "audit" in p.name
        ),
    }
    args.log("stopped every process")
    if error is not None:
        args.log(f"bench failed: {error!r}; the run folder is kept: {run_dir}")
        if not isinstance(error, Exception):
            raise error
        return 1

    info["load_average_end"] = list(os.getloadavg())
    cpu = bench.cpu_windows or [{"other_cores": 0.0, "bench_cores": 0.0}]
    info["other_work_cores"] = {
        "mean": round(sum(c["other_cores"] for c in cpu) / len(cpu), 2),
        "max": max(c["other_cores"] for c in cpu),
        "bench_mean": round(sum(c["bench_cores"] for c in cpu) / len(cpu), 2),
        "how": "per window: busy CPU time of the whole machine (/proc/stat) minus the benchmark's processes'",
    }
    latency = {
        rate: {name: aggregate(ws, bench.passed) for name, ws in by.items()} for rate, by in bench.latency.items()
    }
    r = ratios(latency, bench.throughput)
    add = added(latency)
    report = {
        "schema": SCHEMA,
        "mode": args.mode,
        "timestamp": stamp,
        "duration_s": round(time.monotonic() - started, 1),
        "machine": info,
        "versions": versions(),
        "settings": settings(args, cfgs, overrides, names),
        "pinning": pinned,
        "ratios": r,
        "added_latency_us": add,
        "targets": targets(r, add, latency, bench.throughput),
        "cluster": cluster(latency, add),
        "ha": ha(latency, add),
        "latency": latency,
        "throughput": bench.throughput,
        "not_measured": caveats(
            args, bench.throughput, latency, found, bench.skipped_for_time, idle_cluster(bench), idle_ha(bench)
        ),
        "processes": {name: {"pids": pids.get(name, {}), "exit_codes": shutdown.get(name, {})} for name in names},
        "profile": profile,
        "cluster_profile": cluster_profile,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    print(f"\nwritten: {args.out}")
    if args.keep_run_dir:
        print(f"run folder kept: {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
