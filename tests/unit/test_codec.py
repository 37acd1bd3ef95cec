"""fixproxy.codec: FIX 4.2 and 4.4 text to core events and back, without quickfix."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fixproxy.core import events as ev
from fixproxy.core.model import CancelReject, ExecReport, ExecType, OrderRequest, OrdStatus, OrdType, Side
from fixproxy.fix import codec, parse as fixparse
from fixproxy.fix.parse import SOH, parse as parse_fields

from .conftest import T0, D, exec_report, order

TT = "20231114-22:13:20.000"  # TransactTime (60) handed to action_to_message()
E, S = ExecType, OrdStatus


def fix(text: str) -> dict[int, str]:
    """Tag -> value for a message written with '|' for SOH, as the tests read best."""
    return parse_fields(text.replace("|", SOH))


def wire(msg_type: str, fields: list[tuple[int, str]], seq: int | None = None) -> str:
    """A message body as the edge would hand it to parse(): header tags then the encoded fields."""
    head = [(35, msg_type)] + ([] if seq is None else [(34, str(seq))])
    return SOH.join(f"{tag}={value}" for tag, value in head + fields) + SOH


# ---------------------------------------------------------------- decoding OMS messages

D42 = (
    "8=FIX.4.2|9=180|35=D|34=12|49=OMS2|56=FIXPROXY|52=20231114-22:13:20.000|11=C1|21=1|1=ACC|55=AAPL|54=1|"
    "38=100|40=2|44=190.5|59=0|47=A|60=20231114-22:13:20.000|100=sim|10=000|"
)
D44 = (
    "8=FIX.4.4|9=180|35=D|34=12|49=OMS1|56=FIXPROXY|52=20231114-22:13:20.000|11=C1|1=ACC|55=AAPL|54=1|"
    "60=20231114-22:13:20.000|38=100|40=2|44=190.5|59=0|528=A|100=sim|10=000|"
)
G42 = (
    "8=FIX.4.2|35=G|34=13|11=C2|41=C1|37=V1|21=1|1=ACC|55=AAPL|54=1|38=200|40=2|44=190.25|59=0|"
    "60=20231114-22:13:21.000|100=sim|10=000|"
)
G44 = (
    "8=FIX.4.4|35=G|34=13|37=V1|41=C1|11=C2|1=ACC|55=AAPL|54=1|60=20231114-22:13:21.000|38=200|40=2|"
    "44=190.25|59=0|100=sim|10=000|"
)
F42 = "8=FIX.4.2|35=F|34=14|41=C1|11=C3|37=V1|1=ACC|55=AAPL|54=1|38=100|60=20231114-22:13:22.000|10=000|"
F44 = "8=FIX.4.4|35=F|34=14|41=C1|37=V1|11=C3|1=ACC|55=AAPL|54=1|60=20231114-22:13:22.000|38=100|10=000|"

WANT_ORDER = OrderRequest("C1", "AAPL", Side.BUY, D(100), OrdType.LIMIT, D("190.5"), "ACC", "sim", "0")
WANT_REPLACE = OrderRequest("C2", "AAPL", Side.BUY, D(200), OrdType.LIMIT, D("190.25"), "ACC", "sim", "0")


@pytest.mark.parametrize(
    "text, want",
    [
        (D42, ev.NewOrder("oms", 12, T0, WANT_ORDER)),
        (D44, ev.NewOrder("oms", 12, T0, WANT_ORDER)),
        (G42, ev.ReplaceOrder("oms", 13, T0, "C1", WANT_REPLACE)),
        (G44, ev.ReplaceOrder("oms", 13, T0, "C1", WANT_REPLACE)),
        (F42, ev.CancelOrder("oms", 14, T0, "C3", "C1", "AAPL", Side.BUY, "ACC")),
        (F44, ev.CancelOrder("oms", 14, T0, "C3", "C1", "AAPL", Side.BUY, "ACC")),
    ],
    ids=["D-4.2", "D-4.4", "G-4.2", "G-4.4", "F-4.2", "F-4.4"],
)
def test_order_messages_of_either_version_decode_to_same_event(text, want):
    """FIX 4.2 and 4.4 NewOrderSingle, replace and cancel decode into the same typed events."""
    assert codec.oms_to_event(fix(text), "oms", T0) == want


def test_market_order_decodes_without_price_even_if_one_is_sent():
    """A market order's stray Price (44) is dropped rather than forwarded."""
    event = codec.oms_to_event(fix("35=D|34=1|11=C1|55=AAPL|54=2|38=10|40=1|44=99|"), "oms", T0)
    assert isinstance(event, ev.NewOrder)
    assert (event.order.ord_type, event.order.price, event.order.side) == (OrdType.MARKET, None, Side.SELL)


def test_stop_limit_order_decodes_price_and_stop_price():
    """A stop-limit order keeps both Price (44) and StopPx (99)."""
    event = codec.oms_to_event(fix("35=D|34=1|11=C1|55=AAPL|54=1|38=10|40=4|44=101|99=100.5|"), "oms", T0)
    assert isinstance(event, ev.NewOrder)
    assert (event.order.price, event.order.stop_px) == (D(101), D("100.5"))


