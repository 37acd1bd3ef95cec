"""The benchmark's setups: one config per setup written from the shipped one, and each setup's
processes (the light peers, and the proxy or relay between them), started from the repository,
the peers pinned to one core and the proxy with its children to the other.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import tomli_w

from bench import REPO
from fixproxy.sim.process import NoMatch, Proc, free_port

#: The setups, in the order their windows interleave.
SETUPS = (
    "direct",
    "relay",
    "native_full",
    "native_cluster",
    "native_ha_async",
    "native_ha_sync",
    "native_pass",
    "qf_full",
    "qf_relay",
)
#: Setups with a proxy in them (bench/proxy.py: residence timer, garbage-collector pauses).
PROXIES = ("native_full", "native_cluster", "native_ha_async", "native_ha_sync", "native_pass", "qf_full")
#: The setups that are one instance of a cluster.
CLUSTERED = ("native_cluster",)
#: The setups that are the active of an HA pair (issue 22): [ha] copy, and a standby in copy beside them.
HA = {"native_ha_async": "async", "native_ha_sync": "sync"}
#: The setups that need the benchmark's own PostgreSQL (its URL to ``write_configs``).
NEEDS_DB = (*CLUSTERED, *HA)
#: What sits between the peers in each setup.
ORDER_PATH = {
    "direct": "OMS -> venue (the peers alone)",
    "relay": "OMS -> byte relay (bench/relay.py: uvloop, no FIX work) -> venue",
    "native_full": "OMS -> proxy, native engine, shipped config (every rule, journal, audit, message logs) -> venue",
    "native_cluster": "OMS -> proxy, native engine, native_full with [cluster] on (one instance, the "
    "benchmark's own PostgreSQL: leases, status, the fills mirror) -> venue",
    "native_ha_async": 'OMS -> proxy, native engine, native_full with [ha] copy = "async" (the active of a '
    "pair: its lease in the benchmark's PostgreSQL, a standby fixproxy copying its journal and stores, "
    "shipped every 2 ms) -> venue",
    "native_ha_sync": 'OMS -> proxy, native engine, native_full with [ha] copy = "sync" (as native_ha_async, '
    "but no byte goes on a socket before the standby acknowledged the journal up to it) -> venue",
    "native_pass": "OMS -> proxy, native engine, [risk] rules = [] (otherwise as native_full) -> venue",
    "qf_full": "OMS -> proxy, quickfix engine, shipped config (every rule) -> venue",
    "qf_relay": "OMS -> the proxy's quickfix sessions forwarding each application message unchanged "
    "(bench/qfrelay.py: quickfix's floor, no proxy work) -> venue",
}
#: The peers' core and the proxy's (with its children), on a machine with two or more.
PEERS_CPU, PROXY_CPU = 0, 1


def can_pin() -> bool:
    """Whether the peers and the proxy get a core each: two usable cores, and taskset for the proxy."""
    try:
        usable = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return False
    return {PEERS_CPU, PROXY_CPU} <= usable and shutil.which("taskset") is not None


BENCH_ACCOUNT = "BENCH"
BENCH_SYMBOL = "AAPL"
UNTRIPPED_RATE_LIMIT = 1_000_000
#: native_cluster's firm limits (every one shared): high enough that a share's 2 % step covers every
#: order in flight, so no order is refused or waits for a top-up, and each is checked against a share.
CLUSTER_FIRM_LIMITS = {
    "max_gross_exposure": 10_000_000_000,
    "max_net_exposure": 10_000_000_000,
    "max_open_orders": 1_000_000,
}
CLUSTER_INSTANCE = "bench"
#: The HA pairs' instances: the active (the one the peers talk to) and its standby.
HA_ACTIVE, HA_STANDBY = "a", "b"


def write_configs(template: Path, run_dir: Path, cluster_url: str | None = None) -> tuple[dict[str, dict], list[str]]:
    """One config per setup from the shipped config: same rules, limits and sessions; own ports and state.

    Returns the setups' configs and, in words, every change made to the template beyond ports and
    paths (only where the template has the key, so an older or newer config still works). The
    setups that need a database (NEEDS_DB) are written only with ``cluster_url``, the database they
    share; each HA setup also gets its standby's config (``standby``: its own folder, ports and
    instance name, the same pair).
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
        if name in NEEDS_DB and cluster_url is None:
            continue
        cfg = json.loads(json.dumps(base))  # deep copy
        state = run_dir / name
        state.mkdir(parents=True, exist_ok=True)
        for data_file in template.parent.glob("*.csv"):  # instruments, positions: relative paths keep working
            shutil.copy(data_file, state / data_file.name)
        cfg.setdefault("proxy", {})["state_dir"] = "var"
        cfg["proxy"]["engine"] = "quickfix" if name.startswith("qf_") else "native"
        acceptor = cfg.setdefault("acceptor", {})
        acceptor["port"] = free_port()
        acceptor["allowed_remote_addresses"] = ["127.0.0.1"]
        if "admin" in cfg:  # the setups run side by side: each admin HTTP API on its own port
            cfg["admin"]["http_port"] = free_port()
            cfg["admin"]["http_host"] = "127.0.0.1"
        acceptor_comp_id = acceptor.get("comp_id", "FIXPROXY")
        if name in ("direct", "relay"):
            # The venue takes the proxy's place (behind the byte relay in the relay setup); it
            # answers with the CompIDs it is called by.
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
            if name == "native_pass":
                cfg.setdefault("risk", {})["rules"] = []
            if name in CLUSTERED:
                cfg.setdefault("limits", {}).setdefault("firm", {}).update(CLUSTER_FIRM_LIMITS)
                cfg["cluster"] = {"url": cluster_url, "instance": CLUSTER_INSTANCE}
            if name in HA:
                cfg["ha"] = {
                    "url": cluster_url,
                    "pair": name,
                    "instance": HA_ACTIVE,
                    "copy_listen": f"127.0.0.1:{free_port()}",
                    "copy": HA[name],
                }
        path = state / "fixproxy.toml"
        path.write_text(f"# written by the benchmark (bench/setups.py) from {template}\n" + tomli_w.dumps(cfg))
        standby = None
        if name in HA:
            standby = _standby_config(cfg, template, state / "standby")
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
            "cluster": cfg.get("cluster"),
            "ha": cfg.get("ha"),
            "standby": standby,
        }
    if cluster_url is not None:
        limits = ", ".join(f"{k} = {v}" for k, v in CLUSTER_FIRM_LIMITS.items())
        overrides.append(
            f"native_cluster only: [cluster] url = {cluster_url}, instance = {CLUSTER_INSTANCE!r} (defaults "
            f"otherwise); limits.firm {limits} (shared, checked against this instance's share on every "
            "order; high enough that no order is refused or waits for a top-up)"
        )
        overrides.append(
            f"native_ha_async and native_ha_sync only: [ha] url = {cluster_url}, pair = the setup's name, "
            f'instance = {HA_ACTIVE!r}, copy = "async" / "sync" (defaults otherwise); a standby (instance '
            f"{HA_STANDBY!r}: the same config in a folder of its own, its own ports) copying from it"
        )
    return out, overrides


