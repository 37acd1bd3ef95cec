"""``make bench``: what the proxy costs, measured against a direct link in one run.

Six setups, each a set of real FIX sessions in separate processes on 127.0.0.1 free ports,
started once and reused for every window:

- ``direct``: load-generating OMS -> venue simulator (the simulator answers the OMS's CompIDs);
- ``relay``: OMS -> a byte relay (bench_relay.py) -> venue: one more hop that does no work;
- ``qf_relay``: OMS -> the proxy's quickfix sessions with nothing of the proxy in them
  (bench_qfrelay.py) -> venue: the floor under the quickfix engine;
- ``pass_through``: OMS -> proxy -> venue, ``[risk] rules = []``, otherwise the full setup's settings;
- ``full``: OMS -> proxy -> venue with the shipped config (every rule, message logs on);
- ``full_native``: ``full`` with ``[proxy] engine = "native"``.

Latency windows run interleaved (direct, relay, qf_relay, pass_through, full, full_native, direct, ...) at
fixed offered rates, the lowest rate's windows first, open loop, measured from each order's
intended send time to its ExecutionReport 39=0 (see bench_oms.py). Throughput is the highest
offered rate a setup sustains for a whole step (see SUSTAIN below): found with short probes, then
confirmed with full-length steps. The proxy runs under bench_proxy.py (``fixproxy run`` plus a
residence timer and garbage-collector pause counts), the venue simulator under bench_venue.py.
Results go to a JSON file and a printed report, ratios first.

    .venv/bin/python scripts/bench.py                  # full run, under 10 minutes on 2 cores
    .venv/bin/python scripts/bench.py --quick          # about a minute and a half
    .venv/bin/python scripts/bench.py --smoke          # seconds: the harness works, figures mean little
    .venv/bin/python scripts/bench.py --profile DIR    # then py-spy records the proxy in one full window
    .venv/bin/python scripts/bench.py --quick --timeline  # where an order's time goes in the native proxy
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import itertools
import json
import os
import platform
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections import Counter
from pathlib import Path

import benchlib

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent
SETUPS = ("direct", "relay", "qf_relay", "pass_through", "full", "full_native")
# Full-length throughput steps, and their retries, group by group: the setups the throughput
# targets compare take every try they need before the other setups' first step, so the time budget
# never drops their retry for another setup's. The floors and pass-through get the time left.
STEP_GROUPS = (("direct", "full", "full_native"), ("qf_relay", "pass_through", "relay"))
assert sorted(sum(STEP_GROUPS, ())) == sorted(SETUPS)
SCHEMA = 1

# Per mode: latency rates and windows, throughput search and confirmation. The full run's search
# starts at 2,000/s (every setup's 1,000/s is in the latency section already), so its five probes
# end closer to each setup's limit (steps of about 6% near 3,000/s instead of 17%). Its time budget
# ends the harness by about 530 s, so that `make bench`, with its halt and replay runs (about 40 s),
# stays within 10 minutes.
PRESETS: dict[str, dict] = {
    "full": dict(rates=[1000, 5000], windows=3, window_s=5.0, warmup_s=2.0, ack_timeout_s=5.0,
                 probe_s=3.0, step_s=30.0, search_start=2000, max_probes=5, confirm_tries=3, time_budget_s=540),
    "quick": dict(rates=[1000, 5000], windows=1, window_s=2.0, warmup_s=0.5, ack_timeout_s=2.0,
                  probe_s=1.0, step_s=2.0, search_start=1000, max_probes=3, confirm_tries=1, time_budget_s=100),
    "smoke": dict(rates=[200, 500], windows=1, window_s=0.5, warmup_s=0.3, ack_timeout_s=2.0,
                  probe_s=0.5, step_s=0.5, search_start=500, max_probes=1, confirm_tries=1, time_budget_s=60),
}
MIN_RATE = 25  # the throughput search goes no lower (orders/s)
SUSTAIN = ("every order acked, none rejected or unsent, the in-flight bound never reached, no standing queue "
           "(p50 within its bound), no growing one (p50 of the last third of the step at most 2x + 2 ms that of "
           "the first third), and p99 within its bound")
MAX_RATE = 32000


# ---------------------------------------------------------------- configuration files

def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic strings
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _is_table_array(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def to_toml(table: dict, path: tuple[str, ...] = ()) -> str:
    """A small TOML writer for config dicts: scalars, lists, tables and arrays of tables."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()
             if not isinstance(v, dict) and not _is_table_array(v)]
    for k, v in table.items():
        name = ".".join(_toml_key(p) for p in (*path, k))
        if isinstance(v, dict):
            lines += ["", f"[{name}]", to_toml(v, (*path, k))]
        elif _is_table_array(v):
            for item in v:
                lines += ["", f"[[{name}]]", to_toml(item, (*path, k))]
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BENCH_ACCOUNT = "BENCH"
BENCH_SYMBOL = "AAPL"
UNTRIPPED_RATE_LIMIT = 1_000_000


