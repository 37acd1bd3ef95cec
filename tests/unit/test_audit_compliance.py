"""What compliance reads: admin actions and alerts in words, an order's whole replace/cancel chain, final positions."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from fixproxy.audit import AuditWriter, open_for_reading, query
from fixproxy.audit.positions import final_positions
from fixproxy.audit.query import Filters, order_chain, render, select
from fixproxy.audit.report import build, render_text
from fixproxy.cli import main
from fixproxy.config import StartPosition
from fixproxy.core import events as ev
from fixproxy.timefmt import parse_when

T = parse_when("2026-11-25T14:00:00")
S = 1_000_000_000


def raw(msg_type: str, sender: str, target: str, **tags: str) -> str:
    body = "".join(f"{t}={v}\x01" for t, v in tags.items())
    return f"8=FIX.4.4\x0135={msg_type}\x0149={sender}\x0156={target}\x01{body}10=000\x01"


def oms_in(w: AuditWriter, msg_type: str, now: int, **tags: str) -> None:
    w.message("in", "oms1", raw(msg_type, "OMS1", "FIXPROXY", **tags), now)


def to_venue(w: AuditWriter, msg_type: str, now: int, **tags: str) -> None:
    w.message("out", "sim", raw(msg_type, "FIXPROXY", "VENUE", **tags), now)


def venue_report(w: AuditWriter, now: int, cl: str, exec_type: str, **tags: str) -> None:
    w.message("in", "sim", raw("8", "VENUE", "FIXPROXY", **{"11": cl, "150": exec_type, **tags}), now)


def fill(w: AuditWriter, now: int, cl: str, exec_id: str, qty: str, px: str, symbol: str = "AAPL") -> None:
    venue_report(w, now, cl, "F", **{"17": exec_id, "55": symbol, "32": qty, "31": px, "39": "1"})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A day: an order replaced then cancelled (C1 -> C2 -> C3), fills with a resent one and a bust, a sell,
    an account-less order, desk actions (halt and cancel, resume, a refused and an applied limit change), alerts."""
    path = tmp_path_factory.mktemp("compliance") / "audit.sqlite"
    w = AuditWriter(path)
    w.start()
    buy = {"1": "ACC1", "55": "AAPL", "54": "1"}
    oms_in(w, "D", T, **{"11": "C1", "38": "100", **buy})
    to_venue(w, "D", T + 1, **{"11": "oms1.C1", "38": "100", **buy})
    fill(w, T + 2, "oms1.C1", "E1", "60", "190")
    fill(w, T + 3, "oms1.C1", "E1", "60", "190")  # resent: applied once
    oms_in(w, "G", T + 4, **{"11": "C2", "41": "C1", "38": "200", **buy})
    to_venue(w, "G", T + 5, **{"11": "oms1.C2", "41": "oms1.C1", "38": "200", **buy})
    fill(w, T + 6, "oms1.C2", "E2", "40", "200")
    venue_report(w, T + 7, "oms1.C2", "H", **{"17": "B2", "19": "E2", "55": "AAPL", "39": "1"})  # E2 busted
    fill(w, T + 8, "oms1.C2", "E3", "20", "195")
    oms_in(w, "F", T + 9, **{"11": "C3", "41": "C2", **buy})
    to_venue(w, "F", T + 10, **{"11": "oms1.C3", "41": "oms1.C2", **buy})
    sell = {"1": "ACC1", "55": "AAPL", "54": "2", "38": "30"}
    oms_in(w, "D", T + 11, **{"11": "S1", **sell})
    to_venue(w, "D", T + 12, **{"11": "oms1.S1", **sell})
    fill(w, T + 13, "oms1.S1", "E4", "30", "210")
    bare = {"55": "MSFT", "54": "1", "38": "10"}
    oms_in(w, "D", T + 14, **{"11": "N1", **bare})
    to_venue(w, "D", T + 15, **{"11": "oms1.N1", **bare})
    fill(w, T + 16, "oms1.N1", "E5", "10", "400", "MSFT")
    fill(w, T + 17, "oms1.UNSENT", "E6", "500", "1")  # an order the proxy never sent: left out
    oms_in(w, "D", T + 18, **{"11": "Z1", **buy})  # unrelated order with its own chain
    w.record(ev.AdminKill("account:ACC1", "halt_and_cancel", "runaway algo", "alice", T + 20 * S))
    w.record(
        ev.AdminResult(
            "kill", True, "account:ACC1", "alice", "runaway algo", T + 20 * S, "ACTIVE", "HALTED",
            "halt_and_cancel: 2 working order(s) cancelled", 2,
        )
    )  # fmt: skip
    w.record(ev.AdminKill("account:ACC1", "resume", "algo fixed", "alice", T + 30 * S))
    w.record(
        ev.AdminResult(
            "kill", True, "account:ACC1", "alice", "algo fixed", T + 30 * S, "HALTED", "ACTIVE",
            "resume: 0 working order(s) cancelled",
        )
    )  # fmt: skip
    w.record(ev.AdminSetLimit("firm", "max_order_qty", -5, "typo", "bob", T + 40 * S))
    w.record(
        ev.AdminResult(
            "limit", False, "firm", "bob", "typo", T + 40 * S,
            detail="max_order_qty: max_order_qty must be a positive number, got -5",
        )
    )  # fmt: skip
    w.record(ev.AdminSetLimit("firm", "max_order_qty", 500, "volatile open", "bob", T + 41 * S))
    w.record(ev.AdminResult("limit", True, "firm", "bob", "volatile open", T + 41 * S, "10000", "500", "max_order_qty"))
    w.record(ev.AdminKill("nowhere:X", "halt", "bad scope", "carol", T + 42 * S))
    w.record(ev.AdminResult("kill", False, "nowhere:X", "carol", "bad scope", T + 42 * S, detail="bad scope"))
    w.record(
        ev.Alert(
            "max_gross_exposure", "firm", "70", "35000000", "50000000", T + 50 * S, "gross exposure of firm at 70%"
        )
    )
    w.record(ev.Alert("max_open_orders", "account:ACC1", "90", "9", "10", T + 51 * S))
    w.close()
    return path


