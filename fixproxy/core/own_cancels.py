"""The proxy's own cancels: halt and cancel, and cancel on disconnect.

The proxy cancels at the venues every working order of a scope. Each of its cancels has a venue
ClOrdID of its own (``<session>!K<id>``) and is tracked until the venue settles it, so that the
answer goes to the right place: a refusal or a failure to send is the desk's (a notice), and the
cancel itself reaches the OMS as an unsolicited cancel of its order, never as the answer to a cancel
it did not send.
"""

from __future__ import annotations

from collections.abc import Callable

from . import events as ev
from .killswitch import KillSwitch
from .orders import Order, OrderTable


class OwnCancels:
    """The cancels the proxy sent and the venues have not settled; part of the core's snapshot."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: dict[str, str] = {}  # venue ClOrdID of the cancel -> key of the order it cancels

    def __len__(self) -> int:
        return len(self.pending)

    def cancel(self, scope: str, orders: OrderTable, kill: KillSwitch, next_id: Callable[[], str]) -> list[ev.Action]:
        """A cancel for every working order in ``scope`` (orders already being cancelled by us are skipped)."""
        in_flight = set(self.pending.values())
        out: list[ev.Action] = []
        for order in orders.open_orders():
            req = order.request
            if order.key in in_flight or not kill.covers(scope, order.session, req.account, req.symbol):
                continue
            venue_id = f"{order.session}!K{next_id()}"
            out.append(orders.cancel_at_venue(order, order.cl_ord_id, venue_id))
            self.pending[venue_id] = order.key
        return out

    def refused(self, cl_ord_id: str) -> bool:
        """The venue refused the cancel ``cl_ord_id`` or it could not be sent: True if it was ours (now settled)."""
        return self.pending.pop(cl_ord_id, None) is not None

    def reported(self, cl_ord_id: str, order: Order) -> bool:
        """A venue report on ``cl_ord_id``: True if it answers ours (settled once ``order`` is no longer open)."""
        if cl_ord_id not in self.pending:
            return False
        if not order.is_open:
            del self.pending[cl_ord_id]
        return True

    def drop_settled(self, orders: OrderTable) -> None:
        """Stop tracking cancels of orders that are finished or gone (at the day roll)."""
        for venue_id in list(self.pending):
            found = orders.by_venue(venue_id)
            if found is None or not found[0].is_open:
                del self.pending[venue_id]
