"""The benchmark's setups: one config per setup written from the shipped one, and each setup's
processes (venue simulator, proxy or relay, load generator), started from the repository.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import tomli_w

from bench import REPO
from fixproxy.sim.process import NoMatch, Proc, free_port

SETUPS = ("direct", "relay", "qf_relay", "pass_through", "full", "full_native")

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
            overrides.append(
                f"limits.{layer_name}.max_msgs_per_s = {UNTRIPPED_RATE_LIMIT} "
                "(the throttle rule still runs; the offered load must not trip it)"
            )
        if "sector_min_gross" in layer and "max_gross_exposure" in layer:
            # Every bench order is in one symbol: orders waiting at the venue during a burst of slow
            # answers make it 99 % of gross and trip the sector rule. It applies only from the gross
            # exposure limit on; the rule still runs.
            layer["sector_min_gross"] = layer["max_gross_exposure"]
            overrides.append(
                f"limits.{layer_name}.sector_min_gross = {layer['max_gross_exposure']} (the sector "
                "rule still runs; a one-symbol load must not trip it)"
            )
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
            cfg["venues"] = [
                {
                    "name": venue["name"],
                    "host": "127.0.0.1",
                    "port": acceptor["port"] if name == "direct" else free_port(),
                    "comp_id": acceptor_comp_id,
                    "our_comp_id": oms["comp_id"],
                    "fix_version": oms.get("fix_version", "FIX.4.4"),
                }
            ]
        else:
            cfg["venues"] = [{**venue, "host": "127.0.0.1", "port": free_port()}]
            if name == "pass_through":
                cfg.setdefault("risk", {})["rules"] = []
        path = state / "fixproxy.toml"
        path.write_text(f"# written by the benchmark (bench/setups.py) from {template}\n" + tomli_w.dumps(cfg))
        out[name] = {
            "path": path,
            "state": state,
            "acceptor_port": acceptor["port"],
            "venue": cfg["venues"][0],
            "oms": oms,
            "acceptor_comp_id": acceptor_comp_id,
            "rules": cfg.get("risk", {}).get("rules"),
            "message_log": cfg.get("proxy", {}).get("message_log", True),
            "engine": cfg.get("proxy", {}).get("engine", "quickfix"),
            "log_level": cfg.get("proxy", {}).get("log_level", "info"),
        }
    return out, overrides


def _limit_layers(limits: dict) -> Iterator[tuple[str, dict]]:
    """(dotted name, table) for limits.firm and every limits.<layer>.<key> table."""
    for key, table in limits.items():
        if key == "firm" and isinstance(table, dict):
            yield "firm", table
        elif isinstance(table, dict):
            for sub, inner in table.items():
                if isinstance(inner, dict):
                    yield f"{key}.{sub}", inner


# ---------------------------------------------------------------- child processes


class Child(Proc):
    """A process of the benchmark (``python ARGS``, run from the repository so that it imports this
    checkout's fixproxy and bench): JSON lines on stdout, stderr to a file."""

    def __init__(self, name: str, args: list[str], stderr_path: Path, stdin: bool) -> None:
        super().__init__(
            name, [sys.executable, *args], REPO, stdin=stdin, log=stderr_path, env={"PYTHONPATH": str(REPO)}
        )
        self._next = 0  # stdout records before this one have been answered

    def expect(self, event: str, timeout: float) -> dict:
        """The next stdout record with ``event``; RuntimeError with the stderr tail otherwise."""
        try:
            i = self.wait_index(lambda r: r.get("event") in (event, "error"), timeout, self._next)
        except NoMatch as exc:
            raise RuntimeError(str(exc)) from None
        self._next = i + 1
        record = self.lines[i]
        if record.get("event") == "error":
            raise RuntimeError(f"{self.name}: {record.get('detail')}")
        return record

    def request(self, command: dict, event: str, timeout: float) -> dict:
        self.send_line(json.dumps(command))
        return self.expect(event, timeout)

    def quit(self, command: dict) -> int | None:
        """Stop by the process's own command, then as ``stop`` does if it is still running."""
        if self.alive():
            try:
                self.send_line(json.dumps(command))
                self.popen.wait(5)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        return self.stop()


class Setup:
    """One setup's processes: a venue simulator, the proxy (except direct) and the load generator."""

    def __init__(
        self, name: str, cfg: dict, run_id: str, behaviour: str, proxy_args: list[str], venue_gc_freeze_s: float
    ) -> None:
        self.name, self.cfg, self.run_id, self.behaviour = name, cfg, run_id, behaviour
        self.proxy_args = proxy_args
        self.venue_gc_freeze_s = venue_gc_freeze_s
        self.venue: Child | None = None
        self.proxy: Child | None = None
        self.oms: Child | None = None
        self.window_ids = iter(range(1, 1_000_000))

    def start(self) -> None:
        cfg, state = self.cfg, self.cfg["state"]
        self.venue = Child(
            f"{self.name}/venue",
            [
                "-m",
                "bench.venue",
                "--gc-freeze-every",
                str(self.venue_gc_freeze_s),
                "--",
                "--config",
                str(cfg["path"]),
                "--venue",
                cfg["venue"]["name"],
                "--default",
                self.behaviour,
                "--quiet",
                "--state-dir",
                str(state / "venue-sim"),
            ],
            state / "venue.stderr",
            stdin=False,
        )
        self.venue.expect("listening", 30)
        if self.name == "relay":
            self.proxy = Child(
                f"{self.name}/relay",
                ["-m", "bench.relay", "--listen", str(cfg["acceptor_port"]), "--to", str(cfg["venue"]["port"])],
                state / "relay.stderr",
                stdin=False,
            )
            self.proxy.expect("listening", 30)
        elif self.name == "qf_relay":
            self.proxy = Child(
                f"{self.name}/relay",
                ["-m", "bench.qfrelay", "--config", str(cfg["path"])],
                state / "relay.stderr",
                stdin=True,
            )
            self.proxy.expect("listening", 60)
        elif self.name != "direct":
            self.proxy = Child(
                f"{self.name}/proxy",
                ["-m", "bench.proxy", "--config", str(cfg["path"]), *self.proxy_args],
                state / "proxy.stderr",
                stdin=True,
            )
            self.proxy.wait_log("session_up", 30, detail=cfg["venue"]["name"])
        oms = cfg["oms"]
        self.oms = Child(
            f"{self.name}/oms",
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
                f"{self.run_id}{self.name[0]}",
                "--account",
                BENCH_ACCOUNT,
                "--symbol",
                BENCH_SYMBOL,
            ],
            state / "oms.stderr",
            stdin=True,
        )
        self.oms.expect("logon", 30)

    def pids(self) -> dict[str, int]:
        return {c.name.split("/")[1]: c.pid for c in (self.venue, self.proxy, self.oms) if c is not None}

    def window(
        self, rate: float, duration_s: float, max_in_flight: int, ack_timeout_s: float, abort_lag_s: float | None = None
    ) -> dict:
        """One measurement window; the proxy's residence samples cover exactly this window."""
        assert self.oms is not None, "start() first"
        proxy = self.proxy if self.name not in ("relay", "qf_relay") else None  # a timed proxy
        if proxy is not None:
            proxy.request({"cmd": "reset"}, "reset", 30)
        cmd = {
            "cmd": "window",
            "id": next(self.window_ids),
            "rate": rate,
            "duration_s": duration_s,
            "max_in_flight": max_in_flight,
            "ack_timeout_s": ack_timeout_s,
            "abort_lag_s": abort_lag_s,
        }
        result = self.oms.request(cmd, "window", duration_s + 2 * ack_timeout_s + 60)
        result["setup"] = self.name
        if proxy is not None:
            result["residence"] = proxy.request({"cmd": "dump"}, "residence", 60)
        return result

    def stop(self) -> dict[str, int | None]:
        """Stop the load generator, then the proxy, then the venue; exit codes by role."""
        codes: dict[str, int | None] = {}
        if self.oms is not None:
            codes["oms"] = self.oms.quit({"cmd": "quit"})
        if self.proxy is not None:
            codes["proxy"] = self.proxy.stop()
        if self.venue is not None:
            codes["venue"] = self.venue.stop()
        return codes


def check_config(path: Path) -> str:
    """``fixproxy check-config`` on a setup's config: fail before starting anything, and keep its summary."""
    done = subprocess.run(
        [sys.executable, "-m", "fixproxy", "check-config", "--config", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{path}: {(done.stderr or done.stdout).strip()}")
    return done.stdout.strip()