BASE_D = "35=D|34=5|11=C1|55=AAPL|54=1|38=100|40=2|44=100|"


@pytest.mark.parametrize(
    "tag, value",
    [
        (38, "0"),
        (38, "-1"),
        (38, "abc"),
        (38, "NaN"),
        (38, "sNaN"),
        (38, "inf"),
        (38, "-Infinity"),
        (38, ""),
        (38, None),
        (38, "1e13"),
        (44, None),
        (44, ""),
        (44, "0"),
        (44, "-5"),
        (44, "abc"),
        (44, "NaN"),
        (44, "inf"),
        (54, "Z"),
        (54, None),
        (40, "Z"),
        (40, None),
        (11, None),
        (55, None),
        (55, ""),
    ],
)
def test_invalid_new_order_value_gives_invalid_message_naming_tag(tag, value):
    """A bad or missing field turns a NewOrderSingle into InvalidMessage whose reason names the tag."""
    fields = fix(BASE_D)
    if value is None:
        del fields[tag]
    else:
        fields[tag] = value
    event = codec.oms_to_event(fields, "oms", T0)
    assert isinstance(event, ev.InvalidMessage)
    assert f"({tag})" in event.reason
    assert (event.session, event.seq_num, event.msg_type, event.cl_ord_id) == ("oms", 5, "D", fields.get(11, ""))


def test_stop_order_without_stop_price_is_invalid():
    """A stop order must carry StopPx (99)."""
    event = codec.oms_to_event(fix("35=D|11=C1|55=AAPL|54=1|38=100|40=3|"), "oms", T0)
    assert isinstance(event, ev.InvalidMessage) and "(99)" in event.reason


@pytest.mark.parametrize(
    "text, tag",
    [
        ("35=G|34=6|11=C2|55=AAPL|54=1|38=100|40=2|44=100|", 41),
        ("35=G|34=6|11=C2|41=C1|55=AAPL|54=1|38=-3|40=2|44=100|", 38),
        ("35=G|34=6|11=C2|41=C1|55=AAPL|54=1|38=100|40=2|", 44),
        ("35=F|34=6|41=C1|55=AAPL|54=1|38=100|", 11),
        ("35=F|34=6|11=C2|55=AAPL|54=1|38=100|", 41),
    ],
    ids=["G-no-orig", "G-negative-qty", "G-limit-no-price", "F-no-clordid", "F-no-orig"],
)
def test_invalid_replace_or_cancel_gives_invalid_message_naming_tag(text, tag):
    """Cancels and replaces are checked the same way, keeping both ClOrdIDs for the answer."""
    fields = fix(text)
    event = codec.oms_to_event(fields, "oms", T0)
    assert isinstance(event, ev.InvalidMessage)
    assert f"({tag})" in event.reason
    assert (event.msg_type, event.seq_num, event.cl_ord_id, event.orig_cl_ord_id) == (
        fields[35],
        6,
        fields.get(11, ""),
        fields.get(41, ""),
    )


# ---------------------------------------------------------------- identifiers

BASE_G = "35=G|34=6|11=C2|41=C1|1=ACC|55=AAPL|54=1|38=100|40=2|44=100|100=sim|"
BASE_F = "35=F|34=6|11=C3|41=C1|1=ACC|55=AAPL|54=1|38=100|"
#: Identifier tags each order message carries, as the proxy checks them.
ID_TAGS = {"D": (11, 1, 55, 100), "G": (11, 41, 1, 55, 100), "F": (11, 41, 1, 55)}
BAD_IDENTIFIERS = {
    "nul": ("A\x00B", "a control character (0x00) at position 2"),
    "bel": ("A\x07", "a control character (0x07) at position 2"),
    "tab": ("A\tB", "a control character (0x09) at position 2"),
    "del": ("AB\x7f", "a control character (0x7F) at position 3"),
    "latin1_byte": ("X\xe91", "a character outside ASCII (0xE9) at position 2"),
    "c1_control": ("X\x85", "a control character (0x85) at position 2"),
    "utf8_letter": ("caf\u00c3\u00a9", "a character outside ASCII (0xC3) at position 4"),
    "surrogate": ("X\udce9", "a character outside ASCII (U+DCE9) at position 2"),
    "blank": ("   ", "is blank"),
    "leading_space": (" A1", "starts with a space"),
    "trailing_space": ("A1 ", "ends with a space"),
    "too_long_10005": ("A" * 10_005, "is 10,005 characters long"),
}
_CASES = [(t, tag, name) for t, tags in ID_TAGS.items() for tag in tags for name in BAD_IDENTIFIERS]
_TAG_NAMES = {11: "ClOrdID", 41: "OrigClOrdID", 1: "Account", 55: "Symbol", 100: "ExDestination"}


def base(msg_type: str) -> dict[int, str]:
    return fix({"D": BASE_D, "G": BASE_G, "F": BASE_F}[msg_type])