def write_configs(template: Path, run_dir: Path, engine: str = "") -> tuple[dict[str, dict], list[str]]:
    """One config per setup from the shipped config: same rules, limits and sessions; own ports and state.

    Returns the setups' configs and, in words, every change made to the template beyond ports and
    paths (only where the template has the key, so an older or newer config still works).
    """
    base = tomllib.loads(template.read_text())
    overrides: list[str] = []
    for layer_name, layer in _limit_layers(base.get("limits", {})):
        if "max_msgs_per_s" in layer:
            # A per-session message throttle would refuse the offered load itself; keep the rule, lift its limit.
            layer["max_msgs_per_s"] = UNTRIPPED_RATE_LIMIT
            overrides.append(f"limits.{layer_name}.max_msgs_per_s = {UNTRIPPED_RATE_LIMIT} "
                             "(the throttle rule still runs; the offered load must not trip it)")
        if "sector_min_gross" in layer and "max_gross_exposure" in layer:
            # Every bench order is in one symbol: orders waiting at the venue during a burst of slow
            # answers make it 99 % of gross and trip the sector rule. It applies only from the gross
            # exposure limit on; the rule still runs.
            layer["sector_min_gross"] = layer["max_gross_exposure"]
            overrides.append(f"limits.{layer_name}.sector_min_gross = {layer['max_gross_exposure']} (the sector "
                             "rule still runs; a one-symbol load must not trip it)")
    if "locates" in base:
        # Sells can reach the venue before the previous buy's fill comes back: locate enough to never go short.
        base["locates"].setdefault(BENCH_ACCOUNT, {})[BENCH_SYMBOL] = 100_000_000
        overrides.append(f"locates.{BENCH_ACCOUNT}.{BENCH_SYMBOL} = 100000000 (the short-sale rule still runs)")
    oms = base["oms"][0]
    venue = base["venues"][0]
    out = {}
    for name in SETUPS:
        cfg = json.loads(json.dumps(base))  # deep copy
        state = run_dir / name
        state.mkdir(parents=True, exist_ok=True)
        for data_file in template.parent.glob("*.csv"):  # instruments, positions: relative paths keep working
            shutil.copy(data_file, state / data_file.name)
        cfg.setdefault("proxy", {})["state_dir"] = "var"
        if name == "full_native":
            cfg["proxy"]["engine"] = "native"
        elif engine:
            cfg["proxy"]["engine"] = engine
        acceptor = cfg.setdefault("acceptor", {})
        acceptor["port"] = free_port()
        acceptor["allowed_remote_addresses"] = ["127.0.0.1"]
        if "admin" in cfg:  # the setups run side by side: each admin HTTP API on its own port
            cfg["admin"]["http_port"] = free_port()
            cfg["admin"]["http_host"] = "127.0.0.1"
        acceptor_comp_id = acceptor.get("comp_id", "FIXPROXY")
        if name in ("direct", "relay"):
            # The venue simulator takes the proxy's place: it answers the OMS's own CompIDs (behind
            # the byte relay in the relay setup).
            cfg["venues"] = [{"name": venue["name"], "host": "127.0.0.1",
                              "port": acceptor["port"] if name == "direct" else free_port(),
                              "comp_id": acceptor_comp_id, "our_comp_id": oms["comp_id"],
                              "fix_version": oms.get("fix_version", "FIX.4.4")}]
        else:
            cfg["venues"] = [{**venue, "host": "127.0.0.1", "port": free_port()}]
            if name == "pass_through":
                cfg.setdefault("risk", {})["rules"] = []
        path = state / "fixproxy.toml"
        path.write_text(f"# written by scripts/bench.py from {template}\n" + to_toml(cfg) + "\n")
        out[name] = {"path": path, "state": state, "acceptor_port": acceptor["port"], "venue": cfg["venues"][0],
                     "oms": oms, "acceptor_comp_id": acceptor_comp_id, "rules": cfg.get("risk", {}).get("rules"),
                     "message_log": cfg.get("proxy", {}).get("message_log", True),
                     "engine": cfg.get("proxy", {}).get("engine", "quickfix"),
                     "log_level": cfg.get("proxy", {}).get("log_level", "info")}
    return out, overrides


def _limit_layers(limits: dict):
    """(dotted name, table) for limits.firm and every limits.<layer>.<key> table."""
    for key, table in limits.items():
        if key == "firm" and isinstance(table, dict):
            yield "firm", table
        elif isinstance(table, dict):
            for sub, inner in table.items():
                if isinstance(inner, dict):
                    yield f"{key}.{sub}", inner


