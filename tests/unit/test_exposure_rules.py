"""Book rules through ProxyCore: fills build the book, the book gates the next order."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from fixproxy.core import events as ev
from fixproxy.core.book import Book, Working
from fixproxy.core.model import ExecType, OrdStatus, Side
from fixproxy.core.risk.limits import Limits, LimitSet, ResolvedLimits
from fixproxy.core.risk.rules import RULES, CheckContext, RiskSettings, _self_match_scan, self_match

from .conftest import INSTRUMENTS, Harness, instrument, order

E, S = ExecType, OrdStatus
D = Decimal
BOOK_RULES = [
    "max_open_orders",
    "short_sale",
    "max_position",
    "gross_exposure",
    "net_exposure",
    "sector_concentration",
    "self_match",
    "throttle",
]


def test_every_book_rule_is_a_configured_rule():
    """The book rules exercised here are all in RULES (the rest are covered in test_rules)."""
    assert set(BOOK_RULES) <= set(RULES)


def harness(
    limit_set: LimitSet, rules=BOOK_RULES, settings: RiskSettings | None = None, locates=None, instruments=None
) -> Harness:
    h = Harness(limits=limit_set, rules=rules, instruments=instruments)
    if settings is not None:
        h.core.settings = settings
    if locates is not None:
        h.core.locates = locates
    return h


def filled(h: Harness, cl: str, qty, price=100, symbol="AAPL", side=Side.BUY, account="A1", session="oms1"):
    """An order accepted and fully filled at ``price``."""
    actions = h.new(order(cl, symbol, qty, price, side=side, account=account), session)
    assert isinstance(actions[-1], ev.VenueNewOrder), actions
    h.report(
        f"{session}.{cl}",
        E.TRADE,
        S.FILLED,
        exec_id=f"X-{cl}",
        last_qty=qty,
        last_px=price,
        cum=qty,
        leaves=0,
        avg_px=price,
    )


def code(actions) -> str | None:
    decision = next(a for a in actions if isinstance(a, ev.Decision))
    return None if decision.accepted else decision.code


def test_fills_build_book_and_gross_limit_blocks_then_reduction_frees():
    """Fills push account A1 to its gross limit; the next buy is refused; a reducing fill lets it through."""
    h = harness(LimitSet(accounts={"A1": Limits(max_gross_exposure=D(25_000))}))
    filled(h, "B1", 100)
    filled(h, "B2", 100)
    assert h.core.book.gross("account:A1") == 20_000
    refused = h.new(order("B3", qty=60, account="A1"))
    assert code(refused) == "GROSS_EXPOSURE"
    decision = refused[0]
    assert (decision.observed, decision.limit, decision.scope) == ("26000", "25000", "account:A1")
    filled(h, "S1", 100, side=Side.SELL)
    assert code(h.new(order("B4", qty=60, account="A1"))) is None


def test_gross_limit_at_exactly_the_limit_passes():
    """Reaching the limit exactly is allowed; one share more is not."""
    h = harness(LimitSet(firm=Limits(max_gross_exposure=D(10_000))))
    assert code(h.new(order("B1", qty=100, account="A1"))) is None  # working 100 x 100 = 10,000
    assert code(h.new(order("B2", qty=1, account="A1"))) == "GROSS_EXPOSURE"


def test_working_order_counts_until_cancelled():
    """In-flight exposure: a working order holds the limit until the venue cancels it."""
    h = harness(LimitSet(firm=Limits(max_gross_exposure=D(10_000))))
    h.live("W1", qty=100, account="A1")
    assert code(h.new(order("W2", qty=10, account="A1"))) == "GROSS_EXPOSURE"
    h.cancel("W1", "W1-C")
    h.report("oms1.W1-C", E.CANCELED, S.CANCELED, orig="oms1.W1")
    assert h.core.book.gross("firm") == 0
    assert code(h.new(order("W3", qty=10, account="A1"))) is None


def test_replace_moves_exposure_by_its_delta():
    """A replace is checked on the difference it makes, not on top of the order it replaces."""
    h = harness(LimitSet(firm=Limits(max_gross_exposure=D(15_000))))
    h.live("R1", qty=100, account="A1")
    ok = h.replace("R1", order("R1-a", qty=150, account="A1"))
    assert code(ok) is None
    h.report("oms1.R1-a", E.REPLACED, S.NEW, orig="oms1.R1", leaves=150)
    assert h.core.book.gross("firm") == 15_000
    assert code(h.replace("R1-a", order("R1-b", qty=151, account="A1"))) == "GROSS_EXPOSURE"


def test_session_and_firm_layers_apply_to_their_own_totals():
    """A session's gross limit counts only that session's orders; the firm's counts everyone's."""
    h = harness(
        LimitSet(firm=Limits(max_gross_exposure=D(30_000)), sessions={"oms2": Limits(max_gross_exposure=D(5_000))})
    )
    assert code(h.new(order("A", qty=200, account="X"))) is None  # oms1: 20,000
    refused = h.new(order("B", qty=60, account="Y"), session="oms2")
    assert code(refused) == "GROSS_EXPOSURE" and refused[0].scope == "session:oms2"
    assert code(h.new(order("C", qty=50, account="Y"), session="oms2")) is None  # 5,000 on oms2
    refused = h.new(order("D", qty=60, account="Z"))
    assert code(refused) == "GROSS_EXPOSURE" and refused[0].scope == "firm"


@pytest.mark.parametrize(
    "side, qty, expected",
    [
        (Side.BUY, 400, None),
        (Side.BUY, 401, "NET_EXPOSURE"),
        (Side.SELL_SHORT, 100, None),
    ],
)
def test_net_exposure_hard_limit(side, qty, expected):
    """Net long with every working buy filled may not pass the hard limit; selling reduces it."""
    h = harness(
        LimitSet(firm=Limits(max_net_exposure=D(50_000))), settings=RiskSettings(sell_below_zero_is_short=False)
    )
    filled(h, "B0", 100)  # net long 10,000
    assert code(h.new(order("N1", qty=qty, side=side, account="A1"))) == expected


def test_alert_raised_once_per_crossing_of_each_level():
    """70% and 90% of the net limit each raise one Alert; staying above raises nothing more."""
    h = harness(LimitSet(firm=Limits(max_net_exposure=D(10_000))))

    def alerts(actions: list[ev.Action]) -> list[ev.Alert]:
        return [a for a in actions if isinstance(a, ev.Alert)]

    assert alerts(h.new(order("A1", qty=50, account="A1"))) == []  # 50%
    first = alerts(h.new(order("A2", qty=25, account="A1")))  # 75%
    assert [(a.limit_name, a.scope, a.level_pct) for a in first] == [("max_net_exposure", "firm", "70")]
    assert alerts(h.new(order("A3", qty=1, account="A1"))) == []  # 76%: same level, no repeat
    second = alerts(h.new(order("A4", qty=15, account="A1")))  # 91%
    assert [a.level_pct for a in second] == ["90"]


@pytest.mark.parametrize(
    "side, qty, expected",
    [
        (Side.BUY, 900, None),
        (Side.BUY, 901, "MAX_POSITION"),
        (Side.SELL_SHORT, 300, None),
        (Side.SELL_SHORT, 301, "MAX_POSITION"),
    ],
)
def test_max_position_long_and_short_include_working_orders(side, qty, expected):
    """Long: position + working buys + order <= max long; short: position - working sells - order >= -max short."""
    h = harness(
        LimitSet(symbols={"AAPL": Limits(max_long_position=D(1000), max_short_position=D(200))}), rules=["max_position"]
    )
    filled(h, "P0", 100)  # long 100
    assert code(h.new(order("P1", qty=qty, side=side, account="A1"))) == expected


def test_sector_concentration_blocks_growth_of_heavy_sector_only():
    """Above the gross floor, a sector over its share is blocked from growing; other sectors pass."""
    instruments = {**INSTRUMENTS, "AAPL": instrument("AAPL", 100), "XOM": instrument("XOM", 100)}
    instruments["AAPL"] = instruments["AAPL"].__class__(
        **{**{f: getattr(instruments["AAPL"], f) for f in instruments["AAPL"].__struct_fields__}, "sector": "Tech"}
    )
    instruments["XOM"] = instruments["XOM"].__class__(
        **{**{f: getattr(instruments["XOM"], f) for f in instruments["XOM"].__struct_fields__}, "sector": "Energy"}
    )
    h = harness(LimitSet(firm=Limits(max_sector_pct=D(60), sector_min_gross=D(10_000))), instruments=instruments)
    assert code(h.new(order("T1", "AAPL", 90, account="A1"))) is None  # below the floor: not checked
    assert code(h.new(order("E1", "XOM", 60, account="A1"))) is None  # Tech 9,000 / 15,000 = 60%
    refused = h.new(order("T2", "AAPL", 10, account="A1"))  # Tech 10,000 / 16,000 = 62.5%
    assert code(refused) == "SECTOR_CONCENTRATION" and refused[0].observed == "62.5000"
    assert code(h.new(order("E2", "XOM", 10, account="A1"))) is None  # Energy grows: fine


@pytest.mark.parametrize(
    "mode, account, price, expected",
    [
        ("account", "A1", 101, "SELF_MATCH"),  # crosses own working buy at 101? no: sell at 101 > buy 100
        ("account", "A1", 100, "SELF_MATCH"),
        ("account", "A1", 99, "SELF_MATCH"),
        ("account", "A2", 99, None),
        ("firm", "A2", 99, "SELF_MATCH"),
        ("off", "A1", 99, None),
    ],
)
def test_self_match_blocks_crossing_opposite_order(mode, account, price, expected):
    """A sell at or below the account's (or firm's) working buy price would trade with it."""
    h = harness(LimitSet(), rules=["self_match"], settings=RiskSettings(self_match=mode))
    h.live("BUY1", qty=100, price=100, account="A1")
    got = code(h.new(order("SELL1", qty=10, price=price, side=Side.SELL, account=account)))
    if price > 100:
        expected = None
    assert got == expected


def test_self_match_ignores_the_order_being_replaced():
    """Replacing a working buy does not self-match against itself."""
    h = harness(LimitSet(), rules=["self_match"])
    h.live("BUY1", qty=100, price=100, account="A1")
    assert code(h.replace("BUY1", order("BUY1-R", qty=100, price=101, account="A1"))) is None


@pytest.mark.parametrize(
    "side, qty, located, long, expected",
    [
        (Side.SELL_SHORT, 100, 0, 0, "SHORT_SALE_NO_LOCATE"),
        (Side.SELL_SHORT, 100, 100, 0, None),
        (Side.SELL_SHORT, 101, 100, 0, "SHORT_SALE_NO_LOCATE"),
        (Side.SELL, 100, 0, 100, None),  # plain sell of a long position
        (Side.SELL, 101, 0, 100, "SHORT_SALE_NO_LOCATE"),  # would go below zero
        (Side.SELL, 150, 50, 100, None),
    ],
)
def test_short_sale_needs_a_locate(side, qty, located, long, expected):
    """Sell short needs located shares; a plain sell below flat is treated as a short sale."""
    h = harness(LimitSet(), rules=["short_sale"], locates={("A1", "AAPL"): D(located)})
    if long:
        filled(h, "L0", long)
    refused = h.new(order("S1", qty=qty, side=side, account="A1"))
    assert code(refused) == expected


def test_plain_sell_below_zero_passes_when_not_treated_as_short():
    """With sell_below_zero_is_short off, only Side 5/6 need a locate."""
    h = harness(LimitSet(), rules=["short_sale"], settings=RiskSettings(sell_below_zero_is_short=False))
    assert code(h.new(order("S1", qty=100, side=Side.SELL, account="A1"))) is None
    assert code(h.new(order("S2", qty=100, side=Side.SELL_SHORT, account="A1"))) == "SHORT_SALE_NO_LOCATE"


def test_throttle_counts_messages_in_a_sliding_second():
    """Three orders per second pass, the fourth inside the same second is refused; a second later it passes."""
    h = harness(LimitSet(sessions={"oms1": Limits(max_msgs_per_s=3)}), rules=["throttle"])
    for i in range(3):
        assert code(h.new(order(f"T{i}", qty=1))) is None
        h.now += 100_000_000
    refused = h.new(order("T3", qty=1))
    assert code(refused) == "THROTTLE" and refused[0].scope == "session:oms1"
    h.now += 1_000_000_000
    assert code(h.new(order("T4", qty=1))) is None
    assert code(h.new(order("T5", qty=1), session="oms2")) is None  # another session has its own window


def test_cancel_is_never_throttled():
    """Cancels count toward the rate but always pass."""
    h = harness(LimitSet(firm=Limits(max_msgs_per_s=1)), rules=["throttle"])
    h.live("C1", qty=1)
    actions = h.cancel("C1", "C1-X")
    assert isinstance(actions[-1], ev.VenueCancel)


def test_max_open_orders_per_session():
    """The session may hold two open orders; the third waits until one is done."""
    h = harness(LimitSet(sessions={"oms1": Limits(max_open_orders=2)}), rules=["max_open_orders"])
    h.live("O1", qty=1)
    h.live("O2", qty=1)
    refused = h.new(order("O3", qty=1))
    assert code(refused) == "MAX_OPEN_ORDERS" and refused[0].observed == "3"
    h.report("oms1.O1", E.TRADE, S.FILLED, exec_id="F1", last_qty=1, last_px=100, cum=1, leaves=0)
    assert code(h.new(order("O4", qty=1))) is None


def test_fill_moves_reference_when_configured_and_bust_reverses_position():
    """With reference_from_fills a fill inside the collar moves the reference price; a bust (150=H,
    19=ExecID) takes the fill back out of the book."""
    h = harness(
        LimitSet(firm=Limits(price_collar_pct=D(10))), rules=[], settings=RiskSettings(reference_from_fills=True)
    )
    filled(h, "F1", 100, price=105)
    assert h.core.instruments["AAPL"].reference_price == 105
    assert h.core.book.positions[("A1", "AAPL")].qty == 100
    h.report("oms1.F1", E.TRADE_CANCEL, S.NEW, exec_id="BUST1", exec_ref_id="X-F1", leaves=100, cum=0)
    assert h.core.book.positions[("A1", "AAPL")].qty == 0
    assert h.core.book.open_orders("firm") == 1  # reopened: 100 working again


def test_overfill_is_applied_and_flagged():
    """The venue is the truth: a fill past the order quantity moves the book and raises a notice."""
    h = harness(LimitSet(), rules=[])
    h.live("OF", qty=100, account="A1")
    actions = h.report("oms1.OF", E.TRADE, S.FILLED, exec_id="X1", last_qty=120, last_px=100, cum=120)
    assert any(isinstance(a, ev.Notice) and a.kind == "overfill" for a in actions)
    assert h.core.book.positions[("A1", "AAPL")].qty == 120


_WORKING = st.tuples(
    st.sampled_from([1, -1]),
    st.sampled_from(["", "A1", "A2"]),
    st.sampled_from(["oms1", "oms2"]),
    st.sampled_from([None, D(99), D(100), D(101)]),
    st.integers(min_value=0, max_value=300),
)


@settings(max_examples=300, deadline=None)
@given(
    book_orders=st.lists(_WORKING, max_size=12),
    changes=st.lists(_WORKING, max_size=6),
    new=_WORKING,
    mode=st.sampled_from(["account", "firm"]),
)
def test_self_match_from_the_price_index_decides_as_a_scan_of_every_order(book_orders, changes, new, mode):
    """The self-match check reads the book's price index; whatever the working orders (sides,
    owners, market and limit prices, some then changed or gone), it decides exactly as a scan of
    every working order would."""
    book = Book({})
    for i, (sign, account, session, price, qty) in enumerate(book_orders):
        book.set_working(f"k{i}", Working(session, account, "AAPL", sign, D(qty), price))
    for i, (_, _, _, price, qty) in enumerate(changes):  # replaced, part-filled or done
        key = f"k{i}"
        old = book.working(key)
        if old is not None:
            book.set_working(key, Working(old.session, old.account, "AAPL", old.sign, D(qty), price) if qty else None)
    sign, account, session, price, _ = new
    request = order("NEW", qty=10, price=price, side=Side.BUY if sign > 0 else Side.SELL, account=account)
    ctx = CheckContext(session, None, ResolvedLimits({}), 0, book=book, settings=RiskSettings(self_match=mode))
    indexed = self_match(request, ctx)
    scanned = _self_match_scan(request, ctx, mode, sign)
    assert (indexed is None) == (scanned is None)


def test_fills_do_not_move_the_reference_by_default():
    """Twelve one-share buys, each 4.9% above the last reference, leave the reference where the
    file put it, so the order first refused by the collar stays refused."""
    h = harness(LimitSet(firm=Limits(price_collar_pct=D(5))), rules=["price_collar"])
    price = D(100)
    for i in range(12):
        price = (price * D("1.049")).quantize(D("0.01"))
        if code(h.new(order(f"W{i}", qty=1, price=price))) is None:
            h.report(f"oms1.W{i}", E.TRADE, S.FILLED, exec_id=f"X{i}", last_qty=1, last_px=price, cum=1, leaves=0)
    assert h.core.instruments["AAPL"].reference_price == 100
    assert code(h.new(order("FAR", qty=1, price=D("157.89")))) == "PRICE_COLLAR"


def test_fills_walk_the_reference_no_further_than_the_collar_around_its_anchor():
    """With reference_from_fills, fills 4.9% up each time move the reference, but never more than the
    collar (5%) away from the price the file or the desk set; a desk change sets a new anchor."""
    h = harness(
        LimitSet(firm=Limits(price_collar_pct=D(5))),
        rules=["price_collar"],
        settings=RiskSettings(reference_from_fills=True),
    )
    for i in range(12):
        ref = h.core.instruments["AAPL"].reference_price
        price = (ref * D("1.049")).quantize(D("0.01"))
        assert code(h.new(order(f"W{i}", qty=1, price=price))) is None
        h.report(f"oms1.W{i}", E.TRADE, S.FILLED, exec_id=f"X{i}", last_qty=1, last_px=price, cum=1, leaves=0)
    assert h.core.instruments["AAPL"].reference_price == 105
    assert code(h.new(order("FAR", qty=1, price=D("157.89")))) == "PRICE_COLLAR"
    h.handle(ev.AdminSetReference("AAPL", "110", "news", "carol", h.now))
    h.report("oms1.W0", E.TRADE, S.FILLED, exec_id="Y1", last_qty=0, last_px=200, cum=1, leaves=0)
    assert h.core.instruments["AAPL"].reference_price == 110  # no quantity: not a fill
    assert code(h.new(order("N1", qty=1, price=D("115")))) is None
    h.report("oms1.N1", E.TRADE, S.FILLED, exec_id="Y2", last_qty=1, last_px=200, cum=1, leaves=0)
    assert h.core.instruments["AAPL"].reference_price == D("115.5")