@pytest.mark.parametrize("msg_type, tag, bad", _CASES, ids=[f"{t}-{tag}-{n}" for t, tag, n in _CASES])
def test_identifier_with_bad_character_blank_or_too_long_is_invalid_naming_tag(msg_type, tag, bad):
    """Every identifier the proxy reads from a D, G or F is printable ASCII, not blank, not padded,
    not too long: anything else is an InvalidMessage whose reason names the field and the tag."""
    value, why = BAD_IDENTIFIERS[bad]
    fields = {**base(msg_type), tag: value}
    event = codec.oms_to_event(fields, "oms", T0)
    assert isinstance(event, ev.InvalidMessage)
    assert event.reason.startswith(f"{_TAG_NAMES[tag]} ({tag}) ") and why in event.reason
    assert event.reason.isascii() and event.reason.isprintable()  # safe to send back on any engine
    # The bad ClOrdID / OrigClOrdID is never quoted back; a good one is (the OMS finds its order).
    assert event.cl_ord_id == ("" if tag == 11 else fields[11])
    assert event.orig_cl_ord_id == ("" if tag == 41 else fields.get(41, ""))


@pytest.mark.parametrize("tag, limit", [(11, 64), (41, 64), (1, 32), (55, 32), (100, 32)])
def test_identifier_at_default_limit_passes_one_more_is_invalid(tag, limit):
    """The default limits (ClOrdID 64, Account 32, Symbol 32, ExDestination 32) are inclusive."""
    fields = {**base("G"), tag: "A" * limit}
    assert isinstance(codec.oms_to_event(fields, "oms", T0), ev.ReplaceOrder)
    event = codec.oms_to_event({**fields, tag: "A" * (limit + 1)}, "oms", T0)
    assert isinstance(event, ev.InvalidMessage)
    assert f"({tag}) is {limit + 1} characters long; at most {limit} are allowed" in event.reason


def test_identifier_limits_passed_apply_and_leave_no_state():
    """Limits passed to oms_to_event replace the defaults for that call only (no process-wide state)."""
    fields = {**base("D"), 11: "A" * 20}
    small = codec.IdentifierLimits(clordid=10)
    assert "at most 10 are allowed" in codec.oms_to_event(fields, "oms", T0, small).reason
    assert isinstance(codec.oms_to_event(fields, "oms", T0), ev.NewOrder)


@pytest.mark.parametrize("value", ["A", "a-b_c.d/e:f", "ID with inner spaces", "~!@#$%^&*()=+[]{}|;'<>,?\"", "9" * 64])
def test_printable_ascii_identifier_is_accepted(value):
    """Any printable ASCII (0x20-0x7E) is fine, inner spaces included."""
    event = codec.oms_to_event({**base("D"), 11: value}, "oms", T0)
    assert isinstance(event, ev.NewOrder) and event.order.cl_ord_id == value


@pytest.mark.parametrize("value", ["Z", "00", "\x00", " ", ""])
def test_time_in_force_other_than_one_digit_is_invalid(value):
    """TimeInForce (59) is forwarded as sent, so it must be one digit."""
    event = codec.oms_to_event({**base("D"), 59: value}, "oms", T0)
    assert isinstance(event, ev.InvalidMessage) and "TimeInForce (59)" in event.reason
    assert event.reason.isascii() and event.reason.isprintable()


def test_cancel_reject_without_a_valid_clordid_says_none():
    """A refused cancel whose ClOrdID was not quoted back carries 11=NONE, never an empty field."""
    _, body = codec.action_to_message(
        ev.OmsCancelReject("oms1", CancelReject("", "", "", S.REJECTED, "1", "0", "x")), False, TT
    )
    assert (11, "NONE") in body and (41, "NONE") in body


def test_oms_to_event_with_huge_sequence_number_does_not_raise():
    """A MsgSeqNum too long for int() (over 4,300 digits) reads as 0, never an exception."""
    event = codec.oms_to_event({**base("D"), 34: "9" * 5000}, "oms", T0)
    assert isinstance(event, ev.NewOrder) and event.seq_num == 0


@pytest.mark.parametrize("msg_type", ["AE", "8", "V", "H", ""])
def test_unknown_msg_type_gives_unsupported_message(msg_type):
    """Anything but D, G and F from an OMS is unsupported."""
    event = codec.oms_to_event({35: msg_type, 34: "3", 11: "C1"}, "oms", T0)
    assert event == ev.UnsupportedMessage("oms", 3, T0, msg_type)


# ---------------------------------------------------------------- decoding venue messages


