"""Kill switch and risk-desk actions on the core alone."""

from __future__ import annotations

import pytest

from fixproxy.core import events as ev, snapshot
from fixproxy.core.killswitch import KillAction, KillSwitch, TradingState, parse_scope
from fixproxy.core.model import CancelReject, ExecType, OrdStatus, Side
from fixproxy.core.proxy import SessionPolicy

from .conftest import D, Harness, only, order

E, S = ExecType, OrdStatus


def code(actions) -> str | None:
    decision = next(a for a in actions if isinstance(a, ev.Decision))
    return None if decision.accepted else decision.code


def kill(h: Harness, scope: str, action: str, reason: str = "desk says so", operator: str = "alice"):
    return h.handle(ev.AdminKill(scope, action, reason, operator, h.now))


@pytest.mark.parametrize("text", ["firm", "session:oms1", "account:A1", "symbol:AAPL"])
def test_scope_names_are_accepted(text):
    """firm and kind:name scopes parse as themselves."""
    assert parse_scope(text) == text


@pytest.mark.parametrize("text", ["", "Firm", "desk:x", "account:", "symbol"])
def test_bad_scope_is_refused(text):
    """Anything else is a ValueError naming the accepted forms."""
    with pytest.raises(ValueError, match="scope must be"):
        parse_scope(text)


@pytest.mark.parametrize(
    "text, why",
    [
        ("account:a b", "without spaces"),
        ("account:A\x00", "control characters"),
        ("symbol:A\x07PL", "control"),
        ("session:\tx", "control"),
        ("account:Zé", "printable ASCII"),
        ("account:" + "A" * 65, "at most 64"),
    ],
)
def test_scope_name_with_spaces_control_characters_or_over_64_is_refused(text, why):
    """A scope's name is 1 to 64 printable ASCII characters: NUL, BEL, tabs, non-ASCII and longer names
    are refused with the reason, on every surface (HTTP, CLI, desk session, dashboard all parse here)."""
    with pytest.raises(ValueError, match=why):
        parse_scope(text)
    assert parse_scope("account:" + "A" * 64)


def test_kill_naming_an_unknown_session_or_bad_scope_is_refused_and_changes_nothing():
    """Whichever surface it comes from, a halt of a session that is not configured, or of a scope with
    a NUL or a 65-character name, is refused with the reason; nothing is halted."""
    h = Harness()
    for scope, why in [
        ("session:nope", "no OMS session named 'nope'"),
        ("account:A\x00B", "control characters"),
        ("account:" + "K" * 65, "at most 64"),
    ]:
        result = only(h.handle(ev.AdminKill(scope, "halt", "test", "carol", h.now)), ev.AdminResult)
        assert not result.ok and why in result.detail
    assert h.core.kill.states() == []


def test_most_restrictive_scope_wins():
    """HALTED on the symbol beats REDUCING on the account; an unrelated scope does not apply."""
    k = KillSwitch()
    k.apply("account:A1", KillAction.REDUCING, "", "", 0)
    k.apply("symbol:AAPL", KillAction.HALT, "", "", 0)
    k.apply("account:A2", KillAction.HALT, "", "", 0)
    assert k.effective("oms1", "A1", "AAPL").state is TradingState.HALTED
    assert k.effective("oms1", "A1", "MSFT").state is TradingState.REDUCING
    assert k.effective("oms1", "A3", "MSFT") is None


def test_halt_blocks_new_orders_and_replaces_but_not_cancels():
    """HALTED: D and G refused with HALTED naming who and why; F still goes to the venue."""
    h = Harness(rules=[])
    h.live("W1", qty=100, account="A1")
    result = only(kill(h, "account:A1", "halt", "fat finger", "alice"), ev.AdminResult)
    assert (result.ok, result.before, result.after, result.orders_cancelled) == (True, "ACTIVE", "HALTED", 0)
    refused = h.new(order("N1", account="A1"))
    assert code(refused) == "HALTED"
    assert refused[0].text == "HALTED: trading is halted for account:A1 by alice: fat finger"
    assert code(h.replace("W1", order("W1-R", qty=50, account="A1"))) == "HALTED"
    assert isinstance(h.cancel("W1", "W1-C")[-1], ev.VenueCancel)
    assert code(h.new(order("N2", account="A2"))) is None  # another account still trades


