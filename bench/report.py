"""The report: machine and versions, settings, added latency, CPU per order, ratios and targets, the printed
summary and its caveats."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bench import histogram
from bench.measure import ANSWERED, LADDER, SUSTAIN
from bench.setups import BENCH_ACCOUNT, BENCH_SYMBOL, CLUSTERED, HA, ORDER_PATH, PROXIES, REPO, SETUPS

if TYPE_CHECKING:
    from bench.measure import Bench


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


LATENCY_PAIRS = (
    ("relay/direct", "relay", "direct"),
    ("native_full/direct", "native_full", "direct"),
    ("native_pass/direct", "native_pass", "direct"),
    ("native_full/native_pass", "native_full", "native_pass"),
    ("native_cluster/native_full", "native_cluster", "native_full"),
    ("native_ha_async/native_full", "native_ha_async", "native_full"),
    ("native_ha_sync/native_full", "native_ha_sync", "native_full"),
    ("qf_full/direct", "qf_full", "direct"),
    ("qf_relay/direct", "qf_relay", "direct"),
    ("qf_full/qf_relay", "qf_full", "qf_relay"),
)
CPU_PAIRS = (
    ("native_full/native_pass", "native_full", "native_pass"),
    ("native_cluster/native_full", "native_cluster", "native_full"),
    ("native_ha_async/native_full", "native_ha_async", "native_full"),
    ("native_ha_sync/native_full", "native_ha_sync", "native_full"),
    ("qf_full/native_full", "qf_full", "native_full"),
    ("qf_full/qf_relay", "qf_full", "qf_relay"),
)
THROUGHPUT_PAIRS = tuple((f"{name}/direct", name, "direct") for name in SETUPS if name != "direct")
#: The percentiles added latency is given at.
ADDED = ("p50", "p99")
#: Issue 19's targets: (key, what, unit, limit, at most (True) or at least).
TARGETS = (
    ("native_full_cpu_per_order_us", "CPU per order, native_full, whole process tree, 5,000/s windows", "µs", 80, True),
    ("native_full_over_native_pass_cpu", "CPU per order native_full / native_pass, 5,000/s windows", "x", 1.15, True),
    ("native_full_added_p50_us_at_5000", "added latency p50, native_full at 5,000/s", "µs", 60, True),
    ("native_full_added_p99_us_at_5000", "added latency p99, native_full at 5,000/s", "µs", 300, True),
    ("native_full_sustained_rate", "sustained rate, native_full (a whole throughput step)", "/s", 10000, False),
)


def _cpu(latency: dict, rate: str, name: str, key: str = "proxy_tree") -> float | None:
    value: float | None = latency.get(rate, {}).get(name, {}).get("cpu_per_order_us", {}).get(key)
    return value


def ratios(latency: dict, throughput: dict) -> dict:
    keys = [k for k, _ in histogram.PERCENTILES] + ["max"]
    lat = {
        rate: {
            label: {k: _ratio(by[a]["latency_us"][k], by[b]["latency_us"][k]) for k in keys}
            for label, a, b in LATENCY_PAIRS
            if a in by and b in by
        }
        for rate, by in latency.items()
    }
    cpu = {
        rate: {
            label: _ratio(_cpu(latency, rate, a), _cpu(latency, rate, b))
            for label, a, b in CPU_PAIRS
            if a in latency[rate] and b in latency[rate]
        }
        for rate in latency
    }
    tp = {
        label: _ratio(throughput[a]["sustained_rate"], throughput[b]["sustained_rate"])
        for label, a, b in THROUGHPUT_PAIRS
        if a in throughput and b in throughput
    }
    return {"latency": lat, "cpu_per_order": cpu, "throughput": tp}


def added(latency: dict) -> dict:
    """Per rate and setup: the setup's latency percentiles minus direct's (µs) at the same offered rate."""
    out: dict[str, dict] = {}
    for rate, by in latency.items():
        direct = by["direct"]["latency_us"]
        out[rate] = {
            name: {
                k: (
                    agg["latency_us"][k] - direct[k]
                    if agg["latency_us"][k] is not None and direct[k] is not None
                    else None
                )
                for k in ADDED
            }
            for name, agg in by.items()
            if name != "direct"
        }
    return out


def targets(r: dict, add: dict, latency: dict, throughput: dict) -> dict:
    """Issue 19's targets, read off the figures: value, limit and met (None: not measured); never asserted."""
    values = {
        "native_full_cpu_per_order_us": _cpu(latency, "5000", "native_full"),
        "native_full_over_native_pass_cpu": r["cpu_per_order"].get("5000", {}).get("native_full/native_pass"),
        "native_full_added_p50_us_at_5000": add.get("5000", {}).get("native_full", {}).get("p50"),
        "native_full_added_p99_us_at_5000": add.get("5000", {}).get("native_full", {}).get("p99"),
        "native_full_sustained_rate": throughput["native_full"]["sustained_rate"],
    }
    out = {}
    for key, what, unit, limit, at_most in TARGETS:
        v = values[key]
        met = None if v is None else (v <= limit if at_most else v >= limit)
        out[key] = {"what": what, "value": v, "target": f"{'<=' if at_most else '>='} {limit}{unit}", "met": met}
    return out