@pytest.mark.parametrize(
    "text, exec_type",
    [
        ("35=8|20=0|150=1|39=1", E.TRADE),
        ("35=8|20=0|150=2|39=2", E.TRADE),
        ("35=8|150=F|39=1", E.TRADE),
        ("35=8|20=1|150=1|39=1", E.TRADE_CANCEL),
        ("35=8|20=1|150=2|39=0", E.TRADE_CANCEL),
        ("35=8|20=2|150=2|39=2", E.TRADE_CORRECT),
        ("35=8|150=H|39=0", E.TRADE_CANCEL),
        ("35=8|150=G|39=2", E.TRADE_CORRECT),
        ("35=8|20=0|150=0|39=0", E.NEW),
        ("35=8|20=0|150=5|39=0", E.REPLACED),
        ("35=8|150=4|39=4", E.CANCELED),
    ],
    ids=[
        "42-partial",
        "42-fill",
        "44-trade",
        "42-bust-partial",
        "42-bust-fill",
        "42-correct",
        "44-bust",
        "44-correct",
        "42-new",
        "42-replaced",
        "44-canceled",
    ],
)
def test_venue_exec_type_of_either_version_maps_to_one_exec_type(text, exec_type):
    """FIX 4.2 ExecType 1/2 become TRADE; ExecTransType 1/2 become TRADE_CANCEL/TRADE_CORRECT."""
    event = codec.venue_to_event(fix(f"{text}|11=oms1.C1|37=V1|17=X1|"), "sim", T0)
    assert isinstance(event, ev.VenueReport)
    assert event.report.exec_type is exec_type


def test_venue_fill_of_either_version_decodes_to_same_report():
    """A partial fill in 4.2 and in 4.4 terms gives one ExecReport with exact quantities."""
    body = "11=oms1.C2|41=oms1.C1|37=V1|17=X7|55=AAPL|54=2|1=ACC|38=100|44=190.5|32=40|31=190.25|151=60|14=40|6=190.25|"
    v42 = codec.venue_to_event(fix(f"8=FIX.4.2|35=8|20=0|150=1|39=1|{body}"), "sim", T0)
    v44 = codec.venue_to_event(fix(f"8=FIX.4.4|35=8|150=F|39=1|{body}"), "sim", T0)
    want = exec_report(
        "oms1.C2",
        E.TRADE,
        S.PARTIALLY_FILLED,
        orig="oms1.C1",
        order_id="V1",
        exec_id="X7",
        leaves=60,
        cum=40,
        last_qty=40,
        last_px="190.25",
        avg_px="190.25",
        symbol="AAPL",
        side=Side.SELL,
        account="ACC",
        order_qty=D(100),
        price=D("190.5"),
    )
    assert v42 == v44 == ev.VenueReport("sim", T0, want)


def test_venue_cancel_reject_decodes_with_defaults():
    """An OrderCancelReject keeps its ids, status and reason; missing 39/434 default to REJECTED/cancel."""
    full = codec.venue_to_event(fix("35=9|11=oms1.C2|41=oms1.C1|37=V1|39=0|434=2|102=1|58=no|"), "sim", T0)
    assert full == ev.VenueCancelReject("sim", T0, CancelReject("oms1.C2", "oms1.C1", "V1", S.NEW, "2", "1", "no"))
    bare = codec.venue_to_event(fix("35=9|11=oms1.C2|41=oms1.C1|"), "sim", T0)
    assert (bare.reject.ord_status, bare.reject.response_to) == (S.REJECTED, "1")


@pytest.mark.parametrize("msg_type", ["D", "j", "h", "AE"])
def test_venue_message_not_ours_decodes_to_none(msg_type):
    """Messages the core does not handle from a venue are left to the edge."""
    assert codec.venue_to_event({35: msg_type}, "sim", T0) is None


@pytest.mark.parametrize("text", ["35=8|150=0|39=Z|11=x", "35=8|150=Q|39=0|11=x", "35=8|150=F|39=1|14=abc|11=x"])
def test_venue_report_with_bad_value_raises_invalid(text):
    """A venue report the codec cannot read raises codec.Invalid for the edge to note."""
    with pytest.raises(codec.Invalid):
        codec.venue_to_event(fix(text), "sim", T0)


# ---------------------------------------------------------------- encoding


NEW_ORDER = ev.VenueNewOrder(
    "sim", "oms1.C1", order("C1", qty=100, price="190.50", account="ACC", time_in_force="0", ex_destination="sim")
)


@pytest.mark.parametrize("fix42", [True, False], ids=["4.2", "4.4"])
def test_encode_new_order_carries_handl_inst_only_in_42(fix42):
    """A venue NewOrderSingle: 4.2 adds HandlInst 21=1; prices are plain decimals; ExDestination stays home."""
    msg_type, fields = codec.action_to_message(NEW_ORDER, fix42, TT)
    assert msg_type == "D"
    assert fields == [
        (11, "oms1.C1"),
        (1, "ACC"),
        *([(21, "1")] if fix42 else []),
        (55, "AAPL"),
        (54, "1"),
        (38, "100"),
        (40, "2"),
        (44, "190.5"),
        (59, "0"),
        (60, TT),
    ]