def _standby_config(active: dict, template: Path, folder: Path) -> dict:
    """The standby's config: the active's, in a folder of its own, with its own acceptor, admin and
    copy ports and instance name (the venue sessions are the same: it connects none while standby)."""
    cfg = json.loads(json.dumps(active))
    folder.mkdir(parents=True, exist_ok=True)
    for data_file in template.parent.glob("*.csv"):
        shutil.copy(data_file, folder / data_file.name)
    cfg["acceptor"]["port"] = free_port()
    if "admin" in cfg:
        cfg["admin"]["http_port"] = free_port()
    cfg["ha"] = {**cfg["ha"], "instance": HA_STANDBY, "copy_listen": f"127.0.0.1:{free_port()}"}
    path = folder / "fixproxy.toml"
    path.write_text(f"# written by the benchmark (bench/setups.py) from {template}: a standby\n" + tomli_w.dumps(cfg))
    return {"path": path, "state": folder, "ha": cfg["ha"], "acceptor_port": cfg["acceptor"]["port"]}


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
    checkout's fixproxy and bench): JSON lines on stdout, stderr to a file. ``cpu``: started under
    ``taskset -c CPU``, so it and every process it starts run on that core only."""

    def __init__(self, name: str, args: list[str], stderr_path: Path, stdin: bool, cpu: int | None = None) -> None:
        pin = ["taskset", "-c", str(cpu)] if cpu is not None else []  # taskset execs: the same process id
        super().__init__(
            name, [*pin, sys.executable, *args], REPO, stdin=stdin, log=stderr_path, env={"PYTHONPATH": str(REPO)}
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


# ---------------------------------------------------------------- processes as /proc shows them


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process under it (children of each of its threads, recursively)."""
    out = [pid]
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for task in tasks:
        try:
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            out += process_tree(int(child))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads, live and ended); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, ValueError, IndexError):
        return 0.0


