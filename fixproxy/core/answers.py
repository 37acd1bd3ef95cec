"""The answers to an OMS the core builds from a refusal: a refused order's reply (BusinessMessageReject
35=j, or an ExecutionReport 35=8 with 150=8 as its session asks), an OrderCancelReject (35=9), and the
sentence for a message a venue did not get."""

from __future__ import annotations

from . import events as ev
from .model import CancelReject, ExecReport, ExecType, OrderRequest, OrdStatus
from .orders import Order
from .risk.rules import Reject


def order_refusal(session: str, seq_num: int, o: OrderRequest, rej: Reject, exec_id: str | None) -> ev.Action:
    """The reply to a refused new order: an ExecutionReport with ``exec_id`` if given, else a BusinessMessageReject."""
    if exec_id is not None:
        return ev.OmsReport(
            session,
            ExecReport(
                ExecType.REJECTED,
                OrdStatus.REJECTED,
                o.cl_ord_id,
                "NONE",
                exec_id,
                symbol=o.symbol,
                side=o.side,
                order_qty=o.order_qty,
                price=o.price,
                text=rej.text,
                account=o.account,
            ),
            code=rej.code,
        )
    return ev.OmsBusinessReject(session, seq_num, "D", o.cl_ord_id, rej.code, rej.text)


def cancel_reject(
    session: str, cl_ord_id: str, orig: str, order: Order | None, response_to: str, rej: Reject
) -> ev.OmsCancelReject:
    """The OrderCancelReject of a cancel (``response_to`` "1") or a replace ("2") of ``order`` (None: unknown)."""
    return ev.OmsCancelReject(
        session,
        CancelReject(
            cl_ord_id,
            orig,
            order.order_id or "NONE" if order else "NONE",
            order.status if order else OrdStatus.REJECTED,
            response_to,
            text=rej.text,
        ),
        rej.code,
    )


def not_sent(venue: str, why: str) -> str:
    """Why a message did not reach ``venue`` (a VenueSendFailed's ``why``: "down", "late" or a resend asked for)."""
    if why == "down":
        return f"venue {venue} went down before the message could be sent"
    if why == "late":
        return (
            f"venue {venue} was not taking messages: the message would have reached it too late "
            "after the proxy accepted it, so it was not sent"
        )
    return (
        f"venue {venue} did not receive the message (it asked for it again after a gap) and the "
        "proxy does not resend orders, which could be stale; send it again if still wanted"
    )