@pytest.mark.parametrize("fix42", [True, False], ids=["4.2", "4.4"])
def test_encode_replace_leads_with_order_id_and_both_cl_ord_ids(fix42):
    """A venue replace carries OrderID (37) when known, ClOrdID and OrigClOrdID, then the new order values."""
    action = ev.VenueReplace(
        "sim", "oms1.C2", "oms1.C1", "V1", order("C2", qty=200, price=101, ord_type=OrdType.STOP_LIMIT, stop_px=100)
    )
    msg_type, fields = codec.action_to_message(action, fix42, TT)
    assert msg_type == "G"
    assert fields == [
        (37, "V1"),
        (11, "oms1.C2"),
        (41, "oms1.C1"),
        *([(21, "1")] if fix42 else []),
        (55, "AAPL"),
        (54, "1"),
        (38, "200"),
        (40, "4"),
        (44, "101"),
        (99, "100"),
        (60, TT),
    ]
    _, without_id = codec.action_to_message(ev.VenueReplace("sim", "oms1.C2", "oms1.C1", "", order("C2")), fix42, TT)
    assert 37 not in dict(without_id)


@pytest.mark.parametrize("fix42", [True, False], ids=["4.2", "4.4"])
def test_encode_cancel_is_the_same_in_both_versions(fix42):
    """A venue cancel carries ids, account, symbol, side, quantity and TransactTime."""
    action = ev.VenueCancel("sim", "oms1.C3", "oms1.C1", "V1", "AAPL", Side.SELL, D("150.0"), "ACC")
    assert codec.action_to_message(action, fix42, TT) == (
        "F",
        [(37, "V1"), (11, "oms1.C3"), (41, "oms1.C1"), (1, "ACC"), (55, "AAPL"), (54, "2"), (38, "150"), (60, TT)],
    )


@pytest.mark.parametrize(
    "exec_type, ord_status, fix42, want",
    [
        (E.TRADE, S.PARTIALLY_FILLED, True, [(20, "0"), (150, "1")]),
        (E.TRADE, S.FILLED, True, [(20, "0"), (150, "2")]),
        (E.TRADE, S.FILLED, False, [(150, "F")]),
        (E.TRADE_CANCEL, S.PARTIALLY_FILLED, True, [(20, "1"), (150, "1")]),
        (E.TRADE_CORRECT, S.FILLED, True, [(20, "2"), (150, "2")]),
        (E.TRADE_CANCEL, S.PARTIALLY_FILLED, False, [(150, "H")]),
        (E.NEW, S.NEW, True, [(20, "0"), (150, "0")]),
        (E.NEW, S.NEW, False, [(150, "0")]),
        (E.REPLACED, S.NEW, True, [(20, "0"), (150, "5")]),
    ],
    ids=["42-partial", "42-fill", "44-fill", "42-bust", "42-correct", "44-bust", "42-new", "44-new", "42-replaced"],
)
def test_encode_execution_report_exec_type_per_version(exec_type, ord_status, fix42, want):
    """4.2 reports carry ExecTransType (20) and 150=1/2 for fills; 4.4 reports carry 150 alone."""
    report = exec_report(
        "C1",
        exec_type,
        ord_status,
        leaves=60,
        cum=40,
        last_qty=40,
        last_px=100,
        avg_px=100,
        symbol="AAPL",
        side=Side.BUY,
    )
    msg_type, fields = codec.action_to_message(ev.OmsReport("oms1", report), fix42, TT)
    assert msg_type == "8"
    assert [(t, v) for t, v in fields if t in (20, 150)] == want
    values = dict(fields)
    assert (values[39], values[11], values[151], values[14], values[6]) == (ord_status.value, "C1", "60", "40", "100")


@pytest.mark.parametrize("fix42", [True, False], ids=["4.2", "4.4"])
def test_encode_reject_execution_report_carries_reason_and_text(fix42):
    """A proxy reject ER: 150=8, 39=8, OrdRejReason 103, OrderID NONE, text in 58."""
    report = ExecReport(
        E.REJECTED,
        S.REJECTED,
        "C1",
        "NONE",
        "E1",
        symbol="AAPL",
        side=Side.SELL,
        order_qty=D(100),
        price=D(100),
        text="MAX_ORDER_QTY: too big",
    )
    _, fields = codec.action_to_message(ev.OmsReport("oms2", report, code="MAX_ORDER_QTY"), fix42, TT)
    values = dict(fields)
    assert (values[150], values[39], values[103], values[37], values[17], values[58], values[54]) == (
        "8",
        "8",
        "3",
        "NONE",
        "E1",
        "MAX_ORDER_QTY: too big",
        "2",
    )
    assert (20 in values) is fix42
    assert 32 not in values


def test_encode_cancel_reject_carries_response_to_reason_and_text():
    """An OrderCancelReject for the OMS: 37, 11, 41, 39, 434, 102, 58."""
    action = ev.OmsCancelReject("oms1", CancelReject("C2", "C1", "V1", S.NEW, "2", "2", "MAX_ORDER_QTY: too big"))
    assert codec.action_to_message(action, True, TT) == (
        "9",
        [(37, "V1"), (11, "C2"), (41, "C1"), (39, "0"), (434, "2"), (102, "2"), (58, "MAX_ORDER_QTY: too big")],
    )


