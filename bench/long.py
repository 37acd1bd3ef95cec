"""Long run: one benchmark setup at one offered rate, window after window, to see drift.

`make bench` measures each setup on fresh tables (its 1,000/s windows come first). A proxy that
trades all day holds ever larger tables; this runs many windows in a row on one setup and prints,
per window, the latency and the proxy's longest garbage-collector pauses, so a cost that grows
with what the proxy holds shows as a trend (it found the heap-freeze stall described in README,
"Long runs"). Same configs and light peers as `make bench`.

    .venv/bin/python -m bench long --setup native_full --rate 1000 --windows 12
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from bench import histogram
from bench.setups import NEEDS_DB, PROXIES, REPO, Setup, write_configs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setup", choices=[s for s in PROXIES if s not in NEEDS_DB], default="native_full")
    p.add_argument("--rate", type=float, default=1000)
    p.add_argument("--windows", type=int, default=12)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--config", type=Path, default=REPO / "cfg" / "fixproxy.toml")
    p.add_argument("--out", type=Path, help="also write the windows as JSON here")
    p.add_argument(
        "--keep-run-dir",
        action="store_true",
        help="keep configs, stores and logs (a long run's audit store alone is about 1 GB)",
    )
    args = p.parse_args(argv)
    run_id = "L" + format(int(time.time() * 1000), "x")[-8:]
    run_dir = REPO / "var" / "bench" / f"long-{run_id}"
    cfgs, _ = write_configs(args.config.resolve(), run_dir)
    setup = Setup(args.setup, cfgs[args.setup], run_id)
    windows = []
    try:
        setup.start()  # inside: a setup that fails to start still has its processes stopped
        setup.window(args.rate, 3, 1000, 5)  # warm-up
        print(f"{args.setup} at {args.rate:g}/s, {args.windows} windows of {args.seconds:g} s")
        print("window  orders so far   p50 µs   p99 µs  p99.9 µs   longest GC pause ms (young / middle / full)")
        done = 0
        for i in range(args.windows):
            r = setup.window(args.rate, args.seconds, 1000, 5.0)
            done += r["acked"]
            s = histogram.summary(histogram.decode(r["latency"]))
            gc = (r.get("residence") or {}).get("gc") or {}
            pauses = [gc.get(g, {}).get("max_ms", 0.0) for g in ("gen0", "gen1", "gen2")]
            windows.append(
                {
                    "window": i + 1,
                    "orders_so_far": done,
                    "acked": r["acked"],
                    "planned": r["planned"],
                    "p50_us": s["p50"],
                    "p99_us": s["p99"],
                    "p99.9_us": s["p99.9"],
                    "gc": gc,
                }
            )
            print(
                f"{i + 1:6d}  {done:13,d}  {s['p50']:7}  {s['p99']:7}  {s['p99.9']:8}   "
                + " / ".join(f"{ms:.2f}" for ms in pauses),
                flush=True,
            )
    finally:
        setup.stop()
        if args.keep_run_dir:
            print(f"run folder kept: {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    if args.out is not None:
        args.out.write_text(
            json.dumps({"setup": args.setup, "rate": args.rate, "seconds": args.seconds, "windows": windows}, indent=2)
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
