"""Order lifecycle as a transition table, and ClOrdID ownership per OMS session.

The OMS's ClOrdIDs are only unique within its session, so every order goes to the venue
under a proxy ClOrdID ``<session>.<ClOrdID>``; the venue's reports are mapped back through it.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from .model import OrderRequest, OrdStatus

S = OrdStatus
_ZERO = Decimal(0)

_OPEN = {S.PENDING_NEW, S.NEW, S.PARTIALLY_FILLED, S.PENDING_CANCEL, S.PENDING_REPLACE,
         S.REPLACED, S.SUSPENDED, S.STOPPED, S.CALCULATED, S.ACCEPTED_FOR_BIDDING}
_ANY_OPEN_TO = _OPEN | {S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED, S.DONE_FOR_DAY}

#: Allowed OrdStatus transitions, as reported by the venue. Staying in a state is always allowed.
TRANSITIONS: dict[OrdStatus, frozenset[OrdStatus]] = {
    **{state: frozenset(_ANY_OPEN_TO) for state in _OPEN},
    # A busted or corrected trade can reopen a filled order.
    S.FILLED: frozenset({S.PARTIALLY_FILLED, S.NEW, S.CANCELED}),
    S.DONE_FOR_DAY: frozenset({S.NEW, S.PARTIALLY_FILLED, S.FILLED}),
    S.CANCELED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
}


class IllegalTransition(ValueError):
    pass


def check_transition(current: OrdStatus, new: OrdStatus) -> None:
    if new is not current and new not in TRANSITIONS[current]:
        raise IllegalTransition(f"order status cannot go from {current.name} to {new.name}")


class Order(msgspec.Struct, gc=False):
    """One order as the proxy tracks it. Mutable; owned by the core alone.

    ``Order(session, venue, request, venue_cl_ord_id)``; the rest follows from those. Its fields
    are plain values, so the garbage collector need not track it (a busy day holds many).
    """

    session: str
    venue: str
    request: OrderRequest
    venue_cl_ord_id: str  # the proxy's current ClOrdID at the venue
    key: str = ""  # stable for the order's life: its first venue ClOrdID
    cl_ord_id: str = ""  # the OMS's current ClOrdID for the order
    order_id: str = ""  # the venue's OrderID, once known
    status: OrdStatus = S.PENDING_NEW
    leaves_qty: Decimal = _ZERO
    cum_qty: Decimal = _ZERO
    avg_px: Decimal = _ZERO
    #: A replace in flight: (OMS ClOrdID, venue ClOrdID, new request).
    pending: tuple[str, str, OrderRequest] | None = None

    def __post_init__(self) -> None:
        self.key = self.venue_cl_ord_id
        self.cl_ord_id = self.request.cl_ord_id
        self.leaves_qty = self.request.order_qty

    def __reduce__(self):
        # Pickled (a snapshot) as every field: the constructor alone would reset key, cl_ord_id and
        # leaves_qty from the request (``__post_init__``).
        return _rebuild, (tuple(getattr(self, f) for f in self.__struct_fields__),)

    @property
    def is_open(self) -> bool:
        return not self.status.is_terminal

    def __repr__(self) -> str:
        return f"Order({self.session}/{self.cl_ord_id} {self.status.name} leaves={self.leaves_qty})"


def _rebuild(values: tuple) -> Order:
    order = Order(*values[:4])
    (order.key, order.cl_ord_id, order.order_id, order.status, order.leaves_qty, order.cum_qty, order.avg_px,
     order.pending) = values[4:]
    return order


class OrderTable:
    """Every order the proxy has forwarded, findable by OMS ClOrdID and by venue ClOrdID."""

    __slots__ = ("_by_oms", "_by_venue", "_seen")

    def __init__(self) -> None:
        self._by_oms: dict[tuple[str, str], Order] = {}
        # venue ClOrdID -> (order, the OMS ClOrdID it stands for)
        self._by_venue: dict[str, tuple[Order, str]] = {}
        self._seen: dict[int, dict[str, set[str]]] = {}  # day -> session -> ClOrdIDs

    @staticmethod
    def venue_id(session: str, cl_ord_id: str) -> str:
        return f"{session}.{cl_ord_id}"

    # -- ClOrdIDs used today, per session (duplicate detection)

    def seen(self, session: str, day: int) -> set[str]:
        """ClOrdIDs the session used on ``day``. The previous day is kept too, so a clock
        stepping back across midnight still finds what it used."""
        sessions = self._seen.get(day)
        if sessions is None:
            sessions = self._seen[day] = {}
            for old in [d for d in self._seen if d < day - 1]:
                del self._seen[old]
        found = sessions.get(session)
        if found is None:
            found = sessions[session] = set()
        return found

    def in_use(self, session: str, cl_ord_id: str) -> bool:
        """True while an open order (of any day, e.g. GTC) answers to this ClOrdID."""
        order = self._by_oms.get((session, cl_ord_id))
        return order is not None and order.is_open

    # -- lookups

    def by_oms(self, session: str, cl_ord_id: str) -> Order | None:
        return self._by_oms.get((session, cl_ord_id))

    def by_venue(self, venue_cl_ord_id: str) -> tuple[Order, str] | None:
        return self._by_venue.get(venue_cl_ord_id)

    def open_orders(self) -> list[Order]:
        unique = {id(o): o for o in self._by_oms.values() if o.is_open}
        return list(unique.values())

    # -- changes

    def add(self, order: Order) -> None:
        self._by_oms[(order.session, order.cl_ord_id)] = order
        self._by_venue[order.venue_cl_ord_id] = (order, order.cl_ord_id)

    def alias(self, order: Order, cl_ord_id: str, venue_cl_ord_id: str) -> None:
        """Make a cancel's or replace's ClOrdID find the order it refers to."""
        self._by_oms[(order.session, cl_ord_id)] = order
        self._by_venue[venue_cl_ord_id] = (order, cl_ord_id)
