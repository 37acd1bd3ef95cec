"""Audit trail and replay over a real session: OMS simulators -> proxy -> venue simulator, then the records."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from fixproxy.audit import open_for_reading
from fixproxy.audit.query import Filters, select
from fixproxy.cli import main

from .harness import Stack, messages

# (session, line sent, what the OMS gets back: (MsgType, tag, value) that ends the exchange)
TRAFFIC = [
    ("oms1", "35=D|11=A1|55=AAPL|54=1|38=100|40=2|44=190", ("8", "39", "2")),
    ("oms1", "35=D|11=A2|55=AAPL|54=1|38=20000|40=2|44=190", ("j", "379", "A2")),
    ("oms1", "35=D|11=A3|55=AAPL|54=1|38=100|40=2|44=250", ("j", "379", "A3")),
    ("oms1", "35=D|11=A4|55=MSFT|54=1|38=100|40=2|44=410", ("8", "39", "0")),
    ("oms1", "35=G|11=A4-R|41=A4|55=MSFT|54=1|38=200|40=2|44=411", ("8", "150", "5")),
    ("oms1", "35=F|11=A4-C|41=A4-R|55=MSFT|54=1|38=200", ("8", "39", "4")),
    ("oms1", "35=D|11=A5|55=ZZZZ|54=1|38=100|40=2|44=10", ("j", "379", "A5")),
    ("oms1", "35=D|11=A1|55=AAPL|54=1|38=5|40=2|44=190", ("j", "58", None)),  # the same ClOrdID again
    ("oms1", "35=D|11=A6|55=AAPL|54=1|38=60|40=2|44=190|1=SMALL", ("j", "379", "A6")),
    ("oms1", "35=H|11=S1|55=AAPL|54=1", ("j", "372", "H")),
    ("oms2", "35=D|11=B1|55=AAPL|54=1|38=300|40=2|44=190", ("8", "39", "2")),
    ("oms2", "35=D|11=B2|55=AAPL|54=1|38=20000|40=2|44=190", ("8", "39", "8")),
]
EXPECTED = {  # (session, ClOrdID, MsgType) -> recorded decision
    ("oms1", "A1", "D"): "accept",
    ("oms1", "A2", "D"): "MAX_ORDER_QTY",
    ("oms1", "A3", "D"): "PRICE_COLLAR",
    ("oms1", "A4", "D"): "accept",
    ("oms1", "A4-R", "G"): "accept",
    ("oms1", "A4-C", "F"): "accept",
    ("oms1", "A5", "D"): "UNKNOWN_SYMBOL",
    ("oms1", "A6", "D"): "MAX_ORDER_QTY",
    ("oms1", "", "H"): "UNSUPPORTED_MESSAGE",
    ("oms2", "B1", "D"): "accept",
    ("oms2", "B2", "D"): "MAX_ORDER_QTY",
}


@pytest.fixture(scope="module")
def day(tmp_path_factory, engine):
    """One short trading session through the proxy, then the proxy stopped (which flushes the audit store)."""
    s = Stack(tmp_path_factory.mktemp("audit_day"), behaviours={"MSFT": "ack"})
    try:
        oms = {name: s.connect(name) for name in ("oms1", "oms2")}
        for session, line, (msg_type, tag, value) in TRAFFIC:
            sim = oms[session]
            start = sim.mark()
            sim.send_line(line)
            want = {"35": msg_type, **({tag: value} if value else {})}
            sim.wait_for(messages(sim)(**want), start=start)
        s.proxy.stop()
        yield s
    finally:
        s.close()


def store(day) -> Path:
    return day.root / "var" / "audit.sqlite"


def copy_store(day, dest: Path) -> Path:
    """A copy through SQLite's backup API (it includes anything still in the WAL file)."""
    src = sqlite3.connect(store(day))
    dst = sqlite3.connect(dest)
    src.backup(dst)
    src.close()
    dst.execute("DROP TRIGGER records_no_update")
    dst.execute("DROP TRIGGER records_no_delete")
    dst.commit()
    dst.close()
    return dest


def tampered_copy(day, dest: Path, sql: str, **filters) -> int:
    """A copy of the store with ``sql`` run on the first record matching ``filters``; that record's seq."""
    copy_store(day, dest)
    seq = select(open_for_reading(dest), Filters(**filters))[0].seq
    conn = sqlite3.connect(dest)
    conn.execute(sql, (seq,))
    conn.commit()
    conn.close()
    return seq


def test_session_records_every_decision_and_message(day):
    """Each order message has its inbound message and its decision in the store; accepted ones reach the venue."""
    db = open_for_reading(store(day))
    decisions = {
        (r.session, r.cl_ord_id, r.msg_type): r.decision if r.decision == "accept" else r.code
        for r in select(db, Filters(kind="decision"))
    }
    dup = [r for r in select(db, Filters(kind="decision", cl_ord_id="A1"))]
    assert [d.code for d in dup] == ["", "DUPLICATE_CLORDID"]
    decisions.pop(("oms1", "A1", "D"))
    assert decisions == {k: v for k, v in EXPECTED.items() if k != ("oms1", "A1", "D")}
    inbound = select(db, Filters(kind="message", session="oms1"))
    assert sum(1 for r in inbound if r.direction == "in") == 10
    to_venue = [
        (r.msg_type, r.cl_ord_id) for r in select(db, Filters(kind="message", session="sim")) if r.direction == "out"
    ]
    assert to_venue == [("D", "oms1.A1"), ("D", "oms1.A4"), ("G", "oms1.A4-R"), ("F", "oms1.A4-C"), ("D", "oms2.B1")]
    a2 = [(r.kind, r.direction, r.msg_type) for r in select(db, Filters(cl_ord_id="A2"))]
    assert a2 == [("message", "in", "D"), ("decision", "", "D"), ("message", "out", "j")]  # decision before answer


