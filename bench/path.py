#!/usr/bin/env python3
"""The native engine's order path in process: what the proxy's own Python costs an order, without
sockets, the kernel or the event loop.

    .venv/bin/python -m bench path [--orders 20000] [--setup native_full|native_pass] [--profile FILE]
                                   [--features [monitor,anomaly,drop_copy]] [--cluster] [--ha sync|async]

The benchmark's config for the setup (bench/setups.py, from cfg/fixproxy.toml: every rule, the
journal, message logs and session stores on files) drives a real NativeBridge and core. Its OMS and
venue connections carry fake transports whose other ends are sans-IO ``Session`` peers: the OMS
sends NewOrderSingles (buys at 189 and sells at 191, alternating), the venue acknowledges and fills
each. Only the time spent inside the proxy's connections (``data_received``) and its message-log
flushes is counted, as this thread's CPU time, so the peers' own work is left out. The audit
follower is not in it (``python -m bench audit``). Prints JSON: µs per order, and per order the
messages the proxy read and wrote.

``--features`` adds issue 20's per-order features to the setup (all three, or those named): the
``max_order_qty`` rule in monitor mode (``monitor``: it does not fire, but every order runs the
monitored check once more), every anomaly detector enabled at its default thresholds
(``anomaly``: the steady load raises no alert), and a FIX 4.4 drop copy logged on (``drop_copy``),
which gets a copy of every report.

``--cluster`` runs native_full as one instance of a cluster (``make bench``'s native_cluster config:
``[cluster]`` on, the firm's gross, net and open-order limits high enough never to refuse): the core
checks every order's shared limits against this instance's shares and watches their low marks. The
shares are handed to it as the lease manager does once it has committed them in PostgreSQL (a
journaled ``ClusterShare`` per shared limit, sized by the manager's own ``plan``); no database and no
manager thread run here, as their work is not the order path's (``make bench`` measures it, and
PostgreSQL's). The run fails if an order was refused or a top-up was wanted, which would measure
something else.

``--ha sync|async`` runs native_full as the active of an HA pair (``make bench``'s native_ha_sync and
native_ha_async): the real ``HaNode`` wiring (``activate``: the copy's ``Shipper`` and the wire gate in
the engine) with a standby in a process of its own (``bench/ha_standby.py``: the real ``Receiver``
writing into its own folder and acknowledging each batch over loopback TCP), in copy before the
warm-up. Sync: each write the proxy makes waits for the standby to acknowledge the journal up to
it, and that wait's sending and receiving is on this thread, so in the count. The lease is held
without a database (its renewals are not the order path's); the copy's own thread (async: the
journal every 2 ms; both: the stores and logs every 50 ms) runs beside the orders but, not being
this thread, is not counted (``make bench`` measures the process tree and the standby).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import msgspec

from bench import REPO
from bench.setups import write_configs
from fixproxy.assemble import build_core
from fixproxy.cluster.manager import plan, step_of
from fixproxy.config import ClusterSection, DropCopySession, HaSection, load
from fixproxy.core import cluster as shared, events as ev
from fixproxy.core.anomaly import AnomalySettings
from fixproxy.engines.native.bridge import NativeBridge
from fixproxy.engines.native.connection import Connection
from fixproxy.engines.native.session import Received, Session
from fixproxy.engines.native.store import MemoryStore
from fixproxy.fix import parse
from fixproxy.ha.lease import Leadership
from fixproxy.ha.node import HaNode
from fixproxy.journal import format as journal_format
from fixproxy.journal.writer import Journal
from fixproxy.sim.pipe import Pipe
from fixproxy.sim.process import free_port


class _Peer:
    """One end of a session, sans-IO: frames what the proxy wrote, answers session messages itself."""

    def __init__(self, sender: str, target: str, initiator: bool, now: int) -> None:
        self.session = Session(
            name=sender,
            role="oms",
            begin_string="FIX.4.4",
            sender=sender,
            target=target,
            heartbeat_s=30,
            store=MemoryStore(now),
            log=None,
            initiator=initiator,
            resend_app=False,
        )
        self.framer = parse.Framer()
        self.out = bytearray()
        self.received: list[dict[int, str]] = []
        self.ids = 0

    def feed(self, data: bytes, now: int) -> None:
        for frame in self.framer.feed(data):
            if not self.session.connected:
                self.session.connect(now)
            events, out = self.session.receive(frame, now)
            while True:
                self.out += out
                self.received += [e.fields for e in events if isinstance(e, Received)]
                if not self.session.paused:
                    break
                events, out = self.session.resume(now)

    def send(self, msg_type: str, body: list[tuple[int, str]], now: int) -> None:
        sent = self.session.send(msg_type, body, now)
        if sent is not None and sent[1]:
            self.out += sent[0]


def _venue_answers(venue: _Peer, now: int) -> None:
    """The venue acknowledges and fills every NewOrderSingle it received."""
    orders, venue.received = venue.received, []
    for m in orders:
        if m.get(35) != "D":
            continue
        venue.ids += 1
        n = venue.ids
        common = [(11, m[11]), (37, f"V{n}"), (55, m[55]), (54, m[54]), (38, m[38]), (44, m[44])]
        venue.send("8", [*common, (17, f"A{n}"), (150, "0"), (39, "0"), (151, m[38]), (14, "0"), (6, "0")], now)
        venue.send(
            "8",
            [
                *common,
                (17, f"F{n}"),
                (150, "F"),
                (39, "2"),
                (151, "0"),
                (14, m[38]),
                (6, m[44]),
                (32, m[38]),
                (31, m[44]),
            ],
            now,
        )


FEATURES = ("monitor", "anomaly", "drop_copy")


def with_features(loaded: Any, features: frozenset[str]) -> Any:
    """``loaded`` with issue 20's per-order features ``features`` on (``--features``)."""
    config = loaded.config
    if "monitor" in features:
        config = msgspec.structs.replace(
            config, risk=msgspec.structs.replace(config.risk, modes={"max_order_qty": "monitor"})
        )
    if "anomaly" in features:
        anomaly = AnomalySettings(
            **{
                name: msgspec.structs.replace(getattr(config.anomaly, name), enabled=True)
                for name in AnomalySettings.__struct_fields__
            }
        )
        config = msgspec.structs.replace(config, anomaly=anomaly)
    if "drop_copy" in features:
        config = msgspec.structs.replace(config, drop_copy=(DropCopySession(name="dropcopy", comp_id="DROPCOPY"),))
    return msgspec.structs.replace(loaded, config=config)