#: Issue 21's criterion: a cluster instance's latency and CPU per order within this of the single one's.
CLUSTER_WITHIN = 0.10


def cluster(latency: dict, add: dict) -> dict | None:
    """Per rate, native_cluster beside native_full: added latency, CPU per order of the proxy's tree and
    main process, PostgreSQL's CPU apart, and the differences against issue 21's 10 % (None without it)."""
    if not any("native_cluster" in by for by in latency.values()):
        return None
    out: dict[str, dict] = {}
    for rate, by in latency.items():
        if "native_cluster" not in by or "native_full" not in by:
            continue
        full, clus = by["native_full"], by["native_cluster"]
        fc, cc = full["cpu_per_order_us"], clus["cpu_per_order_us"]
        row = {
            "carried": full["sustained"] and clus["sustained"],
            "added_us": {"native_full": add[rate]["native_full"], "native_cluster": add[rate]["native_cluster"]},
            "cpu_per_order_us": {
                "native_full": {"tree": fc["proxy_tree"], "main": fc["proxy_main"]},
                "native_cluster": {"tree": cc["proxy_tree"], "main": cc["proxy_main"]},
                "postgres": cc.get("postgres"),
            },
            "cpu_tree_ratio": _ratio(cc["proxy_tree"], fc["proxy_tree"]),
            "cpu_with_postgres_ratio": _ratio(
                (cc["proxy_tree"] or 0) + (cc.get("postgres") or 0) if cc["proxy_tree"] is not None else None,
                fc["proxy_tree"],
            ),
        }
        for k in ADDED:
            a, b = add[rate]["native_cluster"][k], add[rate]["native_full"][k]
            row[f"added_{k}_ratio"] = _ratio(a, b) if a is not None and b is not None and b > 0 else None
        row["within"] = {
            key: None if row[key] is None else row[key] <= 1 + CLUSTER_WITHIN
            for key in ("cpu_tree_ratio", "added_p50_ratio", "added_p99_ratio")
        }
        out[rate] = row
    return out


