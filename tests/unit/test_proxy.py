"""ProxyCore.handle(): orders in, decisions and messages out, with no transport."""

from __future__ import annotations

import pytest

from fixproxy.core import events as ev
from fixproxy.core.events import (
    Decision,
    Notice,
    OmsBusinessReject,
    OmsCancelReject,
    OmsReport,
    VenueCancel,
    VenueNewOrder,
    VenueReplace,
)
from fixproxy.core.model import CancelReject, ExecType, OrdStatus, Side
from fixproxy.core.proxy import SessionPolicy
from fixproxy.fix import codec

from .conftest import LIMITS, T0, D, Harness, exec_report, kinds, limits, only, order

E, S = ExecType, OrdStatus


def _wire(action: ev.Action) -> dict[int, str]:
    """The fields of the message the codec makes of ``action`` (the core names refusals by code; the
    FIX reason numbers 380, 103 and 102 are the codec's)."""
    return dict(codec.action_to_message(action, False, "20231114-12:00:00.000")[1])


def _refusal(actions: list) -> Decision:
    """The rejecting Decision that heads a refusal."""
    decision = actions[0]
    assert isinstance(decision, Decision) and not decision.accepted, actions
    return decision


# ---------------------------------------------------------------- new orders


def test_new_order_within_limits_is_accepted_and_forwarded(proxy: Harness):
    """An acceptable order yields an accepted Decision and the order to the venue under '<session>.<ClOrdID>'."""
    req = order("C1", qty=100, price=100, account="ACC")
    assert proxy.new(req) == [
        Decision("oms1", "D", "C1", True, T0, account="ACC", symbol="AAPL", venue="sim"),
        VenueNewOrder("sim", "oms1.C1", req),
    ]
    tracked = proxy.tracked("C1")
    assert (tracked.status, tracked.leaves_qty, tracked.venue_cl_ord_id) == (S.PENDING_NEW, D(100), "oms1.C1")


def test_new_order_with_ex_destination_routes_to_that_venue():
    """ExDestination (100) naming a configured venue overrides the session's default venue."""
    proxy = Harness(venues=("sim", "alt"), up=("sim", "alt"))
    actions = proxy.new(order("C1", ex_destination="alt"))
    assert only(actions, VenueNewOrder).venue == "alt"
    assert only(actions, Decision).venue == "alt"


def test_new_order_when_venue_never_logged_on_rejects_venue_unavailable():
    """No SessionUp from the venue: the order is refused with VENUE_UNAVAILABLE and reason 4."""
    proxy = Harness(up=())
    actions = proxy.new(order("C1"))
    assert kinds(actions) == [Decision, OmsBusinessReject]
    assert _refusal(actions).code == "VENUE_UNAVAILABLE"
    bmr = actions[1]
    assert (_wire(bmr)[380], bmr.ref_id) == ("4", "C1")
    assert bmr.text.startswith("VENUE_UNAVAILABLE: ")
    assert proxy.core.orders.by_oms("oms1", "C1") is None


@pytest.mark.parametrize(
    ("event", "code"),
    [
        (ev.AdminKill("account:ACC1", "halt", "desk says", "carol", T0), "HALTED"),
        (ev.AdminKill("firm", "reducing", "desk says", "carol", T0), "REDUCING_ONLY"),
        (ev.RecordingFailed("disk full", T0), "RECORDING_FAILED"),
    ],
)
@pytest.mark.parametrize("ex_destination", ["", "nowhere"])
def test_trading_state_refuses_before_the_venue_is_looked_at(event, code, ex_destination):
    """A halted (or reduce-only, or unrecorded) order is refused for that, not VENUE_UNAVAILABLE or
    UNKNOWN_DESTINATION: the desk's decision, which a venue coming back does not change."""
    proxy = Harness(up=())
    proxy.handle(event)
    assert _refusal(proxy.new(order("C1", account="ACC1", ex_destination=ex_destination))).code == code


def test_new_order_after_venue_logged_out_rejects_and_after_logon_passes(proxy: Harness):
    """SessionDown marks the venue unavailable; the next SessionUp restores it."""
    proxy.handle(ev.SessionDown("sim", T0))
    assert _refusal(proxy.new(order("C1"))).code == "VENUE_UNAVAILABLE"
    proxy.handle(ev.SessionUp("sim", T0))
    assert kinds(proxy.new(order("C2"))) == [Decision, VenueNewOrder]


