"""kill -9 of the proxy: nothing it took in is lost, nothing reaches the venue twice, and what the
desk set (halts, limits) is still in force. The journal holds every input before the core acts."""

from __future__ import annotations

import signal
import time
from collections import Counter
from decimal import Decimal

from .harness import messages
from .test_admin_http import api, kill
from .test_order_path import order


def venue_orders(stack) -> Counter:
    """How many times the venue received each NewOrderSingle ClOrdID."""
    return Counter(
        r["fields"]["11"] for r in list(stack.venue.lines) if r.get("dir") == "in" and r["fields"].get("35") == "D"
    )


def answers(oms, cl: str) -> list[str]:
    """The answers the OMS got for ``cl``: "ack", "filled", or a reject code. A message resent with its own
    sequence number (43=Y) counts once; a report the proxy relays again (97=Y) is a possible repeat, the
    OMS checks its ExecID, and is left out."""
    out = []
    seqs = set()
    for r in list(oms.lines):
        f = r.get("fields", {})
        if r.get("dir") != "in" or f.get("97") == "Y" or f.get("34") in seqs:
            continue
        seqs.add(f.get("34"))
        if f.get("35") == "8" and f.get("11") == cl and f.get("39") in ("0", "2"):
            out.append({"0": "ack", "2": "filled"}[f["39"]])
        elif f.get("35") == "j" and f.get("379") == cl:
            out.append(f.get("58", "").split(":")[0])
    return out


def restart(s, oms, **kw) -> None:
    mark = oms.mark()
    s.start_proxy(**kw)
    oms.wait_for(lambda r: r.get("event") == "logon", start=mark)


def test_kill9_mid_flow_loses_nothing_and_duplicates_nothing(fresh_stack):
    """Working orders survive kill -9; orders sent while the proxy is down arrive once after it is back
    (as possible duplicates); every order ends with exactly one answer at the OMS and reaches the venue
    at most once."""
    s = fresh_stack(behaviours={"MSFT": "ack"})
    oms = s.connect("oms1")
    m = messages(oms)
    working = [f"W{i}" for i in range(5)]
    for cl in working:
        oms.send_line(order(cl, symbol="MSFT", price="410", account="K9"))
    for cl in working:
        oms.wait_for(m(**{"35": "8", "11": cl, "39": "0"}))
    # A burst, and the proxy killed while it is in flight.
    burst = [f"B{i}" for i in range(20)]
    for cl in burst[:10]:
        oms.send_line(order(cl, symbol="MSFT", price="410", account="K9"))
    assert s.proxy.stop(signal.SIGKILL) == -signal.SIGKILL
    for cl in burst[10:]:
        oms.send_line(order(cl, symbol="MSFT", price="410", account="K9"))  # kept by the OMS's quickfix store
    time.sleep(0.5)
    restart(s, oms)

    # Every burst order ends with exactly one answer: acknowledged (then it reached the venue exactly
    # once), or refused VENUE_UNAVAILABLE if the crash caught it between the journal and the wire.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(answers(oms, cl) for cl in burst):
        time.sleep(0.1)
    time.sleep(1)  # anything sent twice would show up by now
    counts = venue_orders(s)
    for cl in working + burst:
        got = answers(oms, cl)
        assert got in (["ack"], ["VENUE_UNAVAILABLE"]), (cl, got)
        assert counts[f"oms1.{cl}"] == (1 if got == ["ack"] else 0), (cl, counts[f"oms1.{cl}"])

    # The working orders from before the crash are still known: each can be cancelled.
    for cl in working:
        oms.send_line(f"35=F|11={cl}-C|41={cl}|55=MSFT|54=1|38=100")
        done = oms.wait_for(m(**{"35": "8", "11": f"{cl}-C"}))["fields"]
        assert done["39"] == "4", done