def test_any_clordid_of_a_chain_gives_the_whole_chain(store):
    """Asked for the first, the middle or the last ClOrdID, audit show finds C1, C2 and C3 and their venue forms."""
    db = open_for_reading(store)
    for cl in ("C1", "C2", "C3"):
        assert sorted(order_chain(db, cl)) == ["C1", "C2", "C3"]
        ids = {r.cl_ord_id for r in select(db, Filters(cl_ord_id=cl))}
        assert ids == {"C1", "C2", "C3", "oms1.C1", "oms1.C2", "oms1.C3"}
    assert order_chain(db, "Z1") == ["Z1"]
    assert {r.cl_ord_id for r in select(db, Filters(cl_ord_id="S1"))} == {"S1", "oms1.S1"}


def test_show_command_lists_the_chain(store, capsys):
    """`audit show --cl-ord-id C3` (the cancel) lists the new order and the replace too."""
    assert (
        main(["audit", "show", "--db", str(store), "--cl-ord-id", "C3", "--kind", "message", "--format", "json"]) == 0
    )
    rows = [(o["direction"], o["msg_type"], o["cl_ord_id"]) for o in json.loads(capsys.readouterr().out)]
    assert rows[:2] == [("in", "D", "C1"), ("out", "D", "oms1.C1")]
    assert ("in", "G", "C2") in rows and ("in", "F", "C3") in rows and ("out", "F", "oms1.C3") in rows


def test_admin_records_say_the_action_the_field_and_refusals(store):
    """Halt and resume are told apart, a limit change names its field with before and after, a refusal says REFUSED."""
    records = select(open_for_reading(store), Filters(kind="admin"))
    with_commands = select(open_for_reading(store), Filters(start_ns=T + 19 * S))
    table = render(with_commands, "table")
    lines = [line for line in table.splitlines() if " admin " in line]
    assert "alice: halt and cancel account:ACC1 ACTIVE -> HALTED, applied; 2 working order(s) cancelled" in lines[0]
    assert "alice: resume account:ACC1 HALTED -> ACTIVE, applied (algo fixed)" in lines[1]
    assert "bob: limit firm max_order_qty REFUSED: max_order_qty must be a positive number, got -5 (typo)" in lines[2]
    assert "bob: limit firm max_order_qty 10000 -> 500, applied (volatile open)" in lines[3]
    assert "carol: halt nowhere:X REFUSED: bad scope (bad scope)" in lines[4]
    # Without the command records (--kind admin), the applied ones still say what they did.
    alone = render(records, "table")
    assert "alice: resume account:ACC1 HALTED -> ACTIVE" in alone and "REFUSED: bad scope" in alone
    assert "{" not in alone


