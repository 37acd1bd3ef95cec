"""FIX 5.0SP2 over FIXT.1.1 in the text layer and the native session: the config's versions, the
dictionary tables (FIX50SP2.xml and FIXT11.xml), DefaultApplVerID on Logon, ApplVerID on messages,
and the codec reading a FIX 5.0SP2 order and report into the same core types as FIX 4.4."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from decimal import Decimal

import msgspec
import pytest

from fixproxy.config import OmsSession, Venue
from fixproxy.core import events as ev
from fixproxy.core.model import ExecType, OrdStatus, OrdType, Side
from fixproxy.engines.native.session import Close, LoggedOn, Received, Session
from fixproxy.engines.native.store import MemoryStore
from fixproxy.engines.quickfix.settings import dictionary, session_block
from fixproxy.fix import build, check, codec, parse
from fixproxy.fix.versions import FIXT, appl_ver_problem, begin_string

from .fixtext import T

STAMP = build.stamp(T)


def framed(body: str, begin: str = FIXT) -> bytes:
    text = body.replace("|", "\x01") + "\x01"
    head = f"8={begin}\x019={len(text)}\x01"
    return f"{head}{text}10={sum((head + text).encode('latin-1')) % 256:03d}\x01".encode("latin-1")


def peer(msg_type: str, seq: int, body: str = "") -> bytes:
    return framed(f"35={msg_type}|34={seq}|49=OMS1|52={STAMP}|56=FIXPROXY" + (f"|{body}" if body else ""))


def ours(msg_type: str, seq: int, body: str = "") -> bytes:
    return framed(f"35={msg_type}|34={seq}|49=FIXPROXY|52={STAMP}|56=OMS1" + (f"|{body}" if body else ""))


def make(initiator: bool = False) -> Session:
    return Session(
        name="oms1",
        role="oms",
        begin_string=FIXT,
        sender="FIXPROXY",
        target="OMS1",
        heartbeat_s=30,
        store=MemoryStore(T),
        log=None,
        initiator=initiator,
        resend_app=True,
    )


def logged_on() -> Session:
    session = make()
    session.connect(T)
    events, _ = session.receive(peer("A", 1, "98=0|108=30|141=Y|1137=9"), T)
    assert events == [LoggedOn()]
    return session


ORDER = f"11=A1|55=MSFT|54=1|38=100|40=2|44=410|60={STAMP}"


# ---------------------------------------------------------------------- config and versions


def test_fix50sp2_session_travels_over_fixt() -> None:
    """fix_version "FIX.5.0SP2" configures BeginString FIXT.1.1; 4.2 and 4.4 stay as they are."""
    oms = msgspec.convert({"name": "o", "comp_id": "O", "fix_version": "FIX.5.0SP2"}, OmsSession)
    venue = msgspec.convert({"name": "v", "fix_version": "FIX.5.0SP2"}, Venue)
    assert (oms.begin_string, venue.begin_string) == (FIXT, FIXT)
    assert [begin_string(v) for v in ("FIX.4.2", "FIX.4.4")] == ["FIX.4.2", "FIX.4.4"]


def test_quickfix_block_of_a_fixt_session_names_both_dictionaries() -> None:
    """quickfix runs a FIX.5.0SP2 session on FIXT11.xml (transport) and FIX50SP2.xml (application)."""
    block = session_block("FIX.5.0SP2", "FIXPROXY", "OMS1")
    assert (block["BeginString"], block["DefaultApplVerID"]) == (FIXT, "FIX.5.0SP2")
    assert block["TransportDataDictionary"] == dictionary(FIXT)
    assert block["AppDataDictionary"] == dictionary("FIX.5.0SP2")
    assert "DataDictionary" not in block


@pytest.mark.parametrize(
    "tag, value, refused",
    [(1137, "9", False), (1137, None, True), (1137, "7", True), (1128, "9", False), (1128, None, False)]
    + [(1128, v, True) for v in ("6", "7", "8", "10", "X")],
)
def test_only_fix50sp2_is_an_application_version(tag: int, value: str | None, refused: bool) -> None:
    """DefaultApplVerID must name FIX.5.0SP2 (9); ApplVerID may be left out or name it."""
    assert bool(appl_ver_problem(tag, value)) is refused


# ---------------------------------------------------------------------- the dictionary tables


def _xml(name: str) -> ET.Element:
    return ET.parse(dictionary(name)).getroot()


def _section(root: ET.Element, name: str) -> list[ET.Element]:
    found = root.find(name)
    assert found is not None
    return list(found)


def test_fixt_tables_match_the_quickfix_dictionaries() -> None:
    """MsgTypes, required fields of the order and session messages, and the values of Side, OrdType
    and TimeInForce are FIX50SP2.xml's and FIXT11.xml's."""
    app, transport = _xml("FIX.5.0SP2"), _xml(FIXT)
    types = {m.get("msgtype") for root in (app, transport) for m in root.iter("message")}
    assert check.MSG_TYPES[FIXT] == types
    for root in (app, transport):
        numbers = {f.get("name"): int(f.get("number", "0")) for f in _section(root, "fields")}
        for message in root.iter("message"):
            msg_type = message.get("msgtype", "")
            if msg_type in check.REQUIRED[FIXT]:
                required = {numbers[f.get("name", "")] for f in message.findall("field") if f.get("required") == "Y"}
                assert set(check.REQUIRED[FIXT][msg_type]) == required, msg_type
    fields = {f.get("number"): f for f in _section(app, "fields")}
    for tag in (54, 40, 59):
        values = {v.get("enum") for v in fields[str(tag)].findall("value")}
        assert check.ENUMS[FIXT][tag] == values, tag


def test_fixt_header_fields_are_header_fields() -> None:
    """ApplVerID, CstmApplVerID and ApplExtID (FIXT11.xml's header) are read as header fields."""
    header = {f.get("name") for f in _section(_xml(FIXT), "header")}
    numbers = {f.get("name"): int(f.get("number", "0")) for f in _section(_xml(FIXT), "fields")}
    assert {numbers[n] for n in header if n in numbers} <= parse.HEADER
    raw = f"8=FIXT.1.1\x019=5\x0135=D\x0134=2\x0149=OMS1\x0152={STAMP}\x0156=FIXPROXY\x011128=9\x0111=A\x0110=000\x01"
    assert parse.fields(raw)[1] == ""


def test_fix50sp2_cancel_without_orig_clordid_passes_the_dictionary_and_the_codec_refuses_it() -> None:
    """OrigClOrdID (41) is optional in FIX50SP2.xml: no session Reject, and the proxy's own decoder
    refuses the cancel saying why (an OrderCancelReject, as on FIX 4.4 for an unreadable cancel)."""
    fields = {35: "F", 34: "2", 11: "C1", 54: "1", 55: "MSFT", 60: STAMP}
    assert check.check(FIXT, "F", fields) is None
    assert check.check("FIX.4.4", "F", fields) == (1, 41, "Required tag missing: OrigClOrdID (41)")
    event = codec.oms_to_event(fields, "oms1", T)
    assert isinstance(event, ev.InvalidMessage) and "OrigClOrdID (41) is missing" in event.reason


# ---------------------------------------------------------------------- the codec


def test_fix50sp2_order_and_report_decode_into_the_fix44_types() -> None:
    """A FIX 5.0SP2 NewOrderSingle and ExecutionReport (no ExecTransType) decode as FIX 4.4's do."""
    order = parse.parse(f"8=FIXT.1.1\x0135=D\x0134=2\x011128=9\x01{ORDER.replace('|', chr(1))}")
    event = codec.oms_to_event(order, "oms1", T)
    assert isinstance(event, ev.NewOrder)
    o = event.order
    assert (o.cl_ord_id, o.symbol, o.side, o.order_qty, o.ord_type, o.price) == (
        "A1",
        "MSFT",
        Side.BUY,
        Decimal(100),
        OrdType.LIMIT,
        Decimal(410),
    )
    report = {35: "8", 37: "V1", 17: "E1", 11: "oms1.A1", 150: "F", 39: "2", 54: "1", 55: "MSFT"}
    report |= {32: "100", 31: "410", 151: "0", 14: "100"}
    venue_event = codec.venue_to_event(report, "sim", T)
    assert isinstance(venue_event, ev.VenueReport)
    r = venue_event.report
    assert (r.exec_type, r.ord_status, r.last_qty, r.avg_px) == (ExecType.TRADE, OrdStatus.FILLED, 100, 0)


def test_report_to_a_fixt_oms_has_the_fields_fix50sp2_requires_and_no_exec_trans_type() -> None:
    """The proxy's ExecutionReport to a FIXT session (encoded as to FIX 4.4) carries every field
    FIX50SP2.xml requires of it and no ExecTransType (20), which FIX 5.0 dropped."""
    from fixproxy.core.model import ExecReport

    r = ExecReport(
        exec_type=ExecType.TRADE,
        ord_status=OrdStatus.FILLED,
        cl_ord_id="A1",
        order_id="V1",
        exec_id="E1",
        symbol="MSFT",
        side=Side.BUY,
        last_qty=Decimal(100),
        last_px=Decimal(410),
        leaves_qty=Decimal(0),
        cum_qty=Decimal(100),
        avg_px=Decimal(410),
    )
    msg_type, body = codec.action_to_message(ev.OmsReport("oms1", r), False, STAMP)
    tags = {t for t, _ in body}
    assert msg_type == "8" and 20 not in tags
    assert {37, 17, 150, 39, 54, 151, 14} <= tags


# ---------------------------------------------------------------------- the native session


def test_fixt_logon_is_answered_with_default_appl_ver_id() -> None:
    """The acceptor's Logon answer on FIXT.1.1 carries DefaultApplVerID 9."""
    session = make()
    session.connect(T)
    events, out = session.receive(peer("A", 1, "98=0|108=30|141=Y|1137=9"), T)
    assert events == [LoggedOn()]
    assert out == ours("A", 1, "98=0|108=30|141=Y|1137=9")


def test_fixt_initiator_sends_default_appl_ver_id() -> None:
    """A venue session on FIXT.1.1 logs on with 1137=9 and needs the venue's answer to carry it too."""
    session = make(initiator=True)
    _, out = session.connect(T)
    assert out == ours("A", 1, "98=0|108=30|1137=9")
    events, _ = session.receive(peer("A", 1, "98=0|108=30"), T)
    assert session.logged_on is False and isinstance(events[-1], Close)


def test_fixt_logon_without_default_appl_ver_id_is_not_answered() -> None:
    """A FIXT Logon without 1137 is not a valid Logon: closed unanswered (as quickfix does)."""
    session = make()
    session.connect(T)
    events, out = session.receive(peer("A", 1, "98=0|108=30|141=Y"), T)
    assert out == b"" and not session.logged_on
    assert events == [Close("Logon message is not valid: Required tag missing: DefaultApplVerID (1137)")]


def test_fixt_logon_naming_another_version_gets_a_logout_saying_why() -> None:
    """DefaultApplVerID 7 (FIX 5.0): a Logout naming it, then the connection closes."""
    session = make()
    session.connect(T)
    events, out = session.receive(peer("A", 1, "98=0|108=30|141=Y|1137=7"), T)
    text = appl_ver_problem(1137, "7")
    assert out == ours("5", 1, f"58={text}")
    assert events == [Close("logon refused")] and not session.logged_on


def test_fix44_logon_on_a_fixt_session_is_logged_out() -> None:
    """A FIX.4.4 message on a logged-on FIXT.1.1 session: Logout (incorrect BeginString)."""
    session = logged_on()
    events, out = session.receive(framed(f"35=D|34=2|49=OMS1|52={STAMP}|56=FIXPROXY|{ORDER}", "FIX.4.4"), T)
    assert any(isinstance(e, Close) for e in events)
    assert b"\x0135=5\x01" in out and b"Incorrect BeginString" in out


@pytest.mark.parametrize("appl", ["", "1128=9|"])
def test_fixt_order_with_its_own_or_no_appl_ver_id_reaches_the_owner(appl: str) -> None:
    """An order with no ApplVerID (the session's default) or 1128=9 goes to the owner."""
    session = logged_on()
    events, out = session.receive(peer("D", 2, appl + ORDER), T)
    assert out == b"" and len(events) == 1 and isinstance(events[0], Received)
    assert events[0].fields[11] == "A1"


def test_fixt_order_with_another_appl_ver_id_gets_a_session_reject() -> None:
    """1128=7 (FIX 5.0): a session Reject 373=5 on tag 1128 naming why; its number is used."""
    session = logged_on()
    events, out = session.receive(peer("D", 2, "1128=7|" + ORDER), T)
    text = appl_ver_problem(1128, "7")
    assert events == []
    assert out == ours("3", 2, f"45=2|371=1128|372=D|373=5|58={text}")
    assert session.store.next_target == 3