def test_fills_halts_and_limit_changes_survive_kill9(fresh_stack):
    """Right after fills, a halt and a limit change, kill -9: the positions equal the fills the OMS got,
    filled orders are not working, the halt and the limit are still in force."""
    s = fresh_stack(behaviours={"AAPL": "fill", "NVDA": "partial"})
    oms = s.connect("oms1")
    m = messages(oms)
    for i in range(10):
        oms.send_line(order(f"F{i}", account="K9"))
        oms.send_line(order(f"P{i}", symbol="NVDA", price="120", account="K9"))
    for i in range(10):
        oms.wait_for(m(**{"35": "8", "11": f"F{i}", "39": "2"}))
        oms.wait_for(m(**{"35": "8", "11": f"P{i}", "39": "1"}))
    kill(s, "account:HALTME", "halt")
    assert (
        api(s, "POST", "/limits", {"layer": "firm", "field": "max_order_qty", "value": 500, "reason": "tighten"})[0]
        == 200
    )
    s.proxy.stop(signal.SIGKILL)
    restart(s, oms)
    filled: Counter = Counter()
    for r in list(oms.lines):
        f = r.get("fields", {})
        if r.get("dir") == "in" and f.get("35") == "8" and f.get("150") in ("1", "2", "F") and f.get("97") != "Y":
            filled[f["55"]] += Decimal(f["32"])
    positions = {
        p["symbol"]: Decimal(p["qty"]) for p in api(s, "GET", "/positions", role="viewer")[1] if p["account"] == "K9"
    }
    assert positions == dict(filled) and positions["AAPL"] == 1000
    open_ids = {o["cl_ord_id"] for o in api(s, "GET", "/orders", role="viewer")[1]}
    assert open_ids == {f"P{i}" for i in range(10)}  # the filled ones are not working
    states = api(s, "GET", "/trading-states", role="viewer")[1]
    assert any(t["scope"] == "account:HALTME" and t["state"] == "HALTED" for t in states), states
    oms.send_line(order("H1", account="HALTME"))
    assert oms.wait_for(m(**{"35": "j", "379": "H1"}))["fields"]["58"].startswith("HALTED")
    oms.send_line(order("Q1", qty="600", account="K9"))
    assert oms.wait_for(m(**{"35": "j", "379": "Q1"}))["fields"]["58"].startswith("MAX_ORDER_QTY")


def test_kill9_between_journal_and_core_answers_the_order_once(fresh_stack):
    """The proxy dies right after journaling an order, before the core sees it: after the restart the
    OMS gets exactly one answer (the order never reached the venue: VENUE_UNAVAILABLE), the OMS is not
    asked to send it again, and the audit trail has the order."""
    s = fresh_stack(behaviours={"MSFT": "ack"}, proxy_env={"FIXPROXY_FAILPOINT_JOURNALED": "\x0111=CUT1\x01"})
    oms = s.connect("oms1")
    m = messages(oms)
    oms.send_line(order("OK1", symbol="MSFT", price="410"))
    oms.wait_for(m(**{"35": "8", "11": "OK1", "39": "0"}))
    oms.send_line(order("CUT1", symbol="MSFT", price="410"))
    assert s.proxy.popen.wait(20) == -signal.SIGKILL
    restart(s, oms)
    got = oms.wait_for(m(**{"35": "j", "379": "CUT1"}))["fields"]
    assert got["58"].startswith("VENUE_UNAVAILABLE")
    oms.send_line(order("OK2", symbol="MSFT", price="410"))
    oms.wait_for(m(**{"35": "8", "11": "OK2", "39": "0"}))
    assert answers(oms, "CUT1") == ["VENUE_UNAVAILABLE"]
    assert venue_orders(s)["oms1.CUT1"] == 0
    assert not [r for r in s.proxy.lines if r.get("event") == "possdup_ignored"]
    sent = [r["fields"] for r in list(oms.lines) if r.get("dir") == "in" and r["fields"].get("35") == "2"]
    assert sent == []  # no ResendRequest: the journaled order's sequence number was counted
    assert api(s, "GET", "/orders", role="viewer")[1][0]["cl_ord_id"] == "OK1"


def test_kill9_between_journal_and_core_keeps_a_fill(fresh_stack):
    """The proxy dies right after journaling a venue fill, before the core applies it or relays it:
    after the restart the position has the fill and the OMS gets the report (once, marked PossResend)."""
    s = fresh_stack(
        behaviours={"AAPL": "fill"},
        proxy_env={"FIXPROXY_FAILPOINT_JOURNALED": r"(?=.*\x0111=oms1\.FILL1\x01)(?=.*\x01150=F\x01)"},
    )
    oms = s.connect("oms1")
    m = messages(oms)
    oms.send_line(order("FILL1", account="K9"))
    assert s.proxy.popen.wait(20) == -signal.SIGKILL
    restart(s, oms)
    report = oms.wait_for(m(**{"35": "8", "11": "FILL1", "39": "2"}))["fields"]
    assert report["32"] == "100"
    time.sleep(1)
    fills = [
        r
        for r in list(oms.lines)
        if r.get("dir") == "in" and r["fields"].get("11") == "FILL1" and r["fields"].get("39") == "2"
    ]
    assert len(fills) == 1
    positions = {p["symbol"]: p["qty"] for p in api(s, "GET", "/positions", role="viewer")[1] if p["account"] == "K9"}
    assert Decimal(positions["AAPL"]) == 100
    assert api(s, "GET", "/orders", role="viewer")[1] == []
