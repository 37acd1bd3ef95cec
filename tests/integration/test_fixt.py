"""FIX 5.0SP2 over FIXT.1.1, OMS and venue sides, on each engine: quickfix simulators as FIXT peers
(they validate what the proxy sends against FIXT11.xml and FIX50SP2.xml), mixed with FIX 4.2 and
4.4 peers, and a raw FIXT client for the Logon, ApplVerID and resend cases."""

from __future__ import annotations

import json
import signal
import socket

import pytest

from fixproxy.cli import main

from .harness import Stack, messages
from .rawfix import RawFix, frame

FIXT = "FIXT.1.1"


def _oms(name: str, version: str, reject_with: str = "business_reject") -> str:
    return (
        f'\n[[oms]]\nname = "{name}"\ncomp_id = "{name.upper()}"\nfix_version = "{version}"\n'
        f'default_venue = "sim"\nreject_with = "{reject_with}"\n'
    )


#: oms1 (FIXT, 35=j refusals), oms2 (FIX 4.2), oms3 (FIXT, 35=8 refusals), oms4 (FIXT, raw client),
#: oms5 (FIX 4.4): all to a FIXT venue.
_EXTRA = _oms("oms3", "FIX.5.0SP2", "execution_report") + _oms("oms4", "FIX.5.0SP2") + _oms("oms5", "FIX.4.4")
#: Session -> the BeginString its OMS simulator speaks.
BEGIN = {"oms1": FIXT, "oms2": "FIX.4.2", "oms3": FIXT, "oms5": "FIX.4.4"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, engine):
    """FIXT venue; MSFT orders rest at it, XOM are rejected by it."""
    s = Stack(
        tmp_path_factory.mktemp("fixt"),
        behaviours={"MSFT": "ack", "XOM": "reject"},
        oms1_version="FIX.5.0SP2",
        venue_version="FIX.5.0SP2",
        extra=_EXTRA,
    )
    try:
        for name in BEGIN:
            s.connect(name)
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def to44(tmp_path_factory, engine):
    """A FIXT OMS (oms1) to a FIX 4.4 venue."""
    s = Stack(
        tmp_path_factory.mktemp("fixt-to-44"),
        behaviours={"MSFT": "ack"},
        oms1_version="FIX.5.0SP2",
        oms1_extra='reject_with = "execution_report"',
    )
    try:
        s.connect("oms1")
        yield s
    finally:
        s.close()


def order(cl: str, symbol: str = "AAPL", qty: str = "100", price: str = "190") -> str:
    return f"35=D|11={cl}|55={symbol}|54=1|38={qty}|40=2|44={price}"


def no_session_rejects(stack: Stack) -> None:
    """No peer refused a message of the proxy's (a validating quickfix peer answers 35=3)."""
    for role in ("oms", "venue"):
        sent_by_peers = [line for line in stack.message_log(role).splitlines() if "\x0135=3\x01" in line]
        assert sent_by_peers == [], f"{role} session Rejects: {sent_by_peers}"
    for oms in stack.oms.values():
        assert not [r for r in list(oms.lines) if r.get("dir") == "in" and r["fields"].get("35") == "3"]


@pytest.mark.parametrize("session", list(BEGIN))
def test_order_to_fixt_venue_is_acked_and_filled(stack, session, cl_ord_id):
    """FIXT, 4.2 and 4.4 OMS sessions trade through a FIXT venue: the venue gets a FIX 5.0SP2
    NewOrderSingle, each OMS its ack and fill in its own version."""
    oms = stack.oms[session]
    m = messages(oms)
    start = oms.mark()
    oms.send_line(order(cl_ord_id))
    ack = oms.wait_for(m(**{"35": "8", "11": cl_ord_id, "39": "0"}), start=start)["fields"]
    fill = oms.wait_for(m(**{"35": "8", "11": cl_ord_id, "39": "2"}), start=start)["fields"]
    assert (ack["8"], fill["8"]) == (BEGIN[session], BEGIN[session])
    assert (fill["14"], fill["151"], fill["32"], fill["31"]) == ("100", "0", "100", "190")
    if session == "oms2":
        assert (fill["20"], fill["150"]) == ("0", "2")
    else:
        assert fill["150"] == "F" and "20" not in fill
    seen = stack.venue.wait_for(messages(stack.venue)(**{"35": "D", "11": f"{session}.{cl_ord_id}"}))["fields"]
    assert (seen["8"], seen["55"], seen["38"], seen["44"]) == (FIXT, "AAPL", "100", "190")
    assert "21" not in seen
    no_session_rejects(stack)