@pytest.mark.parametrize(
    "sessions, req, observed",
    [
        (None, order("C1", ex_destination="nyse"), "nyse"),
        ({"oms1": SessionPolicy()}, order("C1"), ""),
    ],
    ids=["unknown-ex-destination", "no-destination-no-default"],
)
def test_new_order_to_unknown_destination_rejects_unknown_destination(sessions, req, observed):
    """An order that names no configured venue is refused with UNKNOWN_DESTINATION."""
    proxy = Harness(sessions=sessions)
    actions = proxy.new(req)
    decision = _refusal(actions)
    assert (decision.code, decision.observed) == ("UNKNOWN_DESTINATION", observed)
    assert only(actions, OmsBusinessReject).text.startswith("UNKNOWN_DESTINATION: ")


def test_new_order_from_unconfigured_session_is_refused_without_message():
    """A session the core does not know gets an UNKNOWN_SESSION decision and nothing sent."""
    proxy = Harness()
    actions = proxy.handle(ev.NewOrder("ghost", 1, T0, order("C1")))
    assert kinds(actions) == [Decision]
    assert _refusal(actions).code == "UNKNOWN_SESSION"


REFUSED_ORDERS = [  # the order, its code, BusinessRejectReason (380), OrdRejReason (103)
    pytest.param(order("C1", qty=20_000), "MAX_ORDER_QTY", 0, "3", id="max-qty"),
    pytest.param(order("C1", qty=9_600, price=105), "MAX_ORDER_NOTIONAL", 0, "3", id="max-notional"),
    pytest.param(order("C1", price=106), "PRICE_COLLAR", 0, "0", id="collar"),
    pytest.param(order("C1", symbol="RSTR", price=40), "RESTRICTED_SYMBOL", 0, "0", id="restricted"),
    pytest.param(order("C1", symbol="ZZZZ"), "UNKNOWN_SYMBOL", 2, "1", id="unknown-symbol"),
    pytest.param(order("C1", symbol="SPYL", qty=150, price=50), "LOT_SIZE", 0, "0", id="lot-size"),
    pytest.param(order("C1", symbol="NOREF", price=None), "NO_REFERENCE_PRICE", 0, "0", id="no-reference"),
]


@pytest.mark.parametrize("req, code, bmr_reason, ord_rej_reason", REFUSED_ORDERS)
def test_refused_order_on_business_reject_session_gets_bmr(proxy: Harness, req, code, bmr_reason, ord_rej_reason):
    """reject_with=business_reject: a BusinessMessageReject referring to the order, text '<CODE>: ...'."""
    actions = proxy.new(req, "oms1")
    assert kinds(actions) == [Decision, OmsBusinessReject]
    decision = _refusal(actions)
    assert decision.code == code
    assert actions[1] == OmsBusinessReject("oms1", proxy.seq, "D", "C1", code, decision.text)
    assert _wire(actions[1])[380] == str(bmr_reason)
    assert decision.text.startswith(f"{code}: ")
    assert proxy.core.orders.by_oms("oms1", "C1") is None


@pytest.mark.parametrize("req, code, bmr_reason, ord_rej_reason", REFUSED_ORDERS)
def test_refused_order_on_execution_report_session_gets_rejected_er(
    proxy: Harness, req, code, bmr_reason, ord_rej_reason
):
    """reject_with=execution_report: an ExecutionReport with ExecType and OrdStatus REJECTED, same text."""
    actions = proxy.new(req, "oms2")
    assert kinds(actions) == [Decision, OmsReport]
    decision = _refusal(actions)
    report = actions[1]
    assert report.session == "oms2"
    r = report.report
    assert (r.exec_type, r.ord_status, r.cl_ord_id) == (E.REJECTED, S.REJECTED, "C1")
    assert r.text == decision.text and r.text.startswith(f"{code}: ")
    assert (r.symbol, r.side, r.order_qty, r.price) == (req.symbol, req.side, req.order_qty, req.price)
    assert (r.leaves_qty, r.cum_qty, _wire(report)[103], r.exec_id) == (0, 0, ord_rej_reason, "E1")


