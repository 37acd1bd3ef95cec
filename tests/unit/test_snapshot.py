"""The core's snapshot: a core made from the config takes over a snapshot's state, including one
pickled by an earlier version of the code (``snapshots/core_2026_12.pickle``, written by ``_busy_core``
before core/proxy.py was split)."""

from __future__ import annotations

import pickle
from pathlib import Path

from fixproxy.core import events as ev, snapshot
from fixproxy.core.killswitch import TradingState
from fixproxy.core.model import ExecType, OrdStatus

from .conftest import NS, Harness, only, order

E, S = ExecType, OrdStatus
OLD = Path(__file__).parent / "snapshots" / "core_2026_12.pickle"


def _graced() -> Harness:
    h = Harness()
    h.core.retention.grace_ns = 60 * NS
    return h


def _busy_core() -> Harness:
    """A core with something in every part of its snapshot: working, part-filled and finished orders,
    a closed day, a live limit change, a desk reference price, halts and a cancel of the proxy's own in flight."""
    h = _graced()
    h.live("W1", account="A1", qty=100)
    h.report("oms1.W1", E.TRADE, S.PARTIALLY_FILLED, exec_id="P1", last_qty=30, last_px=100, cum=30, leaves=70)
    h.live("F1", account="A1", qty=10, order_id="V2")
    h.report("oms1.F1", E.TRADE, S.FILLED, exec_id="P2", last_qty=10, last_px=100, cum=10, leaves=0)
    assert only(h.handle(ev.DayRoll("2023-11-15", h.now)), ev.AdminResult).ok
    h.live("W2", account="A2", qty=50, order_id="V3", session="oms2")
    h.handle(ev.AdminSetLimit("firm", "max_order_qty", "5000", "desk", "alice", h.now))
    h.handle(ev.AdminSetReference("AAPL", "102", "news", "carol", h.now + 1))
    h.handle(ev.AdminKill("symbol:TSLA", "halt", "news", "alice", h.now))
    h.handle(ev.AdminKill("account:A2", "halt_and_cancel", "limit breach", "alice", h.now))
    return h


def _assert_carried_over(h: Harness) -> None:
    core = h.core
    assert (core.day, core.day_no) == ("2023-11-15", 1)
    w1 = h.tracked("W1")
    assert w1.is_open and w1.leaves_qty == 70
    assert core.book.positions[("A1", "AAPL")].qty == 40
    assert core.limits.limits.firm.max_order_qty == 5000
    assert core.instruments["AAPL"].reference_price == 102
    assert core.kill.get("symbol:TSLA").state is TradingState.HALTED
    assert core.kill_cancels_pending() == 1
    assert core.up == {"sim"}
    # The proxy's own cancel of W2 comes back: an unsolicited cancel for its OMS, nothing pending.
    cancel_id = next(iter(core.own_cancels.pending))
    report = only(h.report(cancel_id, E.CANCELED, S.CANCELED, orig="oms2.W2"), ev.OmsReport)
    assert (report.session, report.report.cl_ord_id, report.report.orig_cl_ord_id) == ("oms2", "W2", "")
    assert core.kill_cancels_pending() == 0
    assert only(h.new(order("N1", qty=6000)), ev.Decision).code == "MAX_ORDER_QTY"
    assert only(h.new(order("N2", symbol="TSLA")), ev.Decision).code == "HALTED"
    assert only(h.new(order("F1")), ev.Decision).accepted  # the closed day's ClOrdID is free again


def test_snapshot_round_trip_keeps_the_state():
    """A fresh core given a busy core's snapshot carries on as the busy core would."""
    fresh = _graced()
    snapshot.import_state(fresh.core, pickle.loads(pickle.dumps(snapshot.export_state(_busy_core().core))))
    _assert_carried_over(fresh)


def test_snapshot_written_by_the_earlier_code_loads():
    """A snapshot pickled before the core was split into modules loads, and has the keys written today."""
    old = pickle.loads(OLD.read_bytes())
    # Keys added since are read with a default (core/snapshot.py).
    assert set(old) | {"anomaly", "mode_changes", "shares"} == set(snapshot.export_state(_busy_core().core))
    fresh = _graced()
    snapshot.import_state(fresh.core, old)
    _assert_carried_over(fresh)
