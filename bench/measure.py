"""Measurement: windows and throughput steps across the setups, the CPU the proxy's processes and
the machine spend over each, and each setup's windows merged into one figure per rate.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from hdrh.histogram import HdrHistogram

from bench import histogram
from bench.setups import CLUSTERED, HA, SETUPS, Database, Setup, cpu_seconds

# Full-length throughput steps, and their retries, group by group: the setups the targets
# compare take every try they need before the other setups' first step, so the time budget never
# drops their retry for another setup's. The HA setups' steps come last (their latency and CPU per
# order are what issue 22 asks).
STEP_GROUPS = (
    ("native_full", "native_cluster", "direct", "native_pass"),
    ("qf_full", "qf_relay", "relay"),
    ("native_ha_async", "native_ha_sync"),
)
assert sorted(sum(STEP_GROUPS, ())) == sorted(SETUPS)
#: The offered rates the throughput search tries (orders/s): it bisects this ladder.
LADDER = (
    500,
    1000,
    1500,
    2000,
    2500,
    3000,
    4000,
    5000,
    6000,
    7500,
    10000,
    12500,
    15000,
    20000,
    25000,
    30000,
    40000,
    50000,
    60000,
)
ANSWERED = 0.999  # share of a step's planned orders acknowledged for it to pass
SUSTAIN = (
    f"at least {ANSWERED:.1%} of the planned orders acknowledged (39=0) within the ack timeout after "
    "the last send, none rejected, the sender never a whole abort-lag behind schedule, and p99 below its bound"
)

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat; 0 where there is none."""
    try:
        values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / _HZ


class CpuMeter:
    """How many cores the benchmark's processes, and everything else on the machine, kept busy.

    Other work on a shared machine competes with the setup under test; each window records it so a
    noisy window can be told from a slow path.
    """

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self.pids = pids  # callable: the benchmark's process ids now

    def mark(self) -> tuple[float, float, float]:
        own = sum(os.times()[:2]) + sum(cpu_seconds(pid) for pid in self.pids())
        return time.monotonic(), _machine_busy_s(), own

    @staticmethod
    def since(mark: tuple[float, float, float], now: tuple[float, float, float]) -> dict[str, float]:
        dt = max(now[0] - mark[0], 1e-9)
        own = (now[2] - mark[2]) / dt
        other = (now[1] - mark[1]) / dt - own
        return {"bench_cores": round(own, 2), "other_cores": round(max(other, 0.0), 2)}


