"""Running counts of the core for the risk desk: open orders (an index the desk pages through), orders by
status, decisions by session and by reject code.

Updated by the core as each order or decision changes them, so a desk read copies a few counters instead
of walking the day's orders. Part of the core's state: the snapshot carries the counts; the open-order
index is rebuilt from the order table.
"""

from __future__ import annotations

from collections.abc import Iterable

from sortedcontainers import SortedDict

from .model import OrdStatus
from .orders import Order


class Tally:
    """Counts that move with the order flow (the core calls ``opened``, ``moved`` and ``decided``)."""

    __slots__ = ("open", "statuses", "open_by_session", "decisions", "codes")

    def __init__(self) -> None:
        #: Open orders by their key (the first venue ClOrdID), in key order: the desk's order list, paged.
        self.open: SortedDict = SortedDict()
        #: OrdStatus -> how many orders are in it now (open and finished).
        self.statuses: dict[OrdStatus, int] = {}
        #: session -> its open orders.
        self.open_by_session: dict[str, int] = {}
        #: session -> [accepted, rejected] decisions (new orders, replaces, cancels and refused messages).
        self.decisions: dict[str, list[int]] = {}
        #: reject code -> how many decisions refused with it.
        self.codes: dict[str, int] = {}

    # ------------------------------------------------------------ changes (the core calls these)

    def opened(self, order: Order) -> None:
        """A new order is tracked (in ``order.status``)."""
        self._count(order.status, 1)
        if order.is_open:
            self._open(order)

    def moved(self, order: Order, before: OrdStatus) -> None:
        """``order.status`` changed from ``before``."""
        now = order.status
        if now is before:
            return
        self._count(before, -1)
        self._count(now, 1)
        was_open = not before.is_terminal
        if was_open and not now.is_terminal:
            return
        if was_open:
            if self.open.pop(order.key, None) is not None:
                n = self.open_by_session.get(order.session, 0) - 1
                if n > 0:
                    self.open_by_session[order.session] = n
                else:
                    self.open_by_session.pop(order.session, None)
        elif not now.is_terminal:
            self._open(order)  # reopened (a busted fill)

    def decided(self, session: str, accepted: bool, code: str) -> None:
        counts = self.decisions.get(session)
        if counts is None:
            counts = self.decisions[session] = [0, 0]
        if accepted:
            counts[0] += 1
        else:
            counts[1] += 1
            self.codes[code] = self.codes.get(code, 0) + 1

    def _open(self, order: Order) -> None:
        if order.key not in self.open:
            self.open[order.key] = order
            self.open_by_session[order.session] = self.open_by_session.get(order.session, 0) + 1

    def _count(self, status: OrdStatus, delta: int) -> None:
        n = self.statuses.get(status, 0) + delta
        if n:
            self.statuses[status] = n
        else:
            self.statuses.pop(status, None)

    # ------------------------------------------------------------ reading

    def page(self, limit: int, after: str = "") -> list[Order]:
        """At most ``limit`` open orders in key order, the first after key ``after`` ("": from the start)."""
        keys = self.open.irange(minimum=after, inclusive=(False, False)) if after else iter(self.open)
        out: list[Order] = []
        for key in keys:
            if len(out) >= limit:
                break
            out.append(self.open[key])
        return out

    def counts(self) -> dict:
        """The counters as plain data (a copy: O(statuses + sessions + codes), never O(orders))."""
        return {
            "open": len(self.open),
            "statuses": dict(self.statuses),
            "open_by_session": dict(self.open_by_session),
            "decisions": {s: tuple(c) for s, c in self.decisions.items()},
            "codes": dict(self.codes),
        }

    # ------------------------------------------------------------ snapshots

    def export(self) -> dict:
        """What a snapshot keeps: the counts of finished orders and of decisions (open orders follow from
        the order table)."""
        return {
            "finished": {s: n for s, n in self.statuses.items() if s.is_terminal},
            "decisions": {s: list(c) for s, c in self.decisions.items()},
            "codes": dict(self.codes),
        }

    @classmethod
    def rebuild(cls, open_orders: Iterable[Order], saved: dict | None) -> Tally:
        """A tally of ``open_orders`` (each once) and the counts a snapshot saved (``export``; None, a
        snapshot older than the tally: the counts of finished orders and of decisions start at zero)."""
        tally = cls()
        for order in open_orders:
            tally.opened(order)
        if saved:
            for status, n in saved["finished"].items():
                tally._count(status, n)
            tally.decisions = {s: list(c) for s, c in saved["decisions"].items()}
            tally.codes = dict(saved["codes"])
        return tally

    def new_day(self) -> None:
        """Forget the counts of finished orders and of decisions (the open orders stay)."""
        self.statuses = {s: n for s, n in self.statuses.items() if not s.is_terminal}
        self.decisions.clear()
        self.codes.clear()
