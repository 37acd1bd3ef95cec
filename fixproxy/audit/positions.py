"""The end-of-day report's final positions: the start-of-day file and the fills the audit store holds.

Each execution report a venue sent (an ``in`` message 35=8) for an order the proxy sent it (an
``out`` 35=D or 35=G, whose ClOrdID ``<session>.<ClOrdID>`` names the order and whose Account (1),
Symbol (55) and Side (54) are the order's) moves the position book as it moves the proxy's: a fill,
a bust (ExecType H) or a correction (G), through the core's own ``Book``; an ExecID seen before is
not applied twice. Reports of orders the proxy never sent are left out, as the proxy leaves them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal

import sqlite_utils

from ..config import StartPosition
from ..core.book import Book, Fill
from ..core.model import ExecType, Side
from ..fix import codec
from ..fix.parse import parse
from .records import KIND_MESSAGE
from .store import iter_records


def _text(value: Decimal) -> str:
    """A decimal without an exponent (``1E+2`` reads back, but a person reads ``100``)."""
    return format(value.normalize(), "f") if value else "0"


def final_positions(
    db: sqlite_utils.Database, end_ns: int | None = None, start: Iterable[StartPosition] = ()
) -> list[dict]:
    """Every position (account, symbol) with a quantity or a trade by ``end_ns`` (None: the store's end),
    from the ``start`` positions and every fill before it; sorted by account and symbol."""
    book = Book({})
    for p in start:
        book.load_position(p.account, p.symbol, p.qty, p.avg_cost)
    where = f"kind = '{KIND_MESSAGE}' AND msg_type IN ('D', 'G', '8')"
    params: dict[str, int] = {}
    if end_ns is not None:
        where += " AND ts_ns < :end"
        params["end"] = end_ns
    # venue-side ClOrdID -> (OMS session, account, symbol, side) of the order the proxy sent
    orders: dict[str, tuple[str, str, str, Side]] = {}
    for r, _ in iter_records(db, where, params):
        fields = parse(json.loads(r.data).get("raw", ""))
        if r.direction == "out" and r.msg_type in ("D", "G"):
            try:
                side = Side(fields.get(54, ""))
            except ValueError:
                continue
            orders[r.cl_ord_id] = (r.cl_ord_id.partition(".")[0], fields.get(1, ""), fields.get(55, ""), side)
            continue
        if r.direction != "in" or r.msg_type != "8":
            continue
        try:
            event = codec.venue_to_event(fields, r.session, r.ts_ns)
        except codec.Invalid:
            continue
        report = getattr(event, "report", None)
        if report is None:
            continue
        order = orders.get(report.cl_ord_id) or orders.get(report.orig_cl_ord_id)
        if order is None:
            continue
        session, account, symbol, side = order
        if report.exec_type is ExecType.TRADE and report.last_qty > 0:
            book.fill(
                Fill(
                    report.exec_id, session, account, symbol, report.last_qty * Book.sign(side), report.last_px, r.ts_ns
                )
            )
        elif report.exec_type is ExecType.TRADE_CANCEL:
            book.bust(report.exec_ref_id)
        elif report.exec_type is ExecType.TRADE_CORRECT:
            book.correct(report.exec_ref_id, report.last_qty, report.last_px)
    return [
        {
            "account": p.account,
            "symbol": p.symbol,
            "qty": _text(p.qty),
            "avg_cost": _text(p.avg_cost),
            "bought": _text(p.bought_qty),
            "sold": _text(p.sold_qty),
            "realized_pnl": _text(p.realized_pnl),
        }
        for (account, symbol), p in sorted(book.positions.items())
        if p.qty or p.bought_qty or p.sold_qty
    ]
