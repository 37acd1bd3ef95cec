"""The day roll and the bounded memory of a trading day: finished orders, fills and ids leave memory,
working orders and positions carry over, and a recovery after the roll gives the same core."""

from __future__ import annotations

import pickle
from decimal import Decimal

from hypothesis import given, settings, strategies as st

from fixproxy.assemble import build_core, exec_id_generator
from fixproxy.config import load
from fixproxy.core import compact, events as ev, snapshot
from fixproxy.core.compact import CompactIdSet
from fixproxy.core.model import ExecType, OrdStatus, Side
from fixproxy.dayroll import trading_day
from fixproxy.journal.recovery import recover, snapshots, write_snapshot
from fixproxy.replay.readers import open_sources
from fixproxy.replay.replayer import replay

from .conftest import NS, T0, Harness, kinds, only, order
from .test_journal import CONFIG, T, order as fix_order, picture, report, run_day

E, S = ExecType, OrdStatus


def _fill(h: Harness, cl: str, qty: int = 100, px: int = 100, exec_id: str = "F1", **kw) -> list[ev.Action]:
    return h.report(
        f"oms1.{cl}", E.TRADE, S.FILLED, exec_id=exec_id, last_qty=qty, last_px=px, cum=qty, avg_px=px, **kw
    )


def _roll(h: Harness, day: str = "2023-11-15") -> ev.AdminResult:
    return only(h.handle(ev.DayRoll(day, h.now)), ev.AdminResult)


# ---------------------------------------------------------------- the day roll in the core


def test_day_roll_forgets_finished_orders_and_keeps_working_orders():
    """Filled and cancelled orders leave memory at the roll; a working order stays, still cancellable."""
    h = Harness()
    h.live("DONE", account="ACC")
    _fill(h, "DONE")
    h.live("WORK", account="ACC", order_id="V2")
    result = _roll(h)
    assert result.ok and result.after == "2023-11-15"
    assert "1 finished order(s)" in result.detail and "1 working order(s)" in result.detail
    assert h.core.orders.by_oms("oms1", "DONE") is None
    assert h.tracked("WORK").is_open
    assert kinds(h.cancel("WORK", "X1"))[-1] is ev.VenueCancel


def test_day_roll_carries_positions_over_and_restarts_the_days_figures():
    """The position (quantity, average cost) and exposure carry over; bought, traded and realized restart at zero."""
    h = Harness()
    h.live("B1", account="ACC", qty=100)
    _fill(h, "B1", 100, 100, "F1")
    h.live("S1", account="ACC", qty=40, side=Side.SELL, order_id="V2")
    gross = h.core.book.gross("firm")
    _roll(h)
    pos = h.core.book.positions[("ACC", "AAPL")]
    assert (pos.qty, pos.avg_cost) == (Decimal(100), Decimal(100))
    assert (pos.bought_qty, pos.traded_notional, pos.realized_pnl) == (0, 0, 0)
    assert h.core.book.gross("firm") == gross
    assert h.core.book.fills() == []


def test_day_roll_allows_a_clordid_of_the_closed_day_again():
    """DUPLICATE_CLORDID holds within a day; after the roll the same ClOrdID is a new order."""
    h = Harness()
    h.live("C1")
    _fill(h, "C1")
    assert only(h.new(order("C1")), ev.Decision).code == "DUPLICATE_CLORDID"
    _roll(h)
    assert kinds(h.new(order("C1")))[-1] is ev.VenueNewOrder


def test_day_roll_to_the_same_day_is_refused_and_changes_nothing():
    h = Harness()
    _roll(h, "2023-11-15")
    h.live("C1")
    again = _roll(h, "2023-11-15")
    assert not again.ok and h.tracked("C1").is_open


def test_resent_fill_of_the_closed_day_is_not_booked_twice():
    """A working order's fill resent after the roll (its ExecID is of the day before) moves nothing."""
    h = Harness()
    h.live("W1", account="ACC", qty=100)
    h.report("oms1.W1", E.TRADE, S.PARTIALLY_FILLED, exec_id="P1", last_qty=30, last_px=100, cum=30, leaves=70)
    _roll(h)
    out = h.report("oms1.W1", E.TRADE, S.PARTIALLY_FILLED, exec_id="P1", last_qty=30, last_px=100, cum=30, leaves=70)
    assert any(isinstance(a, ev.Notice) and a.kind == "duplicate_fill" for a in out)
    assert h.core.book.positions[("ACC", "AAPL")].qty == Decimal(30)


