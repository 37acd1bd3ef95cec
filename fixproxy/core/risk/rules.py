"""Pre-trade rules: one small pure function each, returning a Reject or None.

A rule sees the order (new values for a replace), and a CheckContext holding the instrument,
the resolved limits and the clock reading of the event. Denials are values, not exceptions.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from decimal import Decimal
from typing import Literal

import msgspec

from ..book import Book, Working
from ..cluster import GROSS, NET_LONG, NET_SHORT, OPEN_ORDERS, ClusterShares
from ..model import Instrument, OrderRequest, OrdType, Side
from .limits import ResolvedLimits

_NS = 1_000_000_000


class Reject(msgspec.Struct, frozen=True):
    """Why an order was refused: a stable code, what was seen, the limit and where it was set."""

    code: str
    sentence: str
    observed: str = ""
    limit: str = ""
    scope: str = ""

    @property
    def text(self) -> str:
        """Text (58) as sent: ``<CODE>: <sentence>``."""
        return f"{self.code}: {self.sentence}"


class RiskSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Firm-wide switches of the book rules."""

    #: Block an order that could trade against a working order of the same account, or of the firm.
    self_match: Literal["account", "firm", "off"] = "account"
    #: Treat a plain sell that would take the account's position below zero as a short sale.
    sell_below_zero_is_short: bool = True
    #: Utilization levels (percent) at which an alert is raised, once per upward crossing.
    alert_levels: tuple[Decimal, ...] = (Decimal(70), Decimal(90))
    #: Let a fill's price move the symbol's reference, within the collar band around the reference
    #: the desk or the instrument file last set (so fills cannot walk it away).
    reference_from_fills: bool = False
    #: The desk may move a reference price by at most this percentage without ``force``.
    reference_change_max_pct: Decimal = Decimal(20)


class CheckContext:
    """What a rule may look at besides the order. Read-only by convention."""

    __slots__ = (
        "session",
        "instrument",
        "limits",
        "now_ns",
        "seen_cl_ord_ids",
        "is_replace",
        "book",
        "replacing",
        "replacing_key",
        "settings",
        "msg_rate",
        "locates",
        "shares",
    )

    def __init__(
        self,
        session: str,
        instrument: Instrument | None,
        limits: ResolvedLimits,
        now_ns: int,
        seen_cl_ord_ids: Container[str] = (),
        is_replace: bool = False,
        *,
        book: Book | None = None,
        replacing: Working | None = None,
        replacing_key: str = "",
        settings: RiskSettings | None = None,
        msg_rate: int = 0,
        locates: Mapping[tuple[str, str], Decimal] | None = None,
        shares: ClusterShares | None = None,
    ):
        self.session = session
        self.instrument = instrument
        self.limits = limits
        self.now_ns = now_ns
        self.seen_cl_ord_ids = seen_cl_ord_ids
        self.is_replace = is_replace
        #: The live book (read only); an empty one when the caller has none.
        self.book = book if book is not None else Book({})
        #: For a replace: what the order being replaced adds to the book now, and its key.
        self.replacing = replacing
        self.replacing_key = replacing_key
        self.settings = settings if settings is not None else _DEFAULT_SETTINGS
        #: Order messages on this session in the last second, this one included.
        self.msg_rate = msg_rate
        #: Shares located for short sales, by (account, symbol).
        self.locates = locates if locates is not None else {}
        #: This instance's shares of the limits a cluster shares (None: the proxy runs alone).
        self.shares = shares

    def deltas(self, order: OrderRequest) -> tuple[Decimal, Decimal]:
        """(added working buy quantity, added working sell quantity) if the order is accepted."""
        qty = order.order_qty
        old = self.replacing
        if old is not None:
            qty -= old.qty
        return (qty, _ZERO) if order.side.is_buy else (_ZERO, qty)


_DEFAULT_SETTINGS = RiskSettings()
_ZERO = Decimal(0)


Rule = Callable[[OrderRequest, CheckContext], "Reject | None"]


# ---------------------------------------------------------------- refusals the core also makes outside the rules