@pytest.mark.parametrize(
    "code, cxl, ord_rej, bmr",
    [
        ("MAX_ORDER_QTY", "2", "3", "0"),
        ("UNKNOWN_SYMBOL", "2", "1", "2"),
        ("DUPLICATE_CLORDID", "2", "6", "0"),
        ("UNKNOWN_ORDER", "1", "0", "0"),
        ("ORDER_NOT_OPEN", "0", "0", "0"),
        ("ORDER_PENDING", "3", "0", "0"),
        ("VENUE_UNAVAILABLE", "2", "0", "4"),
        ("UNSUPPORTED_MESSAGE", "2", "0", "3"),
        ("HALTED", "2", "0", "0"),
    ],
)
def test_encode_proxy_refusal_maps_reject_code_to_fix_reasons(code, cxl, ord_rej, bmr):
    """The core names its refusal by code; the codec writes CxlRejReason 102, OrdRejReason 103 and
    BusinessRejectReason 380 as spec/reject-codes.md lists them."""
    cancel = ev.OmsCancelReject("oms1", CancelReject("C2", "C1", "V1", S.NEW, "1", text=f"{code}: no"), code)
    report = ExecReport(E.REJECTED, S.REJECTED, "C1", "NONE", "E1", symbol="AAPL", text=f"{code}: no")
    bmr_action = ev.OmsBusinessReject("oms1", 3, "D", "C1", code, f"{code}: no")
    assert dict(codec.action_to_message(cancel, False, TT)[1])[102] == cxl
    assert dict(codec.action_to_message(ev.OmsReport("oms1", report, code=code), False, TT)[1])[103] == ord_rej
    assert dict(codec.action_to_message(bmr_action, False, TT)[1])[380] == bmr


def test_encode_venue_reasons_pass_through_unchanged():
    """A venue's own CxlRejReason and OrdRejReason are relayed as the venue sent them."""
    cancel = ev.OmsCancelReject("oms1", CancelReject("C2", "C1", "V1", S.NEW, "1", "5", "venue says no"))
    report = ExecReport(E.REJECTED, S.REJECTED, "C1", "V1", "E1", symbol="AAPL", ord_rej_reason="11")
    assert dict(codec.action_to_message(cancel, False, TT)[1])[102] == "5"
    assert dict(codec.action_to_message(ev.OmsReport("oms1", report), False, TT)[1])[103] == "11"


@pytest.mark.parametrize("fix42", [True, False], ids=["4.2", "4.4"])
def test_encode_business_reject_carries_ref_fields(fix42):
    """A BusinessMessageReject carries RefSeqNum 45, RefMsgType 372, ref id 379, reason 380 and text 58."""
    action = ev.OmsBusinessReject("oms1", 12, "D", "C1", "MAX_ORDER_QTY", "MAX_ORDER_QTY: too big")
    assert codec.action_to_message(action, fix42, TT) == (
        "j",
        [(45, "12"), (372, "D"), (379, "C1"), (380, "0"), (58, "MAX_ORDER_QTY: too big")],
    )


def test_encode_business_reject_without_seq_or_id_omits_them():
    """No RefSeqNum or business id known: 45 and 379 are left out, 372 and 380 stay."""
    _, fields = codec.action_to_message(
        ev.OmsBusinessReject("oms1", 0, "AE", "", "UNSUPPORTED_MESSAGE", "UNSUPPORTED_MESSAGE: no"), False, TT
    )
    assert [t for t, _ in fields] == [372, 380, 58]


@pytest.mark.parametrize("action", [ev.Decision("oms1", "D", "C1", True, T0), ev.Notice("session_up", T0)])
def test_encode_non_message_action_raises_type_error(action):
    """Decisions and notices are records, never wire messages."""
    with pytest.raises(TypeError):
        codec.action_to_message(action, False, TT)


# Not ORDER_STATUS in 4.2: see the report; 20=3 is not read back as ORDER_STATUS.
ROUND_TRIP_EXEC_TYPES = [
    (t, fix42) for t in ExecType for fix42 in (True, False) if not (fix42 and t is ExecType.ORDER_STATUS)
]


@pytest.mark.parametrize("exec_type, fix42", ROUND_TRIP_EXEC_TYPES)
def test_encoded_execution_report_decodes_to_same_exec_type(exec_type, fix42):
    """What action_to_message() writes for an ExecType, venue_to_event() reads back as that ExecType, in both versions."""
    status = S.PARTIALLY_FILLED if exec_type in (E.TRADE, E.TRADE_CANCEL, E.TRADE_CORRECT) else S.NEW
    report = exec_report("C1", exec_type, status, leaves=60, cum=40, last_qty=40, last_px=100, avg_px=100)
    msg_type, fields = codec.action_to_message(ev.OmsReport("oms1", report), fix42, TT)
    decoded = codec.venue_to_event(parse_fields(wire(msg_type, fields)), "sim", T0)
    assert decoded.report.exec_type is exec_type
    assert decoded.report.ord_status is status