def test_rejected_decision_carries_observed_limit_and_scope(proxy: Harness):
    """The Decision records what was seen, the limit and where it was set, for the audit trail."""
    decision = _refusal(proxy.new(order("C1", qty=20_000, account="ACC")))
    assert (decision.code, decision.observed, decision.limit, decision.scope) == (
        "MAX_ORDER_QTY",
        "20000",
        "10000",
        "firm",
    )
    assert (decision.session, decision.msg_type, decision.cl_ord_id, decision.account, decision.symbol) == (
        "oms1",
        "D",
        "C1",
        "ACC",
        "AAPL",
    )


def test_live_limit_change_applies_to_next_order(proxy: Harness):
    """Replacing the LimitSet in the core's resolver takes effect on the very next order."""
    assert kinds(proxy.new(order("C1", qty=500))) == [Decision, VenueNewOrder]
    proxy.core.limits.replace(LIMITS.with_layer("session", "oms1", limits(max_order_qty=100)))
    decision = _refusal(proxy.new(order("C2", qty=500)))
    assert (decision.code, decision.scope) == ("MAX_ORDER_QTY", "session:oms1")


def test_empty_rule_list_forwards_order_breaking_every_limit():
    """rules=[] is a pass-through: only routing is checked."""
    proxy = Harness(rules=[])
    req = order("C1", symbol="RSTR", qty=20_001, price=1000)
    assert kinds(proxy.new(req)) == [Decision, VenueNewOrder]
    assert kinds(proxy.new(order("C2", symbol="ZZZZ", qty=10**11))) == [Decision, VenueNewOrder]


def test_unknown_rule_name_is_refused_at_construction():
    """A misspelt rule stops the core from being built."""
    with pytest.raises(ValueError, match="max_qty"):
        Harness(rules=["max_qty"])


# ---------------------------------------------------------------- duplicate ClOrdIDs


def test_duplicate_cl_ord_id_on_same_session_rejects_and_keeps_first_order(proxy: Harness):
    """A ClOrdID reused on one session is refused; the order it belongs to is untouched."""
    first = order("C1", qty=100)
    proxy.new(first)
    actions = proxy.new(order("C1", qty=200))
    assert _refusal(actions).code == "DUPLICATE_CLORDID"
    assert only(actions, OmsBusinessReject).text.startswith("DUPLICATE_CLORDID: ")
    assert proxy.tracked("C1").request == first


def test_same_cl_ord_id_on_another_session_is_accepted(proxy: Harness):
    """ClOrdIDs are unique per session only: another session may use the same one."""
    proxy.new(order("C1"), "oms1")
    assert kinds(proxy.new(order("C1"), "oms2")) == [Decision, VenueNewOrder]
    assert only(proxy.new(order("C1"), "oms2"), Decision).code == "DUPLICATE_CLORDID"


def test_cl_ord_id_of_rejected_order_cannot_be_reused(proxy: Harness):
    """A refused order's ClOrdID still counts as used today."""
    proxy.new(order("C1", qty=20_000))
    assert _refusal(proxy.new(order("C1", qty=10))).code == "DUPLICATE_CLORDID"


def test_cl_ord_id_used_by_cancel_cannot_be_reused_for_new_order(proxy: Harness):
    """A cancel's ClOrdID is taken too."""
    proxy.live("C1")
    proxy.cancel("C1", "C2")
    assert _refusal(proxy.new(order("C2"))).code == "DUPLICATE_CLORDID"


# ---------------------------------------------------------------- venue reports


def test_venue_report_maps_back_to_owning_session_with_oms_cl_ord_id(proxy: Harness):
    """An ExecutionReport on '<session>.<ClOrdID>' goes to that session with the OMS's ClOrdID."""
    proxy.new(order("C1"))
    actions = proxy.report("oms1.C1", E.NEW, S.NEW, leaves=100)
    assert actions == [OmsReport("oms1", exec_report("C1", E.NEW, S.NEW, leaves=100, symbol="AAPL", side=Side.BUY))]


