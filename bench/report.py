"""The report: machine and versions, settings, ratios and targets, the printed summary and its caveats."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import histogram
from bench.measure import SUSTAIN
from bench.setups import BENCH_ACCOUNT, BENCH_SYMBOL, REPO, SETUPS


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpu_model": cpu or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "load_average_start": list(os.getloadavg()),
    }


def versions() -> dict:
    def v(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "quickfix": v("quickfix"),
        "uvloop": v("uvloop"),
        "hdrhistogram": v("hdrhistogram"),
        "msgspec": v("msgspec"),
        "structlog": v("structlog"),
        "fixproxy": v("fixproxy"),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(changes := git("status", "--porcelain", "--untracked-files=all", "--", "fixproxy", "cfg")),
        "git_uncommitted": changes.splitlines(),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def ratios(latency: dict, throughput: dict) -> dict:
    keys = [k for k, _ in histogram.PERCENTILES] + ["max"]
    pairs = (
        ("full/direct", "full", "direct"),
        ("pass_through/direct", "pass_through", "direct"),
        ("full/pass_through", "full", "pass_through"),
        ("relay/direct", "relay", "direct"),
        ("full/relay", "full", "relay"),
        ("qf_relay/direct", "qf_relay", "direct"),
        ("full/qf_relay", "full", "qf_relay"),
        ("full_native/direct", "full_native", "direct"),
        ("full_native/relay", "full_native", "relay"),
        ("full_native/full", "full_native", "full"),
    )
    lat = {
        rate: {
            label: {k: _ratio(by[a]["latency_us"][k], by[b]["latency_us"][k]) for k in keys} for label, a, b in pairs
        }
        for rate, by in latency.items()
    }
    tp = {label: _ratio(throughput[a]["sustained_rate"], throughput[b]["sustained_rate"]) for label, a, b in pairs}
    return {"latency": lat, "throughput": tp}


def targets(r: dict) -> dict:
    """Issue 6's targets for the quickfix engine, read off the ratios (reported, never asserted)."""

    def le(x: float | None, limit: float) -> bool | None:
        return None if x is None else x <= limit

    # qf_relay's lines say whether the floor under the quickfix engine is itself within a target: where
    # it is not, no proxy on the quickfix engine can meet that target on this machine.
    out: dict[str, Any] = {
        rate: {
            "full_p50_le_2.0x_direct": le(by["full/direct"]["p50"], 2.0),
            "full_p99_le_2.5x_direct": le(by["full/direct"]["p99"], 2.5),
            "full_over_pass_through_p50_le_1.10": le(by["full/pass_through"]["p50"], 1.10),
            "full_native_p50_le_2.0x_direct": le(by["full_native/direct"]["p50"], 2.0),
            "full_native_p99_le_2.5x_direct": le(by["full_native/direct"]["p99"], 2.5),
            "floor_qf_relay_p50_le_2.0x_direct": le(by["qf_relay/direct"]["p50"], 2.0),
            "floor_qf_relay_p99_le_2.5x_direct": le(by["qf_relay/direct"]["p99"], 2.5),
        }
        for rate, by in r["latency"].items()
    }
    for setup in ("full", "full_native", "qf_relay"):
        ft = r["throughput"][f"{setup}/direct"]
        out[f"throughput_{'floor_' if setup == 'qf_relay' else ''}{setup}_ge_0.5x_direct"] = (
            None if ft is None else ft >= 0.5
        )
    return out


