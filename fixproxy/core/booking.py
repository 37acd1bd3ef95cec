"""How orders and venue reports move the book: an order's working exposure, and the position by a
fill, a bust (ExecType H) or a correction (G)."""

from __future__ import annotations

from . import events as ev
from .book import FIRM, Book, Fill, Working
from .exec_ids import ExecIds
from .model import ExecReport, ExecType
from .orders import Order


def sync_working(book: Book, order: Order) -> None:
    """Make the book's working exposure of ``order`` match its state (a pending replace counts at the larger size).

    Called on every change of an order.
    """
    if not order.is_open:
        book.set_working(order.key, None)
        return
    req, leaves = order.request, order.leaves_qty
    if order.pending is not None:
        req = order.pending[2]
        leaves = max(leaves, req.order_qty - order.cum_qty)
    book.set_working(order.key, Working(order.session, req.account, req.symbol, Book.sign(req.side), leaves, req.price))


def apply_report(
    book: Book, exec_ids: ExecIds, order: Order, r: ExecReport, now_ns: int, out: list[ev.Action], known: bool = False
) -> bool:
    """Move the book by the fill, bust or correction ``r`` reports on ``order``; True if it moved.

    ``known``: the fill's ExecID came before. Notices go to ``out``.
    """
    req = order.request
    if r.exec_type is ExecType.TRADE and r.last_qty > 0:
        fill = Fill(
            r.exec_id, order.session, req.account, req.symbol, r.last_qty * Book.sign(req.side), r.last_px, now_ns
        )
        if not book.fill(fill, known):
            out.append(ev.Notice("duplicate_fill", now_ns, f"ExecID {r.exec_id} already applied; ignored"))
            return False
        if r.cum_qty > req.order_qty:
            out.append(
                ev.Notice(
                    "overfill",
                    now_ns,
                    f"{order.session}/{order.cl_ord_id}: cum {r.cum_qty} > order quantity {req.order_qty}",
                )
            )
        return True
    if r.exec_type in (ExecType.TRADE_CANCEL, ExecType.TRADE_CORRECT):
        ref = r.exec_ref_id
        done = book.bust(ref) if r.exec_type is ExecType.TRADE_CANCEL else book.correct(ref, r.last_qty, r.last_px)
        if done is not None:
            return True
        if exec_ids.had_fill(ref):
            # The fill was folded into its position (finished_grace_s, a day roll): the desk must adjust.
            out.append(
                ev.Alert(
                    "fill_adjustment",
                    f"account:{req.account}" if req.account else FIRM,
                    "100",
                    ref,
                    "",
                    now_ns,
                    f"FILL_ADJUSTMENT_NEEDED: {r.exec_type.name} of ExecID {ref} "
                    f"({order.session}/{order.cl_ord_id} {req.symbol}) refers to a fill already "
                    "folded into its position; the position was not changed",
                )
            )
        else:
            out.append(ev.Notice("unknown_fill", now_ns, f"{r.exec_type.name} refers to unknown ExecID {ref!r}"))
    return False