def test_venue_report_missing_symbol_and_side_gets_them_from_the_order():
    """A venue report without 55/54 reaches the OMS with the order's symbol and side, never a made-up BUY."""
    proxy = Harness(rules=[])
    proxy.new(order("C1", side=Side.SELL_SHORT, account="A1"))
    report = only(proxy.report("oms1.C1", E.NEW, S.NEW, leaves=100), OmsReport).report
    assert (report.symbol, report.side) == ("AAPL", Side.SELL_SHORT)


def test_two_sessions_with_same_cl_ord_id_each_get_their_own_reports(proxy: Harness):
    """Reports for 'oms1.C1' and 'oms2.C1' reach oms1 and oms2 respectively, each as 'C1'."""
    proxy.new(order("C1", qty=100), "oms1")
    proxy.new(order("C1", qty=200), "oms2")
    one = only(proxy.report("oms1.C1", E.NEW, S.NEW, order_id="V1", leaves=100), OmsReport)
    two = only(
        proxy.report(
            "oms2.C1", E.TRADE, S.PARTIALLY_FILLED, order_id="V2", leaves=150, cum=50, last_qty=50, last_px=100
        ),
        OmsReport,
    )
    assert (one.session, one.report.cl_ord_id, one.report.order_id) == ("oms1", "C1", "V1")
    assert (two.session, two.report.cl_ord_id, two.report.order_id) == ("oms2", "C1", "V2")
    assert (proxy.tracked("C1", "oms1").status, proxy.tracked("C1", "oms1").leaves_qty) == (S.NEW, 100)
    assert (proxy.tracked("C1", "oms2").status, proxy.tracked("C1", "oms2").cum_qty) == (S.PARTIALLY_FILLED, 50)


def test_order_status_tracks_new_partial_and_full_fill(proxy: Harness):
    """NEW, PARTIALLY_FILLED and FILLED reports update status, OrderID, leaves, cum and average price."""
    proxy.new(order("C1", qty=100))
    tracked = proxy.tracked("C1")
    proxy.ack("oms1.C1", 100, order_id="V9")
    assert (tracked.status, tracked.order_id, tracked.leaves_qty, tracked.cum_qty) == (S.NEW, "V9", 100, 0)
    proxy.report(
        "oms1.C1", E.TRADE, S.PARTIALLY_FILLED, order_id="V9", last_qty=40, last_px=100, leaves=60, cum=40, avg_px=100
    )
    assert (tracked.status, tracked.leaves_qty, tracked.cum_qty, tracked.avg_px) == (S.PARTIALLY_FILLED, 60, 40, 100)
    assert tracked.is_open
    proxy.report(
        "oms1.C1", E.TRADE, S.FILLED, order_id="V9", last_qty=60, last_px=101, leaves=0, cum=100, avg_px="100.6"
    )
    assert (tracked.status, tracked.leaves_qty, tracked.cum_qty, tracked.avg_px) == (S.FILLED, 0, 100, D("100.6"))
    assert not tracked.is_open
    assert proxy.core.orders.open_orders() == []


def test_venue_reject_of_new_order_closes_it(proxy: Harness):
    """A venue's 150=8/39=8 on a new order is passed on and the order is no longer open."""
    proxy.new(order("C1"))
    report = only(proxy.report("oms1.C1", E.REJECTED, S.REJECTED, text="venue says no"), OmsReport)
    assert (report.report.cl_ord_id, report.report.ord_status) == ("C1", S.REJECTED)
    assert proxy.tracked("C1").status is S.REJECTED and not proxy.tracked("C1").is_open


def test_report_on_unknown_venue_cl_ord_id_is_a_notice(proxy: Harness):
    """A report the proxy cannot place goes nowhere but a notice."""
    actions = proxy.report("oms1.NOPE", E.NEW, S.NEW)
    assert kinds(actions) == [Notice]
    assert actions[0].kind == "unknown_order_report"