class Bench:
    """The run's windows over ``setups`` (in the order they interleave); ``db``: the clustered setups'
    PostgreSQL, whose CPU each window records beside the proxy's."""

    def __init__(self, args: argparse.Namespace, setups: dict[str, Setup], db: Database | None = None) -> None:
        self.args = args
        self.setups = setups
        self.names = list(setups)
        self.db = db
        self.latency: dict[str, dict[str, list[dict]]] = {}
        self.throughput: dict[str, dict] = {}
        self.log = args.log
        self.cpu = CpuMeter(
            lambda: (
                [
                    pid
                    for s in setups.values()
                    for pid in (s.peers.pid if s.peers else 0, *s.proxy_tree(), *s.standby_tree())
                    if pid
                ]
                + (db.pids() if db is not None else [])
            )
        )
        self.started = time.monotonic()
        self.skipped_for_time: list[str] = []
        self.cpu_windows: list[dict[str, float]] = []

    def window(self, setup: str, rate: float, duration_s: float) -> dict:
        """One window, with the CPU the proxy's process tree and the peers spent over it.

        The CPU is read before the window and after the pause that follows it, so work the proxy's
        children do a little after the orders (the audit follower's batch) is counted with them.
        """
        a = self.args
        s = self.setups[setup]
        tree = s.proxy_tree()
        before = {pid: cpu_seconds(pid) for pid in tree}
        peers_before = cpu_seconds(s.peers.pid) if s.peers else 0.0
        db_before = self.db.cpu_seconds() if self.db is not None else None
        # A clustered proxy keeps renewing its leases through the other setups' windows: its cost there.
        idle = [n for n in CLUSTERED if n in self.setups and n != setup]
        idle_before = {n: sum(cpu_seconds(pid) for pid in self.setups[n].proxy_tree()) for n in idle}
        # So do the HA pairs (lease renewals, the copy's idle marks, the standby's reads of the lease row).
        idle_ha = [n for n in HA if n in self.setups and n != setup]
        idle_ha_before = {n: self._ha_cpu(n) for n in idle_ha}
        standby = s.standby_tree()
        standby_before = {pid: cpu_seconds(pid) for pid in standby}
        mark = self.cpu.mark()
        result = s.window(rate, duration_s, a.max_in_flight, a.ack_timeout_s, a.abort_lag_s)
        if result["timeouts"] or result["unsent"]:
            time.sleep(a.settle_s * 4)  # let a backlog drain before the next window
        time.sleep(a.settle_s)
        result["cpu"] = self.cpu.since(mark, self.cpu.mark())
        self.cpu_windows.append(result["cpu"])
        after = s.proxy_tree()
        result["proxy_cpu"] = {
            "tree_s": round(sum(cpu_seconds(pid) - before.get(pid, 0.0) for pid in after), 3) if tree else None,
            "main_s": round(cpu_seconds(tree[0]) - before[tree[0]], 3) if tree else None,
            "processes": len(after),
            "peers_s": round(cpu_seconds(s.peers.pid) - peers_before, 3) if s.peers else None,
            "postgres_s": round(self.db.cpu_seconds() - db_before, 3)
            if self.db is not None and db_before is not None
            else None,
            "idle_cluster_proxy_s": {
                n: round(sum(cpu_seconds(pid) for pid in self.setups[n].proxy_tree()) - v, 3)
                for n, v in idle_before.items()
            },
            "standby_s": round(sum(cpu_seconds(pid) - standby_before.get(pid, 0.0) for pid in s.standby_tree()), 3)
            if standby
            else None,
            "idle_ha_s": {
                n: [round(a - b, 3) for a, b in zip(self._ha_cpu(n), v, strict=True)] for n, v in idle_ha_before.items()
            },
        }
        return result

    def _ha_cpu(self, name: str) -> tuple[float, float]:
        """CPU seconds so far of an HA setup's active (its process tree) and of its standby's."""
        s = self.setups[name]
        return sum(cpu_seconds(pid) for pid in s.proxy_tree()), sum(cpu_seconds(pid) for pid in s.standby_tree())

    def passed(self, r: dict) -> tuple[bool, str]:
        """Whether a setup carried one window or step (see SUSTAIN), and why not."""
        a = self.args
        p99 = histogram.summary(histogram.decode(r["latency"]))["p99"]
        if r.get("aborted"):
            return False, f"cannot carry it: the sender fell {a.abort_lag_s:g} s behind schedule and gave up"
        if r["rejected"] or r["session_rejects"] or r["venue_session_rejects"]:
            return False, (
                f"{r['rejected']} orders rejected, session rejects {r['session_rejects']} (OMS) and "
                f"{r['venue_session_rejects']} (venue): {r['first_reject']} (see the peers' stderr)"
            )
        if r["acked"] < ANSWERED * r["planned"]:
            return False, (
                f"{r['acked']}/{r['planned']} acknowledged: {r['timeouts']} answers missing after "
                f"{a.ack_timeout_s:g} s, {r['unsent']} unsent"
            )
        if p99 is None or p99 >= a.p99_limit_ms * 1000:
            return False, f"p99 {p99} µs, not below {a.p99_limit_ms:g} ms"
        return True, ""

    def warm_up(self) -> None:
        for name in self.names:
            self.window(name, 1000, self.args.warmup_s)

    def run_latency(self) -> None:
        a = self.args
        # Rate by rate, lowest first: a rate a setup cannot carry leaves it a backlog (and orders by
        # the thousand in its tables), which must not spill into its windows at a rate it can.
        for rate in sorted(a.rates):
            for w in range(a.windows):
                for name in self.names:  # interleaved: A B C A B C ...
                    r = self.window(name, rate, a.window_s)
                    self.latency.setdefault(str(rate), {}).setdefault(name, []).append(r)
                    s = histogram.summary(histogram.decode(r["latency"]))
                    ok, why = self.passed(r)
                    self.log(
                        f"  latency window {w + 1}/{a.windows} {rate:>6}/s {name:<12} p50 {s['p50']} µs  "
                        f"p99 {s['p99']} µs  max {s['max']} µs  acked {r['acked']}/{r['planned']}  "
                        f"proxy CPU {_per_order(r['proxy_cpu']['tree_s'], r['acked'])} µs/order  "
                        f"(other work: {r['cpu']['other_cores']} cores){'' if ok else '  NOT CARRIED: ' + why}"
                    )

    def run_throughput(self) -> None:
        """Per setup: short probes bisecting LADDER, then full-length steps from the highest passing probe down."""
        a = self.args
        start = min(range(len(LADDER)), key=lambda i: abs(LADDER[i] - a.search_start))
        state = {n: {"lo": -1, "hi": len(LADDER), "next": start, "probes": [], "confirms": []} for n in self.names}
        for _ in range(a.max_probes):
            for name in self.names:
                st = state[name]
                i = st["next"]
                if i is None:
                    continue
                r = self.window(name, LADDER[i], a.probe_s)
                ok, why = self.passed(r)
                st["probes"].append(self._step(r, ok, why))
                self.log(f"  throughput probe {name:<12} {LADDER[i]:>6}/s {'ok' if ok else 'FAIL: ' + why}")
                st["lo" if ok else "hi"] = i
                st["next"] = (st["lo"] + st["hi"]) // 2 if st["hi"] - st["lo"] > 1 else None
        for name in self.names:
            state[name]["candidate"] = state[name]["lo"] if state[name]["lo"] >= 0 else None
        for group in STEP_GROUPS:
            for _, name in itertools.product(range(a.confirm_tries), [n for n in group if n in state]):
                st = state[name]
                if st.get("sustained") is not None or st["candidate"] is None:
                    continue
                rate = LADDER[st["candidate"]]
                if time.monotonic() - self.started + a.step_s + a.reserve_s > a.time_budget_s:
                    self.skipped_for_time.append(f"{name} at {rate}/s")
                    self.log(f"  throughput step  {name:<12} {rate:>6}/s skipped: time budget")
                    st["candidate"] = None  # listed once, not again on the next try
                    continue
                r = self.window(name, rate, a.step_s)
                ok, why = self.passed(r)
                st["confirms"].append(self._step(r, ok, why))
                self.log(
                    f"  throughput step  {name:<12} {rate:>6}/s for {a.step_s:g}s {'ok' if ok else 'FAIL: ' + why}"
                )
                if ok:
                    st["sustained"] = rate
                else:
                    st["candidate"] = st["candidate"] - 1 if st["candidate"] > 0 else None
        for name in self.names:
            st = state[name]
            sustained = st.get("sustained")
            self.throughput[name] = {
                "sustained_rate": sustained,
                "at_ladder_top": sustained == LADDER[-1],
                "highest_passing_probe": LADDER[st["lo"]] if st["lo"] >= 0 else None,
                "lowest_failing_probe": LADDER[st["hi"]] if st["hi"] < len(LADDER) else None,
                "probes": st["probes"],
                "steps": st["confirms"],
                "limited_by": _limit_reason(st["probes"] + st["confirms"]),
            }

    def _step(self, r: dict, ok: bool, why: str) -> dict:
        s = histogram.summary(histogram.decode(r["latency"]))
        return {
            "rate": r["rate"],
            "duration_s": r["duration_s"],
            "passed": ok,
            "why": why,
            "planned": r["planned"],
            "sent": r["sent"],
            "acked": r["acked"],
            "rejected": r["rejected"],
            "timeouts": r["timeouts"],
            "unsent": r["unsent"],
            "p50_us": s["p50"],
            "p99_us": s["p99"],
            "max_us": s["max"],
            "achieved_send_rate": r["achieved_send_rate"],
            "max_send_lag_us": r["max_send_lag_us"],
            "waits_for_in_flight_slot": r["waits_for_in_flight_slot"],
            "proxy_cpu_us_per_order": _per_order(r["proxy_cpu"]["tree_s"], r["acked"]),
            "peers_cpu_us_per_order": _per_order(r["proxy_cpu"]["peers_s"], r["acked"]),
            "postgres_cpu_us_per_order": _per_order(r["proxy_cpu"]["postgres_s"], r["acked"]),
            "standby_cpu_us_per_order": _per_order(r["proxy_cpu"]["standby_s"], r["acked"]),
            "cpu": r["cpu"],
        }

    def profile(self, out: Path, rate: int, duration_s: float, setup: str = "native_full") -> dict:
        """py-spy records a proxy's main process (native_full's) through one extra window (not in the figures)."""
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(py_spy).exists():
            return {"recorded": False, "why": "py-spy is not installed (.venv/bin/pip install py-spy)"}
        proxy = self.setups[setup].proxy
        assert proxy is not None, f"the {setup} setup has a proxy"
        out.parent.mkdir(parents=True, exist_ok=True)
        duration = max(2, round(duration_s))
        command = [py_spy, "record", "--pid", str(proxy.pid), "--rate", "200", "--format", "raw", "--nonblocking"]
        spy = subprocess.Popen(
            [*command, "--duration", str(duration), "--output", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            time.sleep(1.0)  # py-spy attaches
            r = self.window(setup, rate, max(1.0, duration - 2.0))
        finally:
            try:
                errors = (spy.communicate(timeout=duration + 30)[1] or "")[-300:]
            except subprocess.TimeoutExpired:
                os.kill(spy.pid, signal.SIGKILL)
                errors = (spy.communicate()[1] or "")[-300:]
        recorded = out.exists() and out.stat().st_size > 0
        return {
            "setup": setup,
            "recorded": recorded,
            "raw": str(out),
            "command": " ".join([*command, "--duration", str(duration), "--output", str(out)]),
            "rate": rate,
            "duration_s": duration,
            "window_latency_us": histogram.summary(histogram.decode(r["latency"])),
            "window_proxy_cpu_us_per_order": _per_order(r["proxy_cpu"]["tree_s"], r["acked"]),
            "py_spy_stderr": errors,
            "top": top_functions(out) if recorded else None,
        }


def _per_order(seconds: float | None, orders: int) -> float | None:
    """CPU µs per order (new order, acknowledgement and fill), one decimal; None where not measured."""
    return round(seconds * 1e6 / orders, 1) if seconds is not None and orders else None


def _limit_reason(steps: list[dict]) -> str:
    """Why the lowest failing step failed, in words."""
    failed = [s for s in steps if not s["passed"]]
    if not failed:
        return "no step failed (the search stopped at the top of its ladder or at its probe budget)"
    s = min(failed, key=lambda x: x["rate"])
    why = f"at {s['rate']:.0f}/s: {s['why']}"
    if s["achieved_send_rate"] is not None and s["achieved_send_rate"] < 0.97 * s["rate"]:
        why += f"; the load generator sent only {s['achieved_send_rate']:.0f}/s"
    return why


#: Leaf frames of a thread inside the event loop's C code (mostly waiting in epoll): not Python work.
_LOOP_LEAVES = ("Runner.run ", "run_until_complete ", "run_forever ", "BaseEventLoop.run_forever ")


def top_functions(raw: Path, n: int = 25) -> dict:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks.

    Shares are of the busy samples: those whose leaf is the event loop itself (its C code, mostly
    waiting for the sockets) are counted apart as ``in_event_loop``.
    """
    self_count: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = in_loop = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        frames = stack.split(";")
        total += c
        if frames[-1].startswith(_LOOP_LEAVES):
            in_loop += c
            continue
        self_count[frames[-1]] += c
        for f in set(frames):
            incl[f] += c
    busy = total - in_loop

    def share(counter: Counter) -> list[dict]:
        return [{"function": f, "share": round(v / busy, 4), "samples": v} for f, v in counter.most_common(n)]

    return {
        "samples": total,
        "in_event_loop": in_loop,
        "busy": busy,
        "self": share(self_count),
        "inclusive": share(incl),
    }


def aggregate(windows: list[dict], passed: Callable[[dict], tuple[bool, str]]) -> dict:
    """Merged histograms and summed counts over one setup's windows at one rate.

    ``passed`` is the throughput criterion: a window that fails it was past what the setup sustains,
    and its latency is mostly queueing.
    """
    lat, svc = histogram.new_histogram(), histogram.new_histogram()
    ovr, vro = histogram.new_histogram(), histogram.new_histogram()
    residence = any("residence" in w for w in windows)
    gc_pauses = None
    if residence:
        gc_pauses = {}
        for gen in ("gen0", "gen1", "gen2"):
            rows = [w["residence"].get("gc", {}).get(gen, {}) for w in windows]
            gc_pauses[gen] = {
                "count": sum(r.get("count", 0) for r in rows),
                "total_ms": round(sum(r.get("total_ms", 0) for r in rows), 2),
                "max_ms": max((r.get("max_ms", 0) for r in rows), default=0),
            }
    residence_measured = all(w.get("residence", {}).get("measured") for w in windows) if residence else False
    spans: dict[str, HdrHistogram] = {}
    for w in windows:
        for span, encoded in (w.get("residence") or {}).get("timeline", {}).items():
            spans.setdefault(span, histogram.new_histogram()).add(histogram.decode(encoded))
    for w in windows:
        lat.add(histogram.decode(w["latency"]))
        svc.add(histogram.decode(w["service"]))
        if residence:
            ovr.add(histogram.decode(w["residence"].get("oms_to_venue", "")))
            vro.add(histogram.decode(w["residence"].get("venue_to_oms", "")))
    keys = (
        "planned",
        "sent",
        "acked",
        "rejected",
        "timeouts",
        "unsent",
        "late_answers",
        "session_rejects",
        "venue_session_rejects",
    )
    orders = {k: sum(w[k] for w in windows) for k in keys}
    cpu = [w["proxy_cpu"] for w in windows]
    proxied = all(c["tree_s"] is not None for c in cpu)
    cpu_per_order = {
        "proxy_tree": _per_order(sum(c["tree_s"] for c in cpu), orders["acked"]) if proxied else None,
        "proxy_main": _per_order(sum(c["main_s"] for c in cpu), orders["acked"]) if proxied else None,
        "peers": _per_order(sum(c["peers_s"] or 0.0 for c in cpu), orders["acked"]),
        # The database's CPU over these windows (set only where there is one): the cluster's cost
        # beside a clustered setup's, the idle cluster's lease renewals beside any other's.
        "postgres": _per_order(sum(c["postgres_s"] for c in cpu), orders["acked"])
        if cpu and all(c.get("postgres_s") is not None for c in cpu)
        else None,
        # An HA setup's standby (its own process, on the peers' core): what the copy costs it.
        "standby": _per_order(sum(c["standby_s"] for c in cpu), orders["acked"])
        if cpu and all(c.get("standby_s") is not None for c in cpu)
        else None,
        "orders": orders["acked"],
        "proxy_processes": max(c["processes"] for c in cpu) if cpu else 0,
    }
    per_window = []
    for w in windows:
        s = histogram.summary(histogram.decode(w["latency"]))
        ok, why = passed(w)
        per_window.append(
            {
                "p50": s["p50"],
                "p99": s["p99"],
                "max": s["max"],
                "acked": w["acked"],
                "planned": w["planned"],
                "achieved_send_rate": w["achieved_send_rate"],
                "max_send_lag_us": w["max_send_lag_us"],
                "sustained": ok,
                "why": why,
                "proxy_cpu_us_per_order": _per_order(w["proxy_cpu"]["tree_s"], w["acked"]),
                "cpu": w["cpu"],
            }
        )
    return {
        "windows": len(windows),
        "orders": orders,
        "all_acked": orders["acked"] == orders["planned"],
        "sustained": all(w["sustained"] for w in per_window),
        "latency_us": histogram.summary(lat),
        "service_time_us": histogram.summary(svc),
        "residence_us": (
            {"oms_to_venue": histogram.summary(ovr), "venue_to_oms": histogram.summary(vro)}
            if residence_measured
            else None
        ),
        "cpu_per_order_us": cpu_per_order,
        "proxy_gc_pauses": gc_pauses,
        "timeline_us": {span: histogram.summary(h) for span, h in spans.items()} or None,
        "per_window": per_window,
    }
