"""FIX text <-> core events and actions, for FIX 4.2 and 4.4 alike. No quickfix, no I/O.

Decoding works on a tag -> value dict parsed from one ``toString()`` of a message (one
call across the binding instead of one per field). Version differences are data (the
tables below), never a second copy of the logic.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TypeVar

import msgspec

from ..core import events as ev
from ..core.model import CancelReject, ExecReport, ExecType, OrderRequest, OrdStatus, OrdType, Side
from .check import is_number

_SIDES = {s.value: s for s in Side}
_ORD_TYPES = {t.value: t for t in OrdType}
_ORD_STATUS = {s.value: s for s in OrdStatus}
_EXEC_TYPES = {t.value: t for t in ExecType}
_PRICED = (OrdType.LIMIT, OrdType.STOP_LIMIT)
_MAX_QTY = Decimal("1e12")
_MAX_PX = Decimal("1e12")
_ZERO = Decimal(0)
_E = TypeVar("_E")


class Invalid(ValueError):
    """A field the proxy cannot accept; the message says which and why."""


def _qty(fields: dict[int, str], tag: int, name: str) -> Decimal:
    text = fields.get(tag)
    if text is None or text == "":
        raise Invalid(f"{name} ({tag}) is missing")
    value = _number(text, tag, name)
    if value <= 0 or value > _MAX_QTY:
        raise Invalid(f"{name} ({tag}) must be a positive number below {_MAX_QTY:,f}, got {text}")
    return value


def _price(fields: dict[int, str], tag: int, name: str) -> Decimal | None:
    text = fields.get(tag)
    if text is None or text == "":
        return None
    value = _number(text, tag, name)
    if value <= 0 or value > _MAX_PX:
        raise Invalid(f"{name} ({tag}) must be a positive price below {_MAX_PX:,f}, got {text}")
    return value


def _number(text: str, tag: int, name: str) -> Decimal:
    # !a (ascii): the answer quotes what was sent, escaped, never a byte the wire cannot carry back
    if len(text) > 40 or not is_number(text):
        raise Invalid(f"{name} ({tag}) is not a decimal number: {text[:40]!a}")
    if text[0] == "-":
        # The form allows a sign (the dictionaries do); a quantity or a price is never below zero.
        raise Invalid(f"{name} ({tag}) is not a positive decimal number: {text[:40]!a}")
    return Decimal(text)


def _enum(fields: dict[int, str], tag: int, name: str, table: dict[str, _E]) -> _E:
    text = fields.get(tag)
    if text is None:
        raise Invalid(f"{name} ({tag}) is missing")
    found = table.get(text)
    if found is None:
        raise Invalid(f"{name} ({tag}) value {text[:40]!a} is not supported")
    return found


def _required(fields: dict[int, str], tag: int, name: str) -> str:
    text = fields.get(tag, "")
    if not text:
        raise Invalid(f"{name} ({tag}) is missing")
    return text


# ---------------------------------------------------------------- identifiers


class IdentifierLimits(msgspec.Struct, frozen=True):
    """Longest identifier the proxy accepts from an OMS, per field (``[identifiers]`` in the config)."""

    clordid: int = 64  # ClOrdID (11) and OrigClOrdID (41)
    account: int = 32  # Account (1)
    symbol: int = 32  # Symbol (55)
    ex_destination: int = 32  # ExDestination (100)


#: The limits of a config that sets none (``[identifiers]``).
DEFAULT_LIMITS = IdentifierLimits()


def identifier_problem(value: str, max_len: int) -> str:
    """Why ``value`` cannot be an identifier ("" when it can): printable ASCII (0x20-0x7E) only,
    not blank, no leading or trailing space, at most ``max_len`` characters."""
    if 0 < len(value) <= max_len and value.isascii() and value.isprintable() and value[0] != " " and value[-1] != " ":
        return ""  # the usual case: a few checks in C
    if len(value) > max_len:
        return f"is {len(value):,} characters long; at most {max_len} are allowed"
    if not value.strip(" "):
        return "is blank"
    for i, c in enumerate(value, 1):
        if not " " <= c <= "~":
            code = ord(c)
            shown = f"0x{code:02X}" if code < 0x100 else f"U+{code:04X}"
            kind = (
                "a control character"
                if code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0
                else "a character outside ASCII"
            )
            return f"has {kind} ({shown}) at position {i}; only printable ASCII (0x20-0x7E) is allowed"
    return "starts with a space" if value[0] == " " else "ends with a space"


#: Identifier fields of each order message that the proxy reads (and forwards): tag, name, limit,
#: required. An optional one is checked when present.
_IDENTIFIERS = {
    "D": (
        (11, "ClOrdID", "clordid", True),
        (55, "Symbol", "symbol", True),
        (1, "Account", "account", False),
        (100, "ExDestination", "ex_destination", False),
    ),
    "G": (
        (11, "ClOrdID", "clordid", True),
        (41, "OrigClOrdID", "clordid", True),
        (55, "Symbol", "symbol", True),
        (1, "Account", "account", False),
        (100, "ExDestination", "ex_destination", False),
    ),
    "F": (
        (11, "ClOrdID", "clordid", True),
        (41, "OrigClOrdID", "clordid", True),
        (55, "Symbol", "symbol", False),
        (1, "Account", "account", False),
    ),
}
#: TimeInForce (59) is forwarded as sent: one digit (FIX 4.2 and 4.4 values are 0-7).
_TIME_IN_FORCE = frozenset("0123456789")


def check_identifiers(msg_type: str, fields: dict[int, str], limits: IdentifierLimits) -> None:
    """Raise Invalid naming the first identifier of an order message the proxy will not forward."""
    for tag, name, key, required in _IDENTIFIERS.get(msg_type, ()):
        value = fields.get(tag)
        if value is None or value == "":
            if required:
                raise Invalid(f"{name} ({tag}) is missing")
            continue
        problem = identifier_problem(value, getattr(limits, key))
        if problem:
            raise Invalid(f"{name} ({tag}) {problem}")
    tif = fields.get(59)
    if tif is not None and msg_type != "F" and tif not in _TIME_IN_FORCE:
        raise Invalid(f"TimeInForce (59) value {tif[:40]!a} is not supported")


def _echo(fields: dict[int, str], tag: int, limits: IdentifierLimits) -> str:
    """ClOrdID or OrigClOrdID to quote in a refusal: "" (left out) when it is not a valid identifier."""
    value = fields.get(tag, "")
    return value if value and not identifier_problem(value, limits.clordid) else ""


def poss_dup(fields: dict[int, str]) -> bool:
    """PossDupFlag (43) or PossResend (97) set: the sender may have sent this message before."""
    return fields.get(43) == "Y" or fields.get(97) == "Y"


def fields_to_order(fields: dict[int, str]) -> OrderRequest:
    """The order content of a NewOrderSingle or OrderCancelReplaceRequest."""
    ord_type = _enum(fields, 40, "OrdType", _ORD_TYPES)
    price = _price(fields, 44, "Price")
    if ord_type in _PRICED and price is None:
        raise Invalid(f"Price (44) is required for OrdType {ord_type.name.lower()}")
    stop_px = _price(fields, 99, "StopPx")
    if ord_type in (OrdType.STOP, OrdType.STOP_LIMIT) and stop_px is None:
        raise Invalid(f"StopPx (99) is required for OrdType {ord_type.name.lower()}")
    return OrderRequest(
        cl_ord_id=_required(fields, 11, "ClOrdID"),
        symbol=_required(fields, 55, "Symbol"),
        side=_enum(fields, 54, "Side", _SIDES),
        order_qty=_qty(fields, 38, "OrderQty"),
        ord_type=ord_type,
        price=price if ord_type in _PRICED else None,
        account=fields.get(1, ""),
        ex_destination=fields.get(100, ""),
        time_in_force=fields.get(59, ""),
        stop_px=stop_px,
    )


def oms_to_event(
    fields: dict[int, str], session: str, now_ns: int, limits: IdentifierLimits = DEFAULT_LIMITS
) -> ev.Event:
    """An application message from an OMS session as a core event: an order, or for anything the
    proxy cannot accept an InvalidMessage saying why (never an exception). ``limits``: the
    config's ``[identifiers]``, passed by every caller that decodes a journaled message (the proxy,
    its recovery, replay), so they decide alike."""
    msg_type = fields.get(35, "")
    seq_text = fields.get(34, "")
    seq = int(seq_text) if seq_text.isascii() and seq_text.isdigit() and len(seq_text) < 19 else 0
    dup = poss_dup(fields)
    try:
        if msg_type in _IDENTIFIERS:
            check_identifiers(msg_type, fields, limits)
        if msg_type == "D":
            return ev.NewOrder(session, seq, now_ns, fields_to_order(fields), dup)
        if msg_type == "G":
            orig = _required(fields, 41, "OrigClOrdID")
            return ev.ReplaceOrder(session, seq, now_ns, orig, fields_to_order(fields), dup)
        if msg_type == "F":
            side = _SIDES.get(fields.get(54, ""))
            return ev.CancelOrder(
                session,
                seq,
                now_ns,
                _required(fields, 11, "ClOrdID"),
                _required(fields, 41, "OrigClOrdID"),
                fields.get(55, ""),
                side,
                fields.get(1, ""),
                dup,
            )
    except Invalid as exc:
        reason = str(exc)
    except Exception as exc:  # noqa: BLE001 - fail closed: an order the decoder cannot read is refused
        reason = f"the message could not be decoded ({type(exc).__name__})"
    else:
        return ev.UnsupportedMessage(session, seq, now_ns, msg_type)
    # A ClOrdID or OrigClOrdID that is not a valid identifier is never quoted back (nor remembered).
    return ev.InvalidMessage(
        session, seq, now_ns, msg_type, _echo(fields, 11, limits), reason, _echo(fields, 41, limits)
    )


def _dec(fields: dict[int, str], tag: int) -> Decimal:
    text = fields.get(tag)
    if not text:
        return _ZERO
    try:
        return Decimal(text)
    except InvalidOperation:
        raise Invalid(f"tag {tag} is not a number: {text!r}") from None


def venue_to_event(fields: dict[int, str], venue: str, now_ns: int) -> ev.Event | None:
    """An ExecutionReport or OrderCancelReject from a venue as a core event (None: not ours to handle)."""
    msg_type = fields.get(35, "")
    if msg_type == "8":
        exec_type = fields.get(150, "")
        trans = fields.get(20, "0")
        if trans == "3":
            exec_type = "I"  # FIX 4.2 status report (ExecTransType 3): never a new fill
        elif exec_type in ("1", "2") or (trans in ("1", "2") and exec_type not in ("H", "G")):
            # FIX 4.2 fills, and 4.2 busts (20=1) and corrections (20=2).
            exec_type = {"1": "H", "2": "G"}.get(trans, "F")
        report = ExecReport(
            exec_type=_enum({150: exec_type}, 150, "ExecType", _EXEC_TYPES),
            ord_status=_enum(fields, 39, "OrdStatus", _ORD_STATUS),
            cl_ord_id=fields.get(11, ""),
            order_id=fields.get(37, ""),
            exec_id=fields.get(17, ""),
            symbol=fields.get(55, ""),
            side=_SIDES.get(fields.get(54, "")),
            orig_cl_ord_id=fields.get(41, ""),
            order_qty=_dec(fields, 38) if fields.get(38) else None,
            price=_dec(fields, 44) if fields.get(44) else None,
            last_qty=_dec(fields, 32),
            last_px=_dec(fields, 31),
            leaves_qty=_dec(fields, 151),
            cum_qty=_dec(fields, 14),
            avg_px=_dec(fields, 6),
            text=fields.get(58, ""),
            account=fields.get(1, ""),
            ord_rej_reason=fields.get(103, ""),
            exec_ref_id=fields.get(19, ""),
        )
        return ev.VenueReport(venue, now_ns, report, poss_dup(fields))
    if msg_type == "9":
        reject = CancelReject(
            cl_ord_id=fields.get(11, ""),
            orig_cl_ord_id=fields.get(41, ""),
            order_id=fields.get(37, ""),
            ord_status=_ORD_STATUS.get(fields.get(39, ""), OrdStatus.REJECTED),
            response_to=fields.get(434, "1"),
            reason=fields.get(102, ""),
            text=fields.get(58, ""),
        )
        return ev.VenueCancelReject(venue, now_ns, reject)
    return None


# ---------------------------------------------------------------- encoding

Fields = list[tuple[int, str]]

# The FIX numbers of the proxy's reject codes (spec/reject-codes.md): the core names a refusal by
# its code, the wire by these.
#: OrdRejReason (103) of an ExecutionReport reject; 0 (other) for any other code.
ORD_REJ_REASON = {"UNKNOWN_SYMBOL": "1", "DUPLICATE_CLORDID": "6", "MAX_ORDER_QTY": "3", "MAX_ORDER_NOTIONAL": "3"}
#: CxlRejReason (102) of an OrderCancelReject; 2 (broker option) for any other code.
CXL_REJ_REASON = {"ORDER_NOT_OPEN": "0", "UNKNOWN_ORDER": "1", "ORDER_PENDING": "3"}
#: BusinessRejectReason (380) of a BusinessMessageReject; 0 (other) for any other code. NOT_AUTHORIZED:
#: an order on the risk-desk session.
BUSINESS_REJECT_REASON = {
    "UNKNOWN_SYMBOL": "2",
    "UNSUPPORTED_MESSAGE": "3",
    "VENUE_UNAVAILABLE": "4",
    "NOT_AUTHORIZED": "6",
}


#: Decimal -> its FIX text, for the quantities and prices seen lately (an order's ack and fills repeat
#: them). Equal Decimals have the same text here (trailing zeros go), except zero's sign: not cached.
_TEXT: dict[Decimal, str] = {}


def _d(value: Decimal | None) -> str:
    if value is None:
        return ""
    try:
        text = _TEXT.get(value)
    except TypeError:  # a signalling NaN has no hash
        text = None
    if text is None:
        text = f"{value:f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if value and value.is_finite():
            if len(_TEXT) >= 4096:
                _TEXT.clear()
            _TEXT[value] = text
    return text


def _order_fields(o: OrderRequest, fix42: bool) -> Fields:
    out: Fields = []
    if o.account:
        out.append((1, o.account))
    if fix42:
        out.append((21, "1"))
    out += [(55, o.symbol), (54, o.side.value), (38, _d(o.order_qty)), (40, o.ord_type.value)]
    if o.price is not None:
        out.append((44, _d(o.price)))
    if o.stop_px is not None:
        out.append((99, _d(o.stop_px)))
    if o.time_in_force:
        out.append((59, o.time_in_force))
    return out


def _exec_type_fields(r: ExecReport, fix42: bool) -> Fields:
    if not fix42:
        return [(150, r.exec_type.value)]
    t = r.exec_type
    if t is ExecType.TRADE:
        return [(20, "0"), (150, "1" if r.ord_status is OrdStatus.PARTIALLY_FILLED else "2")]
    if t in (ExecType.TRADE_CANCEL, ExecType.TRADE_CORRECT):
        return [(20, "1" if t is ExecType.TRADE_CANCEL else "2"), (150, r.ord_status.value)]
    if t is ExecType.ORDER_STATUS:
        return [(20, "3"), (150, r.ord_status.value)]
    return [(20, "0"), (150, t.value)]


def action_to_message(action: ev.Action, fix42: bool, transact_time: str) -> tuple[str, Fields]:
    """(MsgType, body fields) for an outbound action; ``transact_time`` fills TransactTime (60)."""
    if isinstance(action, ev.VenueNewOrder):
        return "D", [(11, action.cl_ord_id), *_order_fields(action.order, fix42), (60, transact_time)]
    if isinstance(action, ev.VenueReplace):
        head = [(11, action.cl_ord_id), (41, action.orig_cl_ord_id)]
        if action.order_id:
            head.insert(0, (37, action.order_id))
        return "G", [*head, *_order_fields(action.order, fix42), (60, transact_time)]
    if isinstance(action, ev.VenueCancel):
        out: Fields = [(11, action.cl_ord_id), (41, action.orig_cl_ord_id)]
        if action.order_id:
            out.insert(0, (37, action.order_id))
        if action.account:
            out.append((1, action.account))
        out += [(55, action.symbol), (54, action.side.value), (38, _d(action.order_qty)), (60, transact_time)]
        return "F", out
    if isinstance(action, ev.OmsReport):
        r = action.report
        out = [(97, "Y")] if action.poss_resend else []  # a header field: quickfix moves it there
        out += [(37, r.order_id or "NONE"), (17, r.exec_id or "NONE"), (11, r.cl_ord_id)]
        if r.orig_cl_ord_id:
            out.append((41, r.orig_cl_ord_id))
        out += _exec_type_fields(r, fix42)
        out.append((39, r.ord_status.value))
        if r.exec_type is ExecType.REJECTED:
            # A venue's reason as it sent it; the proxy's own refusal by its code.
            reason = r.ord_rej_reason or (ORD_REJ_REASON.get(action.code, "0") if action.code else "")
            if reason:
                out.append((103, reason))
        if r.account:
            out.append((1, r.account))
        out.append((55, r.symbol or "[N/A]"))
        out.append((54, (r.side or Side.BUY).value))
        if r.order_qty is not None:
            out.append((38, _d(r.order_qty)))
        if r.price is not None:
            out.append((44, _d(r.price)))
        if r.exec_ref_id:
            out.append((19, r.exec_ref_id))
        if r.last_qty:
            out += [(32, _d(r.last_qty)), (31, _d(r.last_px))]
        out += [(151, _d(r.leaves_qty)), (14, _d(r.cum_qty)), (6, _d(r.avg_px)), (60, transact_time)]
        if r.text:
            out.append((58, r.text))
        return "8", out
    if isinstance(action, ev.OmsCancelReject):
        cr = action.reject
        out = [
            (37, cr.order_id or "NONE"),
            (11, cr.cl_ord_id or "NONE"),
            (41, cr.orig_cl_ord_id or "NONE"),
            (39, cr.ord_status.value),
            (434, cr.response_to),
        ]
        reason = cr.reason or (CXL_REJ_REASON.get(action.code, "2") if action.code else "")
        if reason:
            out.append((102, reason))
        if cr.text:
            out.append((58, cr.text))
        return "9", out
    if isinstance(action, ev.OmsBusinessReject):
        out = []
        if action.ref_seq_num:
            out.append((45, str(action.ref_seq_num)))
        out.append((372, action.ref_msg_type))
        if action.ref_id:
            out.append((379, action.ref_id))
        out += [(380, BUSINESS_REJECT_REASON.get(action.code, "0")), (58, action.text)]
        return "j", out
    if isinstance(action, ev.DropCopy):
        # OnBehalfOfCompID (115) is a header field: first in the body, quickfix moves it there and the
        # native builder writes it right after the header (as 97). CopyMsgIndicator (797) is FIX 4.4's.
        _, body = action_to_message(action.copy, fix42, transact_time)
        return "8", [(115, action.on_behalf_of), *body] if fix42 else [(115, action.on_behalf_of), *body, (797, "Y")]
    raise TypeError(f"not a message action: {type(action).__name__}")
