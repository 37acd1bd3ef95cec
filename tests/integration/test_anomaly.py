"""Anomaly detectors over real FIX sessions: a fat finger alerts (audit store, alerts API),
repeated refusals with action halt halt the account, refusing its next order with HALTED, a replay
of the audit store reproduces both, and what a detector learnt survives kill -9."""

from __future__ import annotations

import json
import signal
import time

import pytest

from fixproxy.audit.report import build
from fixproxy.audit.store import iter_records, open_for_reading
from fixproxy.config import load
from fixproxy.replay import open_sources
from fixproxy.replay.replayer import Replayer

from .harness import Stack, messages
from .test_admin_http import api, kill
from .test_order_path import order

ANOMALY = """
[anomaly.fat_finger]
enabled = true
history = 5
factor = 10

[anomaly.repeated_rejects]
enabled = true
count = 3
window_s = 60
action = "halt"
"""


@pytest.fixture(scope="module")
def anomaly_stack(tmp_path_factory, engine):
    """A proxy with the fat-finger (alert) and repeated-rejects (halt) detectors on, and oms1 logged on."""
    s = Stack(tmp_path_factory.mktemp("anomaly"), extra=ANOMALY)
    try:
        s.connect("oms1")
        yield s
    finally:
        s.close()


def audit_rows(s: Stack, where: str, want: int = 1, timeout: float = 30.0) -> list[dict]:
    """The audit store's rows matching ``where`` (data decoded), once there are ``want`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        path = s.root / "var" / "audit.sqlite"
        rows = []
        if path.is_file():
            rows = [
                {"who": r.session, "account": r.account, "symbol": r.symbol, **json.loads(r.data)}
                for r, _ in iter_records(open_for_reading(path), where)
            ]
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_fat_finger_over_sessions_alerts_in_audit_and_alerts_api(anomaly_stack):
    """Five orders of 100 then one of 2000 for one account: one fat_finger alert, kept in the audit
    store (kind anomaly_alert) and shown by the alerts API; the order still goes to the venue."""
    s = anomaly_stack
    oms = s.oms["oms1"]
    m = messages(oms)
    for i in range(5):
        oms.send_line(order(f"FF{i}", qty="100", account="FAT1"))
        oms.wait_for(m(**{"35": "8", "11": f"FF{i}"}))
    oms.send_line(order("FFBIG", qty="2000", account="FAT1"))
    assert oms.wait_for(m(**{"35": "8", "11": "FFBIG"}))["fields"]["39"] in ("0", "A")
    rows = audit_rows(s, "kind = 'anomaly_alert' AND account = 'FAT1'")
    assert [(r["detector"], r["scope"], r["observed"], r["threshold"], r["symbol"]) for r in rows] == [
        ("fat_finger", "account:FAT1", "2000", "1000", "AAPL")
    ]
    shown = [a for a in api(s, "GET", "/alerts?limit=50", role="viewer")[1] if a.get("detector") == "fat_finger"]
    assert [(a["scope"], a["action"]) for a in shown] == [("account:FAT1", "alert")]


def test_repeated_rejects_with_halt_refuses_the_next_order_halted(anomaly_stack):
    """One order refused three times (unknown symbol) halts its account as anomaly:repeated_rejects; the
    account's next good order is refused with HALTED, another account's passes, and a desk resume lifts it."""
    s = anomaly_stack
    oms = s.oms["oms1"]
    m = messages(oms)
    for i in range(3):
        oms.send_line(order(f"RR{i}", symbol="NOPE", qty="7", account="REP1"))
        oms.wait_for(m(**{"35": "j", "379": f"RR{i}"}))
    oms.send_line(order("RRGOOD", account="REP1"))
    refused = oms.wait_for(m(**{"35": "j", "379": "RRGOOD"}))["fields"]
    assert refused["58"].startswith("HALTED: ")
    oms.send_line(order("RROTHER", account="REP2"))
    assert oms.wait_for(m(**{"35": "8", "11": "RROTHER"}))["fields"]["39"] in ("0", "A")
    admin = audit_rows(s, "kind = 'admin' AND code = 'kill'")
    assert [(a["who"], a["scope"], a["after"]) for a in admin if a["who"] == "anomaly:repeated_rejects"] == [
        ("anomaly:repeated_rejects", "account:REP1", "HALTED")
    ]
    alerts = audit_rows(s, "kind = 'anomaly_alert' AND account = 'REP1'")
    assert [(a["detector"], a["action"]) for a in alerts] == [("repeated_rejects", "halt")]
    assert kill(s, "account:REP1", "resume", "checked with the trader")["before"] == "HALTED"
    oms.send_line(order("RRAFTER", account="REP1"))
    assert oms.wait_for(m(**{"35": "8", "11": "RRAFTER"}))["fields"]["39"] in ("0", "A")


def test_replay_of_the_audit_store_reproduces_the_anomaly_halt(anomaly_stack):
    """Replaying the day's audit store under the same config raises the same anomaly alerts and refuses
    the halted account's order with HALTED again: no decision differs."""
    s = anomaly_stack
    assert audit_rows(s, "kind = 'decision' AND cl_ord_id = 'RRAFTER'")  # the store has the whole day
    result = Replayer(load(s.config)).run(open_sources([str(s.root / "var" / "audit.sqlite")]))
    rows = {r.cl_ord_id: r for r in result.rows}
    assert [r.cl_ord_id for r in result.rows if r.differs] == []
    assert (rows["RRGOOD"].replayed, rows["RRGOOD"].replayed_code) == ("rejected", "HALTED")
    assert rows["RRAFTER"].replayed == "forwarded" and rows["FFBIG"].replayed == "forwarded"
    assert result.alerts == {
        "anomaly fat_finger account:FAT1": 1,
        "anomaly repeated_rejects account:REP1": 1,
    }