def render(report: dict) -> str:
    """The printed report: ratios first, then absolute figures."""
    out: list[str] = []
    add = out.append
    m, v, s = report["machine"], report["versions"], report["settings"]
    add(f"fixproxy benchmark ({report['mode']} mode), {report['timestamp']}, {report['duration_s']:.0f} s")
    add(
        f"machine: {m['cpu_model']}, {m['cores']} cores, {m['memory_gib']} GiB; load average at start "
        f"{m['load_average_start'][0]:.2f}, at end {m['load_average_end'][0]:.2f}"
    )
    other = m["other_work_cores"]
    add(
        f"other work on the machine during the windows: mean {_fmt(other['mean'])} cores, max "
        f"{_fmt(other['max'])} (of {m['cores']}); the benchmark's own processes: mean {_fmt(other['bench_mean'])}"
    )
    add(
        f"python {v['python']}, quickfix {v['quickfix']}, uvloop {v['uvloop']}, hdrhistogram {v['hdrhistogram']}, "
        f"commit {v['git_commit'][:10]}{' (dirty)' if v['git_dirty'] else ''}"
    )
    add(f"venue simulator behaviour: {s['venue_behaviour']}; latency = intended send -> ExecutionReport 39=0, µs")
    add("")
    add("RATIOS (latency percentiles, same offered rate)")
    for rate, by in report["ratios"]["latency"].items():
        for label, vals in by.items():
            add(f"  {rate:>6}/s  {label:<20} " + "  ".join(f"{k} {_fmt(x, 'x')}" for k, x in vals.items()))
    tp = report["ratios"]["throughput"]
    add("  throughput          " + "  ".join(f"{k} {_fmt(x, 'x')}" for k, x in tp.items()))
    add("")
    add("LATENCY (µs, from intended send time; windows merged)")
    for rate, by in report["latency"].items():
        for name, agg in by.items():
            lat, o = agg["latency_us"], agg["orders"]
            add(
                f"  {rate:>6}/s  {name:<12} "
                + "  ".join(f"{k} {_fmt(lat[k])}" for k, _ in histogram.PERCENTILES)
                + f"  max {_fmt(lat['max'])}   acked {o['acked']}/{o['planned']}, rejected {o['rejected']}, "
                f"timeouts {o['timeouts']}, unsent {o['unsent']}"
                + (
                    ""
                    if agg["sustained"]
                    else "  NOT SUSTAINED: " + next(w["why"] for w in agg["per_window"] if not w["sustained"])
                )
            )
    add("")
    add("SERVICE TIME (µs, from actual send; the difference to the above is the load generator's lag)")
    for rate, by in report["latency"].items():
        for name, agg in by.items():
            st = agg["service_time_us"]
            add(
                f"  {rate:>6}/s  {name:<12} "
                + "  ".join(f"{k} {_fmt(st[k])}" for k, _ in histogram.PERCENTILES)
                + f"  max {_fmt(st['max'])}"
            )
    add("")
    add("PROXY RESIDENCE (µs in the edge's fromApp: decode -> decision -> send)")
    for rate, by in report["latency"].items():
        for name, agg in by.items():
            res = agg["residence_us"]
            if res is None:
                continue
            for direction, rs in res.items():
                add(
                    f"  {rate:>6}/s  {name:<12} {direction:<13} "
                    + "  ".join(f"{k} {_fmt(rs[k])}" for k, _ in histogram.PERCENTILES)
                    + f"  max {_fmt(rs['max'])}"
                )
            for span, ts in (agg.get("timeline_us") or {}).items():
                add(
                    f"  {rate:>6}/s  {name:<12} {span:<24} "
                    + "  ".join(f"{k} {_fmt(ts[k])}" for k, _ in histogram.PERCENTILES[:2])
                    + "  (--timeline)"
                )
            gcp = agg.get("proxy_gc_pauses") or {}
            if gcp:
                add(
                    f"  {rate:>6}/s  {name:<12} gc pauses     "
                    + "  ".join(f"{g}: {v['count']} x, max {v['max_ms']:g} ms" for g, v in gcp.items())
                )
    add("")
    add(
        f"THROUGHPUT (highest offered rate sustained for {s['step_s']:g} s: {SUSTAIN}; "
        f"p50 <= {s['p50_limit_ms']:g} ms, p99 <= {s['p99_limit_ms']:g} ms)"
    )
    for name, t in report["throughput"].items():
        at = next((st for st in t["steps"] if st["passed"]), None)
        there = f", p50 {_fmt(at['p50_us'])} µs p99 {_fmt(at['p99_us'])} µs there" if at else ""
        add(
            f"  {name:<12} {_fmt(t['sustained_rate'], '/s')}{there}   (probes passed up to "
            f"{_fmt(t['highest_passing_probe'])}/s, failed from {_fmt(t['lowest_failing_probe'])}/s; {t['limited_by']})"
        )
    add("")
    add("TARGETS (issue 6; reported, not asserted; n/a where a figure is missing)")
    for key, val in report["targets"].items():
        if isinstance(val, dict):
            add(f"  {key:>6}/s  " + "  ".join(f"{k}: {_yes(v)}" for k, v in val.items()))
        else:
            add(f"  {key}: {_yes(val)}")
    add("")
    add("NOT MEASURED / CAVEATS")
    for note in report["not_measured"]:
        add(f"  - {note}")
    if report.get("profile"):
        p = report["profile"]
        add("")
        add(f"PROFILE (py-spy, proxy of the full setup, {p.get('rate')}/s for {p.get('duration_s')} s)")
        for kind, top in (p.get("top") or {}).items():
            add(f"  {kind} ({p['raw'][kind]}), functions by own samples:")
            for row in top.get("self", [])[:12]:
                add(f"    {row['share'] * 100:5.1f}%  {row['function']}")
    return "\n".join(out)


def _yes(x: bool | None) -> str:
    return "n/a" if x is None else "met" if x else "missed"


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and not x.is_integer():
        return f"{x:.2f}{unit}"
    return f"{int(x)}{unit}"


