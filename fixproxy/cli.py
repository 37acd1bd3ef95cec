"""Command line: wiring only. ``fixproxy --help`` lists the subcommands."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from .config import ConfigError, load
from .sim.venue import BEHAVIOURS

DEFAULT_CONFIG = os.environ.get("FIXPROXY_CONFIG", "cfg/fixproxy.toml")


def _load(path: str):
    try:
        return load(path, now_ns=time.time_ns())
    except ConfigError as exc:
        print(f"fixproxy: bad configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_check_config(args) -> int:
    loaded = _load(args.config)
    cfg = loaded.config
    print(f"{loaded.path}: ok — {len(cfg.oms)} OMS session(s), {len(cfg.venues)} venue(s), "
          f"{len(loaded.instruments)} instrument(s), rules: {', '.join(cfg.rule_names()) or 'none'}")
    return 0


def cmd_run(args) -> int:
    loaded = _load(args.config)
    children: list[subprocess.Popen] = []
    if args.with_venue_sim:
        for venue in loaded.config.venues:
            children.append(subprocess.Popen(
                [sys.executable, "-m", "fixproxy", "sim", "venue", "--config", args.config, "--venue", venue.name,
                 "--quiet"],
            ))
            print(f"fixproxy: venue simulator {venue.name!r} on 127.0.0.1:{venue.port} (pid {children[-1].pid})",
                  file=sys.stderr)
    cfg = loaded.config
    print(f"fixproxy: OMS sessions connect to 127.0.0.1:{cfg.acceptor.port} with TargetCompID={cfg.acceptor.comp_id}: "
          + ", ".join(f"{s.name} ({s.fix_version}, SenderCompID={s.comp_id})" for s in cfg.oms), file=sys.stderr)
    from .app import run

    try:
        run(loaded)
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                child.kill()
    return 0


def _behaviours(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        symbol, eq, behaviour = item.partition("=")
        if not eq or behaviour not in BEHAVIOURS:
            raise SystemExit(f"--behaviour takes SYMBOL=one of {', '.join(BEHAVIOURS)}; got {item!r}")
        out[symbol] = behaviour
    return out


def cmd_sim_venue(args) -> int:
    from .sim.venue import run_venue

    run_venue(_load(args.config), args.venue, args.default, _behaviours(args.behaviour), args.quiet,
              state_dir=args.state_dir)
    return 0


def cmd_sim_oms(args) -> int:
    from .sim.oms import run_oms

    return run_oms(_load(args.config), args.session, stdin=args.stdin, count=args.count, rate=args.rate,
                   symbols=args.symbols.split(","), qty=args.qty, account=args.account, quiet=args.quiet,
                   wait_s=args.wait, state_dir=args.state_dir, side={"buy": "1", "sell": "2", "short": "5"}[args.side])


def parser() -> argparse.ArgumentParser:
    from pathlib import Path

    p = argparse.ArgumentParser(prog="fixproxy", description="Inline FIX pre-trade risk proxy.")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp):
        sp.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="proxy config file (default %(default)s)")
        return sp

    sp = with_config(sub.add_parser("run", help="run the proxy"))
    sp.add_argument("--with-venue-sim", action="store_true", help="also start the venue simulator for every venue")
    sp.set_defaults(func=cmd_run)

    sp = with_config(sub.add_parser("check-config", help="validate the config and instrument files, then exit"))
    sp.set_defaults(func=cmd_check_config)

    sim = sub.add_parser("sim", help="simulators").add_subparsers(dest="sim", required=True)
    sp = with_config(sim.add_parser("venue", help="venue simulator (FIX acceptor)"))
    sp.add_argument("--venue", default=None, help="venue name from the config (default: the first)")
    sp.add_argument("--default", choices=BEHAVIOURS, default="fill", help="what to do with an order (default fill)")
    sp.add_argument("--behaviour", action="append", default=[], metavar="SYMBOL=BEHAVIOUR",
                    help="per-symbol behaviour, e.g. MSFT=ack")
    sp.add_argument("--quiet", action="store_true", help="do not print messages")
    sp.add_argument("--state-dir", type=Path, default=None)
    sp.set_defaults(func=cmd_sim_venue)

    sp = with_config(sim.add_parser("oms", help="OMS simulator (FIX initiator)"))
    sp.add_argument("--session", default=None, help="OMS session name from the config (default: the first)")
    sp.add_argument("--stdin", action="store_true", help="send each line read from stdin (35=D|11=..|...)")
    sp.add_argument("--count", type=int, default=10)
    sp.add_argument("--rate", type=float, default=10.0, help="orders per second")
    sp.add_argument("--symbols", default="AAPL,MSFT")
    sp.add_argument("--qty", default="100")
    sp.add_argument("--account", default="")
    sp.add_argument("--side", choices=("buy", "sell", "short"), default="buy")
    sp.add_argument("--wait", type=float, default=10.0, help="seconds to wait for answers after the last order")
    sp.add_argument("--quiet", action="store_true", help="print only the summary")
    sp.add_argument("--state-dir", type=Path, default=None)
    sp.set_defaults(func=cmd_sim_oms)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "venue", "x") is None or getattr(args, "session", "x") is None:
        loaded = _load(args.config)
        if getattr(args, "venue", "x") is None:
            args.venue = loaded.config.venues[0].name
        if getattr(args, "session", "x") is None:
            args.session = loaded.config.oms[0].name
    return args.func(args) or 0