def reused_cl_ord_id(session: str, cl_ord_id: str, used_today: bool, still_open: bool) -> Reject | None:
    """The one DUPLICATE_CLORDID refusal, of orders, replaces and cancels alike: the ClOrdID was used
    on the session today, or an open order (of any day: a GTC order) still answers to it."""
    if used_today:
        return Reject(
            "DUPLICATE_CLORDID",
            f"ClOrdID {cl_ord_id} was already used on session {session} today",
            observed=cl_ord_id,
            scope=f"session:{session}",
        )
    if still_open:
        return Reject(
            "DUPLICATE_CLORDID",
            f"ClOrdID {cl_ord_id} belongs to an order still open on session {session}",
            observed=cl_ord_id,
            scope=f"session:{session}",
        )
    return None


def venue_unavailable(venue: str, sentence: str) -> Reject:
    """The one VENUE_UNAVAILABLE refusal: the core found the venue down, or the edge reported that a
    message could not leave (``VenueSendFailed``); ``sentence`` says which."""
    return Reject("VENUE_UNAVAILABLE", sentence, observed=venue)


def _fmt(value: object) -> str:
    if isinstance(value, Decimal):
        return f"{value.normalize():f}" if value == value.to_integral_value() else f"{value:f}"
    return str(value)


def _who(order: OrderRequest) -> str:
    return f" for account {order.account}" if order.account else ""


