"""The core's side of crash recovery: an order the proxy lost, rebuilt from the venue's report.

A crash between sending an order and saving it loses the order; the venue's next report on it
names its owner (the venue ClOrdID is ``<session>.<ClOrdID>``) and carries the rest.
"""

from __future__ import annotations

from collections.abc import Container

from .model import ExecReport, OrderRequest, OrdType
from .orders import Order


def order_from_report(venue: str, r: ExecReport, sessions: Container[str]) -> Order | None:
    """The order ``r`` reports on, as far as the report tells (None when it cannot say whose or what).

    Symbol, side, quantity, price and account come from the report; the order's state then follows
    from this report on.
    """
    session, sep, cl_ord_id = r.cl_ord_id.partition(".")
    if not sep or session not in sessions or not cl_ord_id or r.side is None or not r.symbol:
        return None
    qty = r.order_qty if r.order_qty is not None else r.leaves_qty + r.cum_qty
    if qty <= 0:
        return None
    request = OrderRequest(
        cl_ord_id, r.symbol, r.side, qty, OrdType.LIMIT if r.price else OrdType.MARKET, r.price, r.account
    )
    return Order(session, venue, request, r.cl_ord_id)
