#!/usr/bin/env python3
"""Soak: order messages at a steady rate (new orders, cancels, replaces; partial fills) for N
minutes, the proxy killed with SIGKILL at random moments and restarted each time, risk-desk halts
and limit changes made before some kills and checked after them, then a reconciliation that must
come out exact.

    .venv/bin/python scripts/soak.py --engine native --minutes 2 --rate 500 --kills 20

Sending is paced by a schedule (message i is due at start + i/rate; whatever is due is written to
the OMS simulator's stdin in one write), so the achieved rate does not drift; the report gives it,
and the rate at which the OMS simulator put the messages out. Messages go on while the proxy is
down (the OMS simulator queues them in its store and resends them after the logon). The kill
times are drawn at random over the first 90% of the run; a kill waits until the previous restart
is up (both sessions) and checked, so a run lasts until its last kill is done. ``--start-kills N``
also kills N of the restarted proxies once more while they start (recover), at a random moment.
With ``--keep`` the folder stays, with the simulators' output (oms-sim.jsonl, venue-sim.jsonl)
and the drop copy's ExecutionReports (drop-copy.jsonl).

Reconciliation (every item must hold for ``reconciliation: EXACT``):
- every order the OMS sent has exactly one final outcome at the OMS (rejected, filled or
  cancelled); a repeat of a report marked PossDupFlag (43=Y) or PossResend (97=Y) whose ExecID
  was already seen is dropped, as an OMS does; any other repeat counts against;
- every order (and every cancel and replace request) reached the venue at most once, and every
  order the OMS saw forwarded (not refused by the proxy) reached it;
- the proxy's positions (GET /api/v1/positions) equal the sum of the fills the OMS received,
  per account and symbol;
- no phantom working orders: no order the OMS saw finish is open at the proxy (GET
  /api/v1/orders) at any check (before every kill, after every restart, before and after the
  end-of-run cancels), and after those cancels the proxy has no open order; every message the OMS
  sent has been answered before those cancels;
- halts and limit changes made before a kill are in force after it: before every 4th kill an
  account is halted and the firm's max_order_qty changed, before the kill two later the account is
  resumed and a symbol halted (resumed before the next kill), each change made through the HTTP
  API with a risk token; after every restart GET /api/v1/trading-states and /api/v1/limits must
  show exactly what was set, and probe orders must be refused HALTED (or MAX_ORDER_QTY) or, once
  resumed, accepted;
- the audit chain verifies (``fixproxy audit verify`` with the checkpoint key and the head noted
  mid-run, exit 0), and every application message the OMS simulator sent or received on its
  session has its audit record (matched on direction and MsgSeqNum, each counted once: a resend
  with PossDupFlag repeats a sequence number), with the same MsgType and ClOrdID; and no audit
  record of a message on that session that the OMS never saw under its MsgSeqNum (one sequence
  number recorded for two different messages is a failure);
- the drop copy (``--drop-copy``, on by default; ``--no-drop-copy`` leaves it out): a
  ``[[drop_copy]]`` session (FIX 4.4, copy_refusals = true) whose client, the soak's own, logs on
  before the first order (141=Y, the only time) and again after every restart with the sequence
  numbers it had, asking for any gap. Once repeats marked 43=Y or 97=Y of an ExecID already read
  are dropped, every ExecutionReport the OMS received (by ExecID, after the dedupe above) has
  exactly one copy, with OnBehalfOfCompID (115) = the OMS's CompID and the same 11, 39, 150, 14 and
  151; every other copy is the copy of a new order the proxy refused with 35=j (it has its own
  ExecID: matched on ClOrdID and reject code), one for each refusal; no copy without a counterpart;
  and the drop copy's session got nothing a correct proxy does not send (a Logout, a Reject, a
  MsgSeqNum below the expected one without 43=Y, an application message other than 35=8).

Everything runs on 127.0.0.1 with free ports, in a temporary folder; every process is stopped by
its pid at the end. Prints a JSON report, then ``reconciliation: EXACT`` or ``NOT EXACT`` (and the
details of what failed on stderr). Exit status 0 only if the reconciliation is exact.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from fixproxy.sim.process import Proc, fixproxy_command, free_port

REPO = Path(__file__).resolve().parents[1]
VIEWER = "soak-viewer-token-0123456789"
RISK = "soak-risk-token-0123456789ab"
SESSION = "oms1"
ACCOUNT = "SOAK"
HALT_ACCOUNT = "HALTME"  # only probe orders go to this account
HALT_SYMBOL = "JPM"
# symbol -> (limit price, venue simulator behaviour); RSTR is restricted, so the proxy refuses it.
SYMBOLS = {
    "AAPL": ("190", "fill"),
    "MSFT": ("410", "ack"),
    "NVDA": ("120", "partial"),
    "JPM": ("200", "ack"),
    "RSTR": ("40", "fill"),
}
FIRM_MAX_QTY = 10000
#: A proxy refusal's Text (58) starts with its code (spec/reject-codes.md).
CODE = re.compile(r"^([A-Z][A-Z_]+):")
FINAL_STATUS = {"2": "filled", "4": "cancelled", "8": "rejected"}
KEEP_LINES = 200  # of each process's output, for a failure report
OMS_COMP_ID = "OMS1"
DROP_COPY = "dc1"  # the drop-copy session's name and its client's SenderCompID
DROP_COPY_COMP_ID = "DROPCOPY"
#: What a copy must repeat of the OMS's ExecutionReport: ClOrdID, OrdStatus, ExecType, CumQty, LeavesQty.
COPY_TAGS = ("11", "39", "150", "14", "151")
SOH = "\x01"


def now() -> float:
    return time.monotonic()


def write_config(
    root: Path, acceptor: int, venue: int, http: int, engine: str = "quickfix", drop_copy: bool = True
) -> Path:
    shutil.copy(REPO / "cfg" / "instruments.csv", root / "instruments.csv")
    # The checkpoints' key, outside the state dir (var/): whoever can rewrite the store cannot read it.
    (root / "audit.key").write_text("soak-audit-checkpoint-key-0123456789\n")
    path = root / "fixproxy.toml"
    path.write_text(f"""
[proxy]
state_dir = "var"
engine = "{engine}"
[acceptor]
port = {acceptor}
[[oms]]
name = "{SESSION}"
comp_id = "{OMS_COMP_ID}"
default_venue = "sim"
[[venues]]
name = "sim"
port = {venue}
[risk]
instruments = "instruments.csv"
self_match = "off"
sell_below_zero_is_short = false
[limits.firm]
max_order_qty = {FIRM_MAX_QTY}
price_collar_pct = 5
[audit]
enabled = true
key_file = "audit.key"
[admin]
http_port = {http}
[[admin.tokens]]
name = "soak"
role = "viewer"
token = "{VIEWER}"
[[admin.tokens]]
name = "soak-risk"
role = "risk"
token = "{RISK}"
""")
    if drop_copy:
        with path.open("a") as f:
            f.write(f"""[[drop_copy]]