@pytest.mark.parametrize(
    "closing, late",
    [
        ((E.CANCELED, S.CANCELED), (E.NEW, S.NEW)),
        ((E.REJECTED, S.REJECTED), (E.TRADE, S.PARTIALLY_FILLED)),
        ((E.EXPIRED, S.EXPIRED), (E.TRADE, S.FILLED)),
        ((E.TRADE, S.FILLED), (E.PENDING_REPLACE, S.PENDING_REPLACE)),
    ],
    ids=["new-after-canceled", "fill-after-rejected", "fill-after-expired", "pending-replace-after-filled"],
)
def test_illegal_status_transition_is_a_notice_and_keeps_status(proxy: Harness, closing, late):
    """A report that would move a closed order to an impossible status yields illegal_transition."""
    proxy.new(order("C1"))
    proxy.report("oms1.C1", *closing)
    actions = proxy.report("oms1.C1", *late)
    notice = only(actions, Notice)
    assert notice.kind == "illegal_transition"
    assert proxy.tracked("C1").status is closing[1]


def test_trade_bust_may_reopen_filled_order(proxy: Harness):
    """FILLED -> PARTIALLY_FILLED is legal (a busted trade) and tracked without a notice."""
    proxy.new(order("C1"))
    proxy.report("oms1.C1", E.TRADE, S.FILLED, leaves=0, cum=100)
    actions = proxy.report("oms1.C1", E.TRADE_CANCEL, S.PARTIALLY_FILLED, leaves=40, cum=60)
    assert only(actions, OmsReport).report.ord_status is S.PARTIALLY_FILLED
    assert not any(isinstance(a, Notice) and a.kind == "illegal_transition" for a in actions)
    assert (proxy.tracked("C1").status, proxy.tracked("C1").leaves_qty) == (S.PARTIALLY_FILLED, 40)


# ---------------------------------------------------------------- cancels


def test_cancel_round_trip_maps_both_ids_back(proxy: Harness):
    """Cancel goes to the venue against the order's venue id; the CANCELED report maps both ids back."""
    proxy.live("C1", qty=100, account="ACC")
    actions = proxy.cancel("C1", "C2")
    assert actions == [
        Decision("oms1", "F", "C2", True, T0, account="ACC", symbol="AAPL", venue="sim"),
        VenueCancel("sim", "oms1.C2", "oms1.C1", "V1", "AAPL", Side.BUY, D(100), "ACC"),
    ]
    report = only(proxy.report("oms1.C2", E.CANCELED, S.CANCELED, orig="oms1.C1", leaves=0), OmsReport)
    assert (report.session, report.report.cl_ord_id, report.report.orig_cl_ord_id) == ("oms1", "C2", "C1")
    assert proxy.tracked("C1").status is S.CANCELED
    assert proxy.tracked("C2") is proxy.tracked("C1")


def test_cancel_rejected_by_venue_maps_back_to_oms_ids(proxy: Harness):
    """A venue OrderCancelReject for the proxy's ids reaches the OMS with its own ids."""
    proxy.live("C1")
    proxy.cancel("C1", "C2")
    actions = proxy.handle(
        ev.VenueCancelReject("sim", T0, CancelReject("oms1.C2", "oms1.C1", "", S.NEW, "1", "0", "too late"))
    )
    assert actions == [OmsCancelReject("oms1", CancelReject("C2", "C1", "V1", S.NEW, "1", "0", "too late"))]
    assert proxy.tracked("C1").status is S.NEW


def test_cancel_of_unknown_order_rejects_unknown_order(proxy: Harness):
    """A cancel for a ClOrdID the session never sent is refused with CxlRejReason 1."""
    actions = proxy.cancel("NOPE", "C9")
    assert _refusal(actions).code == "UNKNOWN_ORDER"
    reject = only(actions, OmsCancelReject)
    assert reject.session == "oms1"
    r = reject.reject
    assert (r.cl_ord_id, r.orig_cl_ord_id, r.order_id, r.response_to, _wire(reject)[102]) == (
        "C9",
        "NOPE",
        "NONE",
        "1",
        "1",
    )
    assert r.text.startswith("UNKNOWN_ORDER")


def test_cancel_of_another_sessions_order_rejects_unknown_order(proxy: Harness):
    """A session cannot cancel an order owned by another session, even with the same ClOrdID."""
    proxy.live("C1", session="oms1")
    actions = proxy.cancel("C1", "C2", session="oms2")
    assert _refusal(actions).code == "UNKNOWN_ORDER"
    assert not any(isinstance(a, VenueCancel) for a in actions)
    assert proxy.tracked("C1", "oms1").status is S.NEW


