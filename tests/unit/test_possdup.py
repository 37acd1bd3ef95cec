"""Possible duplicates (PossDupFlag 43 / PossResend 97): never forwarded twice, never relayed twice."""

from __future__ import annotations

from decimal import Decimal

from fixproxy.core import events as ev
from fixproxy.core.model import ExecType, OrdStatus, Side
from fixproxy.fix import codec

from .conftest import Harness, exec_report, order


def test_resent_new_order_already_handled_is_ignored():
    """A D resent with 43=Y after it was forwarded produces no second VenueNewOrder and no reject."""
    h = Harness(rules=[])
    first = h.new(order("A1"))
    assert isinstance(first[-1], ev.VenueNewOrder)
    again = h.handle(ev.NewOrder("oms1", 9, h.now, order("A1"), poss_dup=True))
    assert [type(a) for a in again] == [ev.Notice] and again[0].kind == "possdup_ignored"


def test_resent_new_order_never_seen_is_processed():
    """A possible duplicate the proxy never saw (it was lost) is handled like a new order."""
    h = Harness(rules=[])
    actions = h.handle(ev.NewOrder("oms1", 9, h.now, order("LOST1"), poss_dup=True))
    assert isinstance(actions[-1], ev.VenueNewOrder)


def test_resent_order_rejected_before_is_not_rejected_again():
    """A refused order resent as a possible duplicate is ignored: its reject was already sent."""
    h = Harness()
    assert isinstance(h.new(order("R1", qty=1_000_000))[-1], ev.OmsBusinessReject)
    again = h.handle(ev.NewOrder("oms1", 9, h.now, order("R1", qty=1_000_000), poss_dup=True))
    assert [a.kind for a in again] == ["possdup_ignored"]


def test_plain_duplicate_without_flag_is_still_rejected():
    """Without 43=Y a reused ClOrdID is a DUPLICATE_CLORDID reject, not silently dropped."""
    h = Harness(rules=None)
    h.new(order("D1"))
    assert any(
        isinstance(a, ev.OmsBusinessReject) and a.text.startswith("DUPLICATE_CLORDID") for a in h.new(order("D1"))
    )


def test_venue_report_resent_with_known_exec_id_is_not_relayed_twice():
    """An ExecutionReport resent by the venue (43=Y) with an ExecID already relayed is dropped."""
    h = Harness(rules=[])
    h.new(order("E1"))
    report = exec_report("oms1.E1", ExecType.NEW, OrdStatus.NEW, exec_id="X9", leaves=100)
    assert isinstance(h.handle(ev.VenueReport("sim", h.now, report))[-1], ev.OmsReport)
    again = h.handle(ev.VenueReport("sim", h.now, report, poss_dup=True))
    assert [a.kind for a in again] == ["possdup_report_ignored"]


def test_codec_reads_possdup_and_possresend_flags():
    """43=Y or 97=Y marks an order or report as a possible duplicate."""
    base = {35: "D", 34: "5", 11: "C", 55: "AAPL", 54: "1", 38: "1", 40: "1"}
    assert codec.oms_to_event({**base, 43: "Y"}, "oms1", 0).poss_dup
    assert codec.oms_to_event({**base, 97: "Y"}, "oms1", 0).poss_dup
    assert not codec.oms_to_event(base, "oms1", 0).poss_dup


def test_report_for_order_lost_in_a_crash_rebuilds_it_from_the_venue_clordid():
    """The venue ClOrdID names the owner: a report for an order missing from the state reaches that OMS
    and the fill moves the book."""
    h = Harness(rules=[])
    h.core.recover_orders = True
    report = exec_report(
        "oms2.LOST7",
        ExecType.TRADE,
        OrdStatus.FILLED,
        exec_id="X1",
        leaves=0,
        cum=100,
        last_qty=100,
        last_px=50,
        symbol="AAPL",
        side=Side.SELL,
        account="A1",
        order_qty=Decimal(100),
    )
    actions = h.handle(ev.VenueReport("sim", h.now, report))
    relayed = [a for a in actions if isinstance(a, ev.OmsReport)]
    assert [(a.session, a.report.cl_ord_id) for a in relayed] == [("oms2", "LOST7")]
    assert any(isinstance(a, ev.Notice) and a.kind == "order_recovered" for a in actions)
    assert h.core.book.positions[("A1", "AAPL")].qty == -100
    assert h.core.orders.by_oms("oms2", "LOST7").status is OrdStatus.FILLED


def test_report_with_foreign_clordid_is_not_recovered():
    """A report whose ClOrdID names no configured session stays an unknown-order notice."""
    h = Harness(rules=[])
    h.core.recover_orders = True
    report = exec_report("nobody.X", ExecType.NEW, OrdStatus.NEW, exec_id="X2", leaves=5, symbol="AAPL")
    assert [a.kind for a in h.handle(ev.VenueReport("sim", h.now, report))] == ["unknown_order_report"]


def test_recovery_is_off_unless_asked_for():
    """Replay builds the core without recovery: a report for an order it refused is not rebuilt."""
    h = Harness(rules=[])
    report = exec_report(
        "oms1.GONE",
        ExecType.NEW,
        OrdStatus.NEW,
        exec_id="X3",
        leaves=5,
        symbol="AAPL",
        side=Side.BUY,
        order_qty=Decimal(5),
    )
    assert [a.kind for a in h.handle(ev.VenueReport("sim", h.now, report))] == ["unknown_order_report"]


def test_order_the_venue_asked_for_again_is_refused_to_the_oms_without_marking_venue_down():
    """A NewOrderSingle the venue requested again after a gap is not resent; the OMS gets VENUE_UNAVAILABLE
    saying so, and the venue stays up for new orders."""
    h = Harness(rules=[])
    h.new(order("G1"))
    actions = h.handle(ev.VenueSendFailed("sim", "oms1.G1", h.now, "not_resent"))
    reject = next(a for a in actions if isinstance(a, ev.OmsBusinessReject))
    assert reject.text.startswith("VENUE_UNAVAILABLE: venue sim did not receive the message")
    assert "sim" in h.core.up
    assert isinstance(h.new(order("G2"))[-1], ev.VenueNewOrder)


def test_resent_venue_report_with_unknown_exec_id_goes_to_oms_marked_possresend():
    """A venue report resent (43=Y) whose ExecID the proxy does not know is relayed with PossResend (97=Y)."""
    h = Harness(rules=[])
    h.new(order("P1"))
    report = exec_report("oms1.P1", ExecType.NEW, OrdStatus.NEW, exec_id="NEWX", leaves=100)
    relayed = next(
        a for a in h.handle(ev.VenueReport("sim", h.now, report, poss_dup=True)) if isinstance(a, ev.OmsReport)
    )
    assert relayed.poss_resend
    msg_type, fields = codec.action_to_message(relayed, False, "20261125-12:00:00.000")
    assert (msg_type, fields[0]) == ("8", (97, "Y"))