# ---------------------------------------------------------------- child processes

class Child:
    """A process of the benchmark: JSON lines on stdout are queued, stderr goes to a file."""

    def __init__(self, name: str, args: list[str], stderr_path: Path, stdin: bool):
        self.name = name
        self.stderr_path = stderr_path
        self._err = stderr_path.open("wb")
        self.lines: queue.Queue[dict] = queue.Queue()
        self.popen = subprocess.Popen(
            [sys.executable, *args], cwd=REPO, text=True, bufsize=1,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._err,
            start_new_session=True,  # a ^C in the terminal reaches the driver only; it stops the children
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(SCRIPTS)},
        )
        self.pid = self.popen.pid
        threading.Thread(target=self._read, name=f"read-{name}", daemon=True).start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                self.lines.put(record)

    def expect(self, event: str, timeout: float) -> dict:
        """The next stdout record with ``event``; RuntimeError with the stderr tail otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or (self.popen.poll() is not None and self.lines.empty()):
                raise RuntimeError(f"{self.name} (pid {self.pid}): no {event!r} within {timeout:.0f}s; "
                                   f"exit code {self.popen.poll()}; stderr tail:\n{self.stderr_tail()}")
            try:
                record = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if record.get("event") == event:
                return record
            if record.get("event") == "error":
                raise RuntimeError(f"{self.name}: {record.get('detail')}")

    def request(self, command: dict, event: str, timeout: float) -> dict:
        self.popen.stdin.write(json.dumps(command) + "\n")
        self.popen.stdin.flush()
        return self.expect(event, timeout)

    def wait_stderr(self, event: str, timeout: float, **fields: str) -> None:
        """Poll the stderr file for a JSON log line with ``event`` and ``fields`` (only while starting up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.stderr_path.read_text(errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if (isinstance(record, dict) and record.get("event") == event
                        and all(record.get(k) == v for k, v in fields.items())):
                    return
            if self.popen.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} (pid {self.pid}): no {event!r} log line within {timeout:.0f}s; "
                           f"exit code {self.popen.poll()}; stderr tail:\n{self.stderr_tail()}")

    def stderr_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, quit_command: dict | None = None, grace_s: float = 15.0) -> int | None:
        """Stop by this process's own pid: the quit command if it has one, then SIGTERM, then SIGKILL."""
        if self.popen.poll() is None and quit_command is not None:
            try:
                self.popen.stdin.write(json.dumps(quit_command) + "\n")
                self.popen.stdin.flush()
                self.popen.wait(5)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(5)
            except ProcessLookupError:
                pass
        self._err.close()
        return self.popen.returncode


class Setup:
    """One setup's processes: a venue simulator, the proxy (except direct) and the load generator."""

    def __init__(self, name: str, cfg: dict, run_id: str, behaviour: str, proxy_args: list[str],
                 venue_gc_freeze_s: float):
        self.name, self.cfg, self.run_id, self.behaviour = name, cfg, run_id, behaviour
        self.proxy_args = proxy_args
        self.venue_gc_freeze_s = venue_gc_freeze_s
        self.venue: Child | None = None
        self.proxy: Child | None = None
        self.oms: Child | None = None
        self.window_ids = iter(range(1, 1_000_000))

    def start(self) -> None:
        cfg, state = self.cfg, self.cfg["state"]
        self.venue = Child(f"{self.name}/venue", [
            str(SCRIPTS / "bench_venue.py"), "--gc-freeze-every", str(self.venue_gc_freeze_s), "--",
            "--config", str(cfg["path"]), "--venue", cfg["venue"]["name"],
            "--default", self.behaviour, "--quiet", "--state-dir", str(state / "venue-sim"),
        ], state / "venue.stderr", stdin=False)
        self.venue.expect("listening", 30)
        if self.name == "relay":
            self.proxy = Child(f"{self.name}/relay", [str(SCRIPTS / "bench_relay.py"), "--listen",
                                                      str(cfg["acceptor_port"]), "--to", str(cfg["venue"]["port"])],
                               state / "relay.stderr", stdin=False)
            self.proxy.expect("listening", 30)
        elif self.name == "qf_relay":
            self.proxy = Child(f"{self.name}/relay", [str(SCRIPTS / "bench_qfrelay.py"), "--config", str(cfg["path"])],
                               state / "relay.stderr", stdin=True)
            self.proxy.expect("listening", 60)
        elif self.name != "direct":
            self.proxy = Child(f"{self.name}/proxy", [str(SCRIPTS / "bench_proxy.py"), "--config", str(cfg["path"]),
                                                      *self.proxy_args], state / "proxy.stderr", stdin=True)
            self.proxy.wait_stderr("session_up", 30, detail=cfg["venue"]["name"])
        oms = cfg["oms"]
        self.oms = Child(f"{self.name}/oms", [
            str(SCRIPTS / "bench_oms.py"), "--port", str(cfg["acceptor_port"]), "--sender", oms["comp_id"],
            "--target", cfg["acceptor_comp_id"], "--fix-version", oms.get("fix_version", "FIX.4.4"),
            "--state-dir", str(state / "bench-oms"), "--run-id", f"{self.run_id}{self.name[0]}",
            "--account", BENCH_ACCOUNT, "--symbol", BENCH_SYMBOL,
        ], state / "oms.stderr", stdin=True)
        self.oms.expect("logon", 30)

    def pids(self) -> dict[str, int]:
        return {c.name.split("/")[1]: c.pid for c in (self.venue, self.proxy, self.oms) if c is not None}

    def window(self, rate: float, duration_s: float, max_in_flight: int, ack_timeout_s: float,
               abort_lag_s: float | None = None) -> dict:
        """One measurement window; the proxy's residence samples cover exactly this window."""
        timed = self.proxy is not None and self.name not in ("relay", "qf_relay")
        if timed:
            self.proxy.request({"cmd": "reset"}, "reset", 30)
        cmd = {"cmd": "window", "id": next(self.window_ids), "rate": rate, "duration_s": duration_s,
               "max_in_flight": max_in_flight, "ack_timeout_s": ack_timeout_s, "abort_lag_s": abort_lag_s}
        result = self.oms.request(cmd, "window", duration_s + 2 * ack_timeout_s + 60)
        result["setup"] = self.name
        if timed:
            result["residence"] = self.proxy.request({"cmd": "dump"}, "residence", 60)
        return result

    def stop(self) -> dict[str, int | None]:
        """Stop the load generator, then the proxy, then the venue; exit codes by role."""
        codes: dict[str, int | None] = {}
        if self.oms is not None:
            codes["oms"] = self.oms.stop({"cmd": "quit"})
        if self.proxy is not None:
            codes["proxy"] = self.proxy.stop()
        if self.venue is not None:
            codes["venue"] = self.venue.stop()
        return codes