def test_cancel_of_filled_order_rejects_order_not_open(proxy: Harness):
    """Too late to cancel: ORDER_NOT_OPEN with CxlRejReason 0 and the order's status."""
    proxy.live("C1")
    proxy.report("oms1.C1", E.TRADE, S.FILLED, leaves=0, cum=100, last_qty=100, last_px=100)
    actions = proxy.cancel("C1", "C2")
    assert _refusal(actions).code == "ORDER_NOT_OPEN"
    r = only(actions, OmsCancelReject).reject
    assert (_wire(only(actions, OmsCancelReject))[102], r.ord_status, r.order_id, r.response_to) == (
        "0",
        S.FILLED,
        "V1",
        "1",
    )
    assert r.text.startswith("ORDER_NOT_OPEN: ")


def test_cancel_with_used_cl_ord_id_rejects_duplicate(proxy: Harness):
    """A cancel reusing a ClOrdID from today is refused and not sent."""
    proxy.live("C1")
    proxy.new(order("C2"))
    actions = proxy.cancel("C1", "C2")
    assert _refusal(actions).code == "DUPLICATE_CLORDID"
    assert kinds(actions) == [Decision, OmsCancelReject]


def test_cancel_while_venue_down_rejects_venue_unavailable(proxy: Harness):
    """A cancel cannot be sent to a logged-out venue; the OMS is told at once."""
    proxy.live("C1")
    proxy.handle(ev.SessionDown("sim", T0))
    actions = proxy.cancel("C1", "C2")
    assert _refusal(actions).code == "VENUE_UNAVAILABLE"
    assert only(actions, OmsCancelReject).reject.response_to == "1"


# ---------------------------------------------------------------- replaces


def test_replace_above_max_qty_is_refused_and_order_unchanged(proxy: Harness):
    """A replace is checked on its new values; a refused one answers 35=9 with 434=2 and changes nothing."""
    first = order("C1", qty=100)
    proxy.live("C1", qty=100)
    actions = proxy.replace("C1", order("C2", qty=20_000))
    decision = _refusal(actions)
    assert (decision.code, decision.msg_type, decision.cl_ord_id) == ("MAX_ORDER_QTY", "G", "C2")
    assert actions[1] == OmsCancelReject(
        "oms1", CancelReject("C2", "C1", "V1", S.NEW, "2", "", decision.text), "MAX_ORDER_QTY"
    )
    assert _wire(actions[1])[102] == "2"
    tracked = proxy.tracked("C1")
    assert (tracked.request, tracked.cl_ord_id, tracked.venue_cl_ord_id, tracked.pending) == (
        first,
        "C1",
        "oms1.C1",
        None,
    )


def test_replace_outside_collar_is_refused(proxy: Harness):
    """The new price of a replace is collared like a new order's."""
    proxy.live("C1", price=100)
    assert _refusal(proxy.replace("C1", order("C2", price=110))).code == "PRICE_COLLAR"


def test_accepted_replace_takes_effect_only_on_venue_replaced_report(proxy: Harness):
    """The order keeps its old values until the venue's REPLACED report; then ids and request move on."""
    first = order("C1", qty=100, price=100)
    proxy.live("C1", qty=100, price=100)
    new = order("C2", qty=200, price=101)
    actions = proxy.replace("C1", new)
    assert actions == [
        Decision("oms1", "G", "C2", True, T0, symbol="AAPL", venue="sim"),
        VenueReplace("sim", "oms1.C2", "oms1.C1", "V1", new),
    ]
    tracked = proxy.tracked("C1")
    assert (tracked.request, tracked.cl_ord_id, tracked.venue_cl_ord_id) == (first, "C1", "oms1.C1")

    pending = only(proxy.report("oms1.C2", E.PENDING_REPLACE, S.PENDING_REPLACE, orig="oms1.C1", leaves=100), OmsReport)
    assert (pending.report.cl_ord_id, pending.report.orig_cl_ord_id) == ("C2", "C1")
    assert tracked.request == first

    replaced = only(proxy.report("oms1.C2", E.REPLACED, S.NEW, orig="oms1.C1", leaves=200), OmsReport)
    assert (replaced.session, replaced.report.cl_ord_id, replaced.report.orig_cl_ord_id) == ("oms1", "C2", "C1")
    assert (tracked.request, tracked.cl_ord_id, tracked.venue_cl_ord_id, tracked.pending) == (
        new,
        "C2",
        "oms1.C2",
        None,
    )
    assert (tracked.status, tracked.leaves_qty) == (S.NEW, 200)

    cancel = only(proxy.cancel("C2", "C3"), VenueCancel)
    assert (cancel.orig_cl_ord_id, cancel.order_qty) == ("oms1.C2", 200)


