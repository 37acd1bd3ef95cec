"""Typed values the core works with. Money and quantities are Decimal, never float."""

from __future__ import annotations

import enum
from decimal import Decimal

import msgspec


class Side(enum.StrEnum):
    BUY = "1"
    SELL = "2"
    BUY_MINUS = "3"
    SELL_PLUS = "4"
    SELL_SHORT = "5"
    SELL_SHORT_EXEMPT = "6"

    @property
    def is_buy(self) -> bool:
        return self in _BUYS


_BUYS = frozenset({Side.BUY, Side.BUY_MINUS})  # a set made once: Side.BUY is a lookup on the enum class


class OrdType(enum.StrEnum):
    MARKET = "1"
    LIMIT = "2"
    STOP = "3"
    STOP_LIMIT = "4"


class OrdStatus(enum.StrEnum):
    """FIX OrdStatus (39), plus the proxy's own PENDING_NEW before the venue answers."""

    NEW = "0"
    PARTIALLY_FILLED = "1"
    FILLED = "2"
    DONE_FOR_DAY = "3"
    CANCELED = "4"
    REPLACED = "5"
    PENDING_CANCEL = "6"
    STOPPED = "7"
    REJECTED = "8"
    SUSPENDED = "9"
    PENDING_NEW = "A"
    CALCULATED = "B"
    EXPIRED = "C"
    ACCEPTED_FOR_BIDDING = "D"
    PENDING_REPLACE = "E"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {OrdStatus.FILLED, OrdStatus.CANCELED, OrdStatus.REJECTED, OrdStatus.EXPIRED, OrdStatus.DONE_FOR_DAY}
)


class ExecType(enum.StrEnum):
    """ExecType (150) in FIX 4.4 terms; FIX 4.2 values are mapped onto these at the edge."""

    NEW = "0"
    DONE_FOR_DAY = "3"
    CANCELED = "4"
    REPLACED = "5"
    PENDING_CANCEL = "6"
    STOPPED = "7"
    REJECTED = "8"
    SUSPENDED = "9"
    PENDING_NEW = "A"
    CALCULATED = "B"
    EXPIRED = "C"
    RESTATED = "D"
    PENDING_REPLACE = "E"
    TRADE = "F"
    TRADE_CORRECT = "G"
    TRADE_CANCEL = "H"
    ORDER_STATUS = "I"


class Instrument(msgspec.Struct, frozen=True, gc=False):
    symbol: str
    sector: str = ""
    reference_price: Decimal | None = None
    #: When the reference price was set, in nanoseconds since the epoch (None: never).
    reference_time_ns: int | None = None
    lot_size: Decimal = Decimal(1)
    restricted: bool = False


class OrderRequest(msgspec.Struct, frozen=True, gc=False):
    """The economic content of a NewOrderSingle or the new values of a cancel/replace."""

    cl_ord_id: str
    symbol: str
    side: Side
    order_qty: Decimal
    ord_type: OrdType
    price: Decimal | None = None
    account: str = ""
    ex_destination: str = ""
    time_in_force: str = ""
    stop_px: Decimal | None = None


class ExecReport(msgspec.Struct, frozen=True, gc=False):
    """An ExecutionReport decoded once, independent of the FIX version it came in."""

    exec_type: ExecType
    ord_status: OrdStatus
    cl_ord_id: str
    order_id: str
    exec_id: str
    symbol: str = ""
    side: Side | None = None
    orig_cl_ord_id: str = ""
    order_qty: Decimal | None = None
    price: Decimal | None = None
    last_qty: Decimal = Decimal(0)
    last_px: Decimal = Decimal(0)
    leaves_qty: Decimal = Decimal(0)
    cum_qty: Decimal = Decimal(0)
    avg_px: Decimal = Decimal(0)
    text: str = ""
    account: str = ""
    ord_rej_reason: str = ""
    exec_ref_id: str = ""  # ExecRefID (19): the fill a bust or correction refers to


class CancelReject(msgspec.Struct, frozen=True, gc=False):
    """An OrderCancelReject (35=9) decoded once."""

    cl_ord_id: str
    orig_cl_ord_id: str
    order_id: str
    ord_status: OrdStatus
    response_to: str  # CxlRejResponseTo (434): "1" cancel, "2" replace
    reason: str = ""  # CxlRejReason (102)
    text: str = ""


def plain(value: Decimal | int) -> str:
    """A number as a person writes it: no exponent, no trailing zeros (``1.50`` -> ``1.5``)."""
    if isinstance(value, int):
        return str(value)
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
