"""Command line: wiring only. ``fixproxy --help`` lists the subcommands."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .config import ConfigError, LoadedConfig, StartPosition, load, load_limits
from .sim import BEHAVIOURS

if TYPE_CHECKING:
    import sqlite_utils

    from .admin.client import Client
    from .audit.query import Filters

_T = TypeVar("_T")

DEFAULT_CONFIG = os.environ.get("FIXPROXY_CONFIG", "cfg/fixproxy.toml")


def _load(path: str, *, secrets: bool = True) -> LoadedConfig:
    """The config (``secrets``: with the proxy's own secrets resolved); exit 2 if bad."""
    try:
        return load(path, secrets=secrets)
    except ConfigError as exc:
        print(f"fixproxy: bad configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    from .config import check_secrets

    # The secrets are checked apart: one missing here (a box that only reads the audit trail) is a
    # warning; one that is there but `run` would refuse is an error.
    loaded = _config_quiet(args.config)
    cfg = loaded.config
    missing, bad = check_secrets(loaded)
    for problem in bad:
        print(f"fixproxy: bad configuration: {loaded.path}: {problem}", file=sys.stderr)
    if bad:
        return 2
    print(
        f"{loaded.path}: ok — {cfg.proxy.engine} engine, {len(cfg.oms)} OMS session(s), {len(cfg.venues)} venue(s), "
        f"{len(loaded.instruments)} instrument(s), rules: {', '.join(cfg.rule_names()) or 'none'}"
    )
    for problem in missing:
        print(f"warning: {problem}: `fixproxy run` needs it, the read-only tools do not")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    children: list[subprocess.Popen] = []
    if args.with_venue_sim:
        for venue in loaded.config.venues:
            children.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "fixproxy",
                        "sim",
                        "venue",
                        "--config",
                        args.config,
                        "--venue",
                        venue.name,
                        "--quiet",
                    ],
                )
            )
            print(
                f"fixproxy: venue simulator {venue.name!r} on 127.0.0.1:{venue.port} (pid {children[-1].pid})",
                file=sys.stderr,
            )
    cfg = loaded.config
    if cfg.ha is not None:
        print(
            f"fixproxy: instance {cfg.ha.instance!r} of the pair {cfg.ha.pair!r}: a standby until it leads "
            f"(then it serves the copy on {cfg.ha.copy_listen}); what follows opens only while it is active",
            file=sys.stderr,
        )
    print(
        f"fixproxy: OMS sessions connect to 127.0.0.1:{cfg.acceptor.port} with TargetCompID={cfg.acceptor.comp_id}: "
        + ", ".join(f"{s.name} ({s.fix_version}, SenderCompID={s.comp_id})" for s in cfg.oms),
        file=sys.stderr,
    )
    if cfg.admin.http_port:
        from .admin.client import base_url

        print(
            f"fixproxy: risk-desk HTTP API on {base_url(cfg.admin.http_host, cfg.admin.http_port)} "
            f"({len(cfg.admin.tokens)} token(s)); `fixproxy status` / `halt` / `resume` use it",
            file=sys.stderr,
        )
        dashboard = base_url(cfg.admin.http_host, cfg.admin.http_port).removesuffix("/api/v1") + "/"
        print(f"fixproxy: risk dashboard on {dashboard} (log in with a token from [[admin.tokens]])", file=sys.stderr)
    from .app import run

    def stop_children() -> None:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(5)
            except subprocess.TimeoutExpired:
                child.kill()

    run(loaded, on_exit=stop_children)
    return 0


