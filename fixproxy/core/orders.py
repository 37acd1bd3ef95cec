"""Order lifecycle as a transition table, and ClOrdID ownership per OMS session.

The OMS's ClOrdIDs are only unique within its session, so every order goes to the venue
under a proxy ClOrdID ``<session>.<ClOrdID>``; the venue's reports are mapped back through it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec

from . import events as ev
from .compact import CompactIdSet
from .model import ExecReport, ExecType, OrderRequest, OrdStatus

S = OrdStatus
_ZERO = Decimal(0)

_OPEN = {
    S.PENDING_NEW,
    S.NEW,
    S.PARTIALLY_FILLED,
    S.PENDING_CANCEL,
    S.PENDING_REPLACE,
    S.REPLACED,
    S.SUSPENDED,
    S.STOPPED,
    S.CALCULATED,
    S.ACCEPTED_FOR_BIDDING,
}
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

    def __reduce__(self) -> tuple[Callable[[tuple[Any, ...]], Order], tuple[tuple[Any, ...]]]:
        # Pickled (a snapshot) as every field: the constructor alone would reset key, cl_ord_id and
        # leaves_qty from the request (``__post_init__``).
        return _rebuild, (tuple(getattr(self, f) for f in self.__struct_fields__),)

    @property
    def is_open(self) -> bool:
        return not self.status.is_terminal

    def follow(self, r: ExecReport) -> OrdStatus:
        """Take the venue's report ``r`` on this order (a legal transition: ``check_transition``); the status before it.

        A report on the replace in flight completes it (REPLACED) or drops it (REJECTED).
        """
        if self.pending is not None and r.cl_ord_id == self.pending[1]:
            if r.exec_type is ExecType.REPLACED:
                self.cl_ord_id, self.venue_cl_ord_id, self.request = self.pending
                self.pending = None
            elif r.exec_type is ExecType.REJECTED:
                self.pending = None
        before, self.status = self.status, r.ord_status
        if r.order_id:
            self.order_id = r.order_id
        self.leaves_qty, self.cum_qty, self.avg_px = r.leaves_qty, r.cum_qty, r.avg_px
        return before

    def __repr__(self) -> str:
        return f"Order({self.session}/{self.cl_ord_id} {self.status.name} leaves={self.leaves_qty})"


def _rebuild(values: tuple[Any, ...]) -> Order:
    order = Order(*values[:4])
    (
        order.key,
        order.cl_ord_id,
        order.order_id,
        order.status,
        order.leaves_qty,
        order.cum_qty,
        order.avg_px,
        order.pending,
    ) = values[4:]
    return order


class OrderTable:
    """Every order the proxy has forwarded, findable by OMS ClOrdID and by venue ClOrdID."""

    __slots__ = ("_by_oms", "_by_venue", "_seen", "_aliases", "_finished")

    def __init__(self) -> None:
        self._by_oms: dict[tuple[str, str], Order] = {}
        # venue ClOrdID -> (order, the OMS ClOrdID it stands for)
        self._by_venue: dict[str, tuple[Order, str]] = {}
        self._seen: dict[int, dict[str, CompactIdSet]] = {}  # trading day -> session -> ClOrdIDs (hashed)
        # order key -> the (OMS ClOrdID, venue ClOrdID) of its cancels and replaces, to forget with it
        self._aliases: dict[str, list[tuple[str, str]]] = {}
        # (when it finished, order) of finished orders still held, oldest first (``forget_finished``)
        self._finished: deque[tuple[int, Order]] = deque()

    def __setstate__(self, state: tuple[None, dict[str, Any]] | dict[str, Any]) -> None:
        # A snapshot written before finished orders were forgotten has no _aliases / _finished.
        self._aliases, self._finished = {}, deque()
        for name, value in (state[1] if isinstance(state, tuple) else state).items():
            setattr(self, name, value)

    @staticmethod
    def venue_id(session: str, cl_ord_id: str) -> str:
        return f"{session}.{cl_ord_id}"

    # -- ClOrdIDs used today, per session (duplicate detection)

    def seen(self, session: str, day: int) -> CompactIdSet:
        """ClOrdIDs the session used on trading day ``day`` (kept as 64-bit hashes: core/compact.py).
        Only the newest day is kept: a day roll forgets the ClOrdIDs of the day it closes."""
        sessions = self._seen.get(day)
        if sessions is None:
            sessions = self._seen[day] = {}
            for old in [d for d in self._seen if d < day]:
                del self._seen[old]
        found = sessions.get(session)
        if found is None:
            found = sessions[session] = CompactIdSet()
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
        self._aliases.setdefault(order.key, []).append((cl_ord_id, venue_cl_ord_id))

    def cancel_at_venue(self, order: Order, cl_ord_id: str, venue_cl_ord_id: str) -> ev.VenueCancel:
        """The venue cancel of ``order`` as ``venue_cl_ord_id`` (an OMS's cancel ``cl_ord_id``, or the
        proxy's own), aliased so that the venue's answer finds the order."""
        self.alias(order, cl_ord_id, venue_cl_ord_id)
        req = order.request
        return ev.VenueCancel(
            order.venue,
            venue_cl_ord_id,
            order.venue_cl_ord_id,
            order.order_id,
            req.symbol,
            req.side,
            req.order_qty,
            req.account,
        )

    # -- finished orders leave memory (they stay in the journal and the audit store)

    def finished(self, order: Order, now_ns: int) -> None:
        """``order`` reached a final state at ``now_ns``: it is forgotten once its grace period is over."""
        self._finished.append((now_ns, order))

    def next_forget_ns(self) -> int | None:
        """When the oldest finished order was finished (None: none waits)."""
        return self._finished[0][0] if self._finished else None

    def forget_finished(self, before_ns: int | None = None) -> list[Order]:
        """Forget the orders finished before ``before_ns`` (None: every finished order) that are still
        finished (a busted fill can reopen one: it is held again until it finishes again)."""
        out: list[Order] = []
        q = self._finished
        while q and (before_ns is None or q[0][0] < before_ns):
            _, order = q.popleft()
            if order.is_open or self._by_venue.get(order.key, (None,))[0] is not order:
                continue  # reopened (finished again later: queued again), or already forgotten
            self._forget(order)
            out.append(order)
        return out

    def _forget(self, order: Order) -> None:
        ids = [
            (order.request.cl_ord_id, order.key),
            (order.cl_ord_id, order.venue_cl_ord_id),
            *self._aliases.pop(order.key, ()),
        ]
        if order.pending is not None:
            ids.append((order.pending[0], order.pending[1]))
        for oms_id, venue_id in ids:
            if self._by_oms.get((order.session, oms_id)) is order:
                del self._by_oms[(order.session, oms_id)]
            found = self._by_venue.get(venue_id)
            if found is not None and found[0] is order:
                del self._by_venue[venue_id]

    def held(self) -> int:
        """Orders in memory (open, and finished within their grace period)."""
        return len({id(o) for o, _ in self._by_venue.values()})
