"""The order lifecycle table and the ClOrdID bookkeeping behind ProxyCore."""

from __future__ import annotations

import pytest

from fixproxy.core.model import OrdStatus
from fixproxy.core.orders import IllegalTransition, Order, OrderTable, check_transition

from .conftest import order

S = OrdStatus


@pytest.mark.parametrize(
    "current, new",
    [
        (S.PENDING_NEW, S.NEW),
        (S.PENDING_NEW, S.REJECTED),
        (S.NEW, S.PARTIALLY_FILLED),
        (S.PARTIALLY_FILLED, S.FILLED),
        (S.NEW, S.PENDING_CANCEL),
        (S.PENDING_CANCEL, S.CANCELED),
        (S.FILLED, S.PARTIALLY_FILLED),
        (S.DONE_FOR_DAY, S.NEW),
        (S.CANCELED, S.CANCELED),
    ],
)
def test_legal_transition_is_allowed(current, new):
    """Transitions the venue may report pass the table (staying put always does)."""
    check_transition(current, new)


@pytest.mark.parametrize(
    "current, new",
    [
        (S.CANCELED, S.NEW),
        (S.REJECTED, S.FILLED),
        (S.EXPIRED, S.PARTIALLY_FILLED),
        (S.FILLED, S.PENDING_REPLACE),
        (S.DONE_FOR_DAY, S.CANCELED),
    ],
)
def test_illegal_transition_raises(current, new):
    """Leaving a closed state in a way the table does not list is an error."""
    with pytest.raises(IllegalTransition):
        check_transition(current, new)


def test_every_status_has_a_row_in_the_table():
    """check_transition never fails with a KeyError, whatever the venue reports."""
    for current in S:
        for new in S:
            try:
                check_transition(current, new)
            except IllegalTransition:
                pass


def test_venue_id_is_session_dot_cl_ord_id():
    """The proxy's venue-side ClOrdID is '<session>.<ClOrdID>'."""
    assert OrderTable.venue_id("oms1", "C1") == "oms1.C1"


def test_alias_makes_cancel_id_find_the_order_both_ways():
    """After alias(), both the OMS id and the venue id of a cancel find the original order."""
    table = OrderTable()
    tracked = Order("oms1", "sim", order("C1"), "oms1.C1")
    table.add(tracked)
    table.alias(tracked, "C2", "oms1.C2")
    assert table.by_oms("oms1", "C2") is tracked
    assert table.by_venue("oms1.C2") == (tracked, "C2")
    assert table.by_venue("oms1.C1") == (tracked, "C1")
    assert table.by_oms("oms2", "C1") is None


def test_seen_ids_are_per_session_and_reset_on_a_new_day():
    """Duplicate detection is per session and per day."""
    table = OrderTable()
    table.seen("oms1", 100).add("C1")
    assert "C1" in table.seen("oms1", 100)
    assert "C1" not in table.seen("oms2", 100)
    assert "C1" not in table.seen("oms1", 101)


def test_open_orders_lists_each_open_order_once():
    """An order reachable under several ClOrdIDs is listed once; closed orders are not listed."""
    table = OrderTable()
    live, done = Order("oms1", "sim", order("C1"), "oms1.C1"), Order("oms1", "sim", order("C9"), "oms1.C9")
    done.status = S.FILLED
    table.add(live)
    table.add(done)
    table.alias(live, "C2", "oms1.C2")
    assert table.open_orders() == [live]
