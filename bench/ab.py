"""A/B: one benchmark setup started twice, B with config changes, measured in interleaved windows.

On a shared two-core machine the same setup moves by tens of percent from one run to the next, so
a setting or a change is judged side by side: A and B run at the same time (one idle while the
other is measured), window after window (A B A B ...), and each one's windows are merged into one
histogram. Same configs and light peers as `make bench`.

    .venv/bin/python -m bench ab --setup native_full --windows 10 \\
        --b-set 'proxy.writer_priority="normal"'

A change of code (not of config) is measured the same way from two checkouts: run this script
from each, or put the change behind a config key while measuring it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import tomllib
from pathlib import Path

import tomli_w

from bench import histogram
from bench.setups import NEEDS_DB, REPO, SETUPS, Setup, write_configs


def _override(text: str) -> tuple[tuple[str, ...], object]:
    """``section.key=<JSON value>`` as (path, value); ValueError naming what is wrong."""
    path, sep, value = text.partition("=")
    if not sep or "." not in path:
        raise ValueError(f'{text!r}: expected section.key=<JSON value>, e.g. proxy.writer_priority="normal"')
    try:
        return tuple(path.split(".")), json.loads(value)
    except ValueError:
        raise ValueError(f"{text!r}: the value must be JSON (strings in double quotes)") from None


def apply(cfg_path: Path, overrides: list[tuple[tuple[str, ...], object]]) -> dict[str, object]:
    """Rewrite a setup's config with ``overrides`` applied; each changed key's value, read back from the file."""
    cfg = tomllib.loads(cfg_path.read_text())
    for path, value in overrides:
        table = cfg
        for key in path[:-1]:
            table = table.setdefault(key, {})
        table[path[-1]] = value
    cfg_path.write_text(f"# written by the benchmark (bench/ab.py)\n{tomli_w.dumps(cfg)}")
    written = tomllib.loads(cfg_path.read_text())
    applied = {}
    for path, _ in overrides:
        value = written
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        applied[".".join(path)] = value
    return applied


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--setup", choices=[s for s in SETUPS if s not in ("direct", "relay", *NEEDS_DB)], default="native_full"
    )
    p.add_argument("--rate", type=float, default=1000)
    p.add_argument("--windows", type=int, default=8, help="windows for each of A and B")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--config", type=Path, default=REPO / "cfg" / "fixproxy.toml")
    p.add_argument("--a-set", action="append", default=[], metavar="SECTION.KEY=JSON", help="a change to A's config")
    p.add_argument("--b-set", action="append", default=[], metavar="SECTION.KEY=JSON", help="a change to B's config")
    p.add_argument("--out", type=Path, help="also write the windows and the merged figures as JSON here")
    args = p.parse_args(argv)
    try:
        changes = {"A": [_override(x) for x in args.a_set], "B": [_override(x) for x in args.b_set]}
    except ValueError as exc:
        p.error(str(exc))
    run_id = "AB" + format(int(time.time() * 1000), "x")[-7:]
    run_dir = REPO / "var" / "bench" / f"ab-{run_id}"
    setups: dict[str, Setup] = {}
    hists = {label: histogram.new_histogram() for label in changes}
    windows: list[dict] = []
    applied: dict[str, dict] = {}
    try:
        for label, overrides in changes.items():
            cfgs, _ = write_configs(args.config.resolve(), run_dir / label)
            cfg = cfgs[args.setup]
            applied[label] = apply(cfg["path"], overrides)
            setups[label] = Setup(args.setup, cfg, f"{run_id}{label}")
            setups[label].start()
        for setup in setups.values():
            setup.window(args.rate, 3, 1000, 5)  # warm-up
        print(
            f"{args.setup} at {args.rate:g}/s, {args.windows} windows of {args.seconds:g} s each; "
            f"A: {' '.join(args.a_set) or 'as configured'}; B: {' '.join(args.b_set) or 'as configured'}"
        )
        for i in range(args.windows):
            for label, setup in setups.items():
                r = setup.window(args.rate, args.seconds, 1000, 5.0)
                h = histogram.decode(r["latency"])
                hists[label].add(h)
                s = histogram.summary(h)
                windows.append(
                    {
                        "window": i + 1,
                        "variant": label,
                        "acked": r["acked"],
                        "planned": r["planned"],
                        **{f"{k}_us": s[k] for k in ("p50", "p90", "p99", "p99.9", "max")},
                    }
                )
                print(
                    f"window {i + 1:3d} {label}  p50 {s['p50']:>7}  p90 {s['p90']:>7}  p99 {s['p99']:>7}  "
                    f"p99.9 {s['p99.9']:>7} µs  acked {r['acked']}/{r['planned']}",
                    flush=True,
                )
                time.sleep(0.3)
    finally:
        for setup in setups.values():
            setup.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    merged = {label: histogram.summary(h) for label, h in hists.items()}
    for label, s in merged.items():
        print(
            f"merged     {label}  p50 {s['p50']:>7}  p90 {s['p90']:>7}  p99 {s['p99']:>7}  p99.9 {s['p99.9']:>7} µs  "
            f"max {s['max']} µs  ({s['count']} orders)"
        )
    ratio = {
        k: round(merged["B"][k] / merged["A"][k], 3) if merged["A"][k] and merged["B"][k] else None
        for k in ("p50", "p90", "p99", "p99.9")
    }
    print("B / A      " + "  ".join(f"{k} {v}" for k, v in ratio.items()))
    if args.out is not None:
        args.out.write_text(
            json.dumps(
                {
                    "setup": args.setup,
                    "rate": args.rate,
                    "seconds": args.seconds,
                    "a_set": args.a_set,
                    "b_set": args.b_set,
                    "applied": applied,
                    "windows": windows,
                    "merged": merged,
                    "b_over_a": ratio,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