def test_replace_rejected_by_venue_leaves_order_and_allows_next_replace(proxy: Harness):
    """A venue OrderCancelReject (434=2) ends the pending replace without changing the order."""
    first = order("C1", qty=100)
    proxy.live("C1", qty=100)
    proxy.replace("C1", order("C2", qty=200))
    actions = proxy.handle(ev.VenueCancelReject("sim", T0, CancelReject("oms1.C2", "oms1.C1", "V1", S.NEW, "2", "0")))
    r = only(actions, OmsCancelReject).reject
    assert (r.cl_ord_id, r.orig_cl_ord_id, r.response_to) == ("C2", "C1", "2")
    tracked = proxy.tracked("C1")
    assert (tracked.request, tracked.pending) == (first, None)
    assert kinds(proxy.replace("C1", order("C3", qty=300))) == [Decision, VenueReplace]


def test_replace_while_replace_in_flight_rejects_order_pending(proxy: Harness):
    """A second replace before the venue answers the first is refused with CxlRejReason 3."""
    proxy.live("C1")
    proxy.replace("C1", order("C2", qty=200))
    actions = proxy.replace("C1", order("C3", qty=300))
    assert _refusal(actions).code == "ORDER_PENDING"
    assert _wire(only(actions, OmsCancelReject))[102] == "3"


@pytest.mark.parametrize("change", [{"symbol": "TSLA"}, {"side": Side.SELL}], ids=["symbol", "side"])
def test_replace_changing_symbol_or_side_rejects_invalid_order(proxy: Harness, change):
    """Symbol and side are fixed for the life of an order."""
    proxy.live("C1")
    actions = proxy.replace("C1", order("C2", **change))
    assert _refusal(actions).code == "INVALID_ORDER"
    assert only(actions, OmsCancelReject).reject.response_to == "2"
    assert proxy.tracked("C1").pending is None


def test_replace_of_unknown_order_rejects_unknown_order(proxy: Harness):
    """A replace for an order the session never sent is refused with CxlRejReason 1."""
    actions = proxy.replace("NOPE", order("C2"))
    assert _refusal(actions).code == "UNKNOWN_ORDER"
    r = only(actions, OmsCancelReject).reject
    assert (r.response_to, _wire(only(actions, OmsCancelReject))[102], r.order_id) == ("2", "1", "NONE")


# ---------------------------------------------------------------- send failures


def test_send_failed_on_new_order_rejects_to_oms_and_marks_venue_down(proxy: Harness):
    """The edge could not send a forwarded order: the OMS gets VENUE_UNAVAILABLE, the order is closed."""
    proxy.new(order("C1"))
    actions = proxy.handle(ev.VenueSendFailed("sim", "oms1.C1", T0))
    assert kinds(actions) == [Decision, OmsBusinessReject]
    decision = _refusal(actions)
    assert (decision.code, decision.cl_ord_id, decision.msg_type) == ("VENUE_UNAVAILABLE", "C1", "D")
    bmr = actions[1]
    assert (bmr.ref_id, bmr.ref_msg_type, _wire(bmr)[380]) == ("C1", "D", "4")
    assert bmr.text.startswith("VENUE_UNAVAILABLE: ")
    tracked = proxy.tracked("C1")
    assert (tracked.status, tracked.leaves_qty) == (S.REJECTED, 0)
    assert _refusal(proxy.new(order("C2"))).code == "VENUE_UNAVAILABLE"