#: native_cluster's config wants a URL; nothing connects to it here.
UNUSED_URL = "postgresql://fixproxy@127.0.0.1:1/fixproxy"


def hand_shares(bridge: NativeBridge, settings: ClusterSection, now: int) -> int:
    """Every shared limit's first allowance, journaled and handed to the core as the lease manager does
    after committing it (cluster/manager.py: ``plan`` from no usage, the whole limit available).
    Returns how many limits are shared."""
    core = bridge.core
    core.shares.enabled = True  # as the composition root does with [cluster] (app.py)
    limits = shared.shared_limits(core.limits.limits)
    for k, limit in limits.items():
        step = step_of(k, limit, settings.step_pct)
        use = shared.usage(core.book, k)
        allowance, _ = plan(use, Decimal(0), Decimal(0), limit, step, settings.reserve_steps)
        bridge.submit(ev.ClusterShare(k, allowance, max(allowance - step / 2, Decimal(0)), now))
    return len(limits)


class _HeldLease(Leadership):
    """The lease held for the whole run without a database: valid (a deadline that never passes), and
    every copy state change taken at once (as the database would take it)."""

    def set_copy_state(self, state: str, standby: str) -> bool:
        return True


def start_copy(loaded: Any, bridge: NativeBridge, journal: Journal, state: Path, mode: str) -> tuple[HaNode, Any]:
    """The active's side of an HA pair on ``bridge`` (HaNode.activate: the Shipper and the wire gate),
    a standby process copying from it, and the copy in ``mode`` before returning."""
    import structlog

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout is the result
    copy: Literal["sync", "async"] = "sync" if mode == "sync" else "async"
    settings = HaSection(url=UNUSED_URL, pair="bench", instance="a", copy_listen=f"127.0.0.1:{free_port()}", copy=copy)
    node = HaNode(msgspec.structs.replace(loaded, config=msgspec.structs.replace(loaded.config, ha=settings)))
    node.state_dir = state  # the journal's own path: the copy's files are named relative to it
    node.token, node.history, node.role = 1, [1], "active"
    node.lease = _HeldLease(settings, "", 1, math.inf, node._copy_report, node._lost)
    proxy: Any = SimpleNamespace(bridge=bridge, journal=journal)  # what activate reads of the proxy
    node.activate(proxy)
    standby = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.ha_standby",
            "--connect",
            settings.copy_listen,
            "--dir",
            str(state.parent / "standby"),
        ],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert standby.stdout is not None
    line = standby.stdout.readline()
    if not line.startswith('{"event": "copying"'):
        stop_copy(node, standby)
        raise SystemExit(f"the standby did not copy: {line.strip() or 'it ended'}")
    deadline = time.monotonic() + 60
    while node.shipper is not None and node.shipper.state != mode:
        if time.monotonic() > deadline:
            stop_copy(node, standby)
            raise SystemExit(f"the copy is {node.shipper.state!r}, not {mode!r}, after 60 s")
        time.sleep(0.01)
    return node, standby