def cpus_allowed(pid: int) -> str:
    """The CPUs a process may run on, as /proc says (``0``, ``1``, ``0-1``); "" once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def command_name(pid: int) -> str:
    """A short name for a benchmark process: its bench module, or what the proxy started."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    for known in ("bench.peers", "bench.proxy", "bench.relay", "bench.qfrelay"):
        if known in args:
            return known
    if any("resource_tracker" in a for a in args):
        return "multiprocessing resource tracker"
    if any("multiprocessing" in a for a in args):
        return "proxy child (multiprocessing: the audit follower)"
    return " ".join(args)[-60:]


def reaped_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process's children that ended and were waited for; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[13]) + int(fields[14])) / _TICK
    except (OSError, ValueError, IndexError):
        return 0.0


class Database:
    """The clustered setups' PostgreSQL (fixproxy/cluster/localdb.py), durable (PostgreSQL's default
    settings: fsync and synchronous commit on), in a folder of its own under the system's temporary
    directory (run as root, the server runs as the ``postgres`` user, which must reach it).

    ``pin``: its processes on the peers' core, so the proxy's core stays the proxy's, as with a
    database on another machine; backends started later inherit it from the postmaster.
    """

    def __init__(self, pin: bool = True) -> None:
        from fixproxy.cluster.localdb import LocalPostgres

        self.directory = Path(tempfile.mkdtemp(prefix="fixproxy-bench-pg-"))
        self.server = LocalPostgres(self.directory, durable=True)
        self.pin = pin and can_pin()

    def start(self) -> str:
        """Start the server; its URL."""
        self.server.start()
        if self.pin:
            for pid in self.pids():
                subprocess.run(
                    ["taskset", "-a", "-p", "-c", str(PEERS_CPU), str(pid)], capture_output=True, check=False
                )
        return self.server.url()

    def pids(self) -> list[int]:
        """The postmaster and every server process under it; [] when it is not running."""
        pid = self.server.pid
        return process_tree(pid) if pid is not None and self.server.running else []

    def cpu_seconds(self) -> float:
        """CPU seconds of the server's processes, those ended since included (the postmaster reaps them)."""
        pids = self.pids()
        return sum(cpu_seconds(pid) for pid in pids) + (reaped_cpu_seconds(pids[0]) if pids else 0.0)

    def pinning(self) -> dict[str, str]:
        """Each server process (its title, as ``ps`` shows it) and the CPUs it may run on."""
        out = {}
        for pid in self.pids():
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                title = "postgres"
            out[f"{' '.join(title.split())[:60]} (pid {pid})"] = cpus_allowed(pid)
        return out

    def stop(self) -> None:
        """Stop the server by its process id and remove its folder."""
        try:
            self.server.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