def ha(latency: dict, add: dict) -> dict | None:
    """Per rate, native_full -> native_ha_async -> native_ha_sync (issue 22): added latency, CPU per order
    of the active's process tree, of its main process and of the standby, and each HA setup's ratios
    against native_full (None without an HA setup). Reported, never asserted."""
    if not any(name in by for by in latency.values() for name in HA):
        return None
    out: dict[str, dict] = {}
    for rate, by in latency.items():
        names = [n for n in ("native_full", *HA) if n in by]
        if "native_full" not in names or len(names) == 1:
            continue
        full = by["native_full"]["cpu_per_order_us"]
        row: dict = {
            "carried": {n: by[n]["sustained"] for n in names},
            "added_us": {n: add[rate][n] for n in names},
            "cpu_per_order_us": {
                n: {
                    "tree": by[n]["cpu_per_order_us"]["proxy_tree"],
                    "main": by[n]["cpu_per_order_us"]["proxy_main"],
                    "standby": by[n]["cpu_per_order_us"].get("standby"),
                }
                for n in names
            },
            "against_native_full": {},
        }
        for n in names[1:]:
            cpu = by[n]["cpu_per_order_us"]
            ratios_n = {
                f"added_{k}": _ratio(add[rate][n][k], add[rate]["native_full"][k])
                if add[rate][n][k] is not None and (add[rate]["native_full"][k] or 0) > 0
                else None
                for k in ADDED
            }
            ratios_n["cpu_tree"] = _ratio(cpu["proxy_tree"], full["proxy_tree"])
            ratios_n["cpu_main"] = _ratio(cpu["proxy_main"], full["proxy_main"])
            ratios_n["cpu_tree_with_standby"] = _ratio(
                (cpu["proxy_tree"] or 0) + (cpu.get("standby") or 0) if cpu["proxy_tree"] is not None else None,
                full["proxy_tree"],
            )
            row["against_native_full"][n] = ratios_n
        out[rate] = row
    return out


def idle_ha(bench: Bench) -> dict | None:
    """What the HA pairs (active and standby) spent while other setups' windows ran: cores, over those windows."""
    names = [n for n in HA if n in bench.setups]
    if not names:
        return None
    active = {n: 0.0 for n in names}
    standby = {n: 0.0 for n in names}
    seconds = {n: 0.0 for n in names}
    for by in bench.latency.values():
        for windows in by.values():
            for w in windows:
                for n, (a, s) in w["proxy_cpu"].get("idle_ha_s", {}).items():
                    active[n] += a
                    standby[n] += s
                    seconds[n] += w["duration_s"] + bench.args.settle_s
    return {
        n: {
            "active_cores": round(active[n] / seconds[n], 4) if seconds[n] else None,
            "standby_cores": round(standby[n] / seconds[n], 4) if seconds[n] else None,
            "seconds": round(seconds[n], 1),
        }
        for n in names
    }


def idle_cluster(bench: Bench) -> dict | None:
    """What the clustered proxies and PostgreSQL spent while other setups' windows ran (lease renewals,
    status, the mirror's polls): cores, over those windows."""
    names = [n for n in CLUSTERED if n in bench.setups]
    if not names:
        return None
    proxy_s = postgres_s = seconds = 0.0
    for by in bench.latency.values():
        for setup, windows in by.items():
            if setup in names:
                continue
            for w in windows:
                seconds += w["duration_s"] + bench.args.settle_s
                proxy_s += sum(w["proxy_cpu"].get("idle_cluster_proxy_s", {}).values())
                postgres_s += w["proxy_cpu"].get("postgres_s") or 0.0
    if not seconds:
        return None
    return {
        "proxy_cores": round(proxy_s / seconds, 4),
        "postgres_cores": round(postgres_s / seconds, 4),
        "seconds": round(seconds, 1),
    }