# ---------------------------------------------------------------- measurement

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

    def __init__(self, pids):
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
    def __init__(self, args, setups: dict[str, Setup]):
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
        summary = benchlib.summary(benchlib.decode(r["latency"]))
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
                    s = benchlib.summary(benchlib.decode(r["latency"]))
                    self.log(f"  latency window {w + 1}/{a.windows} {rate:>6}/s {name:<12} p50 {s['p50']} µs  "
                             f"p99 {s['p99']} µs  max {s['max']} µs  acked {r['acked']}/{r['planned']}  "
                             f"(other work: {r['cpu']['other_cores']} cores)")

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
                self.log(f"  throughput step  {name:<12} {rate:>6}/s for {a.step_s:g}s "
                         f"{'ok' if ok else 'FAIL: ' + why}")
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
        s = benchlib.summary(benchlib.decode(r["latency"]))
        return {"rate": r["rate"], "duration_s": r["duration_s"], "passed": ok, "why": why,
                "planned": r["planned"], "sent": r["sent"], "acked": r["acked"], "rejected": r["rejected"],
                "timeouts": r["timeouts"], "unsent": r["unsent"], "p50_us": s["p50"], "p99_us": s["p99"],
                "max_us": s["max"], "achieved_send_rate": r["achieved_send_rate"],
                "max_send_lag_us": r["max_send_lag_us"], "waits_for_in_flight_slot": r["waits_for_in_flight_slot"],
                "p50_first_third_us": r.get("p50_first_third_us"), "p50_last_third_us": r.get("p50_last_third_us"),
                "cpu": r["cpu"]}

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
        duration = int(a.profile_s)
        raws = {"on_cpu": out_dir / "full-proxy.raw.txt", "gil": out_dir / "full-proxy.gil.raw.txt"}
        spies = {}
        for kind, raw in raws.items():
            spies[kind] = subprocess.Popen(
                [py_spy, "record", "--pid", str(proxy.pid), "--rate", "200", "--format", "raw", "--nonblocking",
                 "--threads", "--duration", str(duration), "--output", str(raw), *(["--gil"] if kind == "gil" else [])],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
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
        return {"recorded": all(raw.exists() for raw in raws.values()), "raw": {k: str(v) for k, v in raws.items()},
                "rate": a.profile_rate, "duration_s": duration,
                "window_latency_us": benchlib.summary(benchlib.decode(r["latency"])), "py_spy_stderr": errors,
                "top": top}


def _round_rate(rate: float) -> int:
    """Two significant digits (1234 -> 1200, 187 -> 190): search steps people can read."""
    if rate < 10:
        return int(round(rate))
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


# ---------------------------------------------------------------- report

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
    return {"cpu_model": cpu or platform.processor() or "unknown", "cores": os.cpu_count(),
            "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "memory_gib": mem_gib, "platform": platform.platform(), "load_average_start": list(os.getloadavg())}


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

    return {"python": platform.python_version(), "python_implementation": platform.python_implementation(),
            "quickfix": v("quickfix"), "uvloop": v("uvloop"), "hdrhistogram": v("hdrhistogram"),
            "msgspec": v("msgspec"), "structlog": v("structlog"), "fixproxy": v("fixproxy"),
            "git_commit": git("rev-parse", "HEAD"),
            "git_dirty": bool(changes := git("status", "--porcelain", "--untracked-files=all", "--", "fixproxy", "cfg")),
            "git_uncommitted": changes.splitlines()}


def _ratio(a, b) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def aggregate(windows: list[dict], passed) -> dict:
    """Merged histograms and summed counts over one setup's windows at one rate.

    ``passed`` is the throughput criterion: a window that fails it was past what the setup sustains,
    and its latency is mostly queueing.
    """
    lat, svc = benchlib.new_histogram(), benchlib.new_histogram()
    ovr, vro = benchlib.new_histogram(), benchlib.new_histogram()
    residence = any("residence" in w for w in windows)
    gc_pauses = None
    if residence:
        gc_pauses = {}
        for gen in ("gen0", "gen1", "gen2"):
            rows = [w["residence"].get("gc", {}).get(gen, {}) for w in windows]
            gc_pauses[gen] = {"count": sum(r.get("count", 0) for r in rows),
                              "total_ms": round(sum(r.get("total_ms", 0) for r in rows), 2),
                              "max_ms": max((r.get("max_ms", 0) for r in rows), default=0)}
    residence_measured = all(w.get("residence", {}).get("measured") for w in windows) if residence else False
    spans: dict[str, object] = {}
    for w in windows:
        for span, encoded in (w.get("residence") or {}).get("timeline", {}).items():
            spans.setdefault(span, benchlib.new_histogram()).add(benchlib.decode(encoded))
    for w in windows:
        lat.add(benchlib.decode(w["latency"]))
        svc.add(benchlib.decode(w["service"]))
        if residence:
            ovr.add(benchlib.decode(w["residence"].get("oms_to_venue", "")))
            vro.add(benchlib.decode(w["residence"].get("venue_to_oms", "")))
    keys = ("planned", "sent", "acked", "rejected", "timeouts", "unsent", "late_answers", "session_rejects")
    orders = {k: sum(w[k] for w in windows) for k in keys}
    per_window = []
    for w in windows:
        s = benchlib.summary(benchlib.decode(w["latency"]))
        ok, why = passed(w)
        per_window.append({"p50": s["p50"], "p99": s["p99"], "max": s["max"], "acked": w["acked"],
                           "planned": w["planned"], "achieved_send_rate": w["achieved_send_rate"],
                           "max_send_lag_us": w["max_send_lag_us"], "sustained": ok, "why": why, "cpu": w["cpu"]})
    return {
        "windows": len(windows),
        "orders": orders,
        "all_acked": orders["acked"] == orders["planned"],
        "sustained": all(w["sustained"] for w in per_window),
        "latency_us": benchlib.summary(lat),
        "service_time_us": benchlib.summary(svc),
        "residence_us": ({"oms_to_venue": benchlib.summary(ovr), "venue_to_oms": benchlib.summary(vro)}
                         if residence_measured else None),
        "proxy_gc_pauses": gc_pauses,
        "timeline_us": {span: benchlib.summary(h) for span, h in spans.items()} or None,
        "per_window": per_window,
    }


def ratios(latency: dict, throughput: dict) -> dict:
    keys = [k for k, _ in benchlib.PERCENTILES] + ["max"]
    pairs = (("full/direct", "full", "direct"), ("pass_through/direct", "pass_through", "direct"),
             ("full/pass_through", "full", "pass_through"), ("relay/direct", "relay", "direct"),
             ("full/relay", "full", "relay"), ("qf_relay/direct", "qf_relay", "direct"),
             ("full/qf_relay", "full", "qf_relay"), ("full_native/direct", "full_native", "direct"),
             ("full_native/relay", "full_native", "relay"), ("full_native/full", "full_native", "full"))
    lat = {rate: {label: {k: _ratio(by[a]["latency_us"][k], by[b]["latency_us"][k]) for k in keys}
                  for label, a, b in pairs}
           for rate, by in latency.items()}
    tp = {label: _ratio(throughput[a]["sustained_rate"], throughput[b]["sustained_rate"]) for label, a, b in pairs}
    return {"latency": lat, "throughput": tp}


def targets(r: dict) -> dict:
    """Issue 6's targets for the quickfix engine, read off the ratios (reported, never asserted)."""
    def le(x, limit):
        return None if x is None else x <= limit

    # qf_relay's lines say whether the floor under the quickfix engine is itself within a target: where
    # it is not, no proxy on the quickfix engine can meet that target on this machine.
    out = {rate: {"full_p50_le_2.0x_direct": le(by["full/direct"]["p50"], 2.0),
                  "full_p99_le_2.5x_direct": le(by["full/direct"]["p99"], 2.5),
                  "full_over_pass_through_p50_le_1.10": le(by["full/pass_through"]["p50"], 1.10),
                  "full_native_p50_le_2.0x_direct": le(by["full_native/direct"]["p50"], 2.0),
                  "full_native_p99_le_2.5x_direct": le(by["full_native/direct"]["p99"], 2.5),
                  "floor_qf_relay_p50_le_2.0x_direct": le(by["qf_relay/direct"]["p50"], 2.0),
                  "floor_qf_relay_p99_le_2.5x_direct": le(by["qf_relay/direct"]["p99"], 2.5)}
           for rate, by in r["latency"].items()}
    for setup in ("full", "full_native", "qf_relay"):
        ft = r["throughput"][f"{setup}/direct"]
        out[f"throughput_{'floor_' if setup == 'qf_relay' else ''}{setup}_ge_0.5x_direct"] = (
            None if ft is None else ft >= 0.5)
    return out


def render(report: dict) -> str:
    """The printed report: ratios first, then absolute figures."""
    out: list[str] = []
    add = out.append
    m, v, s = report["machine"], report["versions"], report["settings"]
    add(f"fixproxy benchmark ({report['mode']} mode), {report['timestamp']}, {report['duration_s']:.0f} s")
    add(f"machine: {m['cpu_model']}, {m['cores']} cores, {m['memory_gib']} GiB; load average at start "
        f"{m['load_average_start'][0]:.2f}, at end {m['load_average_end'][0]:.2f}")
    other = m["other_work_cores"]
    add(f"other work on the machine during the windows: mean {_fmt(other['mean'])} cores, max "
        f"{_fmt(other['max'])} (of {m['cores']}); the benchmark's own processes: mean {_fmt(other['bench_mean'])}")
    add(f"python {v['python']}, quickfix {v['quickfix']}, uvloop {v['uvloop']}, hdrhistogram {v['hdrhistogram']}, "
        f"commit {v['git_commit'][:10]}{' (dirty)' if v['git_dirty'] else ''}")
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
            add(f"  {rate:>6}/s  {name:<12} " + "  ".join(f"{k} {_fmt(lat[k])}" for k, _ in benchlib.PERCENTILES)
                + f"  max {_fmt(lat['max'])}   acked {o['acked']}/{o['planned']}, rejected {o['rejected']}, "
                  f"timeouts {o['timeouts']}, unsent {o['unsent']}"
                + ("" if agg["sustained"] else "  NOT SUSTAINED: " + next(w["why"] for w in agg["per_window"]
                                                                          if not w["sustained"])))
    add("")
    add("SERVICE TIME (µs, from actual send; the difference to the above is the load generator's lag)")
    for rate, by in report["latency"].items():
        for name, agg in by.items():
            st = agg["service_time_us"]
            add(f"  {rate:>6}/s  {name:<12} " + "  ".join(f"{k} {_fmt(st[k])}" for k, _ in benchlib.PERCENTILES)
                + f"  max {_fmt(st['max'])}")
    add("")
    add("PROXY RESIDENCE (µs in the edge's fromApp: decode -> decision -> send)")
    for rate, by in report["latency"].items():
        for name, agg in by.items():
            res = agg["residence_us"]
            if res is None:
                continue
            for direction, rs in res.items():
                add(f"  {rate:>6}/s  {name:<12} {direction:<13} "
                    + "  ".join(f"{k} {_fmt(rs[k])}" for k, _ in benchlib.PERCENTILES) + f"  max {_fmt(rs['max'])}")
            for span, ts in (agg.get("timeline_us") or {}).items():
                add(f"  {rate:>6}/s  {name:<12} {span:<24} "
                    + "  ".join(f"{k} {_fmt(ts[k])}" for k, _ in benchlib.PERCENTILES[:2]) + "  (--timeline)")
            gcp = agg.get("proxy_gc_pauses") or {}
            if gcp:
                add(f"  {rate:>6}/s  {name:<12} gc pauses     " + "  ".join(
                    f"{g}: {v['count']} x, max {v['max_ms']:g} ms" for g, v in gcp.items()))
    add("")
    add(f"THROUGHPUT (highest offered rate sustained for {s['step_s']:g} s: {SUSTAIN}; "
        f"p50 <= {s['p50_limit_ms']:g} ms, p99 <= {s['p99_limit_ms']:g} ms)")
    for name, t in report["throughput"].items():
        at = next((st for st in t["steps"] if st["passed"]), None)
        there = f", p50 {_fmt(at['p50_us'])} µs p99 {_fmt(at['p99_us'])} µs there" if at else ""
        add(f"  {name:<12} {_fmt(t['sustained_rate'], '/s')}{there}   (probes passed up to "
            f"{_fmt(t['highest_passing_probe'])}/s, failed from {_fmt(t['lowest_failing_probe'])}/s; {t['limited_by']})")
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


def _yes(x) -> str:
    return "n/a" if x is None else "met" if x else "missed"


def _fmt(x, unit: str = "") -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and not x.is_integer():
        return f"{x:.2f}{unit}"
    return f"{int(x)}{unit}"


def caveats(args, throughput: dict, latency: dict, found: dict, skipped: list[str]) -> list[str]:
    book = ("the position book is on (the venue's fills update it)" if found["book"]
            else "the position book does not exist yet")
    audit = (f"the audit store was written ({', '.join(found['audit_files'])})" if found["audit_files"]
             else "no audit store file was written (it does not exist yet, or is off), so its cost is not in these figures")
    notes = [
        f"the full setup runs every risk rule with message logs on; {book}; {audit}",
        "proxy residence is timed around the edge's fromApp callback (quickfix engine) or the native engine's "
        "deliver (scripts/bench_proxy.py); it excludes the socket read, and the session layer's own parsing "
        "and checks before the callback; the native figure leaves out the time inside socket writes, the "
        "quickfix one includes it (quickfix writes inside sendToTarget)",
        "replay speed and halt-to-last-cancel time for 1,000 working orders are measured by `make bench` after "
        "this harness (scripts/replay_speed.py, scripts/bench_halt.py), not here",
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
            notes.append(f"at {rate}/s, not sustained by {' and '.join(saturated)} (see NOT SUSTAINED): latency "
                         "there includes queueing, so ratios at that rate measure the backlog more than the path")
    if skipped:
        notes.append("throughput steps skipped to finish within the time budget: " + ", ".join(skipped))
    for name, t in throughput.items():
        if t["sustained_rate"] is None:
            notes.append(f"{name}: no rate was sustained for a full {args.step_s:.0f} s step within the time budget; "
                         "its throughput ratios are n/a")
        elif t["lowest_failing_probe"] is None:
            notes.append(f"{name}: the throughput search never failed a probe; the figure is a lower bound")
    if args.mode != "full":
        notes.append(f"{args.mode} mode: short windows and steps; the figures show the harness works, "
                     "not what the proxy costs")
    return notes


# ---------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="fixproxy benchmark: direct vs pass-through vs full proxy, one run.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="about a minute and a half")
    mode.add_argument("--smoke", action="store_true", help="seconds; checks the harness, not the proxy")
    p.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "bench.json", help="JSON result file")
    p.add_argument("--config", type=Path, default=REPO / "cfg" / "fixproxy.toml",
                   help="config the setups are made from (default %(default)s)")
    p.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], help="latency rates, orders/s")
    p.add_argument("--windows", type=int, help="latency windows per setup and rate")
    p.add_argument("--window-s", type=float, help="latency window length")
    p.add_argument("--step-s", type=float, help="throughput step length (30 in the full run)")
    p.add_argument("--max-probes", type=int, help="short throughput probes per setup (0 with --confirm-tries 0: "
                   "no throughput search)")
    p.add_argument("--confirm-tries", type=int, help="full-length throughput steps per setup, at most")
    p.add_argument("--venue-behaviour", choices=("ack", "fill"), default="fill",
                   help="venue simulator answer (default fill: ack then fill, so open orders and exposure stay "
                        "bounded and the book is updated; latency is measured to the ack)")
    p.add_argument("--p50-limit-ms", type=float, default=10.0,
                   help="p50 bound of a sustained step (default %(default)s): a median above it is a standing queue")
    p.add_argument("--p99-limit-ms", type=float, default=500.0,
                   help="p99 bound of a sustained step (default %(default)s: a sanity bound; tail latency itself "
                        "is judged in the latency section)")
    p.add_argument("--max-in-flight", type=int, default=1000, help="orders sent but not answered (default %(default)s)")
    p.add_argument("--ack-timeout-s", type=float, help="an ack later than this is missing (full: 5)")
    p.add_argument("--abort-lag-s", type=float, default=1.0,
                   help="a throughput step gives up when its sender is this far behind schedule")
    p.add_argument("--settle-s", type=float, default=0.3, help="pause between windows")
    p.add_argument("--engine", choices=("quickfix", "native"), default="",
                   help="the proxy setups' FIX engine (default: the config's [proxy] engine)")
    p.add_argument("--profile", type=Path, metavar="DIR", help="record the full proxy with py-spy into DIR")
    p.add_argument("--profile-rate", type=int, default=3000)
    p.add_argument("--profile-s", type=float, default=20.0)
    p.add_argument("--proxy-switch-interval", type=float, metavar="SECONDS",
                   help="experiment: sys.setswitchinterval in both proxies (default: Python's 0.005)")
    p.add_argument("--timeline", action="store_true",
                   help="native-engine proxies also time an order's arrival, its write to the venue, the ack's "
                        "arrival and its write to the OMS (a few µs per message: explains, does not measure)")
    p.add_argument("--proxy-gc-freeze-s", type=float, metavar="SECONDS",
                   help="experiment: gc.freeze() in both proxies this often (default: never)")
    p.add_argument("--venue-gc-freeze-s", type=float, default=1.0, metavar="SECONDS",
                   help="gc.freeze() in the venue simulators this often, 0 for never (default %(default)s)")
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
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    info = machine()

    # Stop the children on SIGTERM/SIGHUP too, not only on ^C or an error.
    def _terminate(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)

    cfgs, overrides = write_configs(args.config, run_dir, args.engine)
    proxy_args = ["--switch-interval", str(args.proxy_switch_interval)] if args.proxy_switch_interval else []
    if args.proxy_gc_freeze_s:
        proxy_args += ["--gc-freeze-every", str(args.proxy_gc_freeze_s)]
    setups = {name: Setup(name, cfgs[name], run_id, args.venue_behaviour,
                          proxy_args + (["--timeline"] if args.timeline and cfgs[name]["engine"] == "native" else []),
                          args.venue_gc_freeze_s)
              for name in SETUPS}
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
    found = {"book": importlib.util.find_spec("fixproxy.core.book") is not None,
             "audit_files": sorted(str(p.relative_to(run_dir)) for p in (run_dir / "full").rglob("*")
                                   if p.is_file() and "audit" in p.name)}
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
    latency = {rate: {name: aggregate(ws, bench.passed) for name, ws in by.items()}
               for rate, by in bench.latency.items()}
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


