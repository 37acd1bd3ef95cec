"""Measurement: windows and throughput steps across the setups, the CPU the machine spends beside
them, and each setup's windows merged into one figure per rate.
"""

from __future__ import annotations

import argparse
import itertools
import json
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
from bench.setups import SETUPS, Setup

# Full-length throughput steps, and their retries, group by group: the setups the throughput
# targets compare take every try they need before the other setups' first step, so the time budget
# never drops their retry for another setup's. The floors and pass-through get the time left.
STEP_GROUPS = (("direct", "full", "full_native"), ("qf_relay", "pass_through", "relay"))
assert sorted(sum(STEP_GROUPS, ())) == sorted(SETUPS)
MIN_RATE = 25  # the throughput search goes no lower (orders/s)
SUSTAIN = (
    "every order acked, none rejected or unsent, the in-flight bound never reached, no standing queue "
    "(p50 within its bound), no growing one (p50 of the last third of the step at most 2x + 2 ms that of "
    "the first third), and p99 within its bound"
)
MAX_RATE = 32000

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat; 0 where there is none."""
    try:
        values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / _HZ


def _process_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _HZ
    except (OSError, ValueError, IndexError):
        return 0.0


class CpuMeter:
    """How many cores the benchmark's processes, and everything else on the machine, kept busy.

    Other work on a shared machine competes with the setup under test; each window records it so a
    noisy window can be told from a slow path.
    """

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self.pids = pids  # callable: the benchmark's process ids now

    def mark(self) -> tuple[float, float, float]:
        own = sum(os.times()[:2]) + sum(_process_cpu_s(pid) for pid in self.pids())
        return time.monotonic(), _machine_busy_s(), own

    @staticmethod
    def since(mark: tuple[float, float, float], now: tuple[float, float, float]) -> dict[str, float]:
        dt = max(now[0] - mark[0], 1e-9)
        own = (now[2] - mark[2]) / dt
        other = (now[1] - mark[1]) / dt - own
        return {"bench_cores": round(own, 2), "other_cores": round(max(other, 0.0), 2)}


class Bench:
    def __init__(self, args: argparse.Namespace, setups: dict[str, Setup]) -> None:
        self.args = args
        self.setups = setups
        self.latency: dict[str, dict[str, list[dict]]] = {}
        self.throughput: dict[str, dict] = {}
        self.log = args.log
        self.cpu = CpuMeter(lambda: [pid for s in setups.values() for pid in s.pids().values()])
        self.started = time.monotonic()
        self.skipped_for_time: list[str] = []
        self.cpu_windows: list[dict[str, float]] = []

    def window(self, setup: str, rate: float, duration_s: float, abort_lag_s: float | None = None) -> dict:
        a = self.args
        mark = self.cpu.mark()
        result = self.setups[setup].window(rate, duration_s, a.max_in_flight, a.ack_timeout_s, abort_lag_s)
        result["cpu"] = self.cpu.since(mark, self.cpu.mark())
        self.cpu_windows.append(result["cpu"])
        if result["timeouts"] or result["unsent"]:
            time.sleep(a.settle_s * 4)  # let a backlog drain before the next window
        time.sleep(a.settle_s)
        return result

    def passed(self, r: dict) -> tuple[bool, str]:
        """Whether a setup kept up with one window or step (see SUSTAIN), and why not."""
        a = self.args
        summary = histogram.summary(histogram.decode(r["latency"]))
        p50, p99 = summary["p50"], summary["p99"]
        first, last = r.get("p50_first_third_us"), r.get("p50_last_third_us")
        if r.get("aborted"):
            return False, f"sender fell over {a.abort_lag_s:g}s behind schedule (answers too slow); gave up"
        if r["unsent"]:
            return False, f"{r['unsent']} orders unsent (in-flight bound {a.max_in_flight} held too long)"
        if r["timeouts"]:
            return False, f"{r['timeouts']} acks missing after {a.ack_timeout_s:g}s"
        if r["rejected"] or r["session_rejects"]:
            return False, f"{r['rejected']} orders rejected: {r['first_reject']}"
        if r["waits_for_in_flight_slot"]:
            return False, f"in-flight bound of {a.max_in_flight} orders reached"
        if p50 is None or p50 > a.p50_limit_ms * 1000:
            return False, f"standing queue: p50 {p50} µs above {a.p50_limit_ms:g} ms"
        if first is not None and last is not None and last > 2 * first + 2000:
            return False, f"backlog grew: p50 {first} µs in the first third, {last} µs in the last"
        if p99 is None or p99 > a.p99_limit_ms * 1000:
            return False, f"p99 {p99} µs above {a.p99_limit_ms:g} ms"
        return True, ""

    def warm_up(self) -> None:
        for name in SETUPS:
            self.window(name, 1000, self.args.warmup_s)

    def run_latency(self) -> None:
        a = self.args
        # Rate by rate, lowest first: a rate a setup cannot sustain leaves it a backlog (and orders
        # by the thousand in its tables), which must not spill into its windows at a rate it can.
        for rate in sorted(a.rates):
            for w in range(a.windows):
                for name in SETUPS:  # interleaved: A B C A B C ...
                    r = self.window(name, rate, a.window_s)
                    self.latency.setdefault(str(rate), {}).setdefault(name, []).append(r)
                    s = histogram.summary(histogram.decode(r["latency"]))
                    self.log(
                        f"  latency window {w + 1}/{a.windows} {rate:>6}/s {name:<12} p50 {s['p50']} µs  "
                        f"p99 {s['p99']} µs  max {s['max']} µs  acked {r['acked']}/{r['planned']}  "
                        f"(other work: {r['cpu']['other_cores']} cores)"
                    )

    def run_throughput(self) -> None:
        """Per setup: a short-probe search (doubling, then bisecting), then full-length confirmation steps."""
        a = self.args
        state = {n: {"lo": None, "hi": None, "next": a.search_start, "probes": [], "confirms": []} for n in SETUPS}
        for _ in range(a.max_probes):
            for name in SETUPS:
                st = state[name]
                rate = st["next"]
                if rate is None:
                    continue
                r = self.window(name, rate, a.probe_s, a.abort_lag_s)
                ok, why = self.passed(r)
                st["probes"].append(self._step(r, ok, why))
                self.log(f"  throughput probe {name:<12} {rate:>6}/s {'ok' if ok else 'FAIL: ' + why}")
                if ok:
                    st["lo"] = rate
                else:
                    st["hi"] = rate
                st["next"] = self._next_probe(st["lo"], st["hi"])
        for name in SETUPS:
            st = state[name]
            if st["lo"] is not None:
                st["candidate"] = st["lo"]
            else:  # no probe passed: try below the lowest one that failed
                lower = _round_rate((st["hi"] or 2 * MIN_RATE) / 2)
                st["candidate"] = lower if lower >= MIN_RATE else None
        for group in STEP_GROUPS:
            for _, name in itertools.product(range(a.confirm_tries), group):
                st = state[name]
                if st.get("sustained") is not None or st["candidate"] is None:
                    continue
                rate = st["candidate"]
                if time.monotonic() - self.started + a.step_s + 15 > a.time_budget_s:
                    self.skipped_for_time.append(f"{name} at {rate}/s")
                    self.log(f"  throughput step  {name:<12} {rate:>6}/s skipped: time budget")
                    st["candidate"] = None  # listed once, not again on the next try
                    continue
                r = self.window(name, rate, a.step_s, a.abort_lag_s)
                ok, why = self.passed(r)
                st["confirms"].append(self._step(r, ok, why))
                self.log(
                    f"  throughput step  {name:<12} {rate:>6}/s for {a.step_s:g}s {'ok' if ok else 'FAIL: ' + why}"
                )
                if ok:
                    st["sustained"] = rate
                else:
                    lower = _round_rate(rate * 0.8)
                    st["candidate"] = lower if MIN_RATE <= lower < rate else None
        for name in SETUPS:
            st = state[name]
            self.throughput[name] = {
                "sustained_rate": st.get("sustained"),
                "highest_passing_probe": st["lo"],
                "lowest_failing_probe": st["hi"],
                "probes": st["probes"],
                "steps": st["confirms"],
                "limited_by": _limit_reason(st["probes"] + st["confirms"]),
            }

    @staticmethod
    def _next_probe(lo: int | None, hi: int | None) -> int | None:
        """Double while probes pass, halve while they fail, then bisect to within 10%."""
        if hi is None:
            nxt = (lo or MIN_RATE) * 2
            return nxt if nxt <= MAX_RATE else None
        if lo is None:
            nxt = _round_rate(hi / 2)
            return nxt if nxt >= MIN_RATE else None
        if hi - lo <= max(MIN_RATE, 0.1 * lo):
            return None
        nxt = _round_rate((lo + hi) / 2)
        return nxt if lo < nxt < hi else None

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
            "p50_first_third_us": r.get("p50_first_third_us"),
            "p50_last_third_us": r.get("p50_last_third_us"),
            "cpu": r["cpu"],
        }

    def profile(self, out_dir: Path) -> dict:
        """One extra full-setup window with py-spy recording the proxy (not part of the figures).

        Two recordings side by side: every thread that is on a CPU, and only the thread holding the GIL
        (in a Python process that is the one that gets work done).
        """
        a = self.args
        out_dir.mkdir(parents=True, exist_ok=True)
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(py_spy).exists():
            return {"recorded": False, "why": "py-spy is not installed (.venv/bin/pip install py-spy)"}
        proxy = self.setups["full"].proxy
        assert proxy is not None, "the full setup has a proxy"
        duration = int(a.profile_s)
        raws = {"on_cpu": out_dir / "full-proxy.raw.txt", "gil": out_dir / "full-proxy.gil.raw.txt"}
        spies = {}
        for kind, raw in raws.items():
            spies[kind] = subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(proxy.pid),
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--threads",
                    "--duration",
                    str(duration),
                    "--output",
                    str(raw),
                    *(["--gil"] if kind == "gil" else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        errors = {}
        try:
            time.sleep(1.0)  # py-spy attaches
            r = self.window("full", a.profile_rate, max(1.0, duration - 2.0))
        finally:
            for kind, spy in spies.items():
                try:
                    errors[kind] = (spy.communicate(timeout=duration + 30)[1] or "")[-300:]
                except subprocess.TimeoutExpired:
                    os.kill(spy.pid, signal.SIGKILL)
                    errors[kind] = (spy.communicate()[1] or "")[-300:]
        top = {kind: top_functions(raw) for kind, raw in raws.items() if raw.exists()}
        (out_dir / "top.json").write_text(json.dumps(top, indent=2))
        return {
            "recorded": all(raw.exists() for raw in raws.values()),
            "raw": {k: str(v) for k, v in raws.items()},
            "rate": a.profile_rate,
            "duration_s": duration,
            "window_latency_us": histogram.summary(histogram.decode(r["latency"])),
            "py_spy_stderr": errors,
            "top": top,
        }


def _round_rate(rate: float) -> int:
    """Two significant digits (1234 -> 1200, 187 -> 190): search steps people can read."""
    if rate < 10:
        return round(rate)
    step = 10 ** (len(str(int(rate))) - 2)
    return int(round(rate / step) * step)


def _limit_reason(steps: list[dict]) -> str:
    """Why the lowest failing step failed, in words."""
    failed = [s for s in steps if not s["passed"]]
    if not failed:
        return "no step failed (the search stopped at its highest rate or its probe budget)"
    s = min(failed, key=lambda x: x["rate"])
    why = f"at {s['rate']:.0f}/s: {s['why']}"
    if s["achieved_send_rate"] is not None and s["achieved_send_rate"] < 0.97 * s["rate"]:
        why += f"; the load generator sent only {s['achieved_send_rate']:.0f}/s"
    return why


def top_functions(raw: Path, n: int = 25) -> dict:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_count: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        frames = stack.split(";")
        total += c
        threads[frames[0]] += c
        self_count[frames[-1]] += c
        for f in set(frames[1:]):
            incl[f] += c

    def share(counter: Counter) -> list[dict]:
        return [{"function": f, "share": round(v / total, 4), "samples": v} for f, v in counter.most_common(n)]

    return {"samples": total, "threads": share(threads), "self": share(self_count), "inclusive": share(incl)}


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
    keys = ("planned", "sent", "acked", "rejected", "timeouts", "unsent", "late_answers", "session_rejects")
    orders = {k: sum(w[k] for w in windows) for k in keys}
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
        "proxy_gc_pauses": gc_pauses,
        "timeline_us": {span: histogram.summary(h) for span, h in spans.items()} or None,
        "per_window": per_window,
    }