def render(report: dict) -> str:
    """The printed report: targets, added latency and CPU per order first, then absolute figures."""
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
    add(f"peers: {s['peers']}")
    add(f"pinning: {report['pinning'].get('how', 'n/a')}")
    add("latency = intended send time -> ExecutionReport 39=0 at the OMS, µs; CPU = user + system time from /proc")
    add("")
    add("TARGETS (issue 19; reported, never asserted; n/a where a figure is missing)")
    for t in report["targets"].values():
        add(f"  {t['what']:<68} {_fmt(t['value']):>9}   target {t['target']:<10} {_yes(t['met'])}")
    add("")
    add("ADDED LATENCY (µs: the setup's percentile minus direct's at the same offered rate)")
    for rate, by in report["added_latency_us"].items():
        direct = report["latency"][rate]["direct"]["latency_us"]
        add(f"  {rate:>6}/s  {'direct':<12} (p50 {_fmt(direct['p50'])}  p99 {_fmt(direct['p99'])}: the base)")
        for name, vals in by.items():
            note = "" if report["latency"][rate][name]["sustained"] else "   (not carried: queueing, not the path)"
            add(f"  {rate:>6}/s  {name:<12} " + "  ".join(f"+{k} {_fmt(x)}" for k, x in vals.items()) + note)
    add("")
    add("CPU PER ORDER (µs of user + system time per acknowledged order: new order, acknowledgement and fill)")
    add(
        f"  {'':>8}  {'setup':<16} {'proxy tree':>10} {'main proc':>10} {'peers':>8} {'postgres':>9} {'standby':>8}   "
        "processes in the proxy tree"
    )
    for rate, by in report["latency"].items():
        for name, agg in by.items():
            c = agg["cpu_per_order_us"]
            pg = _fmt(c.get("postgres")) if name in CLUSTERED or name in HA else ""
            sb = _fmt(c.get("standby")) if name in HA else ""
            add(
                f"  {rate:>6}/s  {name:<16} {_fmt(c['proxy_tree']):>10} {_fmt(c['proxy_main']):>10} "
                f"{_fmt(c['peers']):>8} {pg:>9} {sb:>8}   {c['proxy_processes'] or ''}"
            )
    if report.get("cluster"):
        add("")
        add(
            "CLUSTER (issue 21: native_cluster within 10% of native_full; reported, never asserted; PostgreSQL's CPU "
            "apart, not the order path's)"
        )
        for rate, c in report["cluster"].items():
            cpu = c["cpu_per_order_us"]
            add(
                f"  {rate:>6}/s  added p50 {_fmt(c['added_us']['native_full']['p50'])} -> "
                f"{_fmt(c['added_us']['native_cluster']['p50'])} µs ({_fmt(c['added_p50_ratio'], 'x')}), p99 "
                f"{_fmt(c['added_us']['native_full']['p99'])} -> {_fmt(c['added_us']['native_cluster']['p99'])} µs "
                f"({_fmt(c['added_p99_ratio'], 'x')}); CPU tree {_fmt(cpu['native_full']['tree'])} -> "
                f"{_fmt(cpu['native_cluster']['tree'])} µs ({_fmt(c['cpu_tree_ratio'], 'x')}), postgres "
                f"{_fmt(cpu['postgres'])} µs" + ("" if c["carried"] else "   (not carried: queueing, not the path)")
            )
    if report.get("ha"):
        add("")
        add(
            "HA (issue 22: the active of a pair, its standby in copy; native_full -> async -> sync; reported, never "
            "asserted; the standby's CPU apart, on the peers' core)"
        )
        for rate, h in report["ha"].items():
            for name, added_us in h["added_us"].items():
                cpu = h["cpu_per_order_us"][name]
                vs = h["against_native_full"].get(name)
                add(
                    f"  {rate:>6}/s  {name:<16} added p50 {_fmt(added_us['p50']):>6} p99 {_fmt(added_us['p99']):>6} µs"
                    f"   CPU tree {_fmt(cpu['tree']):>6} main {_fmt(cpu['main']):>6} standby {_fmt(cpu['standby']):>6} µs"
                    + (
                        f"   vs native_full: p50 {_fmt(vs['added_p50'], 'x')} p99 {_fmt(vs['added_p99'], 'x')} "
                        f"tree {_fmt(vs['cpu_tree'], 'x')} main {_fmt(vs['cpu_main'], 'x')}"
                        if vs
                        else ""
                    )
                    + ("" if h["carried"][name] else "   (not carried: queueing, not the path)")
                )
    add("")
    add("LATENCY (µs, from intended send time; windows merged)")
    for rate, by in report["latency"].items():
        for name, agg in by.items():
            lat, o = agg["latency_us"], agg["orders"]
            add(
                f"  {rate:>6}/s  {name:<12} "
                + "  ".join(f"{k} {_fmt(lat[k])}" for k, _ in histogram.PERCENTILES)
                + f"  max {_fmt(lat['max'])}   acked {o['acked']}/{o['planned']}"
                + (f", rejected {o['rejected']}" if o["rejected"] else "")
                + (
                    ""
                    if agg["sustained"]
                    else "  NOT CARRIED: " + next(w["why"] for w in agg["per_window"] if not w["sustained"])
                )
            )
    add("")
    add("PROXY RESIDENCE (µs inside the proxy's edge: decode -> decision -> send; see caveats)")
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
        f"THROUGHPUT (highest rate on the ladder {LADDER[0]}..{LADDER[-1]}/s sustained for {s['step_s']:g} s: "
        f"{SUSTAIN}; p99 < {s['p99_limit_ms']:g} ms)"
    )
    for name, t in report["throughput"].items():
        at = next((st for st in t["steps"] if st["passed"]), None)
        there = ""
        if at:
            cpu = at["proxy_cpu_us_per_order"]
            there = (
                f", p50 {_fmt(at['p50_us'])} µs p99 {_fmt(at['p99_us'])} µs there; CPU µs/order "
                + (f"proxy {_fmt(cpu)}, " if cpu is not None else "")
                + f"peers {_fmt(at['peers_cpu_us_per_order'])}"
            )
        top = " (the top of the ladder: at least this)" if t["at_ladder_top"] else ""
        add(
            f"  {name:<12} {_fmt(t['sustained_rate'], '/s')}{top}{there}   (probes passed up to "
            f"{_fmt(t['highest_passing_probe'], '/s')}, failed from "
            f"{_fmt(t['lowest_failing_probe'], '/s') if t['lowest_failing_probe'] else 'none'}; "
            f"{t['limited_by']})"
        )
    add("")
    add("RATIOS")
    for rate, by in report["ratios"]["latency"].items():
        carried = {name: agg["sustained"] for name, agg in report["latency"][rate].items()}
        skipped = []
        for label, a, b in LATENCY_PAIRS:
            if a not in carried or b not in carried:
                continue
            if not (carried[a] and carried[b]):
                skipped.append(label)
                continue
            add(
                f"  {rate:>6}/s  latency {label:<24} "
                + "  ".join(f"{k} {_fmt(by[label][k], 'x')}" for k in ("p50", "p99"))
            )
        if skipped:
            add(f"  {rate:>6}/s  latency, not carried at this rate (queueing; in the JSON): {', '.join(skipped)}")
    for rate, by in report["ratios"]["cpu_per_order"].items():
        add(f"  {rate:>6}/s  CPU per order  " + "  ".join(f"{k} {_fmt(x, 'x')}" for k, x in by.items()))
    tp = report["ratios"]["throughput"]
    add("  sustained rate   " + "  ".join(f"{k} {_fmt(x, 'x')}" for k, x in tp.items()))
    add("")
    add("NOT MEASURED / CAVEATS")
    for note in report["not_measured"]:
        add(f"  - {note}")
    for prof in (report.get("profile"), report.get("cluster_profile")):
        if not prof:
            continue
        add("")
        if prof.get("recorded"):
            spied = prof.get("top") or {}
            add(
                f"PROFILE (py-spy, the {prof.get('setup', 'native_full')} proxy's process at {prof['rate']}/s for "
                f"{prof['duration_s']} s: {prof['raw']})"
            )
            add(
                f"  {spied.get('samples', 0)} samples, {spied.get('in_event_loop', 0)} in the event loop's own code "
                "(mostly waiting); functions by own samples, share of the other (busy) ones:"
            )
            for row in spied.get("self", [])[:15]:
                add(f"    {row['share'] * 100:5.1f}%  {row['function']}")
        else:
            add(f"PROFILE: not recorded: {prof.get('why') or prof.get('py_spy_stderr')}")
    return "\n".join(out)