def test_refused_order_gets_business_reject_on_fixt(stack, cl_ord_id):
    """A rule's refusal on a FIXT session configured for 35=j: 45/372/379/380 and the code in 58."""
    oms = stack.oms["oms1"]
    start = oms.mark()
    oms.send_line(order(cl_ord_id, qty="20000"))
    bmr = oms.wait_for(messages(oms)(**{"35": "j", "379": cl_ord_id}), start=start)["fields"]
    assert (bmr["8"], bmr["372"], bmr["380"]) == (FIXT, "D", "0")
    assert bmr["58"].startswith("MAX_ORDER_QTY: order quantity 20000 exceeds the limit 10000")
    assert not any(r.get("dir") == "in" and r["fields"].get("11") == f"oms1.{cl_ord_id}" for r in stack.venue.lines)
    no_session_rejects(stack)


def test_refused_order_gets_execution_report_reject_on_fixt(stack, cl_ord_id):
    """The same refusal on a FIXT session configured for 35=8: 39=8/150=8, no ExecTransType."""
    oms = stack.oms["oms3"]
    start = oms.mark()
    oms.send_line(order(cl_ord_id, qty="20000"))
    er = oms.wait_for(messages(oms)(**{"35": "8", "11": cl_ord_id}), start=start)["fields"]
    assert (er["8"], er["39"], er["150"], er["37"]) == (FIXT, "8", "8", "NONE")
    assert "20" not in er
    assert er["58"].startswith("MAX_ORDER_QTY: ")
    no_session_rejects(stack)


def test_venue_reject_on_fixt_reaches_the_oms(stack, cl_ord_id):
    """A FIX 5.0SP2 reject from the venue is relayed as 39=8 to the OMS."""
    oms = stack.oms["oms1"]
    start = oms.mark()
    oms.send_line(order(cl_ord_id, symbol="XOM", price="110"))
    rej = oms.wait_for(messages(oms)(**{"35": "8", "11": cl_ord_id, "39": "8"}), start=start)["fields"]
    assert rej["58"] == "venue simulator rejects this symbol"


@pytest.mark.parametrize("session", ["oms1", "oms5"])
def test_replace_then_cancel_through_fixt_venue(stack, session, cl_ord_id):
    """A resting order replaced then cancelled: the FIXT venue sees the proxy's ids on 35=G and
    35=F, the OMS its own ClOrdID and OrigClOrdID back."""
    oms = stack.oms[session]
    m = messages(oms)
    start = oms.mark()
    oms.send_line(order(cl_ord_id, symbol="MSFT", price="410"))
    oms.wait_for(m(**{"35": "8", "11": cl_ord_id, "39": "0"}), start=start)
    oms.send_line(f"35=G|11={cl_ord_id}-R|41={cl_ord_id}|55=MSFT|54=1|38=200|40=2|44=411")
    rep = oms.wait_for(m(**{"35": "8", "11": f"{cl_ord_id}-R"}), start=start)["fields"]
    assert (rep["150"], rep["39"], rep["41"], rep["38"], rep["44"]) == ("5", "0", cl_ord_id, "200", "411")
    oms.send_line(f"35=F|11={cl_ord_id}-C|41={cl_ord_id}-R|55=MSFT|54=1|38=200")
    done = oms.wait_for(m(**{"35": "8", "11": f"{cl_ord_id}-C"}), start=start)["fields"]
    assert (done["39"], done["150"], done["41"], done["151"]) == ("4", "4", f"{cl_ord_id}-R", "0")
    venue = messages(stack.venue)
    g = stack.venue.wait_for(venue(**{"35": "G", "11": f"{session}.{cl_ord_id}-R"}))["fields"]
    f = stack.venue.wait_for(venue(**{"35": "F", "11": f"{session}.{cl_ord_id}-C"}))["fields"]
    assert (g["8"], g["41"], f["8"], f["41"]) == (FIXT, f"{session}.{cl_ord_id}", FIXT, f"{session}.{cl_ord_id}-R")
    no_session_rejects(stack)