def test_halt_and_cancel_cancels_every_working_order_in_scope():
    """halt_and_cancel sends a cancel per working order of the account and tracks each to its outcome."""
    h = Harness(rules=[])
    h.live("A", qty=100, account="A1", order_id="V1")
    h.live("B", qty=50, account="A1", order_id="V2", session="oms2")
    h.live("C", qty=10, account="A2", order_id="V3")
    actions = kill(h, "account:A1", "halt_and_cancel")
    cancels = [a for a in actions if isinstance(a, ev.VenueCancel)]
    assert sorted(c.orig_cl_ord_id for c in cancels) == ["oms1.A", "oms2.B"]
    assert only(actions, ev.AdminResult).orders_cancelled == 2
    assert h.core.kill_cancels_pending() == 2
    first = next(c for c in cancels if c.orig_cl_ord_id == "oms1.A")
    report = only(h.report(first.cl_ord_id, E.CANCELED, S.CANCELED, orig="oms1.A"), ev.OmsReport)
    # The OMS sees an unsolicited cancel of its own order.
    assert (report.session, report.report.cl_ord_id, report.report.orig_cl_ord_id) == ("oms1", "A", "")
    assert h.core.kill_cancels_pending() == 1
    assert not h.tracked("A").is_open


def test_kill_cancel_refused_by_venue_is_not_relayed_to_oms():
    """A venue 35=9 for a cancel the proxy sent is a notice for the desk, not a message for the OMS."""
    h = Harness(rules=[])
    h.live("A", qty=100, account="A1")
    cancel = only(kill(h, "account:A1", "halt_and_cancel"), ev.VenueCancel)
    actions = h.handle(
        ev.VenueCancelReject(
            "sim", h.now, CancelReject(cancel.cl_ord_id, "oms1.A", "V1", OrdStatus.FILLED, "1", "0", "too late")
        )
    )
    assert [a.kind for a in actions] == ["kill_cancel_rejected"]
    assert h.core.kill_cancels_pending() == 0


def test_resume_lets_orders_through_again():
    """Resume is explicit; after it, the halted scope trades."""
    h = Harness(rules=[])
    kill(h, "firm", "halt")
    assert code(h.new(order("X1"))) == "HALTED"
    assert only(kill(h, "firm", "resume"), ev.AdminResult).after == "ACTIVE"
    assert code(h.new(order("X2"))) is None


@pytest.mark.parametrize(
    "side, qty, expected",
    [
        (Side.SELL, 100, None),  # flattens the long 100
        (Side.SELL, 101, "REDUCING_ONLY"),  # would go short
        (Side.BUY, 1, "REDUCING_ONLY"),  # grows the long
    ],
)
def test_reducing_lets_only_shrinking_orders_through(side, qty, expected):
    """REDUCING: a sell up to the long position passes; more, or a buy, is refused."""
    h = Harness(rules=[])
    h.live("L", qty=100, account="A1")
    h.report("oms1.L", E.TRADE, S.FILLED, exec_id="F1", last_qty=100, last_px=100, cum=100, leaves=0)
    kill(h, "account:A1", "reducing")
    assert code(h.new(order("R", qty=qty, side=side, account="A1"))) == expected


def test_reducing_counts_working_orders_already_reducing():
    """Two working sells of 60 against a long 100: the second would overshoot flat and is refused."""
    h = Harness(rules=[])
    h.live("L", qty=100, account="A1")
    h.report("oms1.L", E.TRADE, S.FILLED, exec_id="F1", last_qty=100, last_px=100, cum=100, leaves=0)
    kill(h, "account:A1", "reducing")
    assert code(h.new(order("S1", qty=60, side=Side.SELL, account="A1"))) is None
    assert code(h.new(order("S2", qty=60, side=Side.SELL, account="A1"))) == "REDUCING_ONLY"


def test_cancel_on_disconnect_cancels_that_sessions_working_orders():
    """An OMS session with cancel_on_disconnect drops: its working orders are cancelled, others are not."""
    sessions = {"oms1": SessionPolicy("sim", cancel_on_disconnect=True), "oms2": SessionPolicy("sim")}
    h = Harness(rules=[], sessions=sessions)
    h.live("A", qty=10)
    h.live("B", qty=10, session="oms2")
    actions = h.handle(ev.SessionDown("oms1", h.now))
    assert [c.orig_cl_ord_id for c in actions if isinstance(c, ev.VenueCancel)] == ["oms1.A"]
    assert only(actions, ev.AdminResult).kind == "cancel_on_disconnect"
    assert [a for a in h.handle(ev.SessionDown("oms2", h.now)) if isinstance(a, ev.VenueCancel)] == []