def test_chain_verifies_then_names_an_altered_and_a_deleted_row(day, tmp_path, capsys):
    """The real store verifies; changing one row, or deleting one, makes verify fail at exactly that row."""
    assert main(["audit", "verify", "--db", str(store(day))]) == 0
    assert "audit chain intact" in capsys.readouterr().out
    for name, sql, filters, problem in (
        (
            "altered",
            "UPDATE records SET code = 'PRICE_COLLAR' WHERE seq = ?",
            dict(kind="decision", cl_ord_id="A2"),
            "altered",
        ),
        ("deleted", "DELETE FROM records WHERE seq = ?", dict(kind="message", cl_ord_id="A3"), "deleted"),
    ):
        seq = tampered_copy(day, tmp_path / f"{name}.sqlite", sql, **filters)
        assert main(["audit", "verify", "--db", str(tmp_path / f"{name}.sqlite")]) == 1
        assert f"BROKEN at record {seq} ({problem})" in capsys.readouterr().out


def replayed(day, tmp_path, log: str, *extra: str) -> dict:
    out = tmp_path / "replay.json"
    main(["replay", log, "--config", str(day.config), "--no-progress", "--json", str(out), *extra])
    return json.loads(out.read_text())


@pytest.mark.parametrize("source", ["filelog", "audit", "journal"])
def test_replay_reproduces_every_recorded_decision(day, tmp_path, capsys, source):
    """Replaying the proxy's own FileLog (or its audit store, or its journal) gives every recorded decision
    again: zero differences."""
    log = {
        "filelog": str(day.root / "var" / "log"),
        "audit": str(store(day)),
        "journal": str(day.root / "var" / "journal"),
    }[source]
    doc = replayed(day, tmp_path, log)
    assert doc["summary"]["differences"] == 0 and doc["summary"]["original"]["unanswered"] == 0
    got = {}
    for row in doc["rows"]:
        assert (row["original"], row["original_code"]) == (row["replayed"], row["replayed_code"])
        got.setdefault(
            (row["session"], row["cl_ord_id"] if row["msg_type"] != "H" else "", row["msg_type"]),
            "accept" if row["replayed"] == "forwarded" else row["replayed_code"],
        )
    assert got == EXPECTED
    assert "differences: 0" in capsys.readouterr().out


def test_replay_with_tighter_limits_reports_the_extra_rejects(day, tmp_path):
    """A 150-share firm limit would have blocked B1 (300) and the replace to 200; the cancel then finds no order."""
    limits = tmp_path / "tight.toml"
    limits.write_text(
        "[limits.firm]\nmax_order_qty = 150\nmax_order_notional = 1000000\nprice_collar_pct = 5\n"
        "reference_max_age_s = 86400\n\n[limits.accounts.SMALL]\nmax_order_qty = 50\n"
    )
    doc = replayed(day, tmp_path, str(day.root / "var" / "log"), "--limits", str(limits))
    diffs = [(r["cl_ord_id"], r["original"], r["replayed_code"]) for r in doc["rows"] if r["differs"]]
    assert diffs == [
        ("A4-R", "forwarded", "MAX_ORDER_QTY"),
        ("A4-C", "forwarded", "UNKNOWN_ORDER"),
        ("B1", "forwarded", "MAX_ORDER_QTY"),
    ]
    assert doc["summary"]["would_block"] == {"MAX_ORDER_QTY": 2, "UNKNOWN_ORDER": 1}


def test_two_replays_of_the_session_write_identical_files(day, tmp_path):
    """Same logs, same arguments: the CSV, JSON and HTML files are byte-identical."""
    files = []
    for n in (1, 2):
        args = ["replay", str(day.root / "var" / "log"), "--config", str(day.config), "--no-progress"]
        for kind in ("csv", "json", "html"):
            args += [f"--{kind}", str(tmp_path / f"{n}.{kind}")]
        main(args)
        files.append([(tmp_path / f"{n}.{kind}").read_bytes() for kind in ("csv", "json", "html")])
    assert files[0] == files[1] and b"<svg" in files[0][2]


def test_report_and_show_read_the_session_store(day, capsys):
    """The end-of-day report counts the session's rejects by rule; show lists one order's whole story."""
    assert main(["report", "--db", str(store(day)), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rejects_by_rule"] == {
        "MAX_ORDER_QTY": 3,
        "DUPLICATE_CLORDID": 1,
        "PRICE_COLLAR": 1,
        "UNKNOWN_SYMBOL": 1,
        "UNSUPPORTED_MESSAGE": 1,
    }
    assert report["rejects_by_account"]["SMALL"] == 1 and report["chain"]["ok"]
    assert main(["audit", "show", "--db", str(store(day)), "--cl-ord-id", "B1", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    story = [(f[2], f[3], f[4]) for f in (line.split(",") for line in lines[1:])]  # kind, session, direction
    assert story[:3] == [("message", "oms2", "in"), ("decision", "oms2", ""), ("message", "sim", "out")]
    # The venue's ack and fill, each relayed: a fill may arrive while the ack is still being relayed.
    assert sorted(story[3:]) == [("message", "oms2", "out")] * 2 + [("message", "sim", "in")] * 2
