"""This instance's shares of the limits a cluster of proxies shares (docs/cluster.md).

With ``[cluster]`` configured, every aggregate limit of the firm or of an account (gross exposure,
net long and short exposure, open orders) is shared by all instances: each checks its orders against
its own *allowance* of it, which the edge first commits in PostgreSQL (the sum of the allowances of
all instances never exceeds the limit) and then hands to the core as a journaled ``ClusterShare``
event, so a recovery or a replay decides as the live core did. No I/O here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from . import events as ev
from .book import FIRM, Book, Totals
from .risk.limits import Limits, LimitSet

if TYPE_CHECKING:
    from .proxy import ProxyCore

ZERO = Decimal(0)

#: A shared limit's key: ``<field>|<scope>``, the field one of these (net exposure has a side).
GROSS, NET_LONG, NET_SHORT, OPEN_ORDERS = (
    "max_gross_exposure",
    "max_net_exposure:long",
    "max_net_exposure:short",
    "max_open_orders",
)
SHARED = (GROSS, NET_LONG, NET_SHORT, OPEN_ORDERS)


_FIELD_OF = {"GROSS_EXPOSURE": GROSS, "NET_EXPOSURE": NET_LONG, "MAX_OPEN_ORDERS": OPEN_ORDERS}


def key(field: str, scope: str) -> str:
    return f"{field}|{scope}"


def split(k: str) -> tuple[str, str]:
    field, _, scope = k.partition("|")
    return field, scope


def shared_limits(limits: LimitSet) -> dict[str, Decimal]:
    """Every limit the cluster shares, by key, with its value: the firm's and each account's aggregate
    limits in force (a monitored one is not enforced, so it is not shared). Session limits are not
    shared (a session is on one instance), nor are symbol layers (they have no total)."""
    out: dict[str, Decimal] = {}
    layers: list[tuple[str, Limits]] = [(FIRM, limits.firm)]
    layers += [(f"account:{a}", layer) for a, layer in sorted(limits.accounts.items())]
    for scope, layer in layers:
        watched = layer.monitor or frozenset()
        if layer.max_gross_exposure is not None and "max_gross_exposure" not in watched:
            out[key(GROSS, scope)] = layer.max_gross_exposure
        if layer.max_net_exposure is not None and "max_net_exposure" not in watched:
            out[key(NET_LONG, scope)] = layer.max_net_exposure
            out[key(NET_SHORT, scope)] = layer.max_net_exposure
        if layer.max_open_orders is not None and "max_open_orders" not in watched:
            out[key(OPEN_ORDERS, scope)] = Decimal(layer.max_open_orders)
    return out


def usage(book: Book, k: str) -> Decimal:
    """What this instance uses of a shared limit now: its book's total for the scope."""
    field, scope = split(k)
    return _used(book.peek(scope), field)


def _used(t: Totals, field: str) -> Decimal:
    if field == GROSS:
        return t.gross
    if field == NET_LONG:
        return t.long
    if field == NET_SHORT:
        return -t.short
    return Decimal(t.open_orders)