def test_cancel_of_unknown_order_gets_cancel_reject_on_fixt(stack, cl_ord_id):
    """A cancel the proxy cannot place: OrderCancelReject (35=9) on the FIXT session."""
    oms = stack.oms["oms1"]
    start = oms.mark()
    oms.send_line(f"35=F|11={cl_ord_id}|41=NEVER-SENT|55=AAPL|54=1|38=100")
    rej = oms.wait_for(messages(oms)(**{"35": "9", "11": cl_ord_id}), start=start)["fields"]
    assert (rej["8"], rej["102"], rej["434"], rej["41"]) == (FIXT, "1", "1", "NEVER-SENT")
    no_session_rejects(stack)


# ---------------------------------------------------------------- a raw FIXT client (oms4)


@pytest.fixture
def raw(stack):
    c = RawFix(stack.acceptor_port, "OMS4", begin=FIXT)
    yield c
    c.close()


def test_fixt_logon_without_default_appl_ver_id_is_refused(raw):
    """A FIXT.1.1 Logon without DefaultApplVerID (1137) does not log on: the connection closes."""
    raw.send("A", "98=0|108=30|141=Y")
    assert raw.read(3) is None or raw.closed()
    assert raw.closed()


def test_fixt_logon_with_another_application_version_is_refused(raw):
    """DefaultApplVerID 7 (FIX.5.0): Logout naming why, and the connection closes."""
    raw.send("A", "98=0|108=30|141=Y|1137=7")
    logout = raw.expect(lambda m: m.get(35) in ("5", "A"))
    assert logout[35] == "5"
    assert "DefaultApplVerID (1137) '7' (FIX.5.0) is not supported" in logout[58]
    assert raw.closed()


def test_fixt_logon_is_answered_with_default_appl_ver_id(raw):
    """The proxy's Logon answer on a FIXT session carries 8=FIXT.1.1 and 1137=9."""
    ack = raw.logon("1137=9")
    assert (ack[8], ack[1137], ack[98]) == (FIXT, "9", "0")


def test_appl_ver_id_of_another_version_is_refused_with_a_session_reject(stack, raw, cl_ord_id):
    """An order with ApplVerID (1128) 7 gets a session Reject (373=5, 371=1128) naming why and never
    reaches the venue; with 1128=9 (the session's own) it trades."""
    raw.logon("1137=9")
    seq = raw.send("D", f"1128=7|11={cl_ord_id}|55=AAPL|54=1|38=100|40=2|44=190|60=20261125-12:00:00")
    rej = raw.expect(lambda m: m.get(35) == "3")
    assert (rej[45], rej[371], rej[372], rej[373]) == (str(seq), "1128", "D", "5")
    assert "ApplVerID (1128) '7' (FIX.5.0) is not supported" in rej[58]
    raw.send("D", f"1128=9|11={cl_ord_id}-9|55=AAPL|54=1|38=100|40=2|44=190|60=20261125-12:00:00")
    ack = raw.expect(lambda m: m.get(35) == "8" and m.get(11) == f"{cl_ord_id}-9" and m.get(39) == "0")
    assert ack[8] == FIXT
    assert not any(r.get("dir") == "in" and r["fields"].get("11") == f"oms4.{cl_ord_id}" for r in stack.venue.lines)