def _reference(order: OrderRequest, ctx: CheckContext) -> Decimal | Reject:
    """The instrument's reference price, or the reject that its absence or age calls for."""
    inst = ctx.instrument
    ref = inst.reference_price if inst is not None else None
    if ref is None or ref <= 0:
        return Reject(
            "NO_REFERENCE_PRICE",
            f"no reference price for {order.symbol}, so the order cannot be valued or collared",
            scope=f"symbol:{order.symbol}",
        )
    max_age = ctx.limits.reference_max_age_s
    if max_age is not None and max_age.value and inst is not None:
        # A price with no time is as good as stale (fail closed); compare in nanoseconds, no rounding.
        age_ns = ctx.now_ns - inst.reference_time_ns if inst.reference_time_ns is not None else None
        if age_ns is None or age_ns > max_age.value * _NS:
            age_s = "an unknown time" if age_ns is None else f"{age_ns / _NS:.0f}s"
            return Reject(
                "STALE_REFERENCE_PRICE",
                f"reference price for {order.symbol} is {age_s} old, older than the limit {max_age.value}s",
                observed="unknown" if age_ns is None else str(age_ns // _NS),
                limit=str(max_age.value),
                scope=max_age.scope,
            )
    return ref


# ---------------------------------------------------------------- the rules


def unknown_symbol(order: OrderRequest, ctx: CheckContext) -> Reject | None:
    if ctx.instrument is None:
        return Reject(
            "UNKNOWN_SYMBOL",
            f"symbol {order.symbol} is not in the instrument list",
            observed=order.symbol,
        )
    return None


def restricted_symbol(order: OrderRequest, ctx: CheckContext) -> Reject | None:
    if ctx.instrument is not None and ctx.instrument.restricted:
        return Reject(
            "RESTRICTED_SYMBOL",
            f"symbol {order.symbol} is on the restricted list",
            observed=order.symbol,
            scope=f"symbol:{order.symbol}",
        )
    listed = ctx.limits.restricted_symbols
    if listed is not None:
        return Reject(
            "RESTRICTED_SYMBOL",
            f"symbol {order.symbol} is restricted{_who(order)} ({listed.scope})",
            observed=order.symbol,
            scope=listed.scope,
        )
    return None


def duplicate_cl_ord_id(order: OrderRequest, ctx: CheckContext) -> Reject | None:
    return reused_cl_ord_id(ctx.session, order.cl_ord_id, order.cl_ord_id in ctx.seen_cl_ord_ids, False)


def lot_size(order: OrderRequest, ctx: CheckContext) -> Reject | None:
    inst = ctx.instrument
    if inst is not None and inst.lot_size > 0 and order.order_qty % inst.lot_size != 0:
        return Reject(
            "LOT_SIZE",
            f"order quantity {_fmt(order.order_qty)} is not a multiple of the lot size {_fmt(inst.lot_size)} of {order.symbol}",
            observed=_fmt(order.order_qty),
            limit=_fmt(inst.lot_size),
            scope=f"symbol:{order.symbol}",
        )
    return None


def max_order_qty(order: OrderRequest, ctx: CheckContext) -> Reject | None:
    limit = ctx.limits.max_order_qty
    if limit is not None and order.order_qty > limit.value:
        return Reject(
            "MAX_ORDER_QTY",
            f"order quantity {_fmt(order.order_qty)} exceeds the limit {_fmt(limit.value)} ({limit.scope})",
            observed=_fmt(order.order_qty),
            limit=_fmt(limit.value),
            scope=limit.scope,
        )
    return None


def max_order_notional(order: OrderRequest, ctx: CheckContext) -> Reject | None:
    limit = ctx.limits.max_order_notional
    if limit is None:
        return None
    if order.ord_type in (OrdType.MARKET, OrdType.STOP) or order.price is None:
        price = _reference(order, ctx)
        if isinstance(price, Reject):
            return price
        basis = "at the reference price"
    else:
        price, basis = order.price, "at the limit price"
    notional = order.order_qty * price
    if notional > limit.value:
        return Reject(
            "MAX_ORDER_NOTIONAL",
            f"order notional {_fmt(notional)} ({basis} {_fmt(price)}) exceeds the limit {_fmt(limit.value)} ({limit.scope})",
            observed=_fmt(notional),
            limit=_fmt(limit.value),
            scope=limit.scope,
        )
    return None


def price_collar(order: OrderRequest, ctx: CheckContext) -> Reject | None:
    limit = ctx.limits.price_collar_pct
    if limit is None or order.price is None or order.ord_type in (OrdType.MARKET, OrdType.STOP):
        return None
    ref = _reference(order, ctx)
    if isinstance(ref, Reject):
        return ref
    distance = abs(order.price - ref) * 100 / ref
    if distance > limit.value:
        return Reject(
            "PRICE_COLLAR",
            f"price {_fmt(order.price)} is {distance:.2f}% from the reference {_fmt(ref)} of {order.symbol}, "
            f"beyond the collar of {_fmt(limit.value)}% ({limit.scope})",
            observed=f"{distance:.4f}",
            limit=_fmt(limit.value),
            scope=limit.scope,
        )
    return None


# ---------------------------------------------------------------- rules that read the book


def position_scope(session: str, account: str) -> str:
    """The scope whose position an order moves: its account's, or (without one) its session's."""
    return f"account:{account}" if account else f"session:{session}"


def _position_scope(order: OrderRequest, ctx: CheckContext) -> str:
    return position_scope(ctx.session, order.account)


def throttle(order: OrderRequest, ctx: CheckContext) -> Reject | None:
    limit = ctx.limits.max_msgs_per_s
    if limit is not None and ctx.msg_rate > limit.value:
        return Reject(
            "THROTTLE",
            f"{ctx.msg_rate} order messages in the last second on session {ctx.session}, above the limit {limit.value} ({limit.scope})",
            observed=str(ctx.msg_rate),
            limit=str(limit.value),
            scope=limit.scope,
        )
    return None


def _beyond_share(
    shares: ClusterShares, code: str, field: str, scope: str, after: Decimal, limit: Decimal, what: str
) -> Reject | None:
    """In a cluster: the refusal of an order that would take this instance's usage of a shared limit
    (``after``) past its share of it, or any growth while it is fenced (core/cluster.py)."""
    cap = shares.cap(field, scope)
    if cap is None or after <= cap:
        return None
    return Reject(code, f"{what}, {shares.why(limit, cap)}", observed=_fmt(after), limit=_fmt(cap), scope=scope)


def max_open_orders(order: OrderRequest, ctx: CheckContext) -> Reject | None:
    if ctx.is_replace:
        return None
    for limit in ctx.limits.max_open_orders or ():
        count = ctx.book.open_orders(limit.scope) + 1
        if count > limit.value:
            return Reject(
                "MAX_OPEN_ORDERS",
                f"{count} open orders in {limit.scope} with this one, above the limit {limit.value}",
                observed=str(count),
                limit=str(limit.value),
                scope=limit.scope,
            )
        if ctx.shares is not None and (
            rej := _beyond_share(
                ctx.shares,
                "MAX_OPEN_ORDERS",
                OPEN_ORDERS,
                limit.scope,
                Decimal(count),
                Decimal(limit.value),
                f"{count} open orders in {limit.scope} with this one",
            )
        ):
            return rej
    return None


def max_position(order: OrderRequest, ctx: CheckContext) -> Reject | None:
    scope = _position_scope(order, ctx)
    line = ctx.book.line(scope, order.symbol)
    buy, sell = ctx.deltas(order)
    if order.side.is_buy:
        limit, after, word = ctx.limits.max_long_position, line.pos + line.buy + buy, "long"
    else:
        limit, after, word = ctx.limits.max_short_position, -(line.pos - line.sell - sell), "short"
    if limit is not None and after > limit.value and (buy > 0 or sell > 0):
        return Reject(
            "MAX_POSITION",
            f"{word} position in {order.symbol} could reach {_fmt(after)} for {scope} with working orders, "
            f"above the limit {_fmt(limit.value)} ({limit.scope})",
            observed=_fmt(after),
            limit=_fmt(limit.value),
            scope=limit.scope,
        )
    return None


def gross_exposure(order: OrderRequest, ctx: CheckContext) -> Reject | None:
    buy, sell = ctx.deltas(order)
    for limit in ctx.limits.max_gross_exposure or ():
        after = ctx.book.what_if(limit.scope, order.symbol, buy, sell)[0]
        if after <= ctx.book.gross(limit.scope):
            continue  # what does not grow the gross is never refused for it
        if after > limit.value:
            return Reject(
                "GROSS_EXPOSURE",
                f"gross exposure of {limit.scope} would reach {_fmt(after)} with working orders, above the limit {_fmt(limit.value)}",
                observed=_fmt(after),
                limit=_fmt(limit.value),
                scope=limit.scope,
            )
        if ctx.shares is not None and (
            rej := _beyond_share(
                ctx.shares,
                "GROSS_EXPOSURE",
                GROSS,
                limit.scope,
                after,
                limit.value,
                f"gross exposure of {limit.scope} would reach {_fmt(after)} with working orders",
            )
        ):
            return rej
    return None


def net_exposure(order: OrderRequest, ctx: CheckContext) -> Reject | None:
    buy, sell = ctx.deltas(order)
    for limit in ctx.limits.max_net_exposure or ():
        _, long, short, _ = ctx.book.what_if(limit.scope, order.symbol, buy, sell)
        after, word = (long, "long") if order.side.is_buy else (-short, "short")
        if not (buy > 0 or sell > 0):
            continue
        if after > limit.value:
            return Reject(
                "NET_EXPOSURE",
                f"net {word} exposure of {limit.scope} would reach {_fmt(after)} with working orders, above the limit {_fmt(limit.value)}",
                observed=_fmt(after),
                limit=_fmt(limit.value),
                scope=limit.scope,
            )
        if ctx.shares is not None and (
            rej := _beyond_share(
                ctx.shares,
                "NET_EXPOSURE",
                NET_LONG if order.side.is_buy else NET_SHORT,
                limit.scope,
                after,
                limit.value,
                f"net {word} exposure of {limit.scope} would reach {_fmt(after)} with working orders",
            )
        ):
            return rej
    return None


def sector_concentration(order: OrderRequest, ctx: CheckContext) -> Reject | None:
    limits = ctx.limits.max_sector_pct
    if not limits:
        return None
    book = ctx.book
    sector = book.sector(order.symbol)
    buy, sell = ctx.deltas(order)
    for limit in limits:
        gross, _, _, sector_gross = book.what_if(limit.scope, order.symbol, buy, sell)
        # The floor of this limit's own layer (resolve pairs them): never another scope's.
        if gross <= 0 or (limit.min_gross is not None and gross < limit.min_gross):
            continue
        share = sector_gross * 100 / gross
        if share > limit.value and sector_gross > book.sector_gross(limit.scope, sector):
            return Reject(
                "SECTOR_CONCENTRATION",
                f"sector {sector or '(none)'} would be {share:.2f}% of the gross exposure of {limit.scope}, above the limit {_fmt(limit.value)}%",
                observed=f"{share:.4f}",
                limit=_fmt(limit.value),
                scope=limit.scope,
            )
    return None


def self_match(order: OrderRequest, ctx: CheckContext) -> Reject | None:
    mode = ctx.settings.self_match
    if mode == "off":
        return None
    sign = 1 if order.side.is_buy else -1
    if ctx.replacing_key:
        return _self_match_scan(order, ctx, mode, sign)
    # The most aggressive working price on the other side, from the book's price index: as fast
    # with ten thousand working orders in the symbol as with one.
    owner = "" if mode == "firm" else ctx.book.owner(order.account, ctx.session)
    prices = ctx.book.resting_prices(order.symbol, -sign, owner)
    if not prices:
        return None
    if None in prices:
        return _self_match_reject(order, ctx, mode, sign, None)  # a working market order meets anything
    limits = [p for p in prices if p is not None]
    best = max(limits) if sign < 0 else min(limits)
    if order.price is None or (order.price >= best if sign > 0 else order.price <= best):
        return _self_match_reject(order, ctx, mode, sign, best)
    return None


def _self_match_scan(order: OrderRequest, ctx: CheckContext, mode: str, sign: int) -> Reject | None:
    """A replace: every working order but the one being replaced."""
    for key, w in ctx.book.resting(order.symbol):
        if w.sign == sign or key == ctx.replacing_key:
            continue
        if mode == "account" and (w.account != order.account or (not w.account and w.session != ctx.session)):
            continue
        if order.price is None or w.price is None or (order.price >= w.price if sign > 0 else order.price <= w.price):
            return _self_match_reject(order, ctx, mode, sign, w.price)
    return None


def _self_match_reject(order: OrderRequest, ctx: CheckContext, mode: str, sign: int, price: Decimal | None) -> Reject:
    whose = (
        f"account {order.account}"
        if mode == "account" and order.account
        else (f"session {ctx.session}" if mode == "account" else "the firm")
    )
    return Reject(
        "SELF_MATCH",
        f"the order could trade against a working {'sell' if sign > 0 else 'buy'} order of {whose} "
        f"in {order.symbol} at {_fmt(price) if price is not None else 'market'}",
        observed=_fmt(order.price) if order.price is not None else "market",
        limit=_fmt(price) if price is not None else "market",
        scope="firm" if mode == "firm" else _position_scope(order, ctx),
    )


_SHORT_SIDES = (Side.SELL_SHORT, Side.SELL_SHORT_EXEMPT)


def short_sale(order: OrderRequest, ctx: CheckContext) -> Reject | None:
    if order.side.is_buy:
        return None
    line = ctx.book.line(_position_scope(order, ctx), order.symbol)
    _, sell = ctx.deltas(order)
    after = line.pos - line.sell - sell
    if order.side not in _SHORT_SIDES and not (ctx.settings.sell_below_zero_is_short and after < 0 and sell > 0):
        return None
    needed = -after if after < 0 else _ZERO
    located = ctx.locates.get((order.account, order.symbol), _ZERO)
    if needed > located:
        what = "short sale" if order.side in _SHORT_SIDES else "sell below a flat position (a short sale)"
        return Reject(
            "SHORT_SALE_NO_LOCATE",
            f"{what} of {order.symbol} needs {_fmt(needed)} shares located{_who(order)}, {_fmt(located)} located",
            observed=_fmt(needed),
            limit=_fmt(located),
            scope=_position_scope(order, ctx),
        )
    return None


#: Every rule by its configuration name, in the order the default pipeline runs them.
RULES: dict[str, Rule] = {
    "throttle": throttle,
    "duplicate_cl_ord_id": duplicate_cl_ord_id,
    "unknown_symbol": unknown_symbol,
    "restricted_symbol": restricted_symbol,
    "lot_size": lot_size,
    "max_order_qty": max_order_qty,
    "max_order_notional": max_order_notional,
    "price_collar": price_collar,
    "max_open_orders": max_open_orders,
    "short_sale": short_sale,
    "max_position": max_position,
    "gross_exposure": gross_exposure,
    "net_exposure": net_exposure,
    "sector_concentration": sector_concentration,
    "self_match": self_match,
}


def run_pipeline(rules: tuple[Rule, ...], order: OrderRequest, ctx: CheckContext) -> Reject | None:
    """First reject wins. A rule that raises rejects the order (fail closed)."""
    for rule in rules:
        try:
            found = rule(order, ctx)
        except Exception as exc:  # noqa: BLE001 - any failure inside a check must reject
            return Reject(
                "CHECK_FAILED",
                f"check {getattr(rule, '__name__', rule)} failed ({type(exc).__name__}: {exc}); order refused",
                scope="rule:" + getattr(rule, "__name__", "?"),
            )
        if found is not None:
            return found
    return None
