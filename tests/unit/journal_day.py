"""A trading day as the proxy journals it, for the audit follower's and ``audit verify``'s tests.

``Day`` writes real journal segments (``journal.writer.Journal``) and real FIX session stores
(the native engine's ``FileStore``, quickfix's file format): an order is received (I), decided
(A), sent to the venue or rejected (O, stored in the session store before it is journaled, as
both engines do), and the venue's answer received and relayed. No core, no sockets.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from fixproxy.audit.follower import Follower, journal_draft
from fixproxy.audit.records import Record, digest
from fixproxy.audit.store import iter_records, open_for_reading
from fixproxy.core import events as ev
from fixproxy.engines.native.store import FileStore
from fixproxy.fix import build
from fixproxy.journal import format as fmt
from fixproxy.journal.reader import read_segment, segments
from fixproxy.journal.writer import Journal

KEY = b"k3y-for-the-audit-checkpoints!!"
OMS, VENUE = ("FIX.4.4", "FIXPROXY", "OMS1"), ("FIX.4.4", "FIXPROXY", "VENUE")


def prefix(session: tuple[str, str, str]) -> str:
    return "-".join(session)


class Day:
    """One proxy run: a journal segment and the session stores it sends through."""

    def __init__(self, root: Path, segment: int = 1, *, pid: int = 0, now_ns: int | None = None):
        self.root = Path(root)
        self.now = self.start_ns = time.time_ns() if now_ns is None else now_ns
        self.journal = Journal(self.root / "journal", segment, fmt.Start(segment, self.now, pid, "config test.toml"))
        self.stores = {
            "oms1": FileStore(self.root / "store" / "oms", prefix(OMS), self.now),
            "sim": FileStore(self.root / "store" / "venue", prefix(VENUE), self.now),
        }
        self.sessions = {"oms1": OMS, "sim": VENUE}
        self.oms_seq = 1
        self.orders = 0

    def tick(self, ns: int = 1_000_000) -> int:
        self.now += ns
        return self.now

    def receive(self, session: str, msg_type: str, body: list[tuple[int, str]]) -> None:
        begin, ours, theirs = self.sessions[session]
        self.oms_seq += 1
        raw = build.build(begin, msg_type, self.oms_seq, theirs, ours, build.stamp(self.now), body).decode()
        self.journal.inbound(session, self.tick(), raw)

    def send(self, session: str, msg_type: str, body: list[tuple[int, str]], *, journal: bool = True) -> int:
        """Store the message in the session store, then journal it (``journal=False``: killed in between)."""
        begin, ours, theirs = self.sessions[session]
        store = self.stores[session]
        seq = store.next_sender
        data = build.build(begin, msg_type, seq, ours, theirs, build.stamp(self.tick()), body)
        store.sent(seq, data)
        if journal:
            self.journal.outbound(session, self.now, data.decode())
        return seq

    def order(self, accept: bool = True, qty: int = 100) -> str:
        self.orders += 1
        cl = f"C{self.orders}"
        self.receive(
            "oms1", "D", [(11, cl), (1, "ACC1"), (55, "AAPL"), (54, "1"), (38, str(qty)), (40, "2"), (44, "100")]
        )
        if accept:
            self.journal.action(
                ev.Decision("oms1", "D", cl, True, self.now, account="ACC1", symbol="AAPL", venue="sim")
            )
            self.send("sim", "D", [(11, f"oms1.{cl}"), (1, "ACC1"), (55, "AAPL"), (54, "1"), (38, str(qty))])
            self.receive("sim", "8", [(11, f"oms1.{cl}"), (17, f"X{cl}"), (150, "0"), (39, "0"), (55, "AAPL")])
            self.send("oms1", "8", [(11, cl), (17, f"X{cl}"), (150, "0"), (39, "0"), (55, "AAPL")])
        else:
            self.journal.action(
                ev.Decision(
                    "oms1",
                    "D",
                    cl,
                    False,
                    self.now,
                    "MAX_ORDER_QTY",
                    f"MAX_ORDER_QTY: order quantity {qty} exceeds the limit 1000 (firm)",
                    str(qty),
                    "1000",
                    "firm",
                    "ACC1",
                    "AAPL",
                )
            )
            self.send(
                "oms1",
                "j",
                [(45, str(self.oms_seq)), (372, "D"), (379, cl), (380, "0"), (58, "MAX_ORDER_QTY: too big")],
            )
        return cl

    def halt(self) -> None:
        self.journal.event(ev.AdminKill("account:ACC1", "halt", "runaway algo", "desk-risk", self.tick()))
        self.journal.action(
            ev.AdminResult("kill", True, "account:ACC1", "desk-risk", "runaway algo", self.now, "ACTIVE", "HALTED")
        )

    def trade(self, orders: int = 20) -> None:
        """A few orders, every fifth rejected, a halt in the middle, sessions going up."""
        self.journal.event(ev.SessionUp("sim", self.tick()))
        self.journal.action(ev.Notice("session_up", self.now, "sim"))
        for i in range(orders):
            self.order(accept=i % 5 != 4, qty=100 if i % 5 != 4 else 5000)
            if i == orders // 2:
                self.halt()

    def close(self) -> None:
        self.journal.close()
        for store in self.stores.values():
            store.close()


def follow(root: Path, key: bytes = b"", **kw) -> Follower:
    """Run a follower over the journal under ``root`` to its end, into ``root/audit.sqlite``."""
    f = Follower(root / "audit.sqlite", root / "journal", key=key, **kw)
    f.open()
    f.close()
    return f


def journal_drafts(root: Path) -> list[tuple]:
    """The audit drafts of every journal record under ``root``, in order."""
    out = []
    for seg in segments(root / "journal"):
        for off, kind, payload in read_segment(root / "journal" / f"{seg:08d}.journal"):
            draft = journal_draft(kind, payload, seg, off)
            if draft is not None:
                out.append(draft)
    return out


def stored(path: Path, *, checkpoints: bool = False) -> list[tuple]:
    """The store's records as drafts (every column but seq and prev_hash), checkpoints left out."""
    fields = Record.__struct_fields__[1:-1]
    return [
        tuple(getattr(r, f) for f in fields)
        for r, _ in iter_records(open_for_reading(path))
        if checkpoints or r.kind != "checkpoint"
    ]


def tamper(path: Path, *sql: str, params: tuple = ()) -> None:
    """What someone with write access would do: drop the guards, then change rows."""
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER IF EXISTS records_no_update")
    conn.execute("DROP TRIGGER IF EXISTS records_no_delete")
    for statement in sql:
        conn.execute(statement, params)
    conn.commit()
    conn.close()


def rehash_from(path: Path, seq: int) -> None:
    """Recompute every hash from record ``seq`` on, as someone without the key would after a rewrite."""
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER IF EXISTS records_no_update")
    rows = conn.execute("SELECT * FROM records ORDER BY seq").fetchall()
    prev = None
    for row in rows:
        record = Record(*row[:-1])
        if record.seq >= seq:
            record = Record(*row[:-2], prev)
            new = digest(record)
            conn.execute("UPDATE records SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, new, record.seq))
            prev = new
        else:
            prev = row[-1]
    conn.commit()
    conn.close()


def dead_pid() -> int:
    """A process id no process has (the journal's writer "is not running")."""
    pid = os.getpid() + 100_000
    while os.path.exists(f"/proc/{pid}"):
        pid += 1
    return pid
