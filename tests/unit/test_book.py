"""The position book: fills move positions; working orders count as exposure; totals stay consistent."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from fixproxy.core.book import FIRM, Book, Fill, Position, Working, apply_fill
from fixproxy.core.model import Instrument

D = Decimal


def book(**refs) -> Book:
    """A book whose instruments have these reference prices (sector = first letter of the symbol)."""
    return Book(
        {s: Instrument(s, sector=s[0], reference_price=D(str(p)), reference_time_ns=0) for s, p in refs.items()}
    )


def fill(exec_id: str, qty, price, symbol: str = "AAPL", account: str = "A1", session: str = "oms1") -> Fill:
    return Fill(exec_id, session, account, symbol, D(str(qty)), D(str(price)), 0)


def test_fills_set_quantity_average_cost_and_realized_pnl():
    """Buy 100@10, buy 100@20 -> avg 15; sell 150@30 -> realized 2250, 50 left at avg 15."""
    pos = Position("A1", "X")
    apply_fill(pos, D(100), D(10))
    apply_fill(pos, D(100), D(20))
    assert (pos.qty, pos.avg_cost) == (200, 15)
    apply_fill(pos, D(-150), D(30))
    assert (pos.qty, pos.avg_cost, pos.realized_pnl) == (50, 15, 2250)
    assert (pos.bought_qty, pos.sold_qty, pos.traded_notional) == (200, 150, 100 * 10 + 100 * 20 + 150 * 30)


def test_fill_through_zero_opens_remainder_at_fill_price():
    """Long 100@10, sell 300@12: realized 200 on the 100 closed, short 200 at 12."""
    pos = Position("A1", "X")
    apply_fill(pos, D(100), D(10))
    apply_fill(pos, D(-300), D(12))
    assert (pos.qty, pos.avg_cost, pos.realized_pnl) == (-200, 12, 200)


def test_short_position_realizes_profit_when_bought_back_lower():
    """Short 100@50, buy back 100@40: realized +1000, flat with no average cost."""
    pos = Position("A1", "X")
    apply_fill(pos, D(-100), D(50))
    apply_fill(pos, D(100), D(40))
    assert (pos.qty, pos.avg_cost, pos.realized_pnl) == (0, 0, 1000)


def test_exposure_is_counted_per_scope_at_reference_price():
    """A fill counts in the firm, its session and its account, valued at the reference price."""
    b = book(AAPL=100)
    b.fill(fill("E1", 10, 95))
    for scope in (FIRM, "session:oms1", "account:A1"):
        assert b.gross(scope) == 1000
        assert b.totals(scope).net == 1000
    assert b.gross("account:OTHER") == 0
    assert b.positions[("A1", "AAPL")].qty == 10


def test_working_orders_count_at_worst_case_and_release():
    """Long 100 with a working sell of 300: worst case is short 200, so gross counts 200; cancel releases it."""
    b = book(AAPL=10)
    b.fill(fill("E1", 100, 10))
    assert b.gross(FIRM) == 1000
    b.set_working("K1", Working("oms1", "A1", "AAPL", -1, D(300), D(10)))
    assert b.gross(FIRM) == 2000  # max(|100|, |100 - 300|) x 10
    assert b.open_orders("account:A1") == 1
    assert b.totals(FIRM).short == -2000 and b.totals(FIRM).long == 1000
    b.set_working("K1", None)
    assert (b.gross(FIRM), b.open_orders(FIRM)) == (1000, 0)


def test_reducing_order_does_not_raise_gross():
    """A working sell smaller than the long position leaves worst-case gross unchanged."""
    b = book(AAPL=10)
    b.fill(fill("E1", 100, 10))
    gross_before = b.gross(FIRM)
    assert b.what_if(FIRM, "AAPL", D(0), D(60))[0] == gross_before


def test_reference_price_change_revalues_every_scope():
    """Moving the reference price revalues positions in every scope that holds the symbol."""
    b = book(AAPL=10, MSFT=20)
    b.fill(fill("E1", 100, 10))
    b.fill(fill("E2", -50, 20, symbol="MSFT", account="A2", session="oms2"))
    b.set_reference("AAPL", D(12), 1)
    assert b.gross("account:A1") == 1200
    assert b.gross(FIRM) == 1200 + 1000
    assert b.totals(FIRM).net == 1200 - 1000
    assert b.instruments["AAPL"].reference_time_ns == 1


def test_sector_gross_tracks_symbol_sector():
    """Sector totals add up the gross of the symbols in the sector."""
    b = book(AAPL=10, AMZN=5, MSFT=20)
    b.fill(fill("E1", 100, 10))
    b.fill(fill("E2", 100, 5, symbol="AMZN"))
    b.fill(fill("E3", 10, 20, symbol="MSFT"))
    assert b.sector_gross(FIRM, "A") == 1500 and b.sector_gross(FIRM, "M") == 200


def test_duplicate_exec_id_is_applied_once():
    """A resent report with the same ExecID does not move the position twice."""
    b = book(AAPL=10)
    assert b.fill(fill("E1", 100, 10)) is True
    assert b.fill(fill("E1", 100, 10)) is False
    assert b.positions[("A1", "AAPL")].qty == 100


def test_bust_and_correct_rebuild_the_position():
    """A bust removes the fill; a correction changes its size and price; the book follows."""
    b = book(AAPL=10)
    b.fill(fill("E1", 100, 10))
    b.fill(fill("E2", 50, 12))
    b.bust("E1")
    pos = b.positions[("A1", "AAPL")]
    assert (pos.qty, pos.avg_cost) == (50, 12)
    b.correct("E2", D(80), D(11))
    pos = b.positions[("A1", "AAPL")]
    assert (pos.qty, pos.avg_cost) == (80, 11)
    assert b.totals("account:A1").lines["AAPL"].pos == 80
    assert b.bust("NOPE") is None


def test_start_of_day_position_counts_for_account_and_firm():
    """A start-of-day position is the account's and the firm's, and survives a bust of a later fill."""
    b = book(AAPL=10)
    b.load_position("A1", "AAPL", D(200), D(9))
    b.fill(fill("E1", 100, 10))
    b.bust("E1")
    pos = b.positions[("A1", "AAPL")]
    assert (pos.qty, pos.avg_cost) == (200, 9)
    assert b.gross("account:A1") == 2000 and b.gross(FIRM) == 2000
    assert b.gross("session:oms1") == 0


# ---------------------------------------------------------------- properties

SYMBOLS = ("AAPL", "MSFT", "XOM")
ACCOUNTS = ("A1", "A2")
qty = st.integers(min_value=-500, max_value=500).filter(bool).map(D)
price = st.integers(min_value=1, max_value=5000).map(lambda c: D(c) / 10)
fills = st.lists(st.tuples(st.sampled_from(ACCOUNTS), st.sampled_from(SYMBOLS), qty, price), max_size=40)
working = st.lists(
    st.tuples(
        st.sampled_from(ACCOUNTS), st.sampled_from(SYMBOLS), st.sampled_from((1, -1)), st.integers(1, 300).map(D)
    ),
    max_size=15,
)


def _run(fs) -> Book:
    b = book(AAPL=100, MSFT=200, XOM=50)
    for i, (account, symbol, q, p) in enumerate(fs):
        b.fill(Fill(f"E{i}", "oms1", account, symbol, q, p, i))
    return b


@settings(max_examples=150, deadline=None)
@given(fills)
def test_property_position_equals_sum_of_signed_fills(fs):
    """Every position is the sum of its signed fills, in the account and in the firm total."""
    b = _run(fs)
    for account in ACCOUNTS:
        for symbol in SYMBOLS:
            expected = sum((q for a, s, q, _ in fs if (a, s) == (account, symbol)), D(0))
            got = b.positions.get((account, symbol))
            assert (got.qty if got else 0) == expected
            assert b.line(f"account:{account}", symbol).pos == expected
    for symbol in SYMBOLS:
        assert b.line(FIRM, symbol).pos == sum((q for _, s, q, _ in fs if s == symbol), D(0))


@settings(max_examples=150, deadline=None)
@given(fills, working)
def test_property_exposure_never_negative_and_working_returns_to_zero(fs, ws):
    """Gross exposure is never negative; when every working order is done, only positions remain."""
    b = _run(fs)
    gross_positions = {scope: b.gross(scope) for scope in b.scope_names()}
    for i, (account, symbol, sign, q) in enumerate(ws):
        b.set_working(f"K{i}", Working("oms1", account, symbol, sign, q, None))
        assert all(b.gross(scope) >= 0 for scope in b.scope_names())
        assert all(v >= 0 for scope in b.scope_names() for v in b.totals(scope).sector.values())
    for i in range(len(ws)):
        b.set_working(f"K{i}", None)
    for scope in b.scope_names():
        assert b.open_orders(scope) == 0
        assert b.gross(scope) == gross_positions.get(scope, 0)
        t = b.totals(scope)
        assert t.long == t.net == t.short
        assert all(ln.buy == 0 and ln.sell == 0 for ln in t.lines.values())


@settings(max_examples=100, deadline=None)
@given(fills)
def test_property_replaying_the_same_fills_gives_the_same_book(fs):
    """Two books fed the same fills in the same order are identical, position by position and total by total."""
    a, b = _run(fs), _run(fs)
    assert a.positions == b.positions
    for scope in set(a.scope_names()) | set(b.scope_names()):
        ta, tb = a.totals(scope), b.totals(scope)
        assert (ta.gross, ta.net, ta.long, ta.short, ta.sector) == (tb.gross, tb.net, tb.long, tb.short, tb.sector)


@settings(max_examples=100, deadline=None)
@given(fills, st.data())
def test_property_incremental_totals_match_recomputation(fs, data):
    """Running totals equal a from-scratch sum over lines after fills and reference moves."""
    b = _run(fs)
    for symbol in data.draw(st.lists(st.sampled_from(SYMBOLS), max_size=4)):
        b.set_reference(symbol, data.draw(price), 1)
    for scope in b.scope_names():
        t = b.totals(scope)
        marks = {s: b.mark(s) for s in t.lines}
        assert t.gross == sum((abs(ln.pos) * marks[s] for s, ln in t.lines.items()), D(0))
        assert t.net == sum((ln.pos * marks[s] for s, ln in t.lines.items()), D(0))


@pytest.mark.parametrize("scope", [FIRM, "session:oms1", "account:A1"])
def test_open_orders_counted_per_scope(scope):
    """An open order counts once in each of its scopes."""
    b = book(AAPL=1)
    b.set_working("K1", Working("oms1", "A1", "AAPL", 1, D(5), D(1)))
    b.set_working("K2", Working("oms1", "A1", "AAPL", -1, D(5), D(2)))
    assert b.open_orders(scope) == 2


ops = st.lists(
    st.one_of(
        st.tuples(st.just("fill"), st.sampled_from(ACCOUNTS), st.sampled_from(SYMBOLS), qty, price),
        st.tuples(
            st.just("work"),
            st.integers(0, 5),
            st.sampled_from(ACCOUNTS),
            st.sampled_from(SYMBOLS),
            st.sampled_from((1, -1)),
            st.integers(0, 300).map(D),
        ),
        st.tuples(st.just("reference"), st.sampled_from(SYMBOLS), price),
        st.tuples(
            st.just("settle"),
        ),
    ),
    max_size=40,
)


def _apply(b: Book, plan, held: bool) -> None:
    if held:
        b.hold()
    for i, op in enumerate(plan):
        if op[0] == "fill":
            _, account, symbol, q, p = op
            b.fill(Fill(f"E{i}", "oms1", account, symbol, q, p, i))
        elif op[0] == "work":
            _, k, account, symbol, sign, q = op
            b.set_working(f"K{k}", Working("oms1", account, symbol, sign, q, None))
        elif op[0] == "reference":
            b.set_reference(op[1], op[2], i)
        elif held:
            b.settle()
            b.hold()
    if held:
        b.settle()


def _state(b: Book):
    out = {}
    for scope in b.scope_names():
        t = b.totals(scope)
        lines = {s: (ln.pos, ln.buy, ln.sell, ln.gross, ln.long, ln.short, ln.net) for s, ln in t.lines.items()}
        out[scope] = (t.gross, t.long, t.short, t.net, t.sector, t.open_orders, lines)
    holders = {s: set(h) for s, h in b._holders.items() if h}
    return out, holders, b.positions


@settings(max_examples=150, deadline=None)
@given(ops)
def test_property_held_changes_settle_to_the_same_book(plan):
    """Changes made while the book is held (each line recomputed once, at settle) leave exactly the
    book that recomputing at every change leaves: totals, sectors, lines, open orders, holders."""
    a, b = book(AAPL=100, MSFT=200, XOM=50), book(AAPL=100, MSFT=200, XOM=50)
    _apply(a, plan, held=False)
    _apply(b, plan, held=True)
    assert _state(a) == _state(b)