def check_config(path: Path) -> str:
    """``fixproxy check-config`` on a setup's config: fail before starting anything, and keep its summary."""
    done = subprocess.run([sys.executable, "-m", "fixproxy", "check-config", "--config", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{path}: {(done.stderr or done.stdout).strip()}")
    return done.stdout.strip()


def settings(args, cfgs: dict, overrides: list[str]) -> dict:
    proxy_setups = {
        name: {"rules": "every rule (config default)" if cfgs[name]["rules"] is None else cfgs[name]["rules"],
               "check_config": cfgs[name].get("check", ""),
               "message_log": cfgs[name]["message_log"], "log_level": cfgs[name]["log_level"],
               "engine": cfgs[name]["engine"],
               "store": "FileStore (quickfix's, or its format written by the native engine)", "process": "scripts/bench_proxy.py (fixproxy run + residence timer)",
               "switch_interval_s": args.proxy_switch_interval or sys.getswitchinterval(),
               "gc_freeze_every_s": args.proxy_gc_freeze_s}
        for name in ("pass_through", "full", "full_native")
    }
    return {
        "config_template": str(args.config),
        "config_changes": ["ports and state folders of each setup", *overrides],
        "venue_behaviour": args.venue_behaviour,
        "venue_simulator": "fixproxy sim venue --quiet (FileStore, no message log), run by scripts/bench_venue.py "
                           f"with gc.freeze() every {args.venue_gc_freeze_s:g} s (0: never) so its own growing "
                           "full collections stay out of every setup's figures",
        "load_generator": "scripts/bench_oms.py: quickfix initiator, MemoryStore, no message log, "
                          "GIL switch interval 0.5 ms",
        "orders": f"NewOrderSingle {BENCH_SYMBOL} 100 limit, account {BENCH_ACCOUNT}, buy at 189 and sell at 191 "
                  "alternating (they never cross: every rule passes them)",
        "order_path": {"direct": "OMS -> venue simulator",
                       "relay": "OMS -> byte relay (scripts/bench_relay.py: uvloop, no FIX work) -> venue simulator",
                       "qf_relay": "OMS -> the proxy's quickfix sessions, same settings, forwarding each application "
                                   "message unchanged (scripts/bench_qfrelay.py: no proxy work) -> venue simulator",
                       "pass_through": "OMS -> proxy -> venue simulator", "full": "OMS -> proxy -> venue simulator",
                       "full_native": "OMS -> proxy (native engine) -> venue simulator"},
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
        "histogram": f"HdrHistogram {benchlib.LOWEST_US}..{benchlib.HIGHEST_US} µs, "
                     f"{benchlib.SIGNIFICANT_DIGITS} significant digits",
    }


if __name__ == "__main__":
    sys.exit(main())