# ---------------------------------------------------------------- properties

# Identifiers the proxy accepts: printable ASCII, no leading or trailing space (see test_identifier_*).
_ID_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
ids = st.text(_ID_CHARS, min_size=1, max_size=16).filter(lambda s: s.strip(" ") == s)
quantities = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("1e12"), places=4)
prices = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("1e9"), places=4)


@st.composite
def valid_orders(draw) -> OrderRequest:
    """OrderRequests the codec must carry unchanged: price only when priced, StopPx only for stops."""
    ord_type = draw(st.sampled_from(OrdType))
    priced = ord_type in (OrdType.LIMIT, OrdType.STOP_LIMIT)
    stopped = ord_type in (OrdType.STOP, OrdType.STOP_LIMIT)
    return OrderRequest(
        cl_ord_id=draw(ids),
        symbol=draw(ids),
        side=draw(st.sampled_from(Side)),
        order_qty=draw(quantities),
        ord_type=ord_type,
        price=draw(prices) if priced else None,
        account=draw(st.just("") | ids),
        ex_destination=draw(st.just("") | ids),
        time_in_force=draw(st.sampled_from(["", "0", "1", "3", "4", "6"])),
        stop_px=draw(prices) if stopped else None,
    )


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(req=valid_orders(), venue_id=ids, fix42=st.booleans())
def test_new_order_encode_parse_decode_round_trips(req, venue_id, fix42):
    """action_to_message(VenueNewOrder) -> parse -> fields_to_order gives the order back (under the venue ClOrdID)."""
    msg_type, fields = codec.action_to_message(ev.VenueNewOrder("sim", venue_id, req), fix42, TT)
    decoded = codec.fields_to_order(parse_fields(wire(msg_type, fields)))
    assert decoded == OrderRequest(
        venue_id,
        req.symbol,
        req.side,
        req.order_qty,
        req.ord_type,
        req.price,
        req.account,
        "",
        req.time_in_force,
        req.stop_px,
    )


@PROPERTY
@given(
    req=valid_orders(),
    venue_id=ids,
    orig=ids,
    order_id=st.just("") | ids,
    fix42=st.booleans(),
    seq=st.integers(1, 2**31),
)
def test_replace_to_message_and_back_round_trips(req, venue_id, orig, order_id, fix42, seq):
    """action_to_message(VenueReplace) read back as an OMS message is a ReplaceOrder of the same values."""
    msg_type, fields = codec.action_to_message(ev.VenueReplace("sim", venue_id, orig, order_id, req), fix42, TT)
    event = codec.oms_to_event(parse_fields(wire(msg_type, fields, seq)), "oms", T0)
    assert event == ev.ReplaceOrder(
        "oms", seq, T0, orig, msgspec.structs.replace(req, cl_ord_id=venue_id, ex_destination="")
    )


@PROPERTY
@given(venue_id=ids, orig=ids, symbol=ids, side=st.sampled_from(Side), qty=quantities, account=st.just("") | ids)
def test_cancel_to_message_and_back_round_trips(venue_id, orig, symbol, side, qty, account):
    """action_to_message(VenueCancel) read back as an OMS message is a CancelOrder with the same ids and order keys."""
    msg_type, fields = codec.action_to_message(
        ev.VenueCancel("sim", venue_id, orig, "V1", symbol, side, qty, account), False, TT
    )
    event = codec.oms_to_event(parse_fields(wire(msg_type, fields, 7)), "oms", T0)
    assert event == ev.CancelOrder("oms", 7, T0, venue_id, orig, symbol, side, account)


# FIX travels as ASCII; non-ASCII digits in a tag position break parse() (see the report).
ascii_text = st.text(st.characters(max_codepoint=127), max_size=300)
ascii_fixish = st.lists(
    st.one_of(
        st.sampled_from([SOH, "=", "35", "11", "8=FIX.4.4", "10=000", "=="]),
        st.text(st.characters(max_codepoint=127), max_size=8),
    ),
    max_size=40,
).map("".join)


@PROPERTY
@given(raw=st.one_of(ascii_text, ascii_fixish))
def test_parse_never_raises_on_arbitrary_ascii_text(raw):
    """parse() returns a tag -> text dict for any ASCII input, keeping only well-formed numeric tags."""
    fields = parse_fields(raw)
    assert all(isinstance(tag, int) and tag >= 0 and isinstance(value, str) for tag, value in fields.items())
    written = [part.partition("=") for part in raw.split(SOH)]
    for tag, value in fields.items():
        assert any(eq and name.isdigit() and int(name) == tag and text == value for name, eq, text in written)


@PROPERTY
@given(raw=st.one_of(ascii_text, ascii_fixish, ascii_fixish.map(lambda text: text + SOH)))
def test_parse_quick_path_reads_as_the_part_by_part_check(raw):
    """The one-pass lookup and the part-by-part check agree on any text, well formed or not."""
    assert parse_fields(raw) == fixparse._parse_checked(raw, SOH)