def _yes(x: bool | None) -> str:
    return "n/a" if x is None else "met" if x else "not met"


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and not x.is_integer():
        return f"{x:.2f}{unit}"
    return f"{int(x)}{unit}"


def caveats(
    args: argparse.Namespace,
    throughput: dict,
    latency: dict,
    found: dict,
    skipped: list[str],
    idle: dict | None = None,
    idle_pairs: dict | None = None,
) -> list[str]:
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
        f"native_full and qf_full run every risk rule with the journal and message logs on; {book}; {audit}",
        "CPU per order: user + system time of the proxy's process and every process under it (the audit "
        "follower, ...), read from /proc before each window and after the pause that follows it (so a batch "
        "the audit follower writes just after the orders is counted), divided by the orders acknowledged in "
        "it; the clock tick is 10 ms, a fraction of a µs per order over a window; a window the setup could "
        "not carry counts what it did before giving up, at saturation",
        "proxy residence is timed around the edge's fromApp callback (quickfix engine) or the native engine's "
        "deliver (bench/proxy.py); it excludes the socket read, and the session layer's own parsing "
        "and checks before the callback; the native figure leaves out the time inside socket writes, the "
        "quickfix one includes it (quickfix writes inside sendToTarget)",
        "replay speed and halt-to-last-cancel time for 1,000 working orders are measured by `make bench` after "
        "this harness (bench/replay.py, bench/halt.py), not here",
        "the peers answer at once; their own CPU per order is the peers column (a few µs a message at high "
        "rates, more at low ones, where every message costs its own wake-up and system calls); the direct "
        "setup's figures are theirs plus the loopback hops, the floor every other setup is measured against",
        "quickfix acceptors (qf_full, qf_relay) bind every interface (quickfix 1.16 has no bind-address "
        "setting); AllowedRemoteAddresses limits them to 127.0.0.1 and every connection is made to 127.0.0.1",
        "other work on this machine at the same time adds noise: each window records how many cores other "
        "processes kept busy (machine.other_work_cores, per_window[].cpu)",
    ]
    if idle is not None:
        notes.append(
            "native_cluster: its proxy renews its leases, writes its status and polls its journal for the "
            "fills mirror all the time; over the other setups' windows that cost "
            f"{idle['proxy_cores']:.3f} cores on the proxies' core and PostgreSQL {idle['postgres_cores']:.3f} "
            "cores (noise in their figures); PostgreSQL's CPU is the postgres column, apart from the proxy tree's"
        )
    elif args.no_cluster:
        notes.append("native_cluster and the HA setups left out (--no-cluster)")
    if idle_pairs is not None:
        notes.append(
            "native_ha_async, native_ha_sync: the active renews its lease every 150 ms and its copy thread "
            "sends the stores, message logs and an idle mark to the standby all the time (async: the journal "
            "every 2 ms); the standby reads the lease row every 100 ms. Over the other setups' windows that cost "
            + "; ".join(
                f"{n}: active {_fmt(v['active_cores'])} cores (the proxies' core), standby "
                f"{_fmt(v['standby_cores'])} cores (the peers' core)"
                for n, v in idle_pairs.items()
            )
            + " (noise in their figures). The standby runs on the peers' core, as on another machine; its CPU "
            "is the standby column, apart from the proxy tree's; PostgreSQL's column there holds every lease's "
            "renewals, not the HA setup's alone"
        )
    elif getattr(args, "no_ha", False) and not args.no_cluster:
        notes.append("native_ha_async and native_ha_sync left out (--no-ha)")
    for rate, by in latency.items():
        saturated = [name for name, agg in by.items() if not agg["sustained"]]
        if saturated:
            notes.append(
                f"at {rate}/s, not carried by {', '.join(saturated)} (see NOT CARRIED): latency there includes "
                "queueing, so added latency and ratios at that rate measure the backlog more than the path"
            )
    if skipped:
        notes.append("throughput steps skipped to finish within the time budget: " + ", ".join(skipped))
    for name, t in throughput.items():
        if t["sustained_rate"] is None:
            notes.append(
                f"{name}: no rate was sustained for a full {args.step_s:g} s step within the probes and time "
                "budget; its throughput ratios are n/a"
            )
        elif t["at_ladder_top"]:
            notes.append(f"{name}: sustained the top of the ladder ({LADDER[-1]}/s): a lower bound")
    if args.mode != "full":
        notes.append(
            f"{args.mode} mode: short windows and steps; the figures show the harness works, not what the proxy costs"
        )
    return notes