def test_end_of_day_report_lists_the_anomaly_alerts_as_text(anomaly_stack):
    """The end-of-day report's alerts name each anomaly alert's scope and sentence."""
    store = anomaly_stack.root / "var" / "audit.sqlite"
    report = build(open_for_reading(store), store)
    anomalies = [(a["scope"], a["text"]) for a in report["alerts"] if a["scope"] in ("account:FAT1", "account:REP1")]
    assert [scope for scope, _ in anomalies] == ["account:FAT1", "account:REP1"]
    assert anomalies[0][1].startswith("order FFBIG of 2000 AAPL is more than 10 times the median 100")
    assert anomalies[1][1].startswith("the order to buy 7 NOPE at 190 of oms1 refused 3 times within 60 s")


def test_fat_finger_history_survives_kill9_and_halts_after_restart(fresh_stack):
    """The sizes a fat-finger detector learnt before kill -9 are rebuilt from the journal: after the
    restart an outsize order is judged against them, refused HALTED and the account halted."""
    s = fresh_stack(
        behaviours={"MSFT": "ack"},
        extra='[anomaly.fat_finger]\nenabled = true\nhistory = 5\nfactor = 10\naction = "halt"\n',
    )
    oms = s.connect("oms1")
    m = messages(oms)
    for i in range(5):
        oms.send_line(order(f"K{i}", symbol="MSFT", price="410", qty="10", account="K9FAT"))
        oms.wait_for(m(**{"35": "8", "11": f"K{i}", "39": "0"}))
    assert s.proxy.stop(signal.SIGKILL) == -signal.SIGKILL
    mark = oms.mark()
    s.start_proxy()
    oms.wait_for(lambda r: r.get("event") == "logon", start=mark)
    oms.send_line(order("KBIG", symbol="MSFT", price="410", qty="101", account="K9FAT"))
    assert oms.wait_for(m(**{"35": "j", "379": "KBIG"}))["fields"]["58"].startswith("HALTED: ")
    alerts = audit_rows(s, "kind = 'anomaly_alert' AND account = 'K9FAT'")
    assert [(a["detector"], a["observed"], a["threshold"]) for a in alerts] == [("fat_finger", "101", "100")]