def stop_copy(node: HaNode, standby: Any) -> None:
    """Stop the copy's threads, then the standby process (by its pid: end of its stdin, then SIGKILL)."""
    if node.shipper is not None:
        node.shipper.stop()
    try:
        standby.stdin.close()
        standby.wait(10)
    except (OSError, subprocess.TimeoutExpired):
        standby.kill()
        standby.wait(5)


async def measure(
    setup: str,
    orders: int,
    root: Path,
    profile: str | None,
    features: frozenset[str] = frozenset(),
    cluster: bool = False,
    ha: str | None = None,
    stops: list[Callable[[], None]] | None = None,
) -> dict:
    """``stops``: what main must call whatever happens (the standby process of ``--ha``)."""
    os.environ.setdefault("FIXPROXY_DESK_PASSWORD", "bench-desk-password-0123")
    cfgs, _ = write_configs(REPO / "cfg" / "fixproxy.toml", root, UNUSED_URL if cluster else None)
    cfg = cfgs["native_cluster" if cluster else setup]
    loaded = load(cfg["path"])
    if features:
        loaded = with_features(loaded, features)
    config = loaded.config
    state = Path(cfg["state"]) / "var"
    state.mkdir(parents=True, exist_ok=True)
    now = time.time_ns()
    journal = Journal(state / "journal", 1, journal_format.Start(1, now, os.getpid(), "bench path"))
    records: list[Any] = []
    bridge = NativeBridge(
        build_core(loaded, now),
        records.append,
        config=config,
        state_dir=state,
        journal=journal,
        identifiers=config.identifiers.limits(),
    )
    shared_limits = 0
    if cluster:
        assert config.cluster is not None, "native_cluster's config has [cluster]"
        shared_limits = hand_shares(bridge, config.cluster, now)
    copy = None
    if ha is not None:
        copy = start_copy(loaded, bridge, journal, state, ha)
        if stops is not None:
            stops.append(lambda: stop_copy(*copy))
    venue_cfg = config.venues[0]
    venue, venue_pipe = _Peer("VENUE", "FIXPROXY", False, now), Pipe(venue_cfg.port)
    venue_session = next(i.handle for i in bridge.sessions() if i.name == venue_cfg.name)
    venue_conn = Connection(bridge.resolve, venue_session, owner=bridge, cork=bridge.cork)
    venue_conn.connection_made(venue_pipe)  # type: ignore[arg-type] - a fake transport
    oms, oms_pipe = _Peer(config.oms[0].comp_id, "FIXPROXY", True, now), Pipe(40000)
    oms_conn = Connection(bridge.resolve, owner=bridge, cork=bridge.cork, limits=bridge)
    oms_conn.connection_made(oms_pipe)  # type: ignore[arg-type] - a fake transport
    peers = [(oms, oms_pipe, oms_conn)]
    if "drop_copy" in features:
        dc, dc_pipe = _Peer("DROPCOPY", "FIXPROXY", True, now), Pipe(40001)
        dc_conn = Connection(bridge.resolve, owner=bridge, cork=bridge.cork, limits=bridge)
        dc_conn.connection_made(dc_pipe)  # type: ignore[arg-type] - a fake transport
        peers.append((dc, dc_pipe, dc_conn))
    spent = [0, 0, 0]  # thread CPU ns inside the proxy, messages in, messages out

    def into(conn: Connection, data: bytes) -> None:
        spent[1] += data.count(b"\x0110=")
        started = time.thread_time_ns()
        conn.data_received(data)
        spent[0] += time.thread_time_ns() - started

    def pump() -> None:
        while True:
            moved = False
            data = venue_pipe.take()
            if data:
                moved = True
                spent[2] += data.count(b"\x0110=")
                venue.feed(data, time.time_ns())
                _venue_answers(venue, time.time_ns())
            if venue.out:
                moved = True
                data, venue.out = bytes(venue.out), bytearray()
                into(venue_conn, data)
            for peer, pipe, conn in peers:
                data = pipe.take()
                if data:
                    moved = True
                    spent[2] += data.count(b"\x0110=")
                    peer.feed(data, time.time_ns())
                    peer.received.clear()
                if peer.out:
                    moved = True
                    data, peer.out = bytes(peer.out), bytearray()
                    into(conn, data)
            if not moved:
                return

    pump()
    for peer, _, _ in peers:
        peer.out += peer.session.connect(time.time_ns())[1]
        pump()
        if not peer.session.logged_on:
            raise SystemExit(f"the {peer.session.sender} peer did not log on")
    logs = list(bridge._logs)

    def run(n: int, first: int) -> None:
        for k in range(first, first + n):
            buy = k % 2 == 1
            oms.send(
                "D",
                [
                    (11, f"B{k}"),
                    (1, "BENCH"),
                    (55, "AAPL"),
                    (54, "1" if buy else "2"),
                    (38, "10"),
                    (40, "2"),
                    (44, "189" if buy else "191"),
                    (60, "20261206-12:00:00.000"),
                ],
                time.time_ns(),
            )
            pump()
            if k % 200 == 0:  # the engine flushes message logs on a timer
                started = time.thread_time_ns()
                for log in logs:
                    log.flush()
                spent[0] += time.thread_time_ns() - started

    run(2000, 1)  # warm-up
    spent[:] = [0, 0, 0]
    records.clear()
    syncs_before = copy[0].shipper.syncs if copy is not None and copy[0].shipper is not None else 0
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    run(orders, 1_000_000)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    decisions = sum(1 for r in records if type(r).__name__ == "Decision")
    refused = sum(1 for r in records if isinstance(r, ev.Decision) and not r.accepted)
    if refused or bridge.core.shares.hungry:
        raise SystemExit(
            f"{refused} orders refused, a top-up wanted: {bridge.core.shares.hungry} (the path measured is not the one meant)"
        )
    copied = None
    if copy is not None:
        shipper = copy[0].shipper
        assert shipper is not None
        copied = {"state": shipper.state, "syncs_per_order": round((shipper.syncs - syncs_before) / orders, 2)}
        stop_copy(*copy)
        if copied["state"] != ha:
            raise SystemExit(
                f"the copy fell to {copied['state']!r} during the run: the path measured is not the one meant"
            )
    for info in bridge.sessions():
        info.handle.store.close()
        if info.handle.log is not None:
            info.handle.log.close()
    journal.close()
    return {
        "setup": setup,
        "features": sorted(features),
        "cluster": cluster,
        "shared_limits": shared_limits,
        "ha": ha,
        "copy": copied,
        "orders": orders,
        "decisions": decisions,
        "proxy_us_per_order": round(spent[0] / 1000 / orders, 1),
        "messages_in_per_order": round(spent[1] / orders, 2),
        "messages_out_per_order": round(spent[2] / orders, 2),
        "profiled": bool(profile),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench path", description=__doc__.split("\n\n")[0])
    p.add_argument("--orders", type=int, default=20_000)
    p.add_argument("--setup", choices=("native_full", "native_pass"), default="native_full")
    p.add_argument(
        "--cluster",
        action="store_true",
        help="native_full as one instance of a cluster: shared limits checked against its shares (no database)",
    )
    p.add_argument(
        "--ha",
        choices=("sync", "async"),
        default=None,
        help="native_full as the active of an HA pair, a standby process in copy (sync: every write waits for it)",
    )
    p.add_argument("--profile", default=None, help="write a cProfile of the measured orders here")
    p.add_argument(
        "--features",
        nargs="?",
        const=",".join(FEATURES),
        default="",
        help="issue 20's features on, all or those named: monitor, anomaly, drop_copy",
    )
    args = p.parse_args(argv)
    features = frozenset(f for f in args.features.split(",") if f)
    if args.cluster and args.setup != "native_full":
        p.error("--cluster: with --setup native_full (make bench's native_cluster is native_full with [cluster])")
    if args.ha and args.setup != "native_full":
        p.error("--ha: with --setup native_full (make bench's native_ha_* are native_full with [ha])")
    if features - set(FEATURES):
        p.error(f"--features: unknown {', '.join(sorted(features - set(FEATURES)))} (known: {', '.join(FEATURES)})")
    root = Path(tempfile.mkdtemp(prefix="bench-path-"))
    stops: list[Callable[[], None]] = []  # the standby process, stopped whatever happens
    try:
        result = measure(args.setup, args.orders, root, args.profile, features, args.cluster, args.ha, stops)
        print(json.dumps(asyncio.run(result)))
    finally:
        for stop in stops:
            stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
