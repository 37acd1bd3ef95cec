"""Pre-trade rules: one small pure function each, returning a Reject or None.

A rule sees the order (new values for a replace), and a CheckContext holding the instrument,
the resolved limits and the clock reading of the event. Denials are values, not exceptions.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from decimal import Decimal

import msgspec

from ..model import Instrument, OrderRequest, OrdType
from .limits import ResolvedLimits

_NS = 1_000_000_000


class Reject(msgspec.Struct, frozen=True):
    """Why an order was refused: a stable code, what was seen, the limit and where it was set."""

    code: str
    sentence: str
    observed: str = ""
    limit: str = ""
    scope: str = ""
    #: BusinessRejectReason (380) to use on the wire.
    reason: int = 0

    @property
    def text(self) -> str:
        """Text (58) as sent: ``<CODE>: <sentence>``."""
        return f"{self.code}: {self.sentence}"


class CheckContext:
    """What a rule may look at besides the order. Read-only by convention."""

    __slots__ = ("session", "instrument", "limits", "now_ns", "seen_cl_ord_ids", "is_replace")

    def __init__(
        self,
        session: str,
        instrument: Instrument | None,
        limits: ResolvedLimits,
        now_ns: int,
        seen_cl_ord_ids: Container[str] = (),
        is_replace: bool = False,
    ):
        self.session = session
        self.instrument = instrument
        self.limits = limits
        self.now_ns = now_ns
        self.seen_cl_ord_ids = seen_cl_ord_ids
        self.is_replace = is_replace


Rule = Callable[[OrderRequest, CheckContext], "Reject | None"]

# BusinessRejectReason (380) values used by the proxy.
REASON_OTHER = 0
REASON_UNKNOWN_ID = 1
REASON_UNKNOWN_SECURITY = 2
REASON_UNSUPPORTED_MESSAGE = 3
REASON_APPLICATION_NOT_AVAILABLE = 4
REASON_NOT_AUTHORIZED = 6


def _fmt(value: object) -> str:
    if isinstance(value, Decimal):
        return f"{value.normalize():f}" if value == value.to_integral_value() else f"{value:f}"
    return str(value)


def _who(order: OrderRequest) -> str:
    return f" for account {order.account}" if order.account else ""


def _reference(order: OrderRequest, ctx: CheckContext) -> tuple[Decimal | None, Reject | None]:
    """The instrument's reference price, or the reject that its absence or age calls for."""
    inst = ctx.instrument
    ref = inst.reference_price if inst is not None else None
    if ref is None or ref <= 0:
        return None, Reject(
            "NO_REFERENCE_PRICE",
            f"no reference price for {order.symbol}, so the order cannot be valued or collared",
            scope=f"symbol:{order.symbol}",
        )
    max_age = ctx.limits.reference_max_age_s
    if max_age is not None and max_age.value and inst is not None and inst.reference_time_ns is not None:
        age_s = (ctx.now_ns - inst.reference_time_ns) // _NS
        if age_s > max_age.value:
            return None, Reject(
                "STALE_REFERENCE_PRICE",
                f"reference price for {order.symbol} is {age_s}s old, older than the limit {max_age.value}s",
                observed=str(age_s),
                limit=str(max_age.value),
                scope=max_age.scope,
            )
    return ref, None


# ---------------------------------------------------------------- the rules


def unknown_symbol(order: OrderRequest, ctx: CheckContext) -> Reject | None:
    if ctx.instrument is None:
        return Reject(
            "UNKNOWN_SYMBOL",
            f"symbol {order.symbol} is not in the instrument list",
            observed=order.symbol,
            reason=REASON_UNKNOWN_SECURITY,
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
    if order.cl_ord_id in ctx.seen_cl_ord_ids:
        return Reject(
            "DUPLICATE_CLORDID",
            f"ClOrdID {order.cl_ord_id} was already used on session {ctx.session} today",
            observed=order.cl_ord_id,
            scope=f"session:{ctx.session}",
        )
    return None


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
        price, missing = _reference(order, ctx)
        if missing is not None:
            return missing
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
    ref, missing = _reference(order, ctx)
    if missing is not None:
        return missing
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


#: Every rule by its configuration name, in the order the default pipeline runs them.
RULES: dict[str, Rule] = {
    "duplicate_cl_ord_id": duplicate_cl_ord_id,
    "unknown_symbol": unknown_symbol,
    "restricted_symbol": restricted_symbol,
    "lot_size": lot_size,
    "max_order_qty": max_order_qty,
    "max_order_notional": max_order_notional,
    "price_collar": price_collar,
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