# ---------------------------------------------------------------- within a day: the grace period


def _graced(seconds: int = 60) -> Harness:
    h = Harness()
    h.core.retention.grace_ns = seconds * NS
    return h


def test_finished_order_leaves_memory_after_the_grace_period():
    """A filled order is held for the grace period, then forgotten; a cancel of it is refused UNKNOWN_ORDER."""
    h = _graced(60)
    h.live("C1", account="ACC")
    _fill(h, "C1")
    h.now = T0 + 30 * NS
    h.handle(ev.SessionUp("sim", h.now))
    assert h.core.orders.by_oms("oms1", "C1") is not None
    h.now = T0 + 61 * NS
    h.handle(ev.SessionUp("sim", h.now))
    assert h.core.orders.by_oms("oms1", "C1") is None and h.core.book.fills() == []
    assert h.core.book.positions[("ACC", "AAPL")].qty == Decimal(100)
    refused = h.cancel("C1", "X1")
    assert only(refused, ev.Decision).code == "UNKNOWN_ORDER"
    assert "finished earlier today" in only(refused, ev.OmsCancelReject).reject.text
    assert only(h.new(order("C1")), ev.Decision).code == "DUPLICATE_CLORDID"  # still the same day


def test_late_report_for_a_forgotten_order_reaches_its_oms():
    """The live core rebuilds the order from the venue's report (``<session>.<ClOrdID>``) and relays it;
    a resent fill of it (same ExecID) is not booked twice."""
    h = _graced(1)
    h.core.recover_orders = True
    h.live("C1", account="ACC", qty=100)
    h.report("oms1.C1", E.TRADE, S.PARTIALLY_FILLED, exec_id="P1", last_qty=40, last_px=100, cum=40, leaves=60)
    h.report("oms1.C1", E.CANCELED, S.CANCELED, exec_id="K1", cum=40, leaves=0)
    h.now = T0 + 5 * NS
    h.handle(ev.SessionUp("sim", h.now))
    assert h.core.orders.by_oms("oms1", "C1") is None
    late = h.report(
        "oms1.C1",
        E.TRADE,
        S.CANCELED,
        exec_id="P1",
        last_qty=40,
        last_px=100,
        cum=40,
        symbol="AAPL",
        side=Side.BUY,
        order_qty=100,
    )
    relayed = only(late, ev.OmsReport)
    assert (relayed.session, relayed.report.cl_ord_id) == ("oms1", "C1")
    assert h.core.book.positions[("ACC", "AAPL")].qty == Decimal(40)


def test_bust_of_a_folded_fill_alerts_the_desk_and_moves_nothing():
    h = _graced(1)
    h.live("C1", account="ACC", qty=100)
    h.report("oms1.C1", E.TRADE, S.PARTIALLY_FILLED, exec_id="P1", last_qty=40, last_px=100, cum=40, leaves=60)
    h.now = T0 + 5 * NS
    out = h.report("oms1.C1", E.TRADE_CANCEL, S.NEW, exec_id="B1", exec_ref_id="P1", cum=0, leaves=100)
    alert = only(out, ev.Alert)
    assert alert.text.startswith("FILL_ADJUSTMENT_NEEDED") and "P1" in alert.text
    assert h.core.book.positions[("ACC", "AAPL")].qty == Decimal(40)


def test_forgetting_is_the_same_in_a_replay_of_the_same_events():
    """What leaves memory depends only on the events' clock: two cores fed the same events agree."""
    cores = [_graced(2), _graced(2)]
    for h in cores:
        for i in range(20):
            h.now = T0 + i * NS
            h.live(f"C{i}", account="ACC", qty=10, order_id=f"V{i}")
            if i % 3:
                _fill(h, f"C{i}", 10, 100, f"F{i}")
    assert sorted(cores[0].core.orders._by_oms) == sorted(cores[1].core.orders._by_oms)
    assert cores[0].core.orders.held() < 20


# ---------------------------------------------------------------- the edge: trading day, journal, recovery


