"""Limits and how they resolve: symbol beats account beats session beats firm, field by field."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Generic, TypeAlias, TypeVar

import msgspec


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One layer of limits. A field left unset falls through to the next, less specific, layer."""

    max_order_qty: Decimal | None = None
    max_order_notional: Decimal | None = None
    #: Largest distance of a priced order from the reference price, in percent.
    price_collar_pct: Decimal | None = None
    #: A reference price older than this many seconds is stale (0: never stale).
    reference_max_age_s: Annotated[int, msgspec.Meta(ge=0)] | None = None
    #: Symbols this layer may not trade, on top of instruments flagged restricted.
    #: Unlike the other fields these add up across layers.
    restricted_symbols: frozenset[str] | None = None
    #: Largest long / short position (quantity) of an account in a symbol, working orders included.
    max_long_position: Decimal | None = None
    max_short_position: Decimal | None = None
    #: Order messages (D, G, F) per second on one OMS session, over a sliding one-second window.
    max_msgs_per_s: Annotated[int, msgspec.Meta(ge=1)] | None = None
    #: The same layer's max_sector_pct is only checked once its scope's gross reaches this; a layer
    #: without one takes the nearest less specific layer's (never a more specific layer's).
    sector_min_gross: Decimal | None = None

    # Aggregate limits: every layer that sets one applies it to its own scope's total
    # (the firm's to the firm, a session's to that session, an account's to that account).
    #: Gross exposure: sum over symbols of the worst-case |position| (working orders filled) x reference price.
    max_gross_exposure: Decimal | None = None
    #: Net exposure, long or short, if every working order on one side fills.
    max_net_exposure: Decimal | None = None
    #: Largest share of gross exposure in one sector, in percent.
    max_sector_pct: Decimal | None = None
    max_open_orders: Annotated[int, msgspec.Meta(ge=1)] | None = None
    #: Limits of this layer in monitor (shadow) mode: an order they would refuse goes on, and a
    #: would-have-refused record is made; the same limit of a less specific layer is enforced
    #: meanwhile. Not a limit itself (LIMIT_FIELDS leaves it out).
    monitor: frozenset[str] | None = None

    def __post_init__(self) -> None:
        # msgspec has no numeric constraints for Decimal; a ValueError here names the key's path.
        for name in (
            "max_order_qty",
            "max_order_notional",
            "max_long_position",
            "max_short_position",
            "max_gross_exposure",
            "max_net_exposure",
        ):
            value = getattr(self, name)
            if value is not None and not (value.is_finite() and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        for name in ("price_collar_pct", "sector_min_gross", "max_sector_pct"):
            value = getattr(self, name)
            if value is not None and not (value.is_finite() and value >= 0):
                raise ValueError(f"{name} must be zero or more, got {value}")
        if self.max_sector_pct is not None and self.max_sector_pct > 100:
            raise ValueError(f"max_sector_pct is a percentage, got {self.max_sector_pct}")
        for name in sorted(self.monitor or ()):
            if name not in MONITORABLE:
                raise ValueError(f"monitor: no limit named {name!r} to monitor (limits: {', '.join(MONITORABLE)})")


LIMIT_FIELDS: tuple[str, ...] = tuple(f for f in Limits.__struct_fields__ if f != "monitor")
#: Limits a layer may put in monitor mode: not sector_min_gross, which refuses nothing itself (it
#: only holds back its layer's sector check; watching it would check the sector more, not less).
MONITORABLE: tuple[str, ...] = tuple(f for f in LIMIT_FIELDS if f != "sector_min_gross")
#: Fields that every layer applies to its own scope, rather than the most specific layer winning.
AGGREGATE_FIELDS = frozenset(
    {"max_gross_exposure", "max_net_exposure", "max_sector_pct", "sector_min_gross", "max_open_orders"}
)


class LimitSet(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Every layer of limits the firm has configured."""

    firm: Limits = Limits()
    sessions: dict[str, Limits] = {}
    accounts: dict[str, Limits] = {}
    symbols: dict[str, Limits] = {}

    def with_layer(self, scope: str, key: str, layer: Limits) -> LimitSet:
        """A copy with one layer replaced (``scope`` is firm, session, account or symbol)."""
        if scope == "firm":
            return msgspec.structs.replace(self, firm=layer)
        attr = {"session": "sessions", "account": "accounts", "symbol": "symbols"}[scope]
        layers = dict(getattr(self, attr))
        layers[key] = layer
        return msgspec.structs.replace(self, **{attr: layers})


T = TypeVar("T")


class Limit(msgspec.Struct, Generic[T], frozen=True):
    """A resolved limit value and the scope it came from, e.g. ``account:ACC1``."""

    value: T
    scope: str


class SectorLimit(msgspec.Struct, frozen=True):
    """One layer's max_sector_pct, with the sector_min_gross that gates it: that layer's, else the nearest
    less specific layer's (None: checked at any gross)."""

    value: Decimal
    scope: str
    min_gross: Decimal | None = None


#: What resolve() finds for one field: a Limit, a tuple of them (aggregate fields), or nothing.
Resolved: TypeAlias = Limit[Any] | tuple[Limit[Any], ...] | tuple[SectorLimit, ...] | None


class ResolvedLimits:
    """The limits that apply to one (session, account, symbol), each with its scope.

    An aggregate field holds a tuple of Limits, one per layer that sets it.
    """

    __slots__ = LIMIT_FIELDS

    # One attribute per field of Limits (a unit test holds the two lists equal).
    max_order_qty: Limit[Decimal] | None
    max_order_notional: Limit[Decimal] | None
    price_collar_pct: Limit[Decimal] | None
    reference_max_age_s: Limit[int] | None
    #: Set (to True) when a layer restricts the symbol.
    restricted_symbols: Limit[bool] | None
    max_long_position: Limit[Decimal] | None
    max_short_position: Limit[Decimal] | None
    max_msgs_per_s: Limit[int] | None
    sector_min_gross: tuple[Limit[Decimal], ...] | None
    max_gross_exposure: tuple[Limit[Decimal], ...] | None
    max_net_exposure: tuple[Limit[Decimal], ...] | None
    max_sector_pct: tuple[SectorLimit, ...] | None
    max_open_orders: tuple[Limit[int], ...] | None

    def __init__(self, values: dict[str, Resolved]):
        for name in LIMIT_FIELDS:
            setattr(self, name, values.get(name))


def _layers(limits: LimitSet, session: str, account: str, symbol: str) -> tuple[tuple[str, Limits | None], ...]:
    """The layers that apply to (session, account, symbol), the most specific first."""
    return (
        (f"symbol:{symbol}", limits.symbols.get(symbol)),
        (f"account:{account}", limits.accounts.get(account) if account else None),
        (f"session:{session}", limits.sessions.get(session)),
        ("firm", limits.firm),
    )


def _enforced(layer: Limits) -> Limits:
    """``layer`` without its monitored limits."""
    return msgspec.structs.replace(layer, monitor=None, **dict.fromkeys(layer.monitor or ()))


def watching(limits: LimitSet) -> bool:
    """Whether any layer has a limit in monitor mode."""
    layers = (limits.firm, *limits.sessions.values(), *limits.accounts.values(), *limits.symbols.values())
    return any(layer.monitor for layer in layers)


def resolve(limits: LimitSet, session: str, account: str, symbol: str, *, shadow: bool = False) -> ResolvedLimits:
    """The limits in force: a layer's monitored limits are left out (a less specific layer's apply),
    unless ``shadow``, which resolves as if every limit were enforced (what monitor mode checks)."""
    layers = tuple(
        (scope, layer if shadow or layer is None or not layer.monitor else _enforced(layer))
        for scope, layer in _layers(limits, session, account, symbol)
    )
    values: dict[str, Resolved] = {}
    for name in LIMIT_FIELDS:
        values[name] = None
        if name in AGGREGATE_FIELDS:
            # Every layer's value, each checked against its own scope's total (symbol layers have no total).
            found = tuple(
                Limit(getattr(layer, name), scope)
                for scope, layer in layers[1:]
                if layer is not None and getattr(layer, name) is not None
            )
            values[name] = found or None
            continue
        if name == "restricted_symbols":
            # Restriction lists add up: an account cannot lift a firm-wide restriction.
            for scope, layer in layers:
                if layer is not None and layer.restricted_symbols and symbol in layer.restricted_symbols:
                    values[name] = Limit(True, scope)
                    break
            continue
        for scope, layer in layers:
            if layer is not None and (value := getattr(layer, name)) is not None:
                values[name] = Limit(value, scope)
                break
    sector_pct, sector_floors = values["max_sector_pct"], values["sector_min_gross"]
    if isinstance(sector_pct, tuple):
        # A floor is an amount of gross: a layer's check takes its own floor or, without one, the
        # nearest less specific layer's, never a more specific one's (an account's floor must not
        # gate the firm's check).
        scopes = [scope for scope, _ in layers[1:]]
        floors = {f.scope: f.value for f in sector_floors} if isinstance(sector_floors, tuple) else {}
        values["max_sector_pct"] = tuple(
            SectorLimit(
                lim.value,
                lim.scope,
                next((floors[s] for s in scopes[scopes.index(lim.scope) :] if s in floors), None),
            )
            for lim in sector_pct
        )
    return ResolvedLimits(values)


class LimitResolver:
    """Caches resolutions; a new LimitSet (a live limit change) clears the cache."""

    __slots__ = ("limits", "_cache", "_shadow", "watching")

    def __init__(self, limits: LimitSet):
        self.replace(limits)

    def replace(self, limits: LimitSet) -> None:
        self.limits = limits
        self._cache: dict[tuple[str, str, str], ResolvedLimits] = {}
        self._shadow: dict[tuple[str, str, str], ResolvedLimits | None] = {}
        #: Some layer has a limit in monitor mode (else ``shadow`` is always None).
        self.watching = watching(limits)

    def shadow(self, session: str, account: str, symbol: str) -> ResolvedLimits | None:
        """The limits with the monitored ones counted as enforced; None when no layer that applies to
        (session, account, symbol) monitors a limit (the limits in force are then the same)."""
        if not self.watching:
            return None
        key = (session, account, symbol)
        if key in self._shadow:
            return self._shadow[key]
        if len(self._shadow) > 100_000:
            self._shadow.clear()
        layers = _layers(self.limits, session, account, symbol)
        found = self._shadow[key] = (
            resolve(self.limits, session, account, symbol, shadow=True)
            if any(layer is not None and layer.monitor for _, layer in layers)
            else None
        )
        return found

    def __call__(self, session: str, account: str, symbol: str) -> ResolvedLimits:
        key = (session, account, symbol)
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) > 100_000:
                self._cache.clear()
            found = self._cache[key] = resolve(self.limits, session, account, symbol)
        return found
