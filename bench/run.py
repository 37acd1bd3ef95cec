"""``make bench``: what the proxy costs, measured against a direct link in one run.

Six setups, each a set of real FIX sessions in separate processes on 127.0.0.1 free ports,
started once and reused for every window:

- ``direct``: load-generating OMS -> venue simulator (the simulator answers the OMS's CompIDs);
- ``relay``: OMS -> a byte relay (bench/relay.py) -> venue: one more hop that does no work;
- ``qf_relay``: OMS -> the proxy's quickfix sessions with nothing of the proxy in them
  (bench/qfrelay.py) -> venue: the floor under the quickfix engine;
- ``pass_through``: OMS -> proxy -> venue, ``[risk] rules = []``, otherwise the full setup's settings;
- ``full``: OMS -> proxy -> venue with the shipped config (every rule, message logs on);
- ``full_native``: ``full`` with ``[proxy] engine = "native"``.

Latency windows run interleaved (direct, relay, qf_relay, pass_through, full, full_native, direct, ...) at
fixed offered rates, the lowest rate's windows first, open loop, measured from each order's
intended send time to its ExecutionReport 39=0 (see bench/oms.py). Throughput is the highest
offered rate a setup sustains for a whole step (see SUSTAIN below): found with short probes, then
confirmed with full-length steps. The proxy runs under bench/proxy.py (``fixproxy run`` plus a
residence timer and garbage-collector pause counts), the venue simulator under bench/venue.py.
Results go to a JSON file and a printed report, ratios first.

    .venv/bin/python -m bench run          # full run, under 10 minutes on 2 cores
    .venv/bin/python -m bench run --quick          # about a minute and a half
    .venv/bin/python -m bench run --smoke          # seconds: the harness works, figures mean little
    .venv/bin/python -m bench run --profile DIR    # then py-spy records the proxy in one full window
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
from typing import NoReturn

from bench.measure import Bench, aggregate
from bench.report import caveats, machine, ratios, render, settings, targets, versions
from bench.setups import REPO, SETUPS, Setup, check_config, write_configs

SCHEMA = 1

# Per mode: latency rates and windows, throughput search and confirmation. The full run's search
# starts at 2,000/s (every setup's 1,000/s is in the latency section already), so its five probes
# end closer to each setup's limit (steps of about 6% near 3,000/s instead of 17%). Its time budget
# ends the harness by about 530 s, so that `make bench`, with its halt and replay runs (about 40 s),
# stays within 10 minutes.
PRESETS: dict[str, dict] = {
    "full": dict(
        rates=[1000, 5000],
        windows=3,
        window_s=5.0,
        warmup_s=2.0,
        ack_timeout_s=5.0,
        probe_s=3.0,
        step_s=30.0,
        search_start=2000,
        max_probes=5,
        confirm_tries=3,
        time_budget_s=540,
    ),
    "quick": dict(
        rates=[1000, 5000],
        windows=1,
        window_s=2.0,
        warmup_s=0.5,
        ack_timeout_s=2.0,
        probe_s=1.0,
        step_s=2.0,
        search_start=1000,
        max_probes=3,
        confirm_tries=1,
        time_budget_s=100,
    ),
    "smoke": dict(
        rates=[200, 500],
        windows=1,
        window_s=0.5,
        warmup_s=0.3,
        ack_timeout_s=2.0,
        probe_s=0.5,
        step_s=0.5,
        search_start=500,
        max_probes=1,
        confirm_tries=1,
        time_budget_s=60,
    ),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="fixproxy benchmark: direct vs pass-through vs full proxy, one run.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="about a minute and a half")
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
        "--venue-behaviour",
        choices=("ack", "fill"),
        default="fill",
        help="venue simulator answer (default fill: ack then fill, so open orders and exposure stay "
        "bounded and the book is updated; latency is measured to the ack)",
    )
    p.add_argument(
        "--p50-limit-ms",
        type=float,
        default=10.0,
        help="p50 bound of a sustained step (default %(default)s): a median above it is a standing queue",
    )
    p.add_argument(
        "--p99-limit-ms",
        type=float,
        default=500.0,
        help="p99 bound of a sustained step (default %(default)s: a sanity bound; tail latency itself "
        "is judged in the latency section)",
    )
    p.add_argument("--max-in-flight", type=int, default=1000, help="orders sent but not answered (default %(default)s)")
    p.add_argument("--ack-timeout-s", type=float, help="an ack later than this is missing (full: 5)")
    p.add_argument(
        "--abort-lag-s",
        type=float,
        default=1.0,
        help="a throughput step gives up when its sender is this far behind schedule",
    )
    p.add_argument("--settle-s", type=float, default=0.3, help="pause between windows")
    p.add_argument(
        "--engine",
        choices=("quickfix", "native"),
        default="",
        help="the proxy setups' FIX engine (default: the config's [proxy] engine)",
    )
    p.add_argument("--profile", type=Path, metavar="DIR", help="record the full proxy with py-spy into DIR")
    p.add_argument("--profile-rate", type=int, default=3000)
    p.add_argument("--profile-s", type=float, default=20.0)
    p.add_argument(
        "--proxy-switch-interval",
        type=float,
        metavar="SECONDS",
        help="experiment: sys.setswitchinterval in both proxies (default: Python's 0.005)",
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
        help="experiment: gc.freeze() in both proxies this often (default: never)",
    )
    p.add_argument(
        "--venue-gc-freeze-s",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="gc.freeze() in the venue simulators this often, 0 for never (default %(default)s)",
    )
    p.add_argument("--keep-run-dir", action="store_true", help="keep configs, stores, message logs and stderr")
    args = p.parse_args(argv)
    args.mode = "quick" if args.quick else "smoke" if args.smoke else "full"
    for key, value in PRESETS[args.mode].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


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

    cfgs, overrides = write_configs(args.config, run_dir, args.engine)
    proxy_args = ["--switch-interval", str(args.proxy_switch_interval)] if args.proxy_switch_interval else []
    if args.proxy_gc_freeze_s:
        proxy_args += ["--gc-freeze-every", str(args.proxy_gc_freeze_s)]
    setups = {
        name: Setup(
            name,
            cfgs[name],
            run_id,
            args.venue_behaviour,
            proxy_args + (["--timeline"] if args.timeline and cfgs[name]["engine"] == "native" else []),
            args.venue_gc_freeze_s,
        )
        for name in SETUPS
    }
    bench = Bench(args, setups)
    shutdown: dict[str, dict] = {}
    pids: dict[str, dict] = {}
    profile: dict | None = None
    error = None
    try:
        for name in SETUPS:
            cfgs[name]["check"] = check_config(cfgs[name]["path"])
        for name in SETUPS:
            args.log(f"starting {name} ...")
            setups[name].start()
            pids[name] = setups[name].pids()
        args.log("warm-up")
        bench.warm_up()
        args.log("latency windows")
        bench.run_latency()
        args.log("throughput")
        bench.run_throughput()
        if args.profile:
            args.log(f"profiling the full setup's proxy at {args.profile_rate}/s")
            profile = bench.profile(args.profile)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - reported, then re-raised after cleanup
        error = exc
    finally:
        for name in reversed(SETUPS):
            shutdown[name] = setups[name].stop()
    found = {
        "book": importlib.util.find_spec("fixproxy.core.book") is not None,
        "audit_files": sorted(
            str(p.relative_to(run_dir)) for p in (run_dir / "full").rglob("*") if p.is_file() and "audit" in p.name
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
    report = {
        "schema": SCHEMA,
        "mode": args.mode,
        "timestamp": stamp,
        "duration_s": round(time.monotonic() - started, 1),
        "machine": info,
        "versions": versions(),
        "settings": settings(args, cfgs, overrides),
        "ratios": r,
        "targets": targets(r),
        "latency": latency,
        "throughput": bench.throughput,
        "not_measured": caveats(args, bench.throughput, latency, found, bench.skipped_for_time),
        "processes": {name: {"pids": pids.get(name, {}), "exit_codes": shutdown.get(name, {})} for name in SETUPS},
        "profile": profile,
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