name = "{DROP_COPY}"
comp_id = "{DROP_COPY_COMP_ID}"
fix_version = "FIX.4.4"
copy_refusals = true
""")
    return path


class Api:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, token: str = VIEWER, timeout: float = 10):
        req = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.load(r)
        except urllib.error.HTTPError as exc:  # /healthz answers 503 with a body
            return json.load(exc)

    def open_orders(self) -> list[dict]:
        """Every open order: GET /api/v1/orders a page (at most 1,000) at a time."""
        out: list[dict] = []
        while True:
            page = self.get("/api/v1/orders?limit=1000" + (f"&after={out[-1]['key']}" if out else ""))
            out += page
            if len(page) < 1000:
                return out

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        req = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {RISK}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)


class RandomSet:
    """A set with O(1) add, discard and random choice."""

    def __init__(self):
        self.items: list[str] = []
        self.index: dict[str, int] = {}

    def add(self, x: str) -> None:
        if x not in self.index:
            self.index[x] = len(self.items)
            self.items.append(x)

    def discard(self, x: str) -> None:
        i = self.index.pop(x, None)
        if i is not None:
            last = self.items.pop()
            if i < len(self.items):
                self.items[i] = last
                self.index[last] = i

    def __len__(self) -> int:
        return len(self.items)

    def choice(self, rnd: random.Random) -> str:
        return self.items[rnd.randrange(len(self.items))]


class Order:
    __slots__ = (
        "account",
        "answered",
        "cur",
        "finals",
        "forwarded",
        "pending",
        "price",
        "probe",
        "qty",
        "root",
        "side",
        "symbol",
    )

    def __init__(self, root, symbol, side, account, qty, price, probe=""):
        self.root, self.symbol, self.side, self.account = root, symbol, side, account
        self.qty, self.price = qty, price
        self.cur = root  # the ClOrdID the venue has acked last
        self.pending = False  # a cancel or replace awaits its answer
        self.finals: list[str] = []
        self.forwarded = False  # the OMS received a report from the venue for it
        self.answered = False  # the OMS received anything about the order
        self.probe = probe


class Tracker:
    """What the OMS simulator saw, from its output lines (its reader thread), and what the soak sent."""

    def __init__(self):
        self.lock = threading.Lock()
        self.orders: dict[str, Order] = {}
        self.root_of: dict[str, str] = {}  # every ClOrdID the soak sent -> its order's first ClOrdID
        self.requests: dict[str, tuple[str, str, str]] = {}  # cancel/replace ClOrdID -> (root, kind, new qty)
        self.working = RandomSet()  # roots acked at the venue, not done, nothing pending
        self.done: set[str] = set()
        self.fills: Counter = Counter()  # (account, symbol) -> the quantity the OMS saw filled, signed
        self.exec_ids: set[str] = set()
        self.report_copy: dict[str, tuple[str, ...]] = {}  # ExecID -> what its drop copy must repeat (COPY_TAGS)
        self.refusals: Counter = Counter()  # (ClOrdID, reject code) of each new order the proxy refused with 35=j
        self.exec_repeats_marked = 0
        self.exec_repeats_unmarked: list[dict] = []
        self.reject_keys: set[tuple] = set()
        self.cancel_rejects: Counter = Counter()
        self.unknown: list[dict] = []
        # (direction as the proxy sees it, MsgSeqNum) -> (MsgType, ClOrdID), for the audit check
        self.wire: dict[tuple[str, int], tuple[str, str]] = {}
        self.wire_conflicts: list = []
        self.oms_out_first: list[float] = []  # arrival times of the OMS's order messages, first sends only
        self.events: list[tuple[float, str]] = []  # OMS logon/logout
        self.send_failed = 0

    # -- the sender's side

    def new_order(self, cl: str, symbol: str, side: str, account: str, qty: int, price: str, probe: str = "") -> None:
        with self.lock:
            self.orders[cl] = Order(cl, symbol, side, account, qty, price, probe)
            self.root_of[cl] = cl

    def take_working(self, rnd: random.Random) -> Order | None:
        with self.lock:
            if not self.working:
                return None
            root = self.working.choice(rnd)
            self.working.discard(root)
            o = self.orders[root]
            o.pending = True
            return o

    def request(self, cl: str, o: Order, kind: str, qty: str = "") -> None:
        with self.lock:
            self.root_of[cl] = o.root
            self.requests[cl] = (o.root, kind, qty)

    # -- the OMS simulator's output

    def on_line(self, line: str) -> None:
        if not line.startswith("{"):
            return
        rec = json.loads(line)
        f = rec.get("fields")
        if f is None:
            ev = rec.get("event")
            if ev:
                with self.lock:
                    if ev == "send_failed":
                        self.send_failed += 1
                    else:
                        self.events.append((now(), ev))
            return
        msg_type = f.get("35", "")
        if msg_type in ("0", "1", "2", "3", "4", "5", "A"):
            return  # session level (the simulator prints Reject and Logout)
        direction = "in" if rec.get("dir") == "out" else "out"  # as the proxy sees it
        seq = int(f.get("34", "0"))
        key = (direction, seq)
        ident = (msg_type, f.get("11") or f.get("379", ""))
        with self.lock:
            seen = self.wire.get(key)
            if seen is None:
                self.wire[key] = ident
                if direction == "in" and f.get("43") != "Y" and ident[1][:1] in ("D", "C", "R"):
                    self.oms_out_first.append(now())  # a scheduled message (not a probe or end cancel)
            elif seen != ident:
                self.wire_conflicts.append((key, seen, ident))
            if direction == "out":
                self._report(f)

    def _final(self, o: Order, outcome: str) -> None:
        o.finals.append(outcome)
        self.done.add(o.root)
        self.working.discard(o.root)
        o.pending = False

    def _report(self, f: dict) -> None:
        msg_type = f.get("35")
        marked = f.get("43") == "Y" or f.get("97") == "Y"
        if msg_type == "8":
            exec_id = f.get("17", "")
            if exec_id and exec_id != "NONE":
                if exec_id in self.exec_ids:
                    if marked:
                        self.exec_repeats_marked += 1
                    else:
                        self.exec_repeats_unmarked.append(f)
                    return  # an OMS drops a report it has (by ExecID)
                self.exec_ids.add(exec_id)
                self.report_copy[exec_id] = tuple(f.get(tag, "") for tag in COPY_TAGS)
            cl = f.get("11", "")
            root = self.root_of.get(cl) or self.root_of.get(f.get("41", ""))
            o = self.orders.get(root) if root else None
            if o is None:
                self.unknown.append(f)
                return
            o.answered = True
            exec_type, status = f.get("150", ""), f.get("39", "")
            code = CODE.match(f.get("58", ""))
            if exec_type in ("F", "1", "2") and f.get("32"):
                qty = Decimal(f["32"])
                self.fills[(f.get("1", o.account), f.get("55", o.symbol))] += (
                    qty if f.get("54", o.side) == "1" else -qty
                )
            if exec_type != "8" or not code:
                o.forwarded = True  # a report of the venue's
            if exec_type == "5":
                o.cur, o.pending = cl, False
                o.qty = int(Decimal(f.get("38", o.qty)))
                self.requests.pop(cl, None)
            elif exec_type == "4":
                self.requests.pop(cl, None)
            if status in FINAL_STATUS:
                self._final(o, FINAL_STATUS[status] + (":" + code.group(1) if status == "8" and code else ""))
            elif exec_type in ("0", "5") and not o.pending and o.root not in self.done:
                self.working.add(o.root)
            return
        if msg_type == "9":
            cl = f.get("11", "")
            root = self.root_of.get(cl)
            code = CODE.match(f.get("58", ""))
            self.cancel_rejects[
                ("cancel:" if f.get("434") == "1" else "replace:") + (code.group(1) if code else f.get("58", "")[:30])
            ] += 1
            self.requests.pop(cl, None)
            o = self.orders.get(root) if root else None
            if o is None:
                self.unknown.append(f)
                return
            o.answered = True
            o.pending = False
            if o.root not in self.done and o.forwarded:
                self.working.add(o.root)
            return
        if msg_type == "j":
            cl = f.get("379", "")
            root = self.root_of.get(cl)
            o = self.orders.get(root) if root else None
            if o is None:
                self.unknown.append(f)
                return
            o.answered = True
            key = (cl, f.get("45", ""), f.get("58", ""))
            if key in self.reject_keys:
                if marked:
                    self.exec_repeats_marked += 1
                else:
                    self.exec_repeats_unmarked.append(f)
                return
            self.reject_keys.add(key)
            code = CODE.match(f.get("58", ""))
            if cl == o.root:
                self._final(o, "rejected:" + (code.group(1) if code else "?"))
                self.refusals[(cl, code.group(1) if code else "")] += 1
            else:  # a cancel or replace refused
                self.requests.pop(cl, None)
                o.pending = False
                if o.root not in self.done and o.forwarded:
                    self.working.add(o.root)
            return
        self.unknown.append(f)

    def finished_ids(self) -> set[str]:
        """Every ClOrdID of every order the OMS saw finish."""
        with self.lock:
            return {cl for cl, root in self.root_of.items() if root in self.done}

    def outstanding(self) -> list[str]:
        """Orders with no answer yet, and cancel/replace requests not answered (their ClOrdIDs)."""
        with self.lock:
            return [r for r, o in self.orders.items() if not o.answered] + list(self.requests)

    def outcome_of(self, root: str) -> list[str]:
        with self.lock:
            return list(self.orders[root].finals)


class Venue:
    """The order messages the venue simulator received: (MsgType, ClOrdID) -> how many times."""

    def __init__(self):
        self.lock = threading.Lock()
        self.received: Counter = Counter()
        self.possdup: Counter = Counter()

    def on_line(self, line: str) -> None:
        if not line.startswith('{"dir":"in"'):
            return
        f = json.loads(line)["fields"]
        if f.get("35") in ("D", "G", "F"):
            with self.lock:
                self.received[(f["35"], f.get("11", ""))] += 1
                if f.get("43") == "Y":
                    self.possdup[(f["35"], f.get("11", ""))] += 1


class ProxyLog:
    """The proxy's log lines that the soak waits on."""

    KEEP = ("recovered", "started", "session_up", "session_down", "start_failed", "stopping", "stopped")

    def __init__(self):
        self.events: list[dict] = []
        self.cond = threading.Condition()
        self.errors: list[str] = []

    def on_line(self, line: str) -> None:
        if not line.startswith("{"):
            if "Traceback" in line or "cannot start" in line:
                with self.cond:
                    self.errors.append(line)
            return
        try:
            r = json.loads(line)
        except ValueError:
            return
        if r.get("level") in ("error", "critical"):
            with self.cond:
                self.errors.append(line[:300])
        if r.get("event") in self.KEEP:
            with self.cond:
                self.events.append(r)
                self.cond.notify_all()