def _behaviours(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        symbol, eq, behaviour = item.partition("=")
        if not eq or behaviour not in BEHAVIOURS:
            raise SystemExit(f"--behaviour takes SYMBOL=one of {', '.join(BEHAVIOURS)}; got {item!r}")
        out[symbol] = behaviour
    return out


def cmd_sim_venue(args: argparse.Namespace) -> int:
    from .sim.venue import run_venue

    run_venue(
        _load(args.config, secrets=False),
        args.venue,
        args.default,
        _behaviours(args.behaviour),
        args.quiet,
        state_dir=args.state_dir,
        track_connections=args.track_connections,
    )
    return 0


def cmd_sim_oms(args: argparse.Namespace) -> int:
    from .sim.oms import run_oms

    return run_oms(  # a simulator reads its own session's password, none of the proxy's secrets
        _load(args.config, secrets=False),
        args.session,
        stdin=args.stdin,
        count=args.count,
        rate=args.rate,
        symbols=args.symbols.split(","),
        qty=args.qty,
        account=args.account,
        quiet=args.quiet,
        wait_s=args.wait,
        state_dir=args.state_dir,
        side={"buy": "1", "sell": "2", "short": "5"}[args.side],
        connect=args.connect,
        failover=tuple(args.failover),
        reconnect_s=args.reconnect_interval,
    )


def _address(text: str) -> tuple[str, int]:
    """``host:port`` -> (host, port), for argparse."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not host:port")
    return host, int(port)


def cmd_sim_desk(args: argparse.Namespace) -> int:
    from .sim.oms import run_desk

    return run_desk(
        _load(args.config, secrets=False),
        username=args.username,
        password=os.environ.get(args.password_env, "") if args.password_env else "",
        state_dir=args.state_dir,
    )


def _config_quiet(path: str) -> LoadedConfig:
    """The config without its secrets (a check of stores needs no passwords or tokens); exit 2 if bad."""
    try:
        return load(path, secrets=False)
    except ConfigError as exc:
        print(f"fixproxy: bad configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _store(args: argparse.Namespace) -> tuple[Path, sqlite_utils.Database]:
    """(path, database) of the audit store: ``--db``, else the one the config names."""
    from .audit import AuditError, open_for_reading

    path = args.db or _config_quiet(args.config or DEFAULT_CONFIG).audit_path
    try:
        return path, open_for_reading(path)
    except AuditError as exc:
        print(f"fixproxy: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _filters(args: argparse.Namespace) -> Filters:
    from .audit.query import Filters
    from .timefmt import parse_when

    try:
        start = parse_when(args.start) if args.start else None
        end = parse_when(args.end) if args.end else None
    except ValueError as exc:
        raise SystemExit(f"fixproxy: --from/--to: {exc}") from None
    return Filters(
        start,
        end,
        **{k: getattr(args, k, "") for k in ("session", "account", "symbol", "cl_ord_id", "decision", "code", "kind")},
    )


def _audit_key(args: argparse.Namespace, loaded: LoadedConfig | None) -> bytes:
    """--key-file, else the config's [audit] key_file / key_env, else $FIXPROXY_AUDIT_KEY."""
    from .config import MIN_AUDIT_KEY

    try:
        if args.key_file:
            key, where = Path(args.key_file).read_bytes().strip(), f"--key-file {args.key_file}"
        elif loaded is not None:
            return loaded.read_audit_key()
        else:
            key, where = os.environ.get("FIXPROXY_AUDIT_KEY", "").encode(), "$FIXPROXY_AUDIT_KEY"
    except OSError as exc:
        raise SystemExit(f"fixproxy: --key-file: cannot read {args.key_file} ({exc.strerror or exc})") from None
    except ConfigError as exc:
        print(f"fixproxy: bad configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if key and len(key) < MIN_AUDIT_KEY:
        raise SystemExit(f"fixproxy: {where}: the audit key is {len(key)} bytes; it needs at least {MIN_AUDIT_KEY}")
    return key


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from .audit import AuditError, open_for_reading, verify
    from .audit.crosscheck import (
        Check,
        check_checkpoints,
        check_fix_stores,
        check_head,
        check_journal,
        parse_head,
        proxy_running,
    )

    expect = None
    if args.expect_head:
        try:
            expect = parse_head(args.expect_head)
        except ValueError as exc:
            raise SystemExit(f"fixproxy: --expect-head: {exc}") from None
    # With --db alone, the store is checked on its own (plus what the flags name); with a config
    # (given, or the default when there is no --db), against that proxy's journal and FIX stores.
    loaded: LoadedConfig | None
    if args.db:
        loaded = _config_quiet(args.config) if args.config else None
        path = args.db
    else:
        loaded = _config_quiet(args.config or DEFAULT_CONFIG)
        path = loaded.audit_path
    try:
        db = open_for_reading(path)
    except AuditError as exc:
        print(f"fixproxy: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    verdict = verify(db)
    print(verdict.sentence())
    checks: list[Check] = []
    db.conn.execute("BEGIN")  # one snapshot for every check, while the follower may be committing
    journal_dir = args.journal or (loaded.journal_dir if loaded is not None else None)
    journal = None
    # While the proxy that writes the journal runs, what its follower has not reached yet is not missing.
    running = journal_dir is not None and proxy_running(Path(journal_dir))
    if journal_dir is not None:
        journal = check_journal(db, Path(journal_dir), running=running)
        checks.append(journal)
    else:
        print("journal: not checked: pass --journal DIR or --config")
    fix_stores = args.fix_stores or (loaded.state_dir / "store" if loaded is not None else None)
    if fix_stores is not None:
        checks.append(
            check_fix_stores(
                db,
                Path(fix_stores),
                running=running,
                unfollowed=journal.unfollowed_out if journal is not None else None,
            )
        )
    else:
        print("fix stores: not checked: pass --fix-stores DIR or --config")
    interval = args.checkpoint_interval or (loaded.config.audit.checkpoint_interval_s if loaded is not None else 5.0)
    checks.append(check_checkpoints(db, _audit_key(args, loaded), interval))
    if expect is not None:
        checks.append(check_head(db, *expect))
    for check in checks:
        print("\n".join(check.lines()))
    return 0 if verdict.ok and not any(c.failed for c in checks) else 1


def cmd_audit_head(args: argparse.Namespace) -> int:
    from .audit.crosscheck import head_line

    _, db = _store(args)
    print(head_line(db))
    return 0


def cmd_audit_show(args: argparse.Namespace) -> int:
    from .audit.query import render, select

    _, db = _store(args)
    sys.stdout.write(render(select(db, _filters(args), args.limit), args.format))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import json

    from .audit.report import build, render_text

    path, db = _store(args)
    # The start-of-day positions under the final ones: the config's file, when there is a config
    # (with --db, only one given: the default one may belong to another proxy).
    start: tuple[StartPosition, ...] = ()
    start_from = "none (no config: --db alone)"
    if not args.db or args.config:
        loaded = _config_quiet(args.config or DEFAULT_CONFIG)
        start = loaded.positions
        given = loaded.config.risk.positions
        start_from = str((loaded.path.parent / given).resolve()) if given else "none in the config"
    report = build(db, path, _filters(args), start, start_from)
    sys.stdout.write(
        json.dumps(report, indent=1, sort_keys=True) + "\n" if args.format == "json" else render_text(report)
    )
    return 0 if report["chain"]["ok"] else 1


def cmd_replay(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .replay import ReplayError, open_sources, replay
    from .replay.report import summarize, to_csv, to_html, to_json, to_text

    loaded = recorded = _config_quiet(args.config)  # a replay needs none of the proxy's secrets
    if args.limits:
        try:
            loaded = load_limits(args.limits, loaded)
        except ConfigError as exc:
            print(f"fixproxy: bad limits file: {exc}", file=sys.stderr)
            return 2
    try:
        sources = open_sources(args.logs, commands_from=args.audit)
    except ReplayError as exc:
        print(f"fixproxy: {exc}", file=sys.stderr)
        return 2
    audit = any(s.format == "audit" for s in sources)
    # The bar counts bytes of log read (records for an audit store); it hides itself when stderr is not a terminal.
    with tqdm(
        total=sum(s.size for s in sources),
        unit="rec" if audit else "B",
        unit_scale=True,
        desc="replay",
        file=sys.stderr,
        disable=True if args.no_progress else None,
        leave=False,
    ) as bar:
        for source in sources:
            source.progress = bar.update
        result = replay(loaded, sources, recorded.config.limits if args.limits else None)
    summary = summarize(result, args.config, args.limits)
    for target, render in (
        (args.csv, lambda: to_csv(result)),
        (args.json, lambda: to_json(result, summary)),
        (args.html, lambda: to_html(result, summary)),
    ):
        if target:
            Path(target).write_text(render(), encoding="utf-8")
    sys.stdout.write(to_text(result, summary))
    return 1 if args.fail_on_difference and summary["differences"] else 0


# ---------------------------------------------------------------- risk-desk controls (via the HTTP admin API)


def _api(args: argparse.Namespace) -> Client:
    """A client of the running proxy's admin API: ``--url`` or the config's [admin], ``--token`` or $FIXPROXY_TOKEN."""
    from .admin.client import TOKEN_ENV, Client, base_url

    token = args.token or os.environ.get(TOKEN_ENV, "")
    if not token:
        raise SystemExit(f"fixproxy: no API token: pass --token or set {TOKEN_ENV}")
    url = args.url
    if not url:
        try:
            admin = load(args.config, secrets=False).config.admin  # the proxy's token variables are not needed here
        except ConfigError as exc:
            raise SystemExit(f"fixproxy: bad configuration: {exc}") from None
        if not admin.http_port:
            raise SystemExit(
                f"fixproxy: the admin HTTP API is disabled in {args.config} ([admin] http_port = 0); pass --url"
            )
        url = base_url(admin.http_host, admin.http_port)
    return Client(url, token)


def _call(fn: Callable[..., _T], *a: Any) -> _T:
    from .admin.client import ApiError

    try:
        return fn(*a)
    except ApiError as exc:
        print(f"fixproxy: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def _kill(args: argparse.Namespace, action: str) -> int:
    from .admin.client import render_result

    result = _call(_api(args).post, "/kill-switch", {"scope": args.scope, "action": action, "reason": args.reason})
    print(render_result(result))
    return 0


def cmd_halt(args: argparse.Namespace) -> int:
    return _kill(args, "halt_and_cancel" if args.cancel else "reducing" if args.reducing else "halt")


def cmd_resume(args: argparse.Namespace) -> int:
    return _kill(args, "resume")


def cmd_journal_show(args: argparse.Namespace) -> int:
    """Print journal records, one JSON line each: segment, offset, kind and the record's value."""
    import msgspec

    from .journal import format as fmt
    from .journal.reader import read_segment, segments
    from .journal.writer import JournalError

    directory = Path(args.dir) if args.dir else _config_quiet(args.config).journal_dir
    found = segments(directory)
    if not found:
        print(f"fixproxy: no journal segments in {directory}", file=sys.stderr)
        return 1
    wanted = {fmt.KINDS.get(k.encode(), k) for k in args.kind.split(",")} if args.kind else None
    chosen = [n for n in found if not args.segment or n in args.segment]
    encode = msgspec.json.Encoder(decimal_format="string").encode
    out = sys.stdout
    try:
        for n in chosen:
            for pos, kind, payload in read_segment(directory / f"{n:08d}.journal"):
                name = fmt.KINDS[kind]
                if wanted is not None and name not in wanted:
                    continue
                value = fmt.decode(kind, payload)
                if kind in (fmt.INBOUND, fmt.OUTBOUND):
                    session, now_ns, raw = value
                    value = {"session": session, "now_ns": now_ns, "raw": raw.replace("\x01", "|")}
                out.write(encode({"segment": n, "offset": pos, "kind": name, "record": value}).decode() + "\n")
    except JournalError as exc:
        print(f"fixproxy: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        pass
    return 0


def cmd_positions_export(args: argparse.Namespace) -> int:
    import time

    from .journal.writer import JournalError
    from .positions import ExportError, from_journal, to_csv
    from .timefmt import iso

    loaded = _config_quiet(args.config)
    if args.cluster or args.instance:
        return _positions_export_cluster(args, loaded)
    if args.journal:
        loaded = _with_journal(loaded, Path(args.journal))
    try:
        positions = from_journal(loaded)
    except (ExportError, JournalError) as exc:
        print(f"fixproxy: {exc}", file=sys.stderr)
        return 1
    note = f"positions of {loaded.path} from its journal {loaded.journal_dir}, {iso(time.time_ns())}"
    text, written, commented = to_csv(positions, note)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    where = args.out or "standard output"
    print(f"fixproxy: {written} position(s) written to {where}", file=sys.stderr)
    if commented:
        print(
            f"fixproxy: {commented} position(s) of orders without an account written as comments "
            "(a start-of-day position needs an account)",
            file=sys.stderr,
        )
    return 0


def _positions_export_cluster(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    """``positions export --cluster``: the start-of-day file from fp_position (one instance's, or the firm's)."""
    import os
    import time

    import psycopg

    from .cluster.manager import connect
    from .cluster.mirror import firm_positions
    from .core.book import Position
    from .positions import to_csv
    from .timefmt import iso

    settings = loaded.config.cluster
    if settings is None:
        print(f"fixproxy: {loaded.path} has no [cluster] section: no database to read", file=sys.stderr)
        return 1
    password = os.environ.get(settings.password_env, "") if settings.password_env else ""
    try:
        with connect(settings, password) as conn:
            rows = firm_positions(conn, args.instance or None)
    except psycopg.Error as exc:
        print(f"fixproxy: cannot read the positions from the cluster database: {exc}".strip(), file=sys.stderr)
        return 1
    whose = f"instance {args.instance}" if args.instance else "the firm (every instance)"
    note = f"positions of {whose} from the cluster database (fp_position), {iso(time.time_ns())}"
    text, written, commented = to_csv((Position(a, s, q, c) for a, s, q, c in rows), note)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    print(f"fixproxy: {written} position(s) written to {args.out or 'standard output'}", file=sys.stderr)
    if commented:
        print(f"fixproxy: {commented} position(s) of orders without an account written as comments", file=sys.stderr)
    return 0


def _with_journal(loaded: LoadedConfig, journal: Path) -> LoadedConfig:
    """``loaded`` reading its journal from ``journal`` (its state dir is the journal's parent)."""
    import msgspec

    proxy = msgspec.structs.replace(loaded.config.proxy, state_dir=str(journal.resolve().parent))
    return msgspec.structs.replace(loaded, config=msgspec.structs.replace(loaded.config, proxy=proxy))


def cmd_resume_recording(args: argparse.Namespace) -> int:
    from .admin.client import render_result

    print(render_result(_call(_api(args).post, "/recording/resume", {"reason": args.reason})))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from .admin.client import ApiError, render_ha, render_status

    client = _api(args)
    try:
        summary = client.get("/summary")
    except ApiError as exc:
        if exc.status != 404:
            print(f"fixproxy: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        # A standby of an active/passive pair serves only its HA view until it takes over.
        ha = _call(client.get, "/ha")
        sys.stdout.write(json.dumps({"ha": ha}, indent=1) + "\n" if args.json else "\n".join(render_ha(ha)) + "\n")
        return 0
    summary["modes"] = _call(client.get, "/modes")
    if (summary.get("health") or {}).get("cluster", {}).get("state", "disabled") != "disabled":
        summary["cluster"] = _call(client.get, "/cluster")  # the firm-wide picture of a cluster of proxies
    if (summary.get("health") or {}).get("ha", {}).get("state", "disabled") != "disabled":
        summary["ha"] = _call(client.get, "/ha")  # this instance's part in an active/passive pair
    sys.stdout.write(json.dumps(summary, indent=1) + "\n" if args.json else render_status(summary))
    return 0


def cmd_modes_show(args: argparse.Namespace) -> int:
    import json

    from .admin.client import render_modes

    modes = _call(_api(args).get, "/modes")
    sys.stdout.write(json.dumps(modes, indent=1) + "\n" if args.json else render_modes(modes))
    return 0


def cmd_modes_set(args: argparse.Namespace) -> int:
    from .admin.client import render_result

    if bool(args.rule) == bool(args.layer or args.field) or (not args.rule and not (args.layer and args.field)):
        print("fixproxy: give --rule, or --layer and --field", file=sys.stderr)
        return 2
    body = {"rule": args.rule or "", "layer": args.layer or "", "field": args.field or "", "mode": args.mode}
    print(render_result(_call(_api(args).post, "/modes", {**body, "reason": args.reason})))
    return 0


def cmd_limits_set(args: argparse.Namespace) -> int:
    from .admin.client import render_result

    value = None
    if not args.clear:
        value = (
            [x.strip() for x in args.value.split(",") if x.strip()]
            if args.field == "restricted_symbols"
            else args.value
        )
    body = {"layer": args.layer, "field": args.field, "value": value, "reason": args.reason}
    print(render_result(_call(_api(args).post, "/limits", body)))
    return 0


def cmd_reference_set(args: argparse.Namespace) -> int:
    from .admin.client import render_result

    body = {"symbol": args.symbol, "price": args.price, "reason": args.reason, "force": args.force}
    print(render_result(_call(_api(args).post, "/reference-prices", body)))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fixproxy", description="Inline FIX pre-trade risk proxy.")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
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
    sp.add_argument(
        "--behaviour",
        action="append",
        default=[],
        metavar="SYMBOL=BEHAVIOUR",
        help="per-symbol behaviour, e.g. MSFT=ack",
    )
    sp.add_argument("--quiet", action="store_true", help="do not print messages")
    sp.add_argument("--state-dir", type=Path, default=None)
    sp.add_argument(
        "--track-connections",
        action="store_true",
        help="number TCP connections through a relay: connect, refused and disconnect lines with the peer",
    )
    sp.set_defaults(func=cmd_sim_venue)

    sp = with_config(sim.add_parser("desk", help="risk-desk FIX client: sends KillSwitchRequest lines from stdin"))
    sp.add_argument("--username", default="", help="Username (553) for the Logon")
    sp.add_argument("--password-env", default="", help="environment variable holding the Password (554)")
    sp.add_argument("--state-dir", type=Path, default=None)
    sp.set_defaults(func=cmd_sim_desk)

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
    sp.add_argument("--connect", type=_address, default=None, help="the proxy's HOST:PORT (default: the config's)")
    sp.add_argument(
        "--failover",
        type=_address,
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="another address of the proxy (an active/passive pair's other instance), tried in turn (repeatable)",
    )
    sp.add_argument("--reconnect-interval", type=int, default=1, help="seconds between connection attempts")
    sp.set_defaults(func=cmd_sim_oms)

    def with_store(sp: argparse.ArgumentParser, filters: bool = True) -> argparse.ArgumentParser:
        with_config(sp)
        sp.add_argument("--db", type=Path, default=None, help="audit store (default: the one the config names)")
        if filters:
            sp.add_argument(
                "--from",
                dest="start",
                default="",
                metavar="TIME",
                help="from this time, UTC (2026-11-25 or 2026-11-25T12:30:00)",
            )
            sp.add_argument("--to", dest="end", default="", metavar="TIME", help="until this time (excluded), UTC")
        return sp

    positions = sub.add_parser("positions", help="the position book").add_subparsers(dest="positions", required=True)
    sp = with_config(
        positions.add_parser(
            "export",
            help="write the proxy's positions (rebuilt from its journal, running or stopped) as a "
            "start-of-day positions file ([risk] positions)",
        )
    )
    sp.add_argument("--out", "-o", default="", metavar="FILE", help="write here (default: standard output)")
    sp.add_argument(
        "--journal", default="", metavar="DIR", help="the journal folder (default: <state_dir>/journal of the config)"
    )
    sp.add_argument(
        "--cluster",
        action="store_true",
        help="from the cluster database's fp_position ([cluster] url): the firm's positions summed per account "
        "and symbol, or one instance's with --instance",
    )
    sp.add_argument("--instance", default="", metavar="NAME", help="with --cluster: only this instance's positions")
    sp.set_defaults(func=cmd_positions_export)

    journal = sub.add_parser("journal", help="the write-ahead journal").add_subparsers(dest="journal", required=True)
    sp = with_config(journal.add_parser("show", help="print journal records, one JSON line each"))
    sp.add_argument("--dir", default="", help="the journal folder (default: <state_dir>/journal of the config)")
    sp.add_argument("--segment", type=int, action="append", default=[], help="only this segment (repeatable)")
    sp.add_argument(
        "--kind", default="", help="only these kinds, comma-separated: start,in,event,out,action (or S,I,E,O,A)"
    )
    sp.set_defaults(func=cmd_journal_show)

    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(dest="audit", required=True)
    sp = with_store(
        audit.add_parser(
            "verify",
            help="check the hash chain, and the store against the journal, the FIX session stores, the keyed "
            "checkpoints and a head noted earlier; exit 1 naming what is wrong",
        ),
        filters=False,
    )
    sp.set_defaults(config=None)  # --db alone: no config, no journal or FIX stores unless named
    next(
        a for a in sp._actions if a.dest == "config"
    ).help = f"proxy config file (default {DEFAULT_CONFIG} unless --db is given)"
    sp.add_argument(
        "--journal",
        type=Path,
        default=None,
        metavar="DIR",
        help="the journal the store follows (default: <state_dir>/journal of the config)",
    )
    sp.add_argument(
        "--fix-stores",
        type=Path,
        default=None,
        metavar="DIR",
        help="the FIX session stores, oms/ and venue/ (default: <state_dir>/store of the config)",
    )
    sp.add_argument(
        "--key-file",
        default="",
        metavar="FILE",
        help="the checkpoints' key (default: the config's [audit] key_file or key_env, else "
        "$FIXPROXY_AUDIT_KEY); without a key the checkpoints are not checked",
    )
    sp.add_argument(
        "--checkpoint-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="the longest run of records without a checkpoint (default: [audit] checkpoint_interval_s, else 5)",
    )
    sp.add_argument(
        "--expect-head",
        default="",
        metavar="SEQ:HASH",
        help="fail unless record SEQ exists with this hash (as `audit head` printed it earlier)",
    )
    sp.set_defaults(func=cmd_audit_verify)

    sp = with_store(
        audit.add_parser("head", help="print the newest record's number and hash: seq=N hash=H"), filters=False
    )
    sp.set_defaults(func=cmd_audit_head)

    sp = with_store(audit.add_parser("show", help="list audit records, filtered"))
    sp.add_argument("--session", default="", help="OMS session or venue name")
    sp.add_argument("--account", default="")
    sp.add_argument("--symbol", default="")
    sp.add_argument(
        "--cl-ord-id", dest="cl_ord_id", default="", help="ClOrdID (also finds the venue-side <session>.<id>)"
    )
    sp.add_argument("--decision", choices=("accept", "reject"), default="")
    sp.add_argument("--code", default="", help="reject code, notice kind or admin action")
    sp.add_argument("--kind", default="", help="message, decision, notice, alert, admin ...")
    sp.add_argument("--format", choices=("table", "csv", "json"), default="table")
    sp.add_argument("--limit", type=int, default=None, help="at most this many records (the oldest first)")
    sp.set_defaults(func=cmd_audit_show)

    sp = with_store(sub.add_parser("report", help="end-of-day risk and compliance report from the audit store"))
    sp.add_argument("--format", choices=("text", "json"), default="text")
    sp.set_defaults(config=None)  # --db alone: no start-of-day positions unless --config names them
    sp.set_defaults(func=cmd_report)

    sp = with_config(sub.add_parser("replay", help="re-run logs through the risk checks and compare the decisions"))
    sp.add_argument(
        "logs",
        nargs="+",
        metavar="LOG",
        help="quickfix message logs (files or folders), raw FIX files (SOH or |), or an audit store",
    )
    sp.add_argument(
        "--audit",
        default=None,
        metavar="DB",
        help="with FileLogs or raw FIX files: apply the risk desk's commands (kill switch, limit and "
        "reference-price changes) recorded in this audit store",
    )
    sp.add_argument(
        "--limits",
        default=None,
        metavar="FILE",
        help="replay under these limits, laid over the config's field by field ([limits.*] tables as in "
        "the config); each difference is told direct or knock-on",
    )
    sp.add_argument("--csv", default=None, metavar="FILE", help="write one line per order message")
    sp.add_argument(
        "--json", default=None, metavar="FILE", help="write the summary, every order and every malformed line"
    )
    sp.add_argument("--html", default=None, metavar="FILE", help="write a self-contained HTML report")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.add_argument("--fail-on-difference", action="store_true", help="exit 1 if any decision differs")
    sp.set_defaults(func=cmd_replay)

    def with_api(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        with_config(sp)
        sp.add_argument(
            "--url",
            default="",
            help="the admin API, e.g. http://127.0.0.1:9880 (default: from the "
            "config's [admin] http_host and http_port)",
        )
        sp.add_argument(
            "--token",
            default="",
            help="API token (default: $FIXPROXY_TOKEN; prefer the variable, a command line is visible to other users)",
        )
        return sp

    sp = with_api(sub.add_parser("halt", help="halt trading in a scope of a running proxy"))
    sp.add_argument("--scope", required=True, help="firm, session:<name>, account:<Account> or symbol:<Symbol>")
    sp.add_argument("--reason", required=True, help="why (recorded with the action)")
    how = sp.add_mutually_exclusive_group()
    how.add_argument("--cancel", action="store_true", help="also cancel every working order in the scope")
    how.add_argument("--reducing", action="store_true", help="REDUCING instead: only position-reducing orders pass")
    sp.set_defaults(func=cmd_halt)

    sp = with_api(sub.add_parser("resume", help="resume trading in a scope of a running proxy"))
    sp.add_argument("--scope", required=True, help="firm, session:<name>, account:<Account> or symbol:<Symbol>")
    sp.add_argument("--reason", required=True, help="why (recorded with the action)")
    sp.set_defaults(func=cmd_resume)

    sp = with_api(
        sub.add_parser(
            "resume-recording",
            help="after a recording failure (the journal's disk full), take new orders again once the journal can grow",
        )
    )
    sp.add_argument("--reason", required=True, help="why (recorded with the action)")
    sp.set_defaults(func=cmd_resume_recording)

    sp = with_api(
        sub.add_parser(
            "status",
            help="trading states, sessions and exposure of a running proxy (and, in a cluster, every instance's; "
            "in an active/passive pair, its role and the copy's lag; a standby shows only that)",
        )
    )
    sp.add_argument("--json", action="store_true", help="print the API's summary as JSON")
    sp.set_defaults(func=cmd_status)

    limits = sub.add_parser("limits", help="limits of a running proxy").add_subparsers(dest="limits", required=True)
    sp = with_api(limits.add_parser("set", help="set or clear one limit, effective from the next order"))
    sp.add_argument("--layer", required=True, help="firm, session:<name>, account:<Account> or symbol:<Symbol>")
    sp.add_argument("--field", required=True, help="limit name, e.g. max_order_qty")
    value = sp.add_mutually_exclusive_group(required=True)
    value.add_argument("--value", help="new value (restricted_symbols: a comma-separated list)")
    value.add_argument("--clear", action="store_true", help="unset the limit in this layer")
    sp.add_argument("--reason", required=True, help="why (recorded with the action)")
    sp.set_defaults(func=cmd_limits_set)

    modes = sub.add_parser("modes", help="enforce or monitor mode of the rules and limits of a running proxy")
    modes_sub = modes.add_subparsers(dest="modes", required=True)
    sp = with_api(modes_sub.add_parser("show", help="each rule's mode and the limits in monitor mode"))
    sp.add_argument("--json", action="store_true", help="print the API's JSON")
    sp.set_defaults(func=cmd_modes_show)
    sp = with_api(
        modes_sub.add_parser(
            "set",
            help="put a rule (--rule), or one limit of one layer (--layer, --field), in enforce or monitor mode",
        )
    )
    sp.add_argument("--rule", help="a rule name, e.g. max_order_qty")
    sp.add_argument("--layer", help="firm, session:<name>, account:<Account> or symbol:<Symbol> (with --field)")
    sp.add_argument("--field", help="a limit name, e.g. max_gross_exposure (with --layer)")
    sp.add_argument("--mode", required=True, choices=("enforce", "monitor"))
    sp.add_argument("--reason", required=True, help="why (recorded with the action)")
    sp.set_defaults(func=cmd_modes_set)

    reference = sub.add_parser("reference", help="reference prices of a running proxy").add_subparsers(
        dest="reference", required=True
    )
    sp = with_api(reference.add_parser("set", help="set a symbol's reference price"))
    sp.add_argument("--symbol", required=True)
    sp.add_argument("--price", required=True)
    sp.add_argument("--reason", required=True, help="why (recorded with the action)")
    sp.add_argument(
        "--force",
        action="store_true",
        help="set it even if it moves the reference more than [risk] reference_change_max_pct",
    )
    sp.set_defaults(func=cmd_reference_set)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "venue", "x") is None or getattr(args, "session", "x") is None:
        loaded = _load(args.config, secrets=False)  # the first venue's or session's name only
        if getattr(args, "venue", "x") is None:
            args.venue = loaded.config.venues[0].name
        if getattr(args, "session", "x") is None:
            args.session = loaded.config.oms[0].name
    return args.func(args) or 0
