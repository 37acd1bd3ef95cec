"""The refusals of an order message decided before the risk rules, other than the trading state's
(gate.py): a message the proxy cannot place (an unknown session, destination or order), a ClOrdID in
use, a cancel or replace of an order that is no longer open or has a replace in flight, a venue not
connected. Each is a Reject with its code, as the rules' are (risk/rules.py)."""

from __future__ import annotations

from collections.abc import Container

from .model import OrderRequest
from .orders import Order, OrderTable
from .risk.rules import Reject, reused_cl_ord_id, venue_unavailable


def unknown_session(session: str) -> Reject:
    return Reject("UNKNOWN_SESSION", f"session {session} is not configured")


def destination(venue: str, venues: Container[str], up: Container[str]) -> Reject | None:
    """Why an order cannot go to ``venue`` (ExDestination, or the session's default), if it cannot."""
    if venue not in venues:
        return Reject(
            "UNKNOWN_DESTINATION",
            f"no venue named {venue!r} (ExDestination 100)" if venue else "no ExDestination and no default venue",
            observed=venue,
        )
    return venue_down(venue, up, "order")


def venue_down(venue: str, up: Container[str], what: str) -> Reject | None:
    """Is the venue up: decided here, from the sessions the edge reported up and down."""
    if venue in up:
        return None
    return venue_unavailable(venue, f"venue {venue} is not connected; the {what} was not sent")


def cl_ord_id_taken(orders: OrderTable, day_no: int, session: str, cl_ord_id: str, today: bool) -> Reject | None:
    """DUPLICATE_CLORDID for an open order's ClOrdID, and with ``today`` for any ClOrdID used today
    (for a new order that is the ``duplicate_cl_ord_id`` rule's to say, in the pipeline's order)."""
    used = today and cl_ord_id in orders.seen(session, day_no)
    return reused_cl_ord_id(session, cl_ord_id, used, orders.in_use(session, cl_ord_id))


def amend(
    orders: OrderTable,
    day_no: int,
    up: Container[str],
    session: str,
    orig: str,
    new_id: str,
    order: Order | None,
    what: str,
) -> Order | Reject:
    """The order ``orig`` that a cancel or replace (``what``) amends, or why it cannot go to the venue."""
    if order is None:
        if orig in orders.seen(
            session, day_no
        ):  # refused, or finished and gone from memory (finished_grace_s): not open either way
            return Reject(
                "UNKNOWN_ORDER",
                f"no open order with ClOrdID {orig} on session {session} (it was refused, or finished earlier today)",
                observed=orig,
            )
        return Reject("UNKNOWN_ORDER", f"no order with ClOrdID {orig} on session {session}", observed=orig)
    taken = cl_ord_id_taken(orders, day_no, session, new_id, today=True)
    if taken is not None:
        return taken
    if not order.is_open:
        return Reject(
            "ORDER_NOT_OPEN",
            f"order {orig} is {order.status.name.lower()}; too late to {what}",
            observed=order.status.name,
        )
    if order.pending is not None and what == "replace":
        return Reject("ORDER_PENDING", f"order {orig} already has a replace in flight ({order.pending[0]})")
    down = venue_down(order.venue, up, what)
    return order if down is None else down


def replace_changes_key(old: OrderRequest, new: OrderRequest) -> Reject | None:
    """A replace may change quantity, price and the like, not what the order is in (symbol, side, account)."""
    if (new.symbol, new.side, new.account) != (old.symbol, old.side, old.account):
        return Reject(
            "INVALID_ORDER", "a replace may not change the symbol, side or account; cancel and send a new order"
        )
    return None


def unsupported(msg_type: str) -> Reject:
    return Reject("UNSUPPORTED_MESSAGE", f"message type {msg_type} is not accepted by the proxy", observed=msg_type)
