"""Where the CPU goes: each process of one benchmark setup, at one offered rate.

Starts the setup as ``make bench`` does (same configs and light peers, pinned the same way), runs a
warm-up window, then a measured one, and prints each process's share of a core over it (from
/proc user + system time), with the window's latency. The proxy's audit follower process is
listed under it.

    .venv/bin/python -m bench cpu --setup native_full --rate 2000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from bench import histogram
from bench.setups import NEEDS_DB, REPO, SETUPS, Setup, command_name, process_tree, write_configs

TICK = os.sysconf("SC_CLK_TCK")


def _times(stat: Path) -> tuple[float, float]:
    """(user, system) seconds of a process or thread, from its /proc stat file."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def _cpu(pid: int) -> dict[str, tuple[float, float]]:
    """The process's (user, system) times, and each of its threads' by "thread <tid>"."""
    out = {"": _times(Path(f"/proc/{pid}/stat"))}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            out[f"thread {task}"] = _times(Path(f"/proc/{pid}/task/{task}/stat"))
        except OSError:
            continue
    return out


def child_is_proxy(setup, pid: int) -> bool:
    return setup.proxy is not None and setup.proxy.pid == pid


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setup", choices=[s for s in SETUPS if s not in NEEDS_DB], default="native_full")
    p.add_argument("--rate", type=float, default=2000)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--config", type=Path, default=REPO / "cfg" / "fixproxy.toml")
    args = p.parse_args(argv)
    run_id = "C" + format(int(time.time() * 1000), "x")[-8:]
    run_dir = REPO / "var" / "bench" / f"cpu-{run_id}"
    run_dir.mkdir(parents=True)
    cfgs, _ = write_configs(args.config.resolve(), run_dir)
    setup = Setup(args.setup, cfgs[args.setup], run_id)
    try:
        setup.start()  # inside: a setup that fails to start still has its processes stopped
        setup.window(args.rate, 3, 1000, 5)  # warm-up
        pids = [pid for child in (setup.peers, setup.proxy) if child for pid in process_tree(child.pid)]
        before = {pid: _cpu(pid) for pid in pids}
        started = time.monotonic()
        result = setup.window(args.rate, args.seconds, 1000, 5)
        elapsed = time.monotonic() - started
        total = 0.0
        print("  share of a core: all (user + system), per process; the proxy's busy threads under it")
        for pid in pids:
            after = _cpu(pid)
            (u0, s0), (u1, s1) = before[pid][""], after[""]
            user, system = (u1 - u0) / elapsed * 100, (s1 - s0) / elapsed * 100
            total += user + system
            print(f"{user + system:6.1f} % ({user:5.1f} + {system:5.1f})  {command_name(pid)} (pid {pid})")
            if child_is_proxy(setup, pid):
                for name, (u1, s1) in sorted(after.items()):
                    u0, s0 = before[pid].get(name, (0.0, 0.0))
                    user, system = (u1 - u0) / elapsed * 100, (s1 - s0) / elapsed * 100
                    if name and user + system >= 0.5:
                        print(f"        {user + system:6.1f} % ({user:5.1f} + {system:5.1f})  {name}")
        print(f"{total:6.1f} %  in all, of {os.cpu_count() * 100} %")
        latency = histogram.summary(histogram.decode(result["latency"]))
        print(f"latency p50 {latency['p50']} µs, p99 {latency['p99']} µs, {result['acked']}/{result['planned']} acked")
    finally:
        setup.stop()
        shutil.rmtree(run_dir, ignore_errors=True)  # the stores and logs of a measurement nobody reads
    return 0


if __name__ == "__main__":
    sys.exit(main())