class ClusterShares:
    """The allowances this instance holds, and whether the edge fenced it off new headroom."""

    __slots__ = ("enabled", "allowance", "low", "fence", "hungry", "dry", "wanted", "_marks")

    def __init__(self, enabled: bool = False) -> None:
        #: ``[cluster]`` is configured: shared limits are checked against allowances (none held: 0).
        self.enabled = enabled
        self.allowance: dict[str, Decimal] = {}
        #: Usage at which the edge wants to top the allowance up (set with it).
        self.low: dict[str, Decimal] = {}
        #: Why this instance may take no new headroom ("" while it may): the database is lost and its
        #: leases ran out. Orders that would raise a shared limit's usage are refused meanwhile.
        self.fence = ""
        #: A hint for the edge, not state: some usage reached its low mark (a top-up is wanted).
        self.hungry = False
        #: A hint from the edge: the cluster has no headroom left to give (no point in waiting).
        self.dry = False
        #: A hint for the edge: the usage an order refused for want of a share would have reached.
        self.wanted: dict[str, Decimal] = {}
        #: ``low`` by scope, as (field, mark) pairs: what ``watch`` reads after an order.
        self._marks: dict[str, list[tuple[str, Decimal]]] = {}

    def cap(self, field: str, scope: str) -> Decimal | None:
        """The most this instance may use of a shared limit (None: not shared here)."""
        if not self.enabled or not (scope == FIRM or scope.startswith("account:")):
            return None
        if self.fence:
            return ZERO
        return self.allowance.get(key(field, scope), ZERO)

    def why(self, limit: Decimal, cap: Decimal) -> str:
        """The end of a refusal's sentence: the instance's share, or why it has none."""
        if self.fence:
            return f"this instance may take no more of the limit {_fmt(limit)} the cluster shares: {self.fence}"
        return f"above this instance's share {_fmt(cap)} of the limit {_fmt(limit)} the cluster shares"

    def set_low(self, k: str, low: Decimal | None) -> None:
        """Set (None: remove) the usage at which ``k`` wants a top-up."""
        if low is None:
            self.low.pop(k, None)
        else:
            self.low[k] = low
        marks: dict[str, list[tuple[str, Decimal]]] = {}
        for each, mark in self.low.items():
            field, scope = split(each)
            marks.setdefault(scope, []).append((field, mark))
        self._marks = marks

    def watch(self, book: Book, account: str) -> None:
        """After an order of ``account``: note whether a shared limit of a scope it counts in (the
        firm, its account) reached the mark for a top-up."""
        if self.hungry:
            return
        for scope in (FIRM, f"account:{account}") if account else (FIRM,):
            marks = self._marks.get(scope)
            if marks:
                t = book.peek(scope)
                for field, mark in marks:
                    if _used(t, field) >= mark:
                        self.hungry = True
                        return

    def refused(self, code: str, scope: str, observed: str, is_buy: bool) -> None:
        """An order was refused: if with a shared limit's code, ask the edge for a top-up that would fit it."""
        field = _FIELD_OF.get(code)
        if field is None or not (scope == FIRM or scope.startswith("account:")):
            return
        if field == NET_LONG and not is_buy:
            field = NET_SHORT
        k = key(field, scope)
        try:
            wanted = Decimal(observed)
        except ArithmeticError:
            return
        if wanted > self.wanted.get(k, ZERO):
            self.wanted[k] = wanted
        self.hungry = True

    def export(self) -> dict[str, object]:
        return {"allowance": dict(self.allowance), "low": dict(self.low), "fence": self.fence}

    def load(self, state: dict[str, object] | None) -> None:
        if state:
            self.allowance = dict(state["allowance"])  # type: ignore[call-overload]
            for k, low in dict(state["low"]).items():  # type: ignore[call-overload]
                self.set_low(k, low)
            self.fence = str(state["fence"])


def share(core: ProxyCore, e: ev.ClusterShare) -> list[ev.Action]:
    """Hold a new allowance of a shared limit (its top-up or give-back, committed in PostgreSQL first)."""
    shares = core.shares
    shares.allowance[e.key] = e.allowance
    shares.set_low(e.key, e.low)
    shares.hungry = False
    return []


def fence(core: ProxyCore, e: ev.ClusterFence) -> list[ev.Action]:
    """Fence off (or, with reason "", lift the fence on) new headroom of the shared limits."""
    shares = core.shares
    before, shares.fence = shares.fence, e.reason
    if e.reason and not before:
        return [
            ev.Alert(
                "cluster",
                FIRM,
                "100",
                e.reason,
                "",
                e.now_ns,
                f"CLUSTER_FENCED: {e.reason}; orders that need new headroom of a shared limit are refused",
            )
        ]
    if before and not e.reason:
        return [ev.Notice("cluster_unfenced", e.now_ns, f"the cluster's database is back (was: {before})")]
    return []


def _fmt(value: Decimal) -> str:
    return f"{value.normalize():f}" if value == value.to_integral_value() else f"{value:f}"