def caveats(args: argparse.Namespace, throughput: dict, latency: dict, found: dict, skipped: list[str]) -> list[str]:
    book = (
        "the position book is on (the venue's fills update it)"
        if found["book"]
        else "the position book does not exist yet"
    )
    audit = (
        f"the audit store was written ({', '.join(found['audit_files'])})"
        if found["audit_files"]
        else "no audit store file was written (it does not exist yet, or is off), so its cost is not in these figures"
    )
    notes = [
        f"the full setup runs every risk rule with message logs on; {book}; {audit}",
        "proxy residence is timed around the edge's fromApp callback (quickfix engine) or the native engine's "
        "deliver (bench/proxy.py); it excludes the socket read, and the session layer's own parsing "
        "and checks before the callback; the native figure leaves out the time inside socket writes, the "
        "quickfix one includes it (quickfix writes inside sendToTarget)",
        "replay speed and halt-to-last-cancel time for 1,000 working orders are measured by `make bench` after "
        "this harness (bench/replay.py, bench/halt.py), not here",
        "all processes share 2 cores: the direct setup runs 2 busy processes, the relay and qf_relay setups 3, "
        "the proxy setups 3 plus the proxy's audit follower process, so the proxy's cost includes competing for CPU "
        "with the load generator and the venue simulator",
        "quickfix acceptors (proxy, venue simulator) bind every interface (quickfix 1.16 has no bind-address "
        "setting); AllowedRemoteAddresses limits them to 127.0.0.1 and every connection is made to 127.0.0.1",
        "other work on this machine at the same time adds noise: each window records how many cores other "
        "processes kept busy (machine.other_work_cores, per_window[].cpu)",
    ]
    for rate, by in latency.items():
        saturated = [name for name, agg in by.items() if not agg["sustained"]]
        if saturated:
            notes.append(
                f"at {rate}/s, not sustained by {' and '.join(saturated)} (see NOT SUSTAINED): latency "
                "there includes queueing, so ratios at that rate measure the backlog more than the path"
            )
    if skipped:
        notes.append("throughput steps skipped to finish within the time budget: " + ", ".join(skipped))
    for name, t in throughput.items():
        if t["sustained_rate"] is None:
            notes.append(
                f"{name}: no rate was sustained for a full {args.step_s:.0f} s step within the time budget; "
                "its throughput ratios are n/a"
            )
        elif t["lowest_failing_probe"] is None:
            notes.append(f"{name}: the throughput search never failed a probe; the figure is a lower bound")
    if args.mode != "full":
        notes.append(
            f"{args.mode} mode: short windows and steps; the figures show the harness works, not what the proxy costs"
        )
    return notes


def settings(args: argparse.Namespace, cfgs: dict, overrides: list[str]) -> dict:
    proxy_setups = {
        name: {
            "rules": "every rule (config default)" if cfgs[name]["rules"] is None else cfgs[name]["rules"],
            "check_config": cfgs[name].get("check", ""),
            "message_log": cfgs[name]["message_log"],
            "log_level": cfgs[name]["log_level"],
            "engine": cfgs[name]["engine"],
            "store": "FileStore (quickfix's, or its format written by the native engine)",
            "process": "bench/proxy.py (fixproxy run + residence timer)",
            "switch_interval_s": args.proxy_switch_interval or sys.getswitchinterval(),
            "gc_freeze_every_s": args.proxy_gc_freeze_s,
        }
        for name in ("pass_through", "full", "full_native")
    }
    return {
        "config_template": str(args.config),
        "config_changes": ["ports and state folders of each setup", *overrides],
        "venue_behaviour": args.venue_behaviour,
        "venue_simulator": "fixproxy sim venue --quiet (FileStore, no message log), run by bench/venue.py "
        f"with gc.freeze() every {args.venue_gc_freeze_s:g} s (0: never) so its own growing "
        "full collections stay out of every setup's figures",
        "load_generator": "bench/oms.py: quickfix initiator, MemoryStore, no message log, GIL switch interval 0.5 ms",
        "orders": f"NewOrderSingle {BENCH_SYMBOL} 100 limit, account {BENCH_ACCOUNT}, buy at 189 and sell at 191 "
        "alternating (they never cross: every rule passes them)",
        "order_path": {
            "direct": "OMS -> venue simulator",
            "relay": "OMS -> byte relay (bench/relay.py: uvloop, no FIX work) -> venue simulator",
            "qf_relay": "OMS -> the proxy's quickfix sessions, same settings, forwarding each application "
            "message unchanged (bench/qfrelay.py: no proxy work) -> venue simulator",
            "pass_through": "OMS -> proxy -> venue simulator",
            "full": "OMS -> proxy -> venue simulator",
            "full_native": "OMS -> proxy (native engine) -> venue simulator",
        },
        "proxy": proxy_setups,
        "fix_version": cfgs["full"]["oms"].get("fix_version", "FIX.4.4"),
        "rates": args.rates,
        "windows": args.windows,
        "window_s": args.window_s,
        "warmup_s": args.warmup_s,
        "order_of_windows": "interleaved per window index and rate: " + ", ".join(SETUPS),
        "probe_s": args.probe_s,
        "step_s": args.step_s,
        "search_start": args.search_start,
        "max_probes": args.max_probes,
        "confirm_tries": args.confirm_tries,
        "time_budget_s": args.time_budget_s,
        "sustain_criterion": SUSTAIN,
        "p50_limit_ms": args.p50_limit_ms,
        "p99_limit_ms": args.p99_limit_ms,
        "max_in_flight": args.max_in_flight,
        "ack_timeout_s": args.ack_timeout_s,
        "histogram": f"HdrHistogram {histogram.LOWEST_US}..{histogram.HIGHEST_US} µs, "
        f"{histogram.SIGNIFICANT_DIGITS} significant digits",
    }