def test_alerts_are_sentences_not_json(store):
    """An alert shows its text, or its limit, scope, level and values in words."""
    shown = render(select(open_for_reading(store), Filters(kind="alert")), "table")
    assert "gross exposure of firm at 70%" in shown
    assert "max_open_orders of account:ACC1 crossed 90%: 9 of 10" in shown
    assert "{" not in shown


def test_report_lists_actions_alerts_and_final_positions(store):
    """The report's actions carry action, change and outcome; alerts are listed; final positions come from the fills."""
    start = (StartPosition("ACC2", "MSFT", Decimal(50), Decimal(400)),)
    report = build(open_for_reading(store), store, None, start, "sod.csv")
    actions = [(a["action"], a["scope"], a["change"], a["refused"]) for a in report["admin_actions"]]
    assert actions == [
        ("halt and cancel", "account:ACC1", "ACTIVE -> HALTED", False),
        ("resume", "account:ACC1", "HALTED -> ACTIVE", False),
        ("limit max_order_qty", "firm", "", True),
        ("limit max_order_qty", "firm", "10000 -> 500", False),
        ("halt", "nowhere:X", "", True),
    ]
    assert [a["text"] for a in report["alerts"]] == [
        "gross exposure of firm at 70%",
        "max_open_orders of account:ACC1 crossed 90%: 9 of 10",
    ]
    # ACC1: 60 @ 190 + 20 @ 195 (E2 busted, E1 once) - 30 @ 210; ACC2 from the start file; N1 without an account.
    assert [(p["account"], p["symbol"], p["qty"], p["avg_cost"]) for p in report["final_positions"]] == [
        ("", "MSFT", "10", "400"),
        ("ACC1", "AAPL", "50", "191.25"),
        ("ACC2", "MSFT", "50", "400"),
    ]
    acc1 = report["final_positions"][1]
    assert (acc1["bought"], acc1["sold"], acc1["realized_pnl"]) == ("80", "30", "562.5")
    text = render_text(report)
    assert "Final positions (start of day: sod.csv" in text and "ACC1     AAPL    50   191.25" in text
    assert "REFUSED: bad scope" in text and "max_open_orders of account:ACC1 crossed 90%" in text


def test_final_positions_stop_at_the_period_end(store):
    """Up to a time: only the fills before it (the first fill alone)."""
    positions = final_positions(open_for_reading(store), T + 3)
    assert [(p["account"], p["qty"]) for p in positions] == [("ACC1", "60")]


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (
            {
                "what": "mode",
                "ok": True,
                "scope": "firm",
                "who": "dora",
                "reason": "roll-out",
                "before": "enforce",
                "after": "monitor",
                "detail": "rule max_order_qty",
            },
            "dora: mode rule max_order_qty firm enforce -> monitor, applied (roll-out)",
        ),
        (
            {
                "what": "mode",
                "ok": True,
                "scope": "account:ACC1",
                "who": "dora",
                "reason": "watch",
                "before": "enforce",
                "after": "monitor",
                "detail": "max_gross_exposure",
            },
            "dora: mode max_gross_exposure account:ACC1 enforce -> monitor, applied (watch)",
        ),
        (
            {
                "what": "mode",
                "ok": False,
                "scope": "firm",
                "who": "dora",
                "reason": "typo",
                "detail": "rule max_qty: no rule named 'max_qty'",
            },
            "dora: mode rule max_qty firm REFUSED: no rule named 'max_qty' (typo)",
        ),
    ],
)
def test_mode_changes_name_the_rule_or_limit_and_refusals(data, line):
    """A monitor-mode change says which rule or layer limit changed, before -> after, or REFUSED and why."""
    assert query.admin_line(data) == line
