"""OMS simulator: a quickfix initiator that sends orders and prints what comes back.

Two modes: a stream of orders (``--count``, ``--rate``, ``--symbols``) that ends with a
summary; or ``--stdin``, which sends each line read (``35=D|11=A1|55=AAPL|...``) as one message.
Every inbound application message and session Reject is printed as a JSON line.

Failover (``--failover HOST:PORT``, repeatable): further addresses of the same proxy (the other
instance of an active/passive pair). quickfix's initiator tries its addresses in turn, one per
connection attempt (SocketConnectHost, SocketConnectHost1, ...), so after a drop it logs on to the
other; the session is the same (one store, sequence numbers go on), and quickfix answers the proxy's
ResendRequest and sends its own as any OMS would. An ExecutionReport resent with PossDupFlag whose
ExecID was already processed is printed with ``"duplicate": true`` and not counted again.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import quickfix as fix

from ..config import LoadedConfig
from ..engines.quickfix.dictionary import build_dictionary
from ..engines.quickfix.settings import dictionary, session_block
from .common import build_message, emit, fields_of, leave, logout_all, start_engine, wait_for_signal
from .sockets import own_connection_to


def _now() -> str:
    t = datetime.now(UTC)
    return t.strftime("%Y%m%d-%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


class OmsSim(fix.Application):
    def __init__(self, quiet: bool = False, logon: tuple[str, str] = ("", ""), ports: frozenset[int] = frozenset()):
        super().__init__()
        self.quiet = quiet
        self.logon = logon  # Username (553), Password (554) to put on the Logon
        self.ports = ports  # the proxy's addresses' ports: which one a logon is on
        self.address: str | None = None
        self.exec_ids: set[str] = set()
        self.logged_on = threading.Event()
        self.sid: fix.SessionID | None = None
        self.outcomes: Counter[str] = Counter()
        self.done: set[str] = set()
        self.lock = threading.Lock()

    def onCreate(self, sid: fix.SessionID) -> None:
        self.sid = sid

    def onLogon(self, sid: fix.SessionID) -> None:
        self.address = own_connection_to(set(self.ports)) if self.ports else None
        self.logged_on.set()
        emit({"event": "logon", "session": sid.toString(), "address": self.address})

    def onLogout(self, sid: fix.SessionID) -> None:
        # quickfix says logout after a failed connection attempt too: "was_logged_on" tells them apart
        was = self.logged_on.is_set()
        self.logged_on.clear()
        emit({"event": "logout", "session": sid.toString(), "address": self.address, "was_logged_on": was})
        self.address = None

    def toAdmin(self, message: fix.Message, sid: fix.SessionID) -> None:
        msg_type = message.getHeader().getField(35)
        if self.logon[0] and msg_type == "A":
            message.setField(553, self.logon[0])
            message.setField(554, self.logon[1])
        if msg_type == "5":  # our own Logout says why quickfix ends the session (MsgSeqNum too low...)
            emit({"dir": "out", "fields": fields_of(message), "raw": message.toString().replace("\x01", "|")})

    def fromAdmin(self, message: fix.Message, sid: fix.SessionID) -> None:
        f = fields_of(message)
        if f.get("35") in ("3", "5"):
            emit({"dir": "in", "fields": f, "raw": message.toString().replace("\x01", "|")})

    def toApp(self, message: fix.Message, sid: fix.SessionID) -> None:
        if not self.quiet:
            emit({"dir": "out", "fields": fields_of(message), "raw": message.toString().replace("\x01", "|")})

    def fromApp(self, message: fix.Message, sid: fix.SessionID) -> None:
        f = fields_of(message)
        msg_type = f.get("35")
        duplicate = False
        if msg_type == "8":
            exec_id = f.get("17", "")
            with self.lock:
                duplicate = f.get("43") == "Y" and exec_id in self.exec_ids
                self.exec_ids.add(exec_id)
        if not self.quiet:
            record: dict = {"dir": "in", "fields": f, "raw": message.toString().replace("\x01", "|")}
            if duplicate:
                record["duplicate"] = True
            emit(record)
        if duplicate:
            return  # already processed under this ExecID: what an OMS does with a resent report
        with self.lock:
            if msg_type == "8":
                exec_type = f.get("150", "")
                key = {"0": "acked", "F": "filled", "1": "filled", "2": "filled", "4": "canceled", "5": "replaced"}.get(
                    exec_type
                )
                if exec_type == "8":
                    key = "rejected:" + f.get("58", "").split(":")[0]
                if key:
                    self.outcomes[key] += 1
                if f.get("39") in ("2", "4", "8"):
                    self.done.add(f.get("11", ""))
            elif msg_type == "j":
                self.outcomes["rejected:" + f.get("58", "").split(":")[0]] += 1
                self.done.add(f.get("379", ""))
            elif msg_type == "9":
                self.outcomes["cancel_rejected"] += 1

    def send(self, fields: list[tuple[int, str]]) -> bool:
        """Send one application message; False if quickfix did not take it (no session yet included)."""
        sid = self.sid
        if sid is None:
            return False
        begin = sid.getBeginString().getValue()
        tags = {t for t, _ in fields}
        msg_type = dict(fields).get(35, "")
        if msg_type in ("D", "G", "F") and 60 not in tags:
            fields = [*fields, (60, _now())]
        if begin == "FIX.4.2" and msg_type in ("D", "G") and 21 not in tags:
            fields = [*fields, (21, "1")]
        return fix.Session.sendToTarget(build_message(begin, fields), sid)


def parse_line(line: str) -> list[tuple[int, str]]:
    """``35=D|11=A1|55=AAPL`` (or SOH-separated) -> [(35, "D"), (11, "A1"), (55, "AAPL")]."""
    sep = "\x01" if "\x01" in line else "|"
    out = []
    for part in line.strip().split(sep):
        tag, eq, value = part.partition("=")
        if eq and tag.strip().isdigit():
            out.append((int(tag), value))
    return out


def run_oms(
    loaded: LoadedConfig,
    session_name: str,
    *,
    stdin: bool,
    count: int,
    rate: float,
    symbols: list[str],
    qty: str,
    account: str,
    quiet: bool,
    wait_s: float,
    state_dir: Path | None = None,
    side: str = "1",
    connect: tuple[str, int] | None = None,
    failover: tuple[tuple[str, int], ...] = (),
    reconnect_s: int = 1,
) -> int:
    """``connect``: the proxy's address (default 127.0.0.1 and the config's acceptor port);
    ``failover``: further addresses tried in turn after it."""
    cfg = loaded.config
    oms = next((s for s in cfg.oms if s.name == session_name), None)
    if oms is None:
        raise SystemExit(f"no OMS session named {session_name!r} in {loaded.path}")
    state = state_dir or loaded.state_dir / "sim" / f"oms-{oms.name}"
    block = session_block(oms.fix_version, oms.comp_id, cfg.acceptor.comp_id)

    def work(app: OmsSim) -> int:
        if stdin:
            return _from_stdin(app)
        return _stream(app, count, rate, symbols, qty, account, wait_s, loaded, side)

    password = oms.password or (os.environ.get(oms.password_env, "") if oms.password_env else "")
    addresses = (connect or ("127.0.0.1", cfg.acceptor.port), *failover)
    app = OmsSim(quiet=quiet, logon=(oms.username, password), ports=frozenset(p for _, p in addresses))
    return _run_initiator(loaded, app, block, state, work, addresses=addresses, reconnect_s=reconnect_s)


def run_desk(loaded: LoadedConfig, *, username: str = "", password: str = "", state_dir: Path | None = None) -> int:
    """The risk desk's side of its FIX session: each stdin line (``35=U1|2328=R1|...``) is sent."""
    cfg = loaded.config
    desk = cfg.risk_desk
    if not desk.comp_id:
        raise SystemExit(f"no [risk_desk] comp_id in {loaded.path}")
    state = state_dir or loaded.state_dir / "sim" / "desk"
    extended = build_dictionary(dictionary("FIX.4.4"), state / "FIX44-admin.xml")
    block = session_block("FIX.4.4", desk.comp_id, cfg.acceptor.comp_id, DataDictionary=extended)
    return _run_initiator(loaded, OmsSim(logon=(username, password)), block, state, _from_stdin)


