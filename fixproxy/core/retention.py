"""How long the core holds what is finished: the core's side of the day roll, and the grace period.

Finished orders and applied fills leave memory ``finished_grace_s`` after they finish (with no grace
period, at the day roll only); at the day roll everything finished goes, and the closed day's
ExecIDs of fills move to "the day before". The journal and the audit store keep all of it. Which
trading day it is comes from the edge (fixproxy/dayroll.py, the clock side), as a DayRoll event.
Forgetting is decided by the events' clock, so a replay forgets the same things at the same point.
"""

from __future__ import annotations

from .book import Book
from .exec_ids import ExecIds
from .orders import OrderTable

_SECOND_NS = 1_000_000_000


class Retention:
    """When the finished things next leave memory."""

    __slots__ = ("grace_ns", "due_ns")

    def __init__(self, grace_s: float | None = None) -> None:
        #: How long a finished order or an applied fill stays (None: until the day roll).
        self.grace_ns = None if grace_s is None else int(grace_s * _SECOND_NS)
        self.due_ns: int | None = None  # the next time something finished may be forgotten

    def finished(self, when_ns: int) -> None:
        """Something finished at ``when_ns`` (an order, or a fill was applied): forget it after the grace period."""
        if self.grace_ns is not None:
            due = when_ns + self.grace_ns
            if self.due_ns is None or due < self.due_ns:
                self.due_ns = due

    def forget(self, now_ns: int, orders: OrderTable, book: Book, exec_ids: ExecIds) -> None:
        """Forget what finished more than the grace period before ``now_ns`` (called once ``due_ns`` is reached)."""
        assert self.grace_ns is not None  # due_ns is set only with a grace period
        cutoff = now_ns - self.grace_ns
        exec_ids.expire(cutoff, now_ns)
        orders.forget_finished(cutoff)
        book.fold(cutoff)
        nxt = [t for t in (orders.next_forget_ns(), book.next_fold_ns()) if t is not None]
        self.due_ns = min(nxt) + self.grace_ns if nxt else None

    def new_day(self, now_ns: int, orders: OrderTable, book: Book, exec_ids: ExecIds) -> tuple[int, int]:
        """Forget everything finished, at the day roll: (orders, fills) forgotten."""
        forgotten = len(orders.forget_finished())
        fills = book.new_day()
        exec_ids.new_day(now_ns)
        self.due_ns = None
        return forgotten, fills