def fix_frame(body: str) -> bytes:
    """A FIX 4.4 message: BeginString, BodyLength, ``body`` (SOH-terminated fields) and CheckSum."""
    raw = f"8=FIX.4.4{SOH}9={len(body.encode('latin-1'))}{SOH}{body}".encode("latin-1")
    return raw + f"10={sum(raw) % 256:03d}{SOH}".encode()


def fix_time() -> str:
    t = datetime.now(UTC)
    return t.strftime("%Y%m%d-%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


class DropCopyClient:
    """The drop copy: a FIX 4.4 client of its own on a plain socket, logged on to the proxy's acceptor
    through the whole run and reconnecting after each kill. Its sequence numbers outlive a connection
    (141=Y on the first Logon only); it answers TestRequests, sends Heartbeats, answers a
    ResendRequest with a gap fill (it sends no application messages), asks for the gap when the
    proxy's MsgSeqNum is ahead of what it expects (holding what came early until the gap is filled),
    and keeps every ExecutionReport it reads in sequence (``copies``)."""

    HEARTBEAT_S = 5

    def __init__(self, port: int):
        self.port = port
        self.lock = threading.Lock()
        self.copies: list[dict[str, str]] = []
        self.out_seq = 1  # the next MsgSeqNum to send
        self.in_seq = 1  # the next MsgSeqNum expected
        self.logons = 0
        self.connects = 0
        self.resend_requests = 0  # sent
        self.resend_requests_answered = 0  # the proxy's, answered with a gap fill
        self.gap_fills = 0
        self.session_repeats = 0  # 43=Y below the expected MsgSeqNum: already read, ignored
        self.problems: list[dict] = []  # anything a correct proxy would not send
        self.last_copy_at = now()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name="drop-copy", daemon=True)
        self.sock: socket.socket | None = None
        self.last_out = now()
        self.pending: dict[int, dict[str, str]] = {}  # read ahead of a gap, by MsgSeqNum
        self.resend_to = 0  # a ResendRequest is outstanding until in_seq passes this

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)

    def problem(self, what: str, f: dict[str, str]) -> None:
        with self.lock:
            self.problems.append({"problem": what, "fields": {k: v for k, v in f.items() if k != "10"}})

    def send(self, msg_type: str, fields: str = "", seq: int | None = None) -> None:
        """Send one message (``fields``: "tag=value|..."); with ``seq`` (a gap fill) out_seq stays."""
        body = f"35={msg_type}{SOH}34={seq or self.out_seq}{SOH}49={DROP_COPY_COMP_ID}{SOH}52={fix_time()}{SOH}"
        body += f"56=FIXPROXY{SOH}" + "".join(f"{x}{SOH}" for x in fields.split("|") if x)
        if seq is None:
            self.out_seq += 1
        self.last_out = now()
        self.sock.sendall(fix_frame(body))

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=1)
            except OSError:
                time.sleep(0.1)
                continue
            self.connects += 1
            try:
                self.session(sock)
            except OSError:
                pass  # the proxy was killed: connect again
            finally:
                sock.close()
            time.sleep(0.1)

    def session(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending.clear()
        self.resend_to = 0
        sock.settimeout(0.5)
        self.send("A", "98=0|108=" + str(self.HEARTBEAT_S) + ("|141=Y" if self.out_seq == 1 else ""))
        logon_by = now() + 10  # no Logon back in time: connect again
        logons = self.logons
        buf = b""
        while not self.stopping.is_set():
            try:
                chunk = sock.recv(1 << 16)
            except TimeoutError:
                chunk = None
            if chunk == b"":
                return
            if chunk:
                buf += chunk
                while True:
                    msg, buf = self.take(buf)
                    if msg is None:
                        break
                    if not self.on_message(msg):
                        return
            if self.logons == logons and now() > logon_by:
                return
            if self.logons > logons and now() - self.last_out >= self.HEARTBEAT_S:
                self.send("0")
        self.send("5")  # stopped: log out and go

    @staticmethod
    def take(buf: bytes) -> tuple[dict[str, str] | None, bytes]:
        """The first whole message in ``buf`` (tag -> value), and what follows it."""
        start = buf.find(b"\x019=")
        if start < 0:
            return None, buf
        end = buf.find(b"\x01", start + 3)
        if end < 0:
            return None, buf
        stop = buf.find(b"\x01", end + 1 + int(buf[start + 3 : end]) + 4)  # the body, then 10=nnn
        if stop < 0:
            return None, buf
        fields = {}
        for part in buf[: stop + 1].decode("latin-1").split(SOH):
            tag, _, value = part.partition("=")
            if tag:
                fields[tag] = value
        return fields, buf[stop + 1 :]

    def on_message(self, f: dict[str, str]) -> bool:
        """Handle one message as a FIX session does; False: the connection is to be closed."""
        msg_type, seq = f.get("35", ""), int(f.get("34", "0"))
        if msg_type == "A":
            self.logons += 1
        elif msg_type == "1":
            self.send("0", "112=" + f.get("112", ""))
        elif msg_type == "2":  # nothing of ours to resend: one gap fill over the range asked
            self.resend_requests_answered += 1
            self.send("4", f"43=Y|122={fix_time()}|123=Y|36={self.out_seq}", seq=int(f.get("7", "1")))
        elif msg_type == "5":
            self.problem("logout from the proxy", f)
            return False
        elif msg_type == "3":
            self.problem("session reject", f)
        if msg_type == "4" and f.get("123") != "Y":  # a reset: no gap below its NewSeqNo
            self.in_seq = int(f["36"])
            return True
        if seq < self.in_seq:
            if f.get("43") == "Y":
                self.session_repeats += 1
            else:
                self.problem(f"MsgSeqNum {seq} below the expected {self.in_seq}, not a PossDup", f)
            return True
        if seq > self.in_seq:
            self.pending[seq] = f
            if self.in_seq > self.resend_to:  # no ResendRequest outstanding
                self.resend_requests += 1
                self.resend_to = seq
                self.send("2", f"7={self.in_seq}|16=0")
            return True
        self.accept(f)
        while self.pending:
            first = min(self.pending)
            if first > self.in_seq:
                if self.in_seq > self.resend_to:  # the resend is done, a gap is left: ask again
                    self.resend_requests += 1
                    self.resend_to = max(self.pending)
                    self.send("2", f"7={self.in_seq}|16=0")
                break
            held = self.pending.pop(first)
            if first == self.in_seq:
                self.accept(held)
            elif held.get("35") not in ("0", "1", "2", "4", "5", "A"):
                self.problem("an application message under a MsgSeqNum a gap fill covered", held)
        return True

    def accept(self, f: dict[str, str]) -> None:
        """``f`` has the expected MsgSeqNum: apply it."""
        msg_type = f.get("35", "")
        if msg_type == "4":
            self.gap_fills += 1
            self.in_seq = max(self.in_seq, int(f.get("36", "0")))
            return
        self.in_seq += 1
        if msg_type == "8":
            with self.lock:
                self.copies.append(f)
                self.last_copy_at = now()
        elif msg_type not in ("0", "1", "2", "3", "5", "A"):
            self.problem("an application message that is not an ExecutionReport", f)


class Soak:
    def __init__(self, args):
        self.args = args
        self.rnd = random.Random(args.seed)
        self.chaos_rnd = random.Random(args.seed + 1)
        self.root = Path(tempfile.mkdtemp(prefix="fixproxy-soak-"))
        self.acceptor, self.venue_port, self.http = free_port(), free_port(), free_port()
        self.config = write_config(self.root, self.acceptor, self.venue_port, self.http, args.engine, args.drop_copy)
        self.drop_copy = DropCopyClient(self.acceptor) if args.drop_copy else None
        self.api = Api(self.http)
        self.tracker = Tracker()
        self.venue_seen = Venue()
        self.procs: list[Proc] = []
        self.proxy: Proc | None = None
        self.proxy_log: ProxyLog | None = None
        self.oms: Proc | None = None
        self.n = 0  # messages sent
        self.kinds: Counter = Counter()
        self.restarts: list[dict] = []
        self.checks: Counter = Counter()  # what was checked, how many times
        self.failures: dict[str, list] = defaultdict(list)  # what failed, with details
        self.expect_halted: set[str] = set()
        self.expect_firm_qty = FIRM_MAX_QTY
        self.head_noted = ""
        self.start_kills: list[str] = []  # extra kills during a restart: before or after its "started" line
        self.chaos_error: BaseException | None = None
        self.proxy_logs: list[ProxyLog] = []  # one per proxy process started

    # -- processes

    def spawn_proxy(self) -> Proc:
        log = ProxyLog()
        self.proxy_logs.append(log)
        proxy = Proc(
            "proxy",
            fixproxy_command("run", "--config", str(self.config)),
            self.root,
            on_line=log.on_line,
            keep=KEEP_LINES,
        )
        self.procs.append(proxy)
        self.proxy, self.proxy_log = proxy, log
        return proxy

    def start_proxy(self) -> tuple[Proc, float, dict]:
        proxy = self.spawn_proxy()
        started = self.wait_proxy(lambda r: r.get("event") == "started", 60)
        return proxy, now() - proxy.started, started

    def wait_proxy(self, pred, timeout: float) -> dict:
        log, proxy = self.proxy_log, self.proxy
        deadline = now() + timeout
        with log.cond:
            while True:
                for r in log.events:
                    if pred(r):
                        return r
                if not proxy.alive() or now() > deadline:
                    raise RuntimeError(
                        f"proxy: no matching line within {timeout}s (exit status {proxy.popen.poll()})"
                        f"; last output:\n{proxy.tail()}"
                    )
                log.cond.wait(0.2)

    def wait_up(self, timeout: float = 60) -> None:
        for name in ("sim", SESSION, *([DROP_COPY] if self.drop_copy else [])):
            self.wait_proxy(lambda r, n=name: r.get("event") == "session_up" and r.get("detail") == n, timeout)

    # -- sending

    def send_lines(self, lines: list[str]) -> None:
        self.oms.send_lines(lines)

    def next_message(self, lines: list[str]) -> None:
        rnd, t = self.rnd, self.tracker
        self.n += 1
        n = self.n
        roll = rnd.random()
        o = t.take_working(rnd) if roll < 0.55 else None
        if o is not None and roll < 0.25:
            cl = f"C{n}"
            t.request(cl, o, "F")
            lines.append(f"35=F|11={cl}|41={o.cur}|55={o.symbol}|54={o.side}|38={o.qty}|1={o.account}")
            self.kinds["cancel"] += 1
        elif o is not None:
            cl = f"R{n}"
            new_qty = max(10, o.qty + rnd.choice((-20, -10, 10, 20)))
            t.request(cl, o, "G", str(new_qty))
            lines.append(
                f"35=G|11={cl}|41={o.cur}|55={o.symbol}|54={o.side}|38={new_qty}|40=2|44={o.price}|1={o.account}"
            )
            self.kinds["replace"] += 1
        else:
            symbol = rnd.choice(list(SYMBOLS))
            price = SYMBOLS[symbol][0]
            side = "2" if rnd.random() < 0.2 else "1"
            qty = rnd.choice((50, 100, 200))
            cl = f"D{n}"
            t.new_order(cl, symbol, side, ACCOUNT, qty, price)
            lines.append(f"35=D|11={cl}|55={symbol}|54={side}|38={qty}|40=2|44={price}|1={ACCOUNT}")
            self.kinds["new"] += 1

    def probe(self, tag: str, symbol: str, account: str, qty: int) -> str:
        """Send one order now (outside the schedule) and wait for its final outcome."""
        cl = f"P{tag}"
        price = SYMBOLS[symbol][0]
        self.tracker.new_order(cl, symbol, "1", account, qty, price, probe=tag)
        self.send_lines([f"35=D|11={cl}|55={symbol}|54=1|38={qty}|40=2|44={price}|1={account}"])
        deadline = now() + 30
        while now() < deadline:
            finals = self.tracker.outcome_of(cl)
            if finals:
                return finals[0]
            time.sleep(0.05)
        return "no answer within 30s"

    def send_loop(self, duration: float, chaos: threading.Thread) -> tuple[float, int]:
        rate = self.args.rate
        start = now()
        sent = 0
        while True:
            elapsed = now() - start
            if elapsed >= duration and not chaos.is_alive():
                break
            if elapsed >= duration + 120:
                raise RuntimeError("the kills did not finish within 2 minutes of the end of the schedule")
            due = int(elapsed * rate) + 1
            lines: list[str] = []
            while sent < due:
                self.next_message(lines)
                sent += 1
            if lines:
                self.send_lines(lines)
            pause = start + sent / rate - now()
            if pause > 0:
                time.sleep(pause)
            if self.chaos_error is not None:
                raise RuntimeError("the kill thread failed") from self.chaos_error
        return now() - start, sent

    # -- kills, risk-desk changes, checks

    def desk(self, path: str, body: dict) -> dict:
        status, answer = self.api.post(path, body)
        if status != 200 or not answer.get("ok"):
            self.failures["desk_command_refused"].append(
                {"path": path, "body": body, "status": status, "answer": answer}
            )
        return answer

    def halt(self, scope: str, action: str, k: int) -> None:
        self.desk("/api/v1/kill-switch", {"scope": scope, "action": action, "reason": f"soak kill {k}"})
        if action == "halt":
            self.expect_halted.add(scope)
        else:
            self.expect_halted.discard(scope)

    def set_firm_qty(self, value: int, k: int) -> None:
        self.desk(
            "/api/v1/limits", {"layer": "firm", "field": "max_order_qty", "value": value, "reason": f"soak kill {k}"}
        )
        self.expect_firm_qty = value

    def before_kill(self, k: int) -> list[str]:
        """Risk-desk changes made just before kill ``k``: every 4th kill halts the account and changes
        the firm's max_order_qty; two kills later the account is resumed, the symbol halted and the
        limit changed again; the kill after that resumes the symbol."""
        done = []
        if k % 4 == 0:
            self.halt(f"account:{HALT_ACCOUNT}", "halt", k)
            self.set_firm_qty(FIRM_MAX_QTY - 100 * (k + 1), k)
            done = [f"halt account:{HALT_ACCOUNT}", f"firm max_order_qty={self.expect_firm_qty}"]
        elif k % 4 == 2:
            self.halt(f"account:{HALT_ACCOUNT}", "resume", k)
            self.halt(f"symbol:{HALT_SYMBOL}", "halt", k)
            self.set_firm_qty(FIRM_MAX_QTY - 100 * (k + 1), k)
            done = [
                f"resume account:{HALT_ACCOUNT}",
                f"halt symbol:{HALT_SYMBOL}",
                f"firm max_order_qty={self.expect_firm_qty}",
            ]
        elif k % 4 == 3:
            self.halt(f"symbol:{HALT_SYMBOL}", "resume", k)
            done = [f"resume symbol:{HALT_SYMBOL}"]
        return done

    def check_desk_state(self, k: int) -> None:
        """After restart ``k``: the halts and the limit in force are exactly those set before it, and
        probe orders are refused (or accepted) accordingly."""
        states = {s["scope"]: s["state"] for s in self.api.get("/api/v1/trading-states")}
        self.checks["trading_states"] += 1
        want = {s: "HALTED" for s in self.expect_halted}
        if states != want:
            self.failures["trading_states"].append({"after_kill": k, "expected": want, "proxy": states})
        limits = self.api.get("/api/v1/limits")
        self.checks["limits"] += 1
        got = limits.get("firm", {}).get("max_order_qty")
        if got is None or Decimal(str(got)) != self.expect_firm_qty:
            self.failures["limits"].append({"after_kill": k, "expected": self.expect_firm_qty, "proxy": got})
        # The firm's max_order_qty: one more is refused.
        outcome = self.probe(f"{k}Q", "MSFT", ACCOUNT, self.expect_firm_qty + 1)
        self.checks["probe_max_order_qty"] += 1
        if outcome != "rejected:MAX_ORDER_QTY":
            self.failures["probe_max_order_qty"].append(
                {"after_kill": k, "limit": self.expect_firm_qty, "outcome": outcome}
            )
        account_halted = f"account:{HALT_ACCOUNT}" in self.expect_halted
        outcome = self.probe(f"{k}A", "AAPL", HALT_ACCOUNT, 100)
        self.checks["probe_halted_account" if account_halted else "probe_resumed_account"] += 1
        if (outcome == "rejected:HALTED") != account_halted or outcome.startswith("no answer"):
            self.failures["probe_account"].append({"after_kill": k, "halted": account_halted, "outcome": outcome})
        if f"symbol:{HALT_SYMBOL}" in self.expect_halted:
            outcome = self.probe(f"{k}S", HALT_SYMBOL, ACCOUNT, 100)
            self.checks["probe_halted_symbol"] += 1
            if outcome != "rejected:HALTED":
                self.failures["probe_symbol"].append({"after_kill": k, "outcome": outcome})

    def check_phantoms(self, when: str) -> int:
        """No order the OMS saw finish is open at the proxy. Returns how many orders are open."""
        finished = self.tracker.finished_ids()  # before the read: the proxy applies before it relays
        open_orders = self.api.open_orders()
        self.checks["phantom_checks"] += 1
        phantoms = [
            o
            for o in open_orders
            if o["session"] == SESSION and (o["cl_ord_id"] in finished or o.get("pending_replace") in finished)
        ]
        if phantoms:
            self.failures["phantom_working_orders"].append(
                {"when": when, "orders": phantoms[:20], "count": len(phantoms)}
            )
        return len(open_orders)

    def note_head(self) -> None:
        r = subprocess.run(
            [sys.executable, "-m", "fixproxy", "audit", "head", "--config", str(self.config)],
            check=False,
            capture_output=True,
            text=True,
            cwd=self.root,
        )
        m = re.search(r"seq=(\d+) hash=([0-9a-f]{64})", r.stdout)
        if m:
            self.head_noted = f"{m.group(1)}:{m.group(2)}"
        else:
            self.failures["audit_head"].append(r.stdout + r.stderr)

    def chaos(self, duration: float, t0: float) -> None:
        try:
            self._chaos(duration, t0)
        except BaseException as exc:  # noqa: BLE001 - reported by the sender
            self.chaos_error = exc
            import traceback

            traceback.print_exc()

    def _chaos(self, duration: float, t0: float) -> None:
        rnd = self.chaos_rnd
        kills = self.args.kills
        kill_at = sorted(rnd.uniform(0.03, 0.9) * duration for _ in range(kills))
        start_kills = set(rnd.sample(range(kills), min(kills, self.args.start_kills)))
        ready = now()
        for k, at in enumerate(kill_at):
            wait = max(t0 + at, ready + rnd.uniform(0.2, 0.8)) - now()
            if wait > 0:
                time.sleep(wait)
            self.check_phantoms(f"before kill {k + 1}")
            done = self.before_kill(k)
            killed_at = now() - t0
            if k == kills // 2:
                self.note_head()
            self.proxy.stop(signal.SIGKILL)
            down = rnd.uniform(0.2, 1.5)  # the OMS keeps sending into its own store meanwhile
            time.sleep(down)
            start_kill = ""
            if k in start_kills:  # killed once more while it starts (recovers), then started again
                self.spawn_proxy()
                time.sleep(rnd.uniform(0.3, 2.5))
                start_kill = (
                    "before started"
                    if not any(r.get("event") == "started" for r in self.proxy_log.events)
                    else "after started"
                )
                self.proxy.stop(signal.SIGKILL)
                self.start_kills.append(start_kill)
            _, start_s, started = self.start_proxy()
            self.wait_up()
            up_s = now() - t0 - killed_at
            self.check_desk_state(k)
            open_n = self.check_phantoms(f"after restart {k + 1}")
            # at_s: when killed; down_s: how long it stayed down; start_s: from its start to its "started"
            # line; up_s: from the kill to both sessions up again; replayed: journal inputs replayed on
            # start; open: orders open at the proxy after the restart; desk: the changes made before the
            # kill; then what recovery reconciled with the FIX stores, when not nothing
            recovered = next((r for r in self.proxy_log.events if r.get("event") == "recovered"), {})
            fixed = {
                name: recovered[name]
                for name in ("not_sent_to_venue", "oms_resent", "sent_not_journaled")
                if recovered.get(name)
            }
            self.restarts.append(
                {
                    "kill": k + 1,
                    "at_s": round(killed_at, 2),
                    "down_s": round(down, 2),
                    "start_s": round(start_s, 2),
                    "up_s": round(up_s, 2),
                    "replayed": started.get("inputs_replayed"),
                    "open": open_n,
                    "desk": "; ".join(done),
                    **({"start_kill": start_kill} if start_kill else {}),
                    **fixed,
                }
            )
            print(
                f"soak: kill {k + 1}/{kills} at {killed_at:.1f}s, up again after {up_s:.1f}s "
                f"(start {start_s:.1f}s, {started.get('inputs_replayed')} inputs replayed); {self.n} messages "
                f"sent so far",
                file=sys.stderr,
                flush=True,
            )
            ready = now()
        for scope in sorted(self.expect_halted):
            self.halt(scope, "resume", kills)

    # -- the run

    def run(self) -> int:
        args = self.args
        behaviours = [x for s, (_, b) in SYMBOLS.items() for x in ("--behaviour", f"{s}={b}")]
        keep = self.args.keep
        venue = Proc(
            "venue",
            fixproxy_command(
                "sim", "venue", "--config", str(self.config), *behaviours, "--state-dir", str(self.root / "venue")
            ),
            self.root,
            on_line=self.venue_seen.on_line,
            keep=KEEP_LINES,
            save=self.root / "venue-sim.jsonl" if keep else None,
        )
        self.procs.append(venue)
        deadline = now() + 30
        while "listening" not in venue.tail(5) and now() < deadline:
            time.sleep(0.05)
        self.start_proxy()
        self.wait_proxy(lambda r: r.get("event") == "session_up" and r.get("detail") == "sim", 30)
        if self.drop_copy:  # logged on before the first order: its first Logon resets both sides to 1
            self.drop_copy.start()
            self.wait_proxy(lambda r: r.get("event") == "session_up" and r.get("detail") == DROP_COPY, 30)
        self.oms = Proc(
            "oms",
            fixproxy_command(
                "sim", "oms", "--config", str(self.config), "--stdin", "--state-dir", str(self.root / "oms")
            ),
            self.root,
            stdin=True,
            on_line=self.tracker.on_line,
            keep=KEEP_LINES,
            save=self.root / "oms-sim.jsonl" if keep else None,
        )
        self.procs.append(self.oms)
        deadline = now() + 30
        while not any(e == "logon" for _, e in self.tracker.events):
            if now() > deadline:
                raise RuntimeError("the OMS simulator did not log on:\n" + self.oms.tail())
            time.sleep(0.05)
        duration = args.minutes * 60
        t0 = now()
        chaos = threading.Thread(target=self.chaos, args=(duration, t0), daemon=True)
        chaos.start()
        seconds, sent = self.send_loop(duration, chaos)
        chaos.join()
        if self.chaos_error is not None:
            raise RuntimeError("the kill thread failed") from self.chaos_error
        print(f"soak: {sent} messages in {seconds:.1f}s; quiescing", file=sys.stderr, flush=True)
        return self.finish(seconds, sent)

    def finish(self, seconds: float, sent: int) -> int:
        t = self.tracker
        # Quiesce: every message answered (or 30 s).
        deadline = now() + 30
        while t.outstanding() and now() < deadline:
            time.sleep(0.2)
        unanswered = t.outstanding()
        self.check_phantoms("before the end-of-run cancels")
        # Cancel whatever still works so that every order ends.
        end_cancels = 0
        for round_ in range(3):
            open_orders = self.api.open_orders()
            if not open_orders:
                break
            lines = []
            for o in open_orders:
                root = t.root_of.get(o["cl_ord_id"])
                order = t.orders.get(root) if root else None
                if order is None:
                    self.failures["open_order_unknown_to_oms"].append(o)
                    continue
                cl = f"END{round_}.{end_cancels}"
                end_cancels += 1
                t.request(cl, order, "F")
                side = "1" if o["side"] == "buy" else "2"
                lines.append(
                    f"35=F|11={cl}|41={o['cl_ord_id']}|55={o['symbol']}|54={side}|38={o['order_qty']}|1={o['account']}"
                )
            self.send_lines(lines)
            deadline = now() + 30
            while now() < deadline and (t.outstanding() or self.api.open_orders()):
                time.sleep(0.5)
        time.sleep(1)
        left_open = self.api.open_orders()
        self.checks["end_orders_empty"] += 1
        if left_open:
            self.failures["open_after_end_cancels"].append({"count": len(left_open), "orders": left_open[:20]})
        self.check_phantoms("after the end-of-run cancels")
        positions = self.api.get("/api/v1/positions")
        audit_wait = self.wait_audit()
        audit_rows = self.read_audit()
        drop_copy = self.wait_drop_copy()
        # Stop the proxy (its follower writes a last checkpoint), then verify the chain at rest.
        self.proxy.stop(signal.SIGTERM, timeout=30)
        cmd = [sys.executable, "-m", "fixproxy", "audit", "verify", "--config", str(self.config)]
        if self.head_noted:
            cmd += ["--expect-head", self.head_noted]
        verify = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=self.root)
        return self.reconcile(
            seconds, sent, unanswered, end_cancels, positions, audit_wait, audit_rows, verify, drop_copy
        )

    def wait_audit(self) -> dict:
        """Poll /healthz until the audit follower has caught up with the journal (lag 0 and its record
        count steady for a second), at most 60 s."""
        start = now()
        last, steady_since, audit = None, now(), {}
        while now() - start < 60:
            audit = self.api.get("/healthz").get("audit", {})
            count = audit.get("records")
            if count != last:
                last, steady_since = count, now()
            if audit.get("state") == "ok" and audit.get("lag_bytes") == 0 and now() - steady_since >= 1.0:
                break
            time.sleep(0.25)
        return {
            "state": audit.get("state"),
            "lag_bytes": audit.get("lag_bytes"),
            "records": audit.get("records"),
            "restarts": audit.get("restarts"),
            "checkpoints_written": audit.get("checkpoints_written"),
            "waited_s": round(now() - start, 2),
        }

    def read_audit(self) -> dict[tuple[str, int], list[tuple[str, str]]]:
        db = sqlite3.connect(f"file:{self.root / 'var' / 'audit.sqlite'}?mode=ro", uri=True, timeout=30)
        try:
            rows = db.execute(
                "SELECT direction, msg_type, cl_ord_id, data FROM records WHERE kind = 'message' AND session = ?",
                (SESSION,),
            ).fetchall()
        finally:
            db.close()
        out: dict[tuple[str, int], list[tuple[str, str]]] = defaultdict(list)
        for direction, msg_type, cl, data in rows:
            raw = json.loads(data)["raw"]
            m = re.search("\x0134=(\\d+)\x01", raw)
            out[(direction, int(m.group(1)) if m else -1)].append((msg_type, cl))
        return out

    def wait_drop_copy(self) -> dict:
        """Wait until the drop copy has a copy of everything the OMS saw (or no copy came for 5 s, at
        most 60 s), stop its client, and reconcile its copies with what the OMS saw."""
        if self.drop_copy is None:
            return {}
        start = now()
        while now() - start < 60:
            result = self.reconcile_drop_copy()
            with self.drop_copy.lock:
                quiet = now() - self.drop_copy.last_copy_at >= 5
            if not result["missing"] or quiet:
                break
            time.sleep(0.5)
        self.drop_copy.stop()
        if self.args.keep:
            with (self.root / "drop-copy.jsonl").open("w") as f:
                f.writelines(json.dumps(c) + "\n" for c in self.drop_copy.copies)
        result = self.reconcile_drop_copy()
        result["waited_s"] = round(now() - start, 2)
        return result

    def reconcile_drop_copy(self) -> dict:
        """The drop copy's ExecutionReports against the OMS's: a repeat marked 43=Y or 97=Y of an ExecID
        already read is dropped; every report the OMS saw (by ExecID) has one copy with 115 = the OMS's
        CompID and the same COPY_TAGS; every other copy is the copy of a new order the proxy refused with
        35=j (matched on ClOrdID and reject code)."""
        t, dc = self.tracker, self.drop_copy
        with t.lock:
            reports = dict(t.report_copy)
            refusals = Counter(t.refusals)
        with dc.lock:
            copies = list(dc.copies)
        first: dict[str, dict[str, str]] = {}
        repeats, unmarked = 0, []
        for c in copies:
            exec_id = c.get("17", "")
            if exec_id in first:
                if c.get("43") == "Y" or c.get("97") == "Y":
                    repeats += 1
                else:
                    unmarked.append(c)
                continue
            first[exec_id] = c
        missing = [
            {"exec_id": x, "oms": dict(zip(COPY_TAGS, v, strict=True))} for x, v in reports.items() if x not in first
        ]
        differ, extra = [], []
        refusal_copies: Counter = Counter()
        for exec_id, c in first.items():
            want = reports.get(exec_id)
            got = tuple(c.get(tag, "") for tag in COPY_TAGS)
            if want is not None:
                if want != got or c.get("115") != OMS_COMP_ID:
                    differ.append({"exec_id": exec_id, "oms": want, "copy": got, "115": c.get("115")})
                continue
            code = CODE.match(c.get("58", ""))
            key = (c.get("11", ""), code.group(1) if code else "")
            if c.get("150") == "8" and c.get("39") == "8" and refusal_copies[key] < refusals[key]:
                refusal_copies[key] += 1
                if c.get("115") != OMS_COMP_ID:
                    differ.append({"exec_id": exec_id, "refusal": key, "115": c.get("115")})
            else:
                extra.append({k: v for k, v in c.items() if k in ("11", "17", "39", "150", "58", "43", "97", "34")})
        refusals_missing = [
            {"cl_ord_id": k[0], "code": k[1], "times": n} for k, n in (refusals - refusal_copies).items()
        ]
        with dc.lock:
            problems = list(dc.problems)
        return {
            "copies": len(copies),
            "copies_43": sum(1 for c in copies if c.get("43") == "Y"),  # resent on a ResendRequest
            "copies_97": sum(1 for c in copies if c.get("97") == "Y"),
            "repeats_dropped_43_97": repeats,
            "repeated_unmarked": len(unmarked),
            "oms_reports": len(reports),
            "oms_refusals_35j": sum(refusals.values()),
            "reports_copied": len(reports) - len(missing),
            "refusals_copied": sum(refusal_copies.values()),
            "missing": len(missing) + len(refusals_missing),
            "extra": len(extra),
            "differ": len(differ),
            "connects": dc.connects,
            "logons": dc.logons,
            "resend_requests_sent": dc.resend_requests,
            "gap_fills_read": dc.gap_fills,
            "session_repeats_ignored": dc.session_repeats,
            "resend_requests_answered": dc.resend_requests_answered,
            "session_problems": len(problems),
            "details": {
                "missing": (missing + refusals_missing)[:20],
                "extra": extra[:20],
                "differ": differ[:20],
                "repeated_unmarked": unmarked[:20],
                "session_problems": problems[:20],
            },
        }

    def reconcile(
        self, seconds, sent, unanswered, end_cancels, positions, audit_wait, audit_rows, verify, drop_copy
    ) -> int:
        t = self.tracker
        fail = self.failures
        orders = t.orders
        # Each order: exactly one final outcome.
        no_final = [r for r, o in orders.items() if not o.finals]
        twice = {r: o.finals for r, o in orders.items() if len(o.finals) > 1}
        if no_final:
            fail["orders_without_final_outcome"] = [self.order_detail(r) for r in no_final[:20]] + [
                {"count": len(no_final)}
            ]
        if twice:
            fail["orders_with_two_final_outcomes"] = [{**self.order_detail(r)} for r in list(twice)[:20]] + [
                {"count": len(twice)}
            ]
        if t.exec_repeats_unmarked:
            fail["reports_repeated_unmarked"] = [*t.exec_repeats_unmarked[:20], {"count": len(t.exec_repeats_unmarked)}]
        if t.unknown:
            fail["reports_for_unknown_orders"] = [*t.unknown[:20], {"count": len(t.unknown)}]
        if t.wire_conflicts:
            fail["seq_reused_for_another_message"] = t.wire_conflicts[:20]
        outcomes = Counter(o.finals[0].split(":")[0] for o in orders.values() if o.finals)
        reject_codes = Counter(o.finals[0].split(":", 1)[1] for o in orders.values() if o.finals and ":" in o.finals[0])
        # The venue: each order, replace and cancel at most once; every forwarded order there.
        with self.venue_seen.lock:
            at_venue = Counter(self.venue_seen.received)
            possdup = Counter(self.venue_seen.possdup)
        twice_at_venue = {f"{k[0]} {k[1]}": c for k, c in at_venue.items() if c > 1}
        if twice_at_venue:
            fail["at_venue_twice"] = [
                {"message": k, "times": c, "possdup": possdup.get(tuple(k.split(" ", 1)), 0)}
                for k, c in list(twice_at_venue.items())[:20]
            ]
        venue_orders = {cl.split(".", 1)[1] for (mt, cl) in at_venue if mt == "D"}
        forwarded = {r for r, o in orders.items() if o.forwarded}
        refused = {r for r, o in orders.items() if o.finals and o.finals[0].startswith("rejected:")}
        not_at_venue = sorted(forwarded - venue_orders)
        strangers = sorted(r for r in venue_orders if r not in orders)
        refused_but_at_venue = sorted(refused & venue_orders)
        if not_at_venue:
            fail["forwarded_but_not_at_venue"] = [self.order_detail(r) for r in not_at_venue[:20]]
        if refused_but_at_venue:
            fail["refused_but_at_venue"] = [self.order_detail(r) for r in refused_but_at_venue[:20]]
        if strangers:
            fail["at_venue_never_sent_by_oms"] = strangers[:20]
        # Positions equal the fills the OMS received, per account and symbol.
        pos: Counter = Counter()
        for p in positions:
            pos[(p["account"], p["symbol"])] += Decimal(p["qty"])
        keys = set(pos) | set(t.fills)
        mismatch = {
            f"{a} {s}": {"proxy": str(pos.get((a, s), 0)), "oms_fills": str(t.fills.get((a, s), 0))}
            for a, s in sorted(keys)
            if pos.get((a, s), 0) != t.fills.get((a, s), 0)
        }
        if mismatch:
            fail["positions_differ_from_fills"] = [mismatch]
        fills_by_symbol: Counter = Counter()
        pos_by_symbol: Counter = Counter()
        for (_, symbol), q in t.fills.items():
            fills_by_symbol[symbol] += q
        for (_, symbol), q in pos.items():
            pos_by_symbol[symbol] += q
        # Audit: every message on the OMS session has its record.
        with t.lock:
            wire = dict(t.wire)
        missing = sorted(k for k in wire if k not in audit_rows)
        differ = [
            {"direction": k[0], "seq": k[1], "oms": wire[k], "audit": audit_rows[k]}
            for k in sorted(wire)
            if k in audit_rows and wire[k] not in audit_rows[k]
        ]
        # A message the audit says went over the session that the OMS never saw (under that seq).
        extra = sorted((k, ident) for k, idents in audit_rows.items() for ident in set(idents) if wire.get(k) != ident)
        dup = {f"{k[0]} {k[1]}": v for k, v in audit_rows.items() if len(v) > 1}
        if missing:
            fail["audit_records_missing"] = [
                {"direction": k[0], "seq": k[1], "message": wire[k]} for k in missing[:30]
            ] + [{"count": len(missing)}]
        if differ:
            fail["audit_records_differ"] = differ[:20]
        two_messages = {k: v for k, v in dup.items() if len(set(v)) > 1}  # the same seq, different messages
        if two_messages:
            fail["audit_seq_with_two_messages"] = [two_messages]
        if extra:
            fail["audit_messages_the_oms_never_saw"] = [
                {"direction": k[0], "seq": k[1], "audit": ident, "oms_saw": wire.get(k)} for k, ident in extra[:20]
            ] + [{"count": len(extra)}]
        audit_report = {
            "oms_messages": len(wire),
            "records_matched": len(wire) - len(missing),
            "records_missing": len(missing),
            "records_differing": len(differ),
            "records_not_seen_by_oms": len(extra),
            "seq_recorded_twice": len(dup),
            "follower": audit_wait,
        }
        if verify.returncode != 0:
            fail["audit_verify"] = [(verify.stdout + verify.stderr).strip()[-3000:]]
        audit_report["verify"] = "ok" if verify.returncode == 0 else f"exit {verify.returncode}"
        audit_report["verify_output"] = verify.stdout.strip().splitlines()[-6:]
        audit_report["expect_head"] = self.head_noted
        if unanswered:
            fail["unanswered_after_quiesce"] = [
                self.order_detail(t.root_of[cl]) | {"unanswered": cl} for cl in unanswered[:20]
            ] + [{"count": len(unanswered)}]
        if t.send_failed:
            fail["oms_send_failed"] = [t.send_failed]
        if self.args.kills and len(self.restarts) != self.args.kills:
            fail["restarts"] = [f"{len(self.restarts)} of {self.args.kills}"]
        drop_copy_report = {k: v for k, v in drop_copy.items() if k != "details"}
        for what in ("missing", "extra", "differ", "repeated_unmarked", "session_problems"):
            if drop_copy.get(what):
                fail["drop_copy_" + what] = drop_copy["details"][what]
        first = t.oms_out_first
        oms_rate = (len(first) - 1) / (first[-1] - first[0]) if len(first) > 1 and first[-1] > first[0] else 0.0
        report = {
            "engine": self.args.engine,
            "minutes": self.args.minutes,
            "rate_target": self.args.rate,
            "seed": self.args.seed,
            "seconds": round(seconds, 1),
            "messages": sent,
            "message_kinds": dict(self.kinds),
            "rate_achieved": round(sent / seconds, 1),
            "oms_first_send_rate": round(oms_rate, 1),
            "orders": len(orders),
            "probe_orders": sum(1 for o in orders.values() if o.probe),
            "end_cancels": end_cancels,
            "restarts": len(self.restarts),
            "kills_during_start": dict(Counter(self.start_kills)),
            "kills_at_s": [r["at_s"] for r in self.restarts],
            "restart_seconds_max": max((r["up_s"] for r in self.restarts), default=0),
            "outcomes": dict(outcomes),
            "reject_codes": dict(reject_codes),
            "cancel_replace_refused": dict(t.cancel_rejects),
            "fills_by_symbol": {k: str(v) for k, v in sorted(fills_by_symbol.items())},
            "positions_by_symbol": {k: str(v) for k, v in sorted(pos_by_symbol.items())},
            "repeats_dropped_43_97": t.exec_repeats_marked,
            "proxy_error_lines": [e for log in self.proxy_logs for e in log.errors][:10],
            "checks": {
                "unanswered_after_quiesce": len(unanswered),
                "orders_one_final_outcome": len(orders) - len(no_final) - len(twice),
                "orders_without_final": len(no_final),
                "orders_with_two_finals": len(twice),
                "reports_repeated_unmarked": len(t.exec_repeats_unmarked),
                "orders_at_venue": len(venue_orders),
                "at_venue_twice": len(twice_at_venue),
                "forwarded_but_not_at_venue": len(not_at_venue),
                "refused_but_at_venue": len(refused_but_at_venue),
                "positions_equal": len(keys) - len(mismatch),
                "position_mismatches": len(mismatch),
                "phantom_checks": self.checks["phantom_checks"],
                "phantom_orders": sum(x["count"] for x in fail.get("phantom_working_orders", [])),
                "open_after_end_cancels": len(fail.get("open_after_end_cancels", [{}])[0].get("orders", []))
                if fail.get("open_after_end_cancels")
                else 0,
                "trading_state_checks": self.checks["trading_states"],
                "trading_state_failures": len(fail.get("trading_states", [])),
                "limit_checks": self.checks["limits"],
                "limit_failures": len(fail.get("limits", [])),
                "probes": {k: v for k, v in self.checks.items() if k.startswith("probe")},
                "probe_failures": sum(
                    len(fail.get(k, [])) for k in ("probe_max_order_qty", "probe_account", "probe_symbol")
                ),
                "audit": audit_report,
                **({"drop_copy": drop_copy_report} if drop_copy else {}),
            },
            "restart_details": self.restarts,
        }
        print(dump(report))
        exact = not fail
        if not exact:
            print(json.dumps(fail, indent=2, default=str), file=sys.stderr)
        print("reconciliation: " + ("EXACT" if exact else "NOT EXACT"))
        if self.args.keep:
            print(f"soak: state kept in {self.root}", file=sys.stderr)
        return 0 if exact else 1

    def order_detail(self, root: str) -> dict:
        o = self.tracker.orders[root]
        ids = sorted(cl for cl, r in self.tracker.root_of.items() if r == root)
        return {
            "order": root,
            "ids": ids,
            "symbol": o.symbol,
            "account": o.account,
            "finals": o.finals,
            "forwarded": o.forwarded,
            "answered": o.answered,
            "probe": o.probe,
        }

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(timeout=20)
        if not self.args.keep:
            shutil.rmtree(self.root, ignore_errors=True)