def test_trading_day_follows_the_roll_time_in_its_time_zone():
    """A 17:00 New York roll: 16:59 is still the day, 17:01 names the next (also across DST)."""

    def at(text: str) -> int:
        from datetime import datetime

        return int(datetime.fromisoformat(text).timestamp()) * NS

    assert trading_day(at("2026-12-07T16:59:00-05:00"), "17:00", "America/New_York") == "2026-12-07"
    assert trading_day(at("2026-12-07T17:01:00-05:00"), "17:00", "America/New_York") == "2026-12-08"
    assert trading_day(at("2026-07-07T17:01:00-04:00"), "17:00", "America/New_York") == "2026-07-08"
    assert trading_day(at("2026-12-07T23:59:00+00:00")) == "2026-12-07"
    assert trading_day(at("2026-12-08T05:59:00+00:00"), "06:00", "UTC") == "2026-12-07"


def test_recovery_after_the_roll_starts_from_its_snapshot_and_gives_the_same_core(tmp_path):
    """The roll is journaled and a snapshot written at its place in the journal: a recovery replays only
    what came after it, and ends with the same orders, positions and ExecID counter."""
    loaded = load(CONFIG)
    write_snapshot(tmp_path, 1, pickle.dumps(snapshot.export_state(build_core(loaded, T))))
    core, j, wire = run_day(tmp_path, loaded, 1, T, None)
    clock = [T]
    wire.clock = lambda: clock[0]
    wire.day_roll = ("00:00", "UTC")
    sim, oms = wire.infos["sim"], wire.infos["oms1"]
    wire.submit(ev.SessionUp("sim", T))
    wire.receive(oms, fix_order("A1"), T)
    wire.receive(sim, report("A1", "E1", "2", "F", 100, 0, 100), T)  # filled: leaves memory at the roll
    wire.receive(oms, fix_order("A2", seq=2), T)
    wire.receive(sim, report("A2", "E2", "0", "0", 0, 100), T)  # working: carries over
    clock[0] = T + 86_400 * NS
    assert wire.day_due()
    result = wire.check_day()
    assert result is not None and result.ok
    assert [s for s in snapshots(tmp_path) if s[1]], "no snapshot at the roll"
    wire.receive(oms, fix_order("A1", seq=3), clock[0])  # yesterday's ClOrdID: a new order today
    wire.receive(
        wire.infos["oms2"],
        "8=FIX.4.2\x0135=D\x0134=1\x0149=OMS2\x0156=FIXPROXY\x0111=B1\x011=ACC\x01"
        "55=NOSUCH\x0154=1\x0138=10\x0140=2\x0144=190\x0121=1\x01",
        clock[0],
    )  # refused: a proxy ExecID
    j.close()

    def make():
        return build_core(loaded, T + 1)

    rec = recover(tmp_path, loaded.config, make, exec_id_generator, lambda v: {}, lambda s: {})
    assert rec.replayed == 2  # only what followed the roll
    again = make()
    snapshot.import_state(again, pickle.loads(rec.snapshot))
    assert picture(again) == picture(core)
    assert again.day == core.day == trading_day(clock[0])
    assert again.orders.by_oms("oms1", "A2").is_open and again.orders.by_oms("oms1", "A1").is_open
    assert pickle.loads(rec.snapshot)["ids_drawn"] == core.next_id.drawn

    # Compliance replay of the journal rolls the day where the live core did: no decision differs
    # (yesterday's ClOrdID A1 is accepted again after the roll, as it was live).
    result = replay(loaded, open_sources([str(tmp_path / "00000001.journal")]))
    assert [(r.cl_ord_id, r.original, r.replayed) for r in result.rows if r.differs] == []
    assert [r.cl_ord_id for r in result.rows].count("A1") == 2


# ---------------------------------------------------------------- the compact id set


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=12), max_size=400), st.lists(st.text(max_size=12), max_size=50))
def test_compact_id_set_answers_like_a_set(added, probes):
    """Membership, first-add results and size match a Python set (runs small enough to merge often)."""
    old = compact.RECENT
    compact.RECENT = 7
    try:
        s, ref = CompactIdSet(), set()
        for v in added:
            assert s.add(v) == (v not in ref)
            ref.add(v)
        assert len(s) == len(ref)
        for v in added + probes:
            assert (v in s) == (v in ref)
        back = pickle.loads(pickle.dumps(s))
        assert all(v in back for v in ref) and len(back) == len(ref)
    finally:
        compact.RECENT = old


def test_compact_id_set_keeps_eight_bytes_an_id_once_sorted():
    s = CompactIdSet(f"ORDER-{i:012d}" for i in range(100_000))
    assert len(s) == 100_000 and "ORDER-000000099999" in s and "ORDER-000000100000" not in s
    assert s.nbytes() < 100_000 * 8 + compact.RECENT * 60