def test_send_failed_on_new_order_for_er_session_sends_rejected_er(proxy: Harness):
    """An execution_report session hears of the failed send as a rejected ExecutionReport."""
    proxy.new(order("C1"), "oms2")
    report = only(proxy.handle(ev.VenueSendFailed("sim", "oms2.C1", T0)), OmsReport)
    assert (report.session, report.report.cl_ord_id, report.report.ord_status) == ("oms2", "C1", S.REJECTED)
    assert report.report.text.startswith("VENUE_UNAVAILABLE: ")


def test_send_failed_on_cancel_answers_cancel_reject(proxy: Harness):
    """A cancel that could not be sent is answered with an OrderCancelReject (434=1)."""
    proxy.live("C1")
    proxy.cancel("C1", "C2")
    actions = proxy.handle(ev.VenueSendFailed("sim", "oms1.C2", T0))
    assert _refusal(actions).msg_type == "F"
    r = only(actions, OmsCancelReject).reject
    assert (r.cl_ord_id, r.orig_cl_ord_id, r.response_to) == ("C2", "C1", "1")
    assert proxy.tracked("C1").status is S.NEW


def test_send_failed_on_replace_clears_pending_and_answers_cancel_reject(proxy: Harness):
    """A replace that could not be sent is answered 35=9/434=2 and no longer blocks the order."""
    proxy.live("C1")
    proxy.replace("C1", order("C2", qty=200))
    actions = proxy.handle(ev.VenueSendFailed("sim", "oms1.C2", T0))
    assert _refusal(actions).msg_type == "G"
    assert only(actions, OmsCancelReject).reject.response_to == "2"
    assert proxy.tracked("C1").pending is None


def test_send_failed_for_unknown_id_is_a_notice(proxy: Harness):
    """A send failure the core cannot place is only noted."""
    actions = proxy.handle(ev.VenueSendFailed("sim", "oms1.NOPE", T0))
    assert kinds(actions) == [Notice] and actions[0].kind == "send_failed"


# ---------------------------------------------------------------- messages the proxy cannot take


def test_unsupported_message_gets_business_reject_reason_3(proxy: Harness):
    """An application message type the proxy does not accept gets 35=j with 380=3."""
    actions = proxy.handle(ev.UnsupportedMessage("oms1", 7, T0, "AE"))
    decision = _refusal(actions)
    assert decision.code == "UNSUPPORTED_MESSAGE"
    assert actions[1] == OmsBusinessReject("oms1", 7, "AE", "", "UNSUPPORTED_MESSAGE", decision.text)
    assert _wire(actions[1])[380] == "3"
    assert decision.text.startswith("UNSUPPORTED_MESSAGE: ")


@pytest.mark.parametrize("session", ["oms1", "oms2"])
def test_invalid_new_order_rejects_invalid_order(proxy: Harness, session):
    """An undecodable NewOrderSingle is refused with INVALID_ORDER and the decoder's reason."""
    actions = proxy.handle(ev.InvalidMessage(session, 8, T0, "D", "C1", "OrderQty (38) is missing"))
    decision = _refusal(actions)
    assert decision.code == "INVALID_ORDER"
    assert actions[1] == OmsBusinessReject(
        session, 8, "D", "C1", "INVALID_ORDER", "INVALID_ORDER: OrderQty (38) is missing"
    )
    assert _wire(actions[1])[380] == "0"
    assert proxy.core.orders.by_oms(session, "C1") is None


@pytest.mark.parametrize("msg_type, response_to", [("G", "2"), ("F", "1")])
def test_invalid_cancel_or_replace_answers_cancel_reject(proxy: Harness, msg_type, response_to):
    """An undecodable cancel or replace gets an OrderCancelReject for the right request type."""
    proxy.live("C1")
    actions = proxy.handle(ev.InvalidMessage("oms1", 9, T0, msg_type, "C2", "Side (54) is missing", "C1"))
    assert _refusal(actions).code == "INVALID_ORDER"
    r = only(actions, OmsCancelReject).reject
    assert (r.cl_ord_id, r.orig_cl_ord_id, r.order_id, r.response_to) == ("C2", "C1", "V1", response_to)
    assert r.text == "INVALID_ORDER: Side (54) is missing"
