"""Read-only views of the core as plain data (str, int, list, dict), for the admin API and reports.

Numbers that are money or quantities are strings, so no float ever stands in for a Decimal.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from . import alerts
from .book import FIRM
from .orders import Order
from .proxy import ProxyCore
from .risk.limits import Limit, LimitSet


def _s(value: Decimal | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


# Each view is two steps: ``copy_<view>(core)`` takes the values it needs while the caller holds the
# core lock (plain values and immutable Decimals, never a walk over the day's orders), and
# ``render_<view>(copy)`` turns them into the answer once the lock is released.

ORDER_PAGE = 100  # open orders in one page of GET /orders, unless the caller asks for another size


def _order_row(o: Order) -> tuple:
    r = o.request
    return (
        o.key,
        o.session,
        o.cl_ord_id,
        o.venue,
        o.order_id,
        r.account,
        r.symbol,
        r.side,
        r.ord_type,
        r.order_qty,
        r.price,
        o.status,
        o.leaves_qty,
        o.cum_qty,
        o.avg_px,
        o.pending[0] if o.pending else "",
    )


def copy_open_orders(core: ProxyCore, limit: int | None = None, after: str = "") -> list[tuple]:
    """One page of open orders in key order (all of them when ``limit`` is None: tests and reports only)."""
    tally = core.tally
    orders = tally.page(len(tally.open) if limit is None else limit, after)
    return [_order_row(o) for o in orders]


def render_open_orders(rows: list[tuple]) -> list[dict]:
    return [
        {
            "key": key,
            "session": session,
            "cl_ord_id": cl_ord_id,
            "venue": venue,
            "order_id": order_id,
            "account": account,
            "symbol": symbol,
            "side": side.name.lower(),
            "ord_type": ord_type.name.lower(),
            "order_qty": _s(qty),
            "price": _s(price),
            "status": status.name.lower(),
            "leaves_qty": _s(leaves),
            "cum_qty": _s(cum),
            "avg_px": _s(avg),
            "pending_replace": pending,
        }
        for (
            key,
            session,
            cl_ord_id,
            venue,
            order_id,
            account,
            symbol,
            side,
            ord_type,
            qty,
            price,
            status,
            leaves,
            cum,
            avg,
            pending,
        ) in rows
    ]


def open_orders(core: ProxyCore, limit: int | None = None, after: str = "") -> list[dict]:
    """Open orders in key order: a page of at most ``limit`` after key ``after``, or all of them."""
    return render_open_orders(copy_open_orders(core, limit, after))


def copy_positions(core: ProxyCore) -> list[tuple]:
    book = core.book
    return [
        (
            account,
            symbol,
            book.sector(symbol),
            book.mark(symbol),
            p.qty,
            p.avg_cost,
            p.realized_pnl,
            p.bought_qty,
            p.sold_qty,
            p.traded_notional,
        )
        for (account, symbol), p in book.positions.items()
        if p.qty or p.realized_pnl or p.traded_notional
    ]


def render_positions(rows: list[tuple]) -> list[dict]:
    out = []
    for account, symbol, sector, mark, qty, avg_cost, realized, bought, sold, traded in sorted(
        rows, key=lambda r: r[:2]
    ):
        unrealized = (mark - avg_cost) * qty if mark and qty else Decimal(0)
        out.append(
            {
                "account": account,
                "symbol": symbol,
                "sector": sector,
                "qty": _s(qty),
                "avg_cost": _s(avg_cost),
                "mark": _s(mark),
                "market_value": _s(qty * mark),
                "realized_pnl": _s(realized),
                "unrealized_pnl": _s(unrealized),
                "bought_qty": _s(bought),
                "sold_qty": _s(sold),
                "traded_notional": _s(traded),
            }
        )
    return out


def positions(core: ProxyCore) -> list[dict]:
    return render_positions(copy_positions(core))


def copy_exposure(core: ProxyCore) -> list[tuple]:
    out = []
    for scope in core.book.scope_names():
        t = core.book.totals(scope)
        layer = alerts.layer(core.limits.limits, scope)
        limits = []
        for name in alerts.ALERT_LIMITS:
            limit = getattr(layer, name) if layer is not None else None
            if limit:
                limits.append((name, limit, alerts.observed(core.book, name, scope)))
        out.append((scope, t.gross, t.net, t.long, t.short, t.open_orders, dict(t.sector), limits))
    return out


def render_exposure(rows: list[tuple]) -> list[dict]:
    out = []
    for scope, gross, net, long, short, open_orders, sectors, used in sorted(rows, key=lambda r: (r[0] != FIRM, r[0])):
        limits = {
            name: {
                "limit": _s(limit),
                "observed": _s(observed),
                "utilization_pct": f"{Decimal(observed) * 100 / Decimal(limit):.1f}",
            }
            for name, limit, observed in used
        }
        out.append(
            {
                "scope": scope,
                "gross": _s(gross),
                "net": _s(net),
                "net_long": _s(long),
                "net_short": _s(short),
                "open_orders": open_orders,
                "sectors": {k or "(none)": _s(v) for k, v in sorted(sectors.items())},
                "limits": limits,
            }
        )
    return out


def exposure(core: ProxyCore) -> list[dict]:
    """Per scope: gross, net (positions), net long/short with working orders, open orders, sectors,
    and the utilization of each aggregate limit that layer sets."""
    return render_exposure(copy_exposure(core))


def copy_position_limits(core: ProxyCore) -> list[tuple]:
    """Per account line of the book that max_long_position or max_short_position limits: position and
    working quantities, and the two limits as resolved for the account and symbol (session layers
    apply per session, so they are left out here)."""
    book, resolver = core.book, core.limits
    out = []
    for scope in book.scope_names():
        if not scope.startswith("account:"):
            continue
        account = scope[len("account:") :]
        for symbol, line in book.totals(scope).lines.items():
            if not (line.pos or line.buy or line.sell):
                continue
            resolved = resolver("", account, symbol)
            long, short = resolved.max_long_position, resolved.max_short_position
            if long is not None or short is not None:
                out.append((account, symbol, line.pos, line.buy, line.sell, long, short))
    return out


def _position_use(observed: Decimal, limit: Limit[Decimal] | None) -> dict | None:
    if limit is None:
        return None
    used = max(observed, Decimal(0)) * 100 / limit.value
    return {"observed": _s(observed), "limit": _s(limit.value), "scope": limit.scope, "utilization_pct": f"{used:.1f}"}


def render_position_limits(rows: list[tuple]) -> list[dict]:
    return [
        {
            "account": account,
            "symbol": symbol,
            "position": _s(pos),
            "working_buy": _s(buy),
            "working_sell": _s(sell),
            # As the max_position rule counts them: the position if every working buy (sell) fills.
            "long": _position_use(pos + buy, long),
            "short": _position_use(sell - pos, short),
        }
        for account, symbol, pos, buy, sell, long, short in sorted(rows, key=lambda r: r[:2])
    ]


def position_limits(core: ProxyCore) -> list[dict]:
    """Each account's position in a symbol, working orders included, against its position limits."""
    return render_position_limits(copy_position_limits(core))


