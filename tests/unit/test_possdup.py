"""Possible duplicates (PossDupFlag 43 / PossResend 97): never forwarded twice, never relayed twice."""

from __future__ import annotations

from fixproxy import codec
from fixproxy.core import events as ev
from fixproxy.core.model import ExecType, OrdStatus

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
    assert any(isinstance(a, ev.OmsBusinessReject) and a.text.startswith("DUPLICATE_CLORDID")
               for a in h.new(order("D1")))


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
    assert codec.decode_oms({**base, 43: "Y"}, "oms1", 0).poss_dup
    assert codec.decode_oms({**base, 97: "Y"}, "oms1", 0).poss_dup
    assert not codec.decode_oms(base, "oms1", 0).poss_dup