class Setup:
    """One setup's processes: the light peers (OMS and venue), and the proxy or relay between them.

    ``pin``: the peers on core 0, the proxy or relay (and every process it starts) on core 1. An HA
    setup (HA) also has a standby: a second ``fixproxy run`` of the same pair, started once the proxy
    (the active: it took the lease, having started first) is up, pinned with the peers as the
    database is; the setup is ready when the active logs the standby in copy.
    """

    def __init__(
        self, name: str, cfg: dict, run_id: str, proxy_args: list[str] | None = None, pin: bool = True
    ) -> None:
        self.name, self.cfg, self.run_id = name, cfg, run_id
        self.proxy_args = proxy_args or []
        self.pin = pin and can_pin()
        self.peers: Child | None = None
        self.proxy: Child | None = None
        self.standby: Child | None = None
        self.window_ids = iter(range(1, 1_000_000))

    def start(self) -> None:
        cfg, state = self.cfg, self.cfg["state"]
        oms = cfg["oms"]
        self.peers = Child(
            f"{self.name}/peers",
            [
                "-m",
                "bench.peers",
                "--listen",
                str(cfg["venue"]["port"]),
                "--sender",
                oms["comp_id"],
                "--target",
                cfg["acceptor_comp_id"],
                "--run-id",
                f"{self.run_id}{SETUPS.index(self.name)}",
                "--account",
                BENCH_ACCOUNT,
                "--symbol",
                BENCH_SYMBOL,
                *(["--cpu", str(PEERS_CPU)] if self.pin else []),
            ],
            state / "peers.stderr",
            stdin=True,
        )
        self.peers.expect("listening", 30)
        cpu = PROXY_CPU if self.pin else None
        if self.name == "relay":
            self.proxy = Child(
                f"{self.name}/relay",
                ["-m", "bench.relay", "--listen", str(cfg["acceptor_port"]), "--to", str(cfg["venue"]["port"])],
                state / "relay.stderr",
                stdin=False,
                cpu=cpu,
            )
            self.proxy.expect("listening", 30)
        elif self.name == "qf_relay":
            self.proxy = Child(
                f"{self.name}/relay",
                ["-m", "bench.qfrelay", "--config", str(cfg["path"])],
                state / "relay.stderr",
                stdin=True,
                cpu=cpu,
            )
            self.proxy.expect("listening", 60)
        elif self.name != "direct":
            self.proxy = Child(
                f"{self.name}/proxy",
                ["-m", "bench.proxy", "--config", str(cfg["path"]), *self.proxy_args],
                state / "proxy.stderr",
                stdin=True,
                cpu=cpu,
            )
            self.proxy.wait_log("session_up", 30, detail=cfg["venue"]["name"])
            if self.name in HA:
                self._start_standby()
        self.peers.request({"cmd": "connect", "port": cfg["acceptor_port"]}, "logon", 30)

    def _start_standby(self) -> None:
        """The pair's standby (the active holds the lease by now), until the active has it in copy."""
        assert self.proxy is not None and self.cfg["standby"] is not None
        standby = self.cfg["standby"]
        self.standby = Child(
            f"{self.name}/standby",
            ["-m", "fixproxy", "run", "--config", str(standby["path"])],
            standby["state"] / "standby.stderr",
            stdin=False,
            cpu=PEERS_CPU if self.pin else None,
        )
        try:
            self.proxy.wait_log("ha_standby_in_copy", 60, standby=HA_STANDBY)
        except NoMatch as exc:
            raise RuntimeError(f"{exc}\nthe standby (pid {self.standby.pid}):\n{self.standby.tail()}") from None

    def pids(self) -> dict[str, int]:
        return {c.name.split("/")[1]: c.pid for c in (self.peers, self.proxy, self.standby) if c is not None}

    def proxy_tree(self) -> list[int]:
        """The proxy's (or relay's) process and every process under it; [] in the direct setup."""
        return process_tree(self.proxy.pid) if self.proxy is not None else []

    def standby_tree(self) -> list[int]:
        """An HA setup's standby process and every process under it; [] in the other setups."""
        return process_tree(self.standby.pid) if self.standby is not None else []

    def pinning(self) -> dict[str, str]:
        """Each process of the setup (the proxy's children too) and the CPUs it may run on."""
        out = {}
        if self.peers is not None:
            out[f"peers (pid {self.peers.pid})"] = cpus_allowed(self.peers.pid)
        for pid in self.proxy_tree():
            out[f"{command_name(pid)} (pid {pid})"] = cpus_allowed(pid)
        for pid in self.standby_tree():
            what = "fixproxy run" if self.standby is not None and pid == self.standby.pid else command_name(pid)
            out[f"standby: {what} (pid {pid})"] = cpus_allowed(pid)
        return out

    def window(
        self, rate: float, duration_s: float, max_in_flight: int, ack_timeout_s: float, abort_lag_s: float | None = None
    ) -> dict:
        """One measurement window; the proxy's residence samples cover exactly this window."""
        assert self.peers is not None, "start() first"
        proxy = self.proxy if self.name in PROXIES else None  # a timed proxy
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
        result = self.peers.request(cmd, "window", duration_s + 2 * ack_timeout_s + 60)
        result["setup"] = self.name
        if proxy is not None:
            result["residence"] = proxy.request({"cmd": "dump"}, "residence", 60)
        return result

    def stop(self) -> dict[str, int | None]:
        """Stop the standby (so it takes nothing over), then the proxy, then the peers; exit codes by role."""
        codes: dict[str, int | None] = {}
        if self.standby is not None:
            codes["standby"] = self.standby.stop()
        if self.proxy is not None:
            codes["proxy"] = self.proxy.stop()
        if self.peers is not None:
            codes["peers"] = self.peers.quit({"cmd": "quit"})
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
