"""The trading-state gate, checked before the risk rules for every new order and replace.

Cancels never come here: they always pass. While the proxy cannot record its inputs, new orders
and replaces that raise exposure are refused first (fail closed). Then the kill switch: HALTED
refuses; REDUCING lets through only what shrinks the position of the order's account (or of its
session, for an order without one), the scope the position rules use.
"""

from __future__ import annotations

from decimal import Decimal

from .book import FIRM, Book
from .killswitch import KillSwitch, TradingState
from .model import OrderRequest, plain
from .orders import Order
from .risk.rules import Reject, position_scope

_ZERO = Decimal(0)


def refusal(
    kill: KillSwitch, recording_failure: str, book: Book, session: str, order: OrderRequest, replacing: Order | None
) -> Reject | None:
    """Why the trading state refuses ``order`` (the new values, for a replace of ``replacing``), if it does."""
    if recording_failure and (replacing is None or raises_exposure(replacing.request, order)):
        return Reject(
            "RECORDING_FAILED",
            f"the proxy cannot record what it does ({recording_failure}); "
            "new risk is refused until a risk user resumes trading (cancels still pass)",
            observed=recording_failure,
            scope=FIRM,
        )
    state = kill.effective(session, order.account, order.symbol)
    if state is None:
        return None
    by = f" by {state.operator}" if state.operator else ""
    why = f": {state.reason}" if state.reason else ""
    if state.state is TradingState.HALTED:
        return Reject(
            "HALTED", f"trading is halted for {state.scope}{by}{why}", observed=order.symbol, scope=state.scope
        )
    line = book.line(position_scope(session, order.account), order.symbol)
    old = book.working(replacing.key) if replacing is not None else None
    buy = line.buy - (old.qty if old is not None and old.sign > 0 else _ZERO)
    sell = line.sell - (old.qty if old is not None and old.sign < 0 else _ZERO)
    if order.side.is_buy:
        shrinks = line.pos < 0 and buy + order.order_qty <= -line.pos
    else:
        shrinks = line.pos > 0 and sell + order.order_qty <= line.pos
    if shrinks:
        return None
    return Reject(
        "REDUCING_ONLY",
        f"{state.scope} may only reduce positions{by}{why}; this order would not "
        f"shrink the {plain(line.pos)} position in {order.symbol}",
        observed=plain(line.pos),
        scope=state.scope,
    )


def raises_exposure(old: OrderRequest, new: OrderRequest) -> bool:
    """Whether a replace asks for more than the order it replaces: a larger quantity or notional."""
    if new.order_qty > old.order_qty:
        return True
    if new.price is None or old.price is None:
        return new.price is None and old.price is not None  # limit to market
    return new.order_qty * new.price > old.order_qty * old.price