def test_fixt_gap_is_requested_and_filled_then_resend_brings_reports_again(raw, cl_ord_id):
    """On a FIXT session: a gap gets a ResendRequest, a SequenceReset-GapFill lets the held order
    through; a ResendRequest of the OMS brings the reports again with PossDupFlag."""
    raw.logon("1137=9")
    first_missing = raw.seq
    raw.seq += 2
    raw.send("D", f"11={cl_ord_id}|55=AAPL|54=1|38=100|40=2|44=190|60=20261125-12:00:00")
    resend = raw.expect(lambda m: m.get(35) == "2")
    assert (resend[8], resend[7]) == (FIXT, str(first_missing))
    gap = raw.body("4", f"43=Y|122=20261125-12:00:00.000|123=Y|36={first_missing + 2}", seq=first_missing)
    raw.send_raw(frame(FIXT, gap))
    fill = raw.expect(lambda m: m.get(35) == "8" and m.get(11) == cl_ord_id and m.get(39) == "2")
    raw.send("2", "7=1|16=0")
    again = raw.expect(lambda m: m.get(35) == "8" and m.get(11) == cl_ord_id and m.get(39) == "2")
    assert (again[8], again[34], again.get(43), again[17]) == (FIXT, fill[34], "Y", fill[17])
    assert 122 in again


# ---------------------------------------------------------------- FIXT OMS to a FIX 4.4 venue


def test_fixt_oms_trades_through_fix44_venue(to44, cl_ord_id):
    """A FIXT OMS's order reaches a FIX 4.4 venue as FIX 4.4; ack, fill, replace and cancel come back as FIXT."""
    oms = to44.oms["oms1"]
    m = messages(oms)
    start = oms.mark()
    oms.send_line(order(cl_ord_id))
    fill = oms.wait_for(m(**{"35": "8", "11": cl_ord_id, "39": "2"}), start=start)["fields"]
    assert (fill["8"], fill["150"], fill["14"]) == (FIXT, "F", "100")
    seen = to44.venue.wait_for(messages(to44.venue)(**{"35": "D", "11": f"oms1.{cl_ord_id}"}))["fields"]
    assert seen["8"] == "FIX.4.4"
    oms.send_line(order(f"{cl_ord_id}-W", symbol="MSFT", price="410"))
    oms.wait_for(m(**{"35": "8", "11": f"{cl_ord_id}-W", "39": "0"}), start=start)
    oms.send_line(f"35=G|11={cl_ord_id}-R|41={cl_ord_id}-W|55=MSFT|54=1|38=200|40=2|44=411")
    rep = oms.wait_for(m(**{"35": "8", "11": f"{cl_ord_id}-R"}), start=start)["fields"]
    assert (rep["8"], rep["150"], rep["38"]) == (FIXT, "5", "200")
    oms.send_line(f"35=F|11={cl_ord_id}-C|41={cl_ord_id}-R|55=MSFT|54=1|38=200")
    done = oms.wait_for(m(**{"35": "8", "11": f"{cl_ord_id}-C"}), start=start)["fields"]
    assert (done["8"], done["39"], done["41"]) == (FIXT, "4", f"{cl_ord_id}-R")
    no_session_rejects(to44)


def test_fixt_oms_refusal_as_execution_report_through_fix44_stack(to44, cl_ord_id):
    """A refusal on a FIXT session configured for 35=8 (next to a FIX 4.4 venue)."""
    oms = to44.oms["oms1"]
    start = oms.mark()
    oms.send_line(order(cl_ord_id, price="250"))
    er = oms.wait_for(messages(oms)(**{"35": "8", "11": cl_ord_id}), start=start)["fields"]
    assert (er["8"], er["39"], er["150"]) == (FIXT, "8", "8")
    assert er["58"].startswith("PRICE_COLLAR: ")
    no_session_rejects(to44)


# ---------------------------------------------------------------- a FIXT day: kill -9, restart, replay