def dump(value, indent: int = 0) -> str:
    """JSON, one line per value that fits in 180 characters (a restart's details, say); scalars packed."""
    flat = json.dumps(value, default=str)
    if len(flat) + indent <= 180 or not isinstance(value, (dict, list)) or not value:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(k)}: {dump(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if all(not isinstance(v, (dict, list)) for v in value):  # scalars: as many to a line as fit
        lines, line = [], ""
        for v in value:
            item = json.dumps(v, default=str)
            if line and len(pad) + len(line) + len(item) + 2 > 110:
                lines.append(line + ",")
                line = ""
            line = f"{line}, {item}" if line else item
        lines.append(line)
        return "[\n" + "\n".join(pad + x for x in lines) + "\n" + " " * indent + "]"
    return "[\n" + ",\n".join(pad + dump(v, indent + 2) for v in value) + "\n" + " " * indent + "]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--rate", type=float, default=500.0, help="order messages (D, F, G) per second")
    p.add_argument("--kills", type=int, default=20, help="SIGKILL restarts of the proxy, at random moments")
    p.add_argument(
        "--start-kills",
        type=int,
        default=0,
        help="of those restarts, how many are killed once more while the proxy starts (recovers)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--engine", choices=("quickfix", "native"), default="quickfix", help="the proxy's FIX engine")
    p.add_argument(
        "--drop-copy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a drop-copy session logged on through the run, its copies reconciled with the OMS's reports",
    )
    args = p.parse_args(argv)
    soak = Soak(args)
    try:
        return soak.run()
    finally:
        soak.close()


if __name__ == "__main__":
    sys.exit(main())
