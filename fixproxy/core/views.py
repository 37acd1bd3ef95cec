"""Read-only views of the core as plain data (str, int, list, dict), for the admin API and reports.

Numbers that are money or quantities are strings, so no float ever stands in for a Decimal.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from .book import FIRM
from .proxy import ProxyCore

_UTIL_FIELDS = ("max_gross_exposure", "max_net_exposure", "max_open_orders")


def _s(value: Decimal | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def open_orders(core: ProxyCore) -> list[dict]:
    out = []
    for o in sorted(core.orders.open_orders(), key=lambda o: o.key):
        r = o.request
        out.append({
            "session": o.session, "cl_ord_id": o.cl_ord_id, "venue": o.venue, "order_id": o.order_id,
            "account": r.account, "symbol": r.symbol, "side": r.side.name.lower(), "ord_type": r.ord_type.name.lower(),
            "order_qty": _s(r.order_qty), "price": _s(r.price), "status": o.status.name.lower(),
            "leaves_qty": _s(o.leaves_qty), "cum_qty": _s(o.cum_qty), "avg_px": _s(o.avg_px),
            "pending_replace": o.pending[0] if o.pending else "",
        })
    return out


def positions(core: ProxyCore) -> list[dict]:
    out = []
    for (account, symbol), p in sorted(core.book.positions.items()):
        if not (p.qty or p.realized_pnl or p.traded_notional):
            continue
        mark = core.book.mark(symbol)
        unrealized = (mark - p.avg_cost) * p.qty if mark and p.qty else Decimal(0)
        out.append({
            "account": account, "symbol": symbol, "sector": core.book.sector(symbol), "qty": _s(p.qty),
            "avg_cost": _s(p.avg_cost), "mark": _s(mark), "market_value": _s(p.qty * mark),
            "realized_pnl": _s(p.realized_pnl), "unrealized_pnl": _s(unrealized),
            "bought_qty": _s(p.bought_qty), "sold_qty": _s(p.sold_qty), "traded_notional": _s(p.traded_notional),
        })
    return out


def exposure(core: ProxyCore) -> list[dict]:
    """Per scope: gross, net (positions), net long/short with working orders, open orders, sectors,
    and the utilization of each aggregate limit that layer sets."""
    out = []
    scopes = sorted(core.book.scope_names(), key=lambda s: (s != FIRM, s))
    for scope in scopes:
        t = core.book.totals(scope)
        layer = core.layer(scope)
        limits = {}
        for name in _UTIL_FIELDS:
            limit = getattr(layer, name) if layer is not None else None
            if limit:
                observed = core.observed(name, scope)
                limits[name] = {"limit": _s(limit), "observed": _s(observed),
                                "utilization_pct": f"{Decimal(observed) * 100 / Decimal(limit):.1f}"}
        out.append({
            "scope": scope, "gross": _s(t.gross), "net": _s(t.net), "net_long": _s(t.long), "net_short": _s(t.short),
            "open_orders": t.open_orders, "sectors": {k or "(none)": _s(v) for k, v in sorted(t.sector.items())},
            "limits": limits,
        })
    return out


def trading_states(core: ProxyCore) -> list[dict]:
    return [{"scope": s.scope, "state": s.state.value, "reason": s.reason, "operator": s.operator,
             "since_ns": s.since_ns} for s in core.kill.states()]


def limits(core: ProxyCore) -> dict:
    return msgspec.to_builtins(core.limits.limits)


def sessions(core: ProxyCore) -> dict:
    return {
        "oms": [{"name": n, "up": n in core.up, "default_venue": p.default_venue, "reject_with": p.reject_with,
                 "cancel_on_disconnect": p.cancel_on_disconnect} for n, p in sorted(core.sessions.items())],
        "venues": [{"name": v, "up": v in core.up} for v in sorted(core.venues)],
    }


def summary(core: ProxyCore) -> dict:
    """Everything the risk desk looks at, in one value."""
    return {
        "sessions": sessions(core), "trading_states": trading_states(core), "limits": limits(core),
        "positions": positions(core), "exposure": exposure(core), "open_orders": open_orders(core),
        "kill_cancels_pending": core.kill_cancels_pending(),
    }
