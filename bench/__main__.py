"""``python -m bench <command> [options]``: the benchmark's commands (bench/README.md says what each measures)."""

from __future__ import annotations

import importlib
import sys

#: command -> (module, what it measures)
COMMANDS = {
    "run": (
        "bench.run",
        "what the proxy costs, with light peers: added latency, CPU per order and throughput of nine setups "
        "(`make bench`)",
    ),
    "halt": ("bench.halt", "halt-to-last-cancel time for N working orders (`make bench`)"),
    "replay": ("bench.replay", "replay speed of a synthetic day of FIX logs (`make bench`)"),
    "long": ("bench.long", "one setup window after window: latency and GC pauses as the proxy's tables grow"),
    "ab": ("bench.ab", "one setup twice, B with config changes, in interleaved windows"),
    "cpu": ("bench.cpu", "CPU share of each process of one setup, and of the proxy's threads"),
    "journal": ("bench.journal", "journal append cost per fsync policy"),
    "audit": ("bench.audit", "audit follower CPU per journal record and per order, in process"),
    "path": (
        "bench.path",
        "the native engine's order path in process, without sockets: the proxy's own CPU µs per order",
    ),
    "floor": ("bench.floor", "the FIX text and recording work every order needs, CPU µs per order, in process"),
    "recovery": ("bench.recovery", "recovery speed: snapshot plus journal tail replayed through the core"),
    "memory": ("bench.memory", "memory held per order by the core"),
    "door": ("bench.door", "what the quickfix engine's front door costs per message"),
    "desk-reads": ("bench.desk_reads", "order latency while the risk desk reads, with a day of orders in memory"),
    "streams": ("bench.streams", "order latency with hundreds of event-stream clients"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    return "usage: python -m bench <command> [options]   (<command> --help for its options)\n\ncommands:\n" + "\n".join(
        f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(usage(), file=sys.stdout if argv[:1] in (["-h"], ["--help"]) else sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])  # on demand: some load quickfix
    sys.argv[0] = f"python -m bench {argv[0]}"  # argparse's prog in usage lines
    code: int = module.main(argv[1:])
    return code


if __name__ == "__main__":
    raise SystemExit(main())