def test_fixt_sessions_survive_kill9_and_replay_reproduces_the_day(fresh_stack, tmp_path):
    """FIXT OMS and venue: after kill -9 the proxy finds the FIXT.1.1 stores (sequence numbers go
    on, the OMS logs on again), the working order is still known and is cancelled; the day's
    journal replays with zero differences (not the message logs: they are written every few
    milliseconds, and a kill -9 may cut their last lines)."""
    s = fresh_stack(behaviours={"MSFT": "ack"}, oms1_version="FIX.5.0SP2", venue_version="FIX.5.0SP2")
    oms = s.connect("oms1")
    m = messages(oms)
    oms.send_line(order("K1", symbol="MSFT", price="410"))
    oms.wait_for(m(**{"35": "8", "11": "K1", "39": "0"}))
    oms.send_line(order("K2", qty="20000"))
    oms.wait_for(m(**{"35": "j", "379": "K2"}))
    assert s.proxy.stop(signal.SIGKILL) == -signal.SIGKILL
    mark = oms.mark()
    s.start_proxy()
    logon = oms.wait_for(lambda r: r.get("event") == "logon", start=mark)
    assert logon["session"].startswith("FIXT.1.1:OMS1->FIXPROXY")
    oms.send_line("35=F|11=K1-C|41=K1|55=MSFT|54=1|38=100")
    done = oms.wait_for(m(**{"35": "8", "11": "K1-C"}), start=mark)["fields"]
    assert (done["8"], done["39"], done["41"]) == (FIXT, "4", "K1")
    assert int(done["34"]) > 3  # the numbers went on from the store: no reset
    no_session_rejects(s)
    s.proxy.stop()
    out = tmp_path / "replay.json"
    main(["replay", str(s.root / "var" / "journal"), "--config", str(s.config), "--no-progress", "--json", str(out)])
    doc = json.loads(out.read_text())
    assert doc["summary"]["differences"] == 0, doc["summary"]
    decided = {(r["cl_ord_id"], r["msg_type"]): r["replayed_code"] or r["replayed"] for r in doc["rows"]}
    assert decided == {("K1", "D"): "forwarded", ("K2", "D"): "MAX_ORDER_QTY", ("K1-C", "F"): "forwarded"}


def test_fixt_venue_resend_request_gets_a_gap_fill_and_the_order_is_refused(fresh_stack):
    """A FIXT venue (a raw socket here) is logged on with 1137=9 both ways; when it asks for an
    order message again it gets a FIXT SequenceReset-GapFill, and the FIXT OMS hears VENUE_UNAVAILABLE."""
    s = fresh_stack(venue=False, oms1_version="FIX.5.0SP2", venue_version="FIX.5.0SP2")
    server = socket.create_server(("127.0.0.1", s.venue_port))
    server.settimeout(20)
    try:
        for _ in range(3):  # a connection caught half-way by the listener coming up brings no Logon
            conn, _ = server.accept()
            venue = RawFix.__new__(RawFix)
            venue.sock, venue.sender, venue.target, venue.begin, venue.seq, venue.buffer = (
                conn,
                "VENUE",
                "FIXPROXY",
                FIXT,
                1,
                b"",
            )
            logon = venue.read(timeout=5)
            if logon is not None and logon.get(35) == "A":
                break
            conn.close()
        else:
            raise AssertionError("the proxy sent no Logon to the venue")
    finally:
        server.close()
    assert (logon[8], logon[1137]) == (FIXT, "9")
    venue.send("A", "98=0|108=30|1137=9")
    s.wait_venue_up()
    oms = s.connect("oms1")
    oms.send_line(order("RS-F1"))
    sent = venue.expect(lambda m: m.get(35) == "D" and m.get(11) == "oms1.RS-F1")
    assert sent[8] == FIXT
    venue.send("2", f"7={sent[34]}|16=0")
    gap = venue.expect(lambda m: m.get(35) == "4")
    assert (gap[8], gap[34], gap.get(123), gap.get(43)) == (FIXT, sent[34], "Y", "Y")
    reject = oms.wait_for(messages(oms)(**{"35": "j", "379": "RS-F1"}))["fields"]
    assert reject["8"] == FIXT and reject["58"].startswith("VENUE_UNAVAILABLE: ")
    venue.close()