def settings(args: argparse.Namespace, cfgs: dict, overrides: list[str], names: list[str]) -> dict:
    proxy_setups = {
        name: {
            "rules": "every rule (config default)" if cfgs[name]["rules"] is None else cfgs[name]["rules"],
            "check_config": cfgs[name].get("check", ""),
            "message_log": cfgs[name]["message_log"],
            "log_level": cfgs[name]["log_level"],
            "engine": cfgs[name]["engine"],
            "process": "bench/proxy.py (fixproxy run + residence timer)",
            "switch_interval_s": args.proxy_switch_interval or sys.getswitchinterval(),
            "gc_freeze_every_s": args.proxy_gc_freeze_s,
            **({"cluster": cfgs[name]["cluster"]} if cfgs[name].get("cluster") else {}),
            **(
                {"ha": cfgs[name]["ha"], "standby": {"ha": cfgs[name]["standby"]["ha"], "process": "fixproxy run"}}
                if cfgs[name].get("ha")
                else {}
            ),
        }
        for name in PROXIES
        if name in names
    }
    return {
        "config_template": str(args.config),
        "config_changes": ["ports and state folders of each setup", *overrides],
        "peers": "bench/peers.py: OMS and venue in one uvloop process, raw asyncio Protocols, message templates, "
        "a timerfd for the send schedule; the venue acknowledges (39=0) and fills (39=2) each order at once",
        "orders": f"NewOrderSingle {BENCH_SYMBOL} 10 limit, account {BENCH_ACCOUNT}, buy at 189 and sell at 191 "
        "alternating (they never cross: every rule passes them)",
        "order_path": {name: ORDER_PATH[name] for name in names},
        "proxy": proxy_setups,
        "fix_version": cfgs["native_full"]["oms"].get("fix_version", "FIX.4.4"),
        "rates": args.rates,
        "windows": args.windows,
        "window_s": args.window_s,
        "warmup_s": args.warmup_s,
        "order_of_windows": "interleaved per window index and rate: " + ", ".join(names),
        "probe_s": args.probe_s,
        "step_s": args.step_s,
        "ladder": list(LADDER),
        "search_start": args.search_start,
        "max_probes": args.max_probes,
        "confirm_tries": args.confirm_tries,
        "time_budget_s": args.time_budget_s,
        "sustain_criterion": SUSTAIN,
        "answered_share": ANSWERED,
        "p99_limit_ms": args.p99_limit_ms,
        "abort_lag_s": args.abort_lag_s,
        "max_in_flight": args.max_in_flight,
        "ack_timeout_s": args.ack_timeout_s,
        "settle_s": args.settle_s,
        "histogram": f"HdrHistogram {histogram.LOWEST_US}..{histogram.HIGHEST_US} µs, "
        f"{histogram.SIGNIFICANT_DIGITS} significant digits",
    }