def _run_initiator(
    loaded: LoadedConfig,
    app: OmsSim,
    block: dict,
    state: Path,
    work: Callable[[OmsSim], int],
    *,
    addresses: tuple[tuple[str, int], ...] = (),
    reconnect_s: int = 1,
) -> NoReturn:
    """Connect ``app`` to the proxy's acceptor (or to ``addresses`` in turn, one per connection
    attempt every ``reconnect_s`` seconds), run ``work(app)`` once logged on, log out, exit."""
    cfg = loaded.config
    host, port = addresses[0] if addresses else ("127.0.0.1", cfg.acceptor.port)
    block = {
        **block,
        "SocketConnectHost": host,
        "SocketConnectPort": port,
        "HeartBtInt": cfg.acceptor.heartbeat_s,
        "ReconnectInterval": reconnect_s,
    }
    for n, (other_host, other_port) in enumerate(addresses[1:], start=1):
        block[f"SocketConnectHost{n}"] = other_host
        block[f"SocketConnectPort{n}"] = other_port
    _engine = start_engine(  # kept alive until the process ends
        "initiator", app, state, "oms-sim", {}, [block]
    )
    sid = fix.SessionID(block["BeginString"], block["SenderCompID"], block["TargetCompID"])
    code = 1
    try:
        if not app.logged_on.wait(30):
            emit({"event": "error", "detail": f"no logon to {host}:{port} within 30s"})
            code = 2
        else:
            code = work(app)
    finally:
        logout_all([sid])
        leave(code)


def _from_stdin(app: OmsSim) -> int:
    for line in sys.stdin:
        fields = parse_line(line)
        if fields and not app.send(fields):
            emit({"event": "send_failed", "line": line.strip()})
    wait_for_signal()
    return 0


def _stream(
    app: OmsSim,
    count: int,
    rate: float,
    symbols: list[str],
    qty: str,
    account: str,
    wait_s: float,
    loaded: LoadedConfig,
    side: str = "1",
) -> int:
    prefix = f"S{int(time.time())}-"
    interval = 1.0 / rate if rate > 0 else 0.0
    start = time.perf_counter()
    instruments = loaded.instruments
    for i, symbol in zip(range(count), itertools.cycle(symbols)):
        due = start + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        inst = instruments.get(symbol)
        price = inst.reference_price if inst is not None and inst.reference_price else None
        fields = [(35, "D"), (11, f"{prefix}{i}"), (55, symbol), (54, side), (38, qty)]
        fields += [(40, "2"), (44, str(price))] if price is not None else [(40, "1")]
        if account:
            fields.append((1, account))
        app.send(fields)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        with app.lock:
            if len(app.done) >= count:
                break
        time.sleep(0.05)
    with app.lock:
        summary = {
            "event": "summary",
            "sent": count,
            "finished": len(app.done),
            "outcomes": dict(app.outcomes),
            "seconds": round(time.perf_counter() - start, 3),
        }
    emit(summary)
    return 0