def copy_trading_states(core: ProxyCore) -> list:
    return list(core.kill.states())


def render_trading_states(states: list) -> list[dict]:
    return [
        {"scope": s.scope, "state": s.state.value, "reason": s.reason, "operator": s.operator, "since_ns": s.since_ns}
        for s in states
    ]


def trading_states(core: ProxyCore) -> list[dict]:
    return render_trading_states(copy_trading_states(core))


def copy_limits(core: ProxyCore) -> LimitSet:
    return core.limits.limits  # a frozen value: replaced, never changed


def render_limits(limit_set: LimitSet) -> dict:
    return msgspec.to_builtins(limit_set)


def limits(core: ProxyCore) -> dict:
    return render_limits(copy_limits(core))


def copy_sessions(core: ProxyCore) -> tuple:
    dc = core.drop_copies
    drops = tuple((n, n in dc.refusals) for n in dc.every) if dc is not None else ()
    return sorted(core.sessions.items()), sorted(core.venues), frozenset(core.up), drops


def render_sessions(copied: tuple) -> dict:
    oms, venues, up, drops = copied
    return {
        "oms": [
            {
                "name": n,
                "up": n in up,
                "default_venue": p.default_venue,
                "reject_with": p.reject_with,
                "cancel_on_disconnect": p.cancel_on_disconnect,
            }
            for n, p in oms
        ],
        "venues": [{"name": v, "up": v in up} for v in venues],
        "drop_copies": [{"name": n, "up": n in up, "copy_refusals": refusals} for n, refusals in drops],
    }


def sessions(core: ProxyCore) -> dict:
    return render_sessions(copy_sessions(core))


def copy_orders(core: ProxyCore) -> dict:
    return core.tally.counts()


def render_orders(counts: dict) -> dict:
    """The running counts: open orders (per session), orders by status, decisions per session and by code."""
    decisions = counts["decisions"]
    return {
        "open": counts["open"],
        "open_by_session": dict(sorted(counts["open_by_session"].items())),
        "by_status": {s.name.lower(): n for s, n in sorted(counts["statuses"].items(), key=lambda x: x[0].name)},
        "decisions": {
            "accepted": sum(a for a, _ in decisions.values()),
            "rejected": sum(r for _, r in decisions.values()),
            "by_session": {s: {"accepted": a, "rejected": r} for s, (a, r) in sorted(decisions.items())},
            "rejects_by_code": dict(sorted(counts["codes"].items())),
        },
    }


def orders(core: ProxyCore) -> dict:
    return render_orders(copy_orders(core))


def copy_summary(core: ProxyCore) -> dict:
    return {
        "sessions": copy_sessions(core),
        "trading_states": copy_trading_states(core),
        "limits": copy_limits(core),
        "positions": copy_positions(core),
        "exposure": copy_exposure(core),
        "position_limits": copy_position_limits(core),
        "orders": copy_orders(core),
        "kill_cancels_pending": core.kill_cancels_pending(),
    }


def render_summary(c: dict) -> dict:
    return {
        "sessions": render_sessions(c["sessions"]),
        "trading_states": render_trading_states(c["trading_states"]),
        "limits": render_limits(c["limits"]),
        "positions": render_positions(c["positions"]),
        "exposure": render_exposure(c["exposure"]),
        "position_limits": render_position_limits(c["position_limits"]),
        "orders": render_orders(c["orders"]),
        "kill_cancels_pending": c["kill_cancels_pending"],
    }


def summary(core: ProxyCore) -> dict:
    """Everything the risk desk looks at, in one value: counts of orders and decisions, not the orders
    themselves (GET /orders pages through those)."""
    return render_summary(copy_summary(core))


#: view name -> (copy under the core lock, render outside it)
READS = {
    name: (globals()["copy_" + name], globals()["render_" + name])
    for name in (
        "sessions",
        "trading_states",
        "limits",
        "positions",
        "exposure",
        "position_limits",
        "open_orders",
        "orders",
        "summary",
    )
}