@PROPERTY
@given(pairs=st.lists(st.tuples(st.integers(1, 10_000), st.text(_ID_CHARS, max_size=12)), max_size=30))
def test_parse_reads_back_written_fields_last_value_wins(pairs):
    """Fields written as tag=value|... parse back to their values; a repeated tag keeps its last value."""
    raw = SOH.join(f"{tag}={value}" for tag, value in pairs) + SOH
    assert parse_fields(raw) == dict(pairs)


_ORDER_TAGS = [1, 11, 38, 40, 41, 44, 54, 55, 59, 99, 100]
_VALUES = st.one_of(
    st.sampled_from(
        [
            "",
            "0",
            "1",
            "2",
            "3",
            "4",
            "5",
            "100",
            "1.5",
            "-1",
            "abc",
            "NaN",
            "sNaN",
            "inf",
            "1e13",
            "1e-30",
            "1e999999999",
            "C1",
            "AAPL",
        ]
    ),
    st.text(max_size=12),
)


@st.composite
def oms_field_dicts(draw) -> dict[int, str]:
    """Arbitrary tag -> text for a D, G or F, biased towards the tags the decoder reads.

    MsgSeqNum (34) is validated by the FIX session layer before the codec sees it, so it is
    either absent or an integer here (a non-numeric 34 raises: see the report).
    """
    fields = draw(
        st.dictionaries(
            st.sampled_from(_ORDER_TAGS) | st.integers(1, 10_000).filter(lambda t: t != 34), _VALUES, max_size=14
        )
    )
    fields[35] = draw(st.sampled_from(["D", "G", "F"]))
    seq = draw(st.none() | st.integers(0, 2**31))
    if seq is not None:
        fields[34] = str(seq)
    return fields


_EXPECTED_EVENT = {"D": ev.NewOrder, "G": ev.ReplaceOrder, "F": ev.CancelOrder}


@PROPERTY
@given(fields=oms_field_dicts())
def test_oms_to_event_never_raises_on_arbitrary_fields(fields):
    """oms_to_event() returns the message's event or an InvalidMessage for D/G/F, whatever the field values."""
    event = codec.oms_to_event(fields, "oms", T0)
    assert isinstance(event, (_EXPECTED_EVENT[fields[35]], ev.InvalidMessage))
    assert event.seq_num == int(fields.get(34, "0"))
    if isinstance(event, ev.InvalidMessage):
        assert event.msg_type == fields[35] and event.reason
    elif not isinstance(event, ev.CancelOrder):
        assert event.order.order_qty > 0 and (event.order.price is None or event.order.price > 0)


# ---------------------------------------------------------------- the [identifiers] config section

_CFG = __import__("pathlib").Path(__file__).resolve().parents[2] / "cfg"


def _config_with(tmp_path, section: str):
    import shutil

    from fixproxy.config import load

    for f in _CFG.iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "fixproxy.toml").write_text((tmp_path / "fixproxy.toml").read_text() + "\n" + section)
    return load(tmp_path / "fixproxy.toml", secrets=False)


def test_identifiers_section_defaults_fit_real_venues():
    """Shipped config: ClOrdID up to 64, Account and Symbol up to 32 characters."""
    from fixproxy.config import load

    limits = load(_CFG / "fixproxy.toml", secrets=False).config.identifiers.limits()
    assert limits == codec.IdentifierLimits(clordid=64, account=32, symbol=32, ex_destination=32)


@pytest.mark.parametrize("key", ["max_clordid", "max_account", "max_symbol", "max_ex_destination"])
def test_identifiers_section_zero_limit_names_the_key(tmp_path, key):
    """A limit must be a positive whole number; a bad one stops start-up naming the key."""
    from fixproxy.config import ConfigError

    with pytest.raises(ConfigError) as info:
        _config_with(tmp_path, f"[identifiers]\n{key} = 0\n")
    assert f"identifiers.{key}" in str(info.value)


def test_identifiers_section_reaches_the_decoder_of_the_journal_recovery(tmp_path):
    """The config's [identifiers] are what recovery decodes the journal with (the engines and replay
    pass the same ``config.identifiers.limits()``; tests/integration/test_bad_input.py runs it live)."""
    from fixproxy.journal.recovery import decode_inbound

    loaded = _config_with(tmp_path, "[identifiers]\nmax_clordid = 8\nmax_account = 4\n")
    limits = loaded.config.identifiers.limits()
    event = decode_inbound("oms", "oms", T0, {**base("D"), 11: "A" * 9}, limits)
    assert isinstance(event, ev.InvalidMessage) and "at most 8 are allowed" in event.reason
    event = decode_inbound("oms", "oms", T0, {**base("D"), 1: "ACCT5"}, limits)
    assert isinstance(event, ev.InvalidMessage) and event.reason.startswith("Account (1) is 5 characters long")
    assert isinstance(decode_inbound("oms", "oms", T0, {**base("D"), 11: "A" * 9}), ev.NewOrder)
