"""Alerts on the use of the aggregate limits: raised once each time a level is crossed upward."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from . import events as ev
from .book import FIRM, Book
from .model import plain
from .risk.limits import Limits, LimitSet

_ZERO = Decimal(0)
#: The aggregate limits alerted on as their use crosses the alert levels.
ALERT_LIMITS = ("max_gross_exposure", "max_net_exposure", "max_open_orders")

Thresholds = tuple[tuple[Decimal, Decimal], ...]
#: ((limit name, scope), the limit, its thresholds)
Plan = tuple[tuple[tuple[str, str], Decimal | int, Thresholds], ...]


def layer(limits: LimitSet, scope: str) -> Limits | None:
    """The limits set on ``scope`` itself (firm, session:<name> or account:<Account>), if any."""
    if scope == FIRM:
        return limits.firm
    kind, _, key = scope.partition(":")
    return (limits.sessions if kind == "session" else limits.accounts).get(key)


def limit_of(limits: LimitSet, name: str, scope: str) -> Decimal | int | None:
    found = layer(limits, scope)
    return getattr(found, name) if found is not None else None


def observed(book: Book, name: str, scope: str) -> Decimal | int:
    """The book's current value of the aggregate limit ``name`` for ``scope``."""
    if name == "max_open_orders":
        return book.open_orders(scope)
    if name == "max_gross_exposure":
        return book.gross(scope)
    t = book.totals(scope)
    return max(t.long, -t.short)


class Alerts:
    """The levels last crossed, by (limit, scope); part of the core's snapshot (``alerted``)."""

    __slots__ = ("levels", "alerted", "_plans")

    def __init__(self, levels: Iterable[Decimal]):
        self.levels = sorted(levels)
        self.alerted: dict[tuple[str, str], Decimal] = {}  # (limit, scope) -> level last crossed
        # The aggregate limits each (session, account) is alerted on, for one LimitSet (see _plan).
        self._plans: tuple[LimitSet | None, dict[tuple[str, str], Plan]] = (None, {})

    def check(self, limits: LimitSet, book: Book, session: str, account: str, now_ns: int) -> list[ev.Action]:
        """An Alert for every aggregate limit of ``session`` and ``account`` whose use crossed a level upward."""
        if not self.levels:
            return []
        out: list[ev.Action] = []
        alerted = self.alerted
        for key, limit, thresholds in self._plan(limits, session, account):
            name, scope = key
            value = observed(book, name, scope)
            if value < thresholds[-1][1]:  # below the lowest level: the usual case
                if alerted.get(key):
                    alerted[key] = _ZERO
                continue
            level = next(lv for lv, threshold in thresholds if value >= threshold)
            if level > alerted.get(key, _ZERO):
                pct = Decimal(value) * 100 / Decimal(limit)
                out.append(
                    ev.Alert(
                        name,
                        scope,
                        plain(level),
                        plain(value),
                        plain(limit),
                        now_ns,
                        f"{name} of {scope} at {pct:.1f}% of its limit ({plain(value)} of {plain(limit)})",
                    )
                )
            alerted[key] = level
        return out

    def _plan(self, limits: LimitSet, session: str, account: str) -> Plan:
        """The ((limit, scope), limit, thresholds) an order or fill of ``session`` and ``account`` is alerted
        on: every aggregate limit set on one of its scopes. Made again after a live limit change."""
        if self._plans[0] is not limits:
            self._plans = (limits, {})
        plans = self._plans[1]
        plan = plans.get((session, account))
        if plan is None:
            if len(plans) > 100_000:  # accounts come from the OMS: bound what they can make us keep
                plans.clear()
            plan = plans[(session, account)] = tuple(
                ((name, scope), limit, self._thresholds(limit))
                for scope in Book.scopes_of(session, account)
                for name in ALERT_LIMITS
                if (limit := limit_of(limits, name, scope))
            )
        return plan

    def _thresholds(self, limit: Decimal | int) -> Thresholds:
        """(level, the value at which ``limit`` is that many percent used), highest level first."""
        return tuple((lv, Decimal(limit) * lv / 100) for lv in reversed(self.levels))