def test_set_limit_takes_effect_from_next_order_and_reports_before_after():
    """A live limit change applies to the next order; a bad value is refused and changes nothing."""
    h = Harness(rules=["max_order_qty"])
    assert code(h.new(order("Q1", qty=5000))) is None
    result = only(h.handle(ev.AdminSetLimit("firm", "max_order_qty", "1000", "tighten", "bob", h.now)), ev.AdminResult)
    assert (result.ok, result.before, result.after) == (True, "10000", "1000")
    assert code(h.new(order("Q2", qty=5000))) == "MAX_ORDER_QTY"
    bad = only(h.handle(ev.AdminSetLimit("firm", "max_order_qty", "-3", "oops", "bob", h.now)), ev.AdminResult)
    assert not bad.ok and "positive" in bad.detail
    bad = only(h.handle(ev.AdminSetLimit("firm", "max_qty", "3", "oops", "bob", h.now)), ev.AdminResult)
    assert not bad.ok and "no limit named" in bad.detail
    assert code(h.new(order("Q3", qty=1000))) is None
    layer = only(
        h.handle(ev.AdminSetLimit("account:A9", "max_order_qty", 10, "new acct", "bob", h.now)), ev.AdminResult
    )
    assert layer.ok and code(h.new(order("Q4", qty=11, account="A9"))) == "MAX_ORDER_QTY"


def test_set_reference_price_moves_collar():
    """A reference price set by the desk is what the collar measures from."""
    h = Harness(rules=["price_collar"])
    assert code(h.new(order("P1", price=115))) == "PRICE_COLLAR"
    result = only(h.handle(ev.AdminSetReference("AAPL", "112", "news", "carol", h.now)), ev.AdminResult)
    assert (result.ok, result.before, result.after, result.detail) == (True, "100", "112", "")
    assert code(h.new(order("P2", price=115))) is None
    assert h.core.instruments["AAPL"].reference_price == D(112)


@pytest.mark.parametrize("price", ["1e-30", "0.01", "121", "79.99", "1000"])
def test_reference_move_beyond_the_band_is_refused_without_force(price):
    """A reference more than reference_change_max_pct (20%) from the current one is refused and
    leaves the reference alone; with force it is set and the result says it was forced."""
    h = Harness(rules=["price_collar"])
    refused = only(h.handle(ev.AdminSetReference("AAPL", price, "typo?", "carol", h.now)), ev.AdminResult)
    assert not refused.ok and "more than the 20%" in refused.detail and "force" in refused.detail
    assert h.core.instruments["AAPL"].reference_price == D(100)
    forced = only(h.handle(ev.AdminSetReference("AAPL", price, "really", "carol", h.now, force=True)), ev.AdminResult)
    assert forced.ok and forced.detail.startswith("forced:") and h.core.instruments["AAPL"].reference_price == D(price)


def test_first_reference_of_a_symbol_needs_no_force():
    """A symbol with no reference yet takes any positive price."""
    h = Harness(rules=["price_collar"])
    result = only(h.handle(ev.AdminSetReference("NOREF", "12345", "listing", "carol", h.now)), ev.AdminResult)
    assert result.ok and h.core.instruments["NOREF"].reference_price == D(12345)


def test_snapshot_carries_kill_states_and_limit_changes():
    """A core made from the config and given a snapshot keeps the halts and live limit changes made before it."""
    import pickle

    h = Harness(rules=["max_order_qty"])
    kill(h, "symbol:AAPL", "halt")
    h.handle(ev.AdminSetLimit("firm", "max_order_qty", "7", "x", "y", h.now))
    fresh = Harness(rules=["max_order_qty"])
    snapshot.import_state(fresh.core, pickle.loads(pickle.dumps(snapshot.export_state(h.core))))
    fresh.core.up.add("sim")
    assert fresh.core.kill.get("symbol:AAPL").state is TradingState.HALTED
    assert fresh.core.limits.limits.firm.max_order_qty == 7
    assert code(fresh.new(order("S1", symbol="MSFT", qty=8))) == "MAX_ORDER_QTY"


def test_snapshot_carries_the_reference_and_its_anchor():
    """After a restart from a snapshot, fills still move the reference only within the collar around
    the price the desk set before the restart."""
    import pickle

    from fixproxy.core.risk.rules import RiskSettings

    h = Harness(rules=["price_collar"])
    h.handle(ev.AdminSetReference("AAPL", "110", "news", "carol", h.now + 1))
    fresh = Harness(rules=["price_collar"])
    snapshot.import_state(fresh.core, pickle.loads(pickle.dumps(snapshot.export_state(h.core))))
    fresh.core.settings = RiskSettings(reference_from_fills=True)
    assert fresh.core.instruments["AAPL"].reference_price == D(110)
    fresh.live("F1", qty=1, price=115)
    fresh.report("oms1.F1", ExecType.TRADE, OrdStatus.FILLED, exec_id="X1", last_qty=1, last_px=200, cum=1, leaves=0)
    assert fresh.core.instruments["AAPL"].reference_price == D("115.5")
