"""The FIX session layer as an OMS sees it, over a raw TCP client: TestRequest, gaps, resends and
sequence numbers that are too low. Both engines must behave the same (the module runs on each)."""

from __future__ import annotations

import socket
import time

import pytest

from .harness import Stack, messages
from .rawfix import RawFix, frame


@pytest.fixture(scope="module")
def stack(tmp_path_factory, engine):
    s = Stack(tmp_path_factory.mktemp("session-layer"))
    try:
        yield s
    finally:
        s.close()


def order(cl: str) -> str:
    return f"11={cl}|55=AAPL|54=1|38=100|40=2|44=190|60=20261125-12:00:00"


def test_test_request_is_answered_with_its_id(client):
    """A TestRequest (35=1) gets a Heartbeat (35=0) carrying its TestReqID (112)."""
    client.send("1", "112=ARE-YOU-THERE")
    beat = client.expect(lambda m: m.get(35) == "0")
    assert beat[112] == "ARE-YOU-THERE"


def test_gap_is_requested_and_the_order_after_it_handled_once_filled(client):
    """A message ahead of its sequence number makes the proxy ask for the gap (35=2 from the first
    missing number); once the OMS gap-fills, the held order goes through."""
    first_missing = client.seq
    client.seq += 3  # skip three numbers
    client.send("D", order("GAP-1"))
    resend = client.expect(lambda m: m.get(35) == "2")
    assert resend[7] == str(first_missing)
    gap = client.body("4", f"43=Y|122=20261125-12:00:00.000|123=Y|36={first_missing + 3}", seq=first_missing)
    client.send_raw(frame(client.begin, gap))
    ack = client.expect(lambda m: m.get(35) == "8" and m.get(11) == "GAP-1" and m.get(39) == "0")
    assert ack[150] == "0"


def test_resend_request_gets_the_reports_again_as_possible_duplicates(client):
    """After a fill, a ResendRequest from the OMS brings the execution reports again with
    PossDupFlag (43=Y) and OrigSendingTime (122), and session messages as a gap fill."""
    client.send("D", order("RS-1"))
    fill = client.expect(lambda m: m.get(35) == "8" and m.get(11) == "RS-1" and m.get(39) == "2")
    client.send("2", "7=1|16=0")
    again = client.expect(lambda m: m.get(35) == "8" and m.get(11) == "RS-1" and m.get(39) == "2")
    assert (again[34], again.get(43), again[17]) == (fill[34], "Y", fill[17])
    assert 122 in again


def test_sequence_number_too_low_is_answered_with_logout(stack):
    """A message below the expected sequence number (not a possible duplicate) ends the session
    with a Logout saying why, and a new logon trades again."""
    c = RawFix(stack.acceptor_port, "OMS1")
    c.logon()
    c.seq = 1  # the Logon used 1: the proxy expects 2
    c.send("D", order("LOW-1"))
    logout = c.expect(lambda m: m.get(35) == "5")
    assert "MsgSeqNum too low" in logout.get(58, "")
    assert c.closed()
    c.close()
    fresh = RawFix(stack.acceptor_port, "OMS1")
    fresh.logon()
    fresh.send("D", order("LOW-2"))
    fresh.expect(lambda m: m.get(35) == "8" and m.get(11) == "LOW-2" and m.get(39) == "0")
    fresh.close()


def test_silent_peer_gets_heartbeats_a_test_request_then_is_disconnected(stack):
    """With HeartBtInt 1 s, the proxy sends Heartbeats, then a TestRequest when the OMS goes quiet,
    and drops the connection when that is not answered either."""
    c = RawFix(stack.acceptor_port, "OMS1")
    c.send("A", "98=0|108=1|141=Y")
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # never answer: read until the proxy hangs up
        msg = c.read(timeout=5)
        if msg is None:
            break
        seen.append(msg.get(35))
    hung_up = c.closed(timeout=1)
    c.close()
    assert seen[0] == "A" and "1" in seen, seen  # logged on, then asked whether it is there
    assert hung_up and time.monotonic() < deadline, seen


def _raw_venue(port: int) -> RawFix:
    """A venue played by the test on a raw socket: it takes the proxy's connection and Logon.

    The proxy has been trying to connect since it started; a connection that brings no Logon (one
    caught half-way by the listener coming up) is dropped, and the proxy's next attempt taken.
    """
    server = socket.create_server(("127.0.0.1", port))
    server.settimeout(20)
    try:
        for _ in range(3):
            conn, _ = server.accept()
            venue = RawFix.__new__(RawFix)
            venue.sock, venue.sender, venue.target, venue.begin, venue.seq, venue.buffer = (
                conn,
                "VENUE",
                "FIXPROXY",
                "FIX.4.4",
                1,
                b"",
            )
            logon = venue.read(timeout=5)
            if logon is not None and logon.get(35) == "A":
                venue.send("A", "98=0|108=30")
                return venue
            conn.close()
    finally:
        server.close()
    raise AssertionError("the proxy connected to the venue port but sent no Logon")


def test_order_the_venue_asks_for_again_is_gap_filled_and_refused_to_the_oms(fresh_stack):
    """A venue that asks for an order message again (ResendRequest) gets a gap fill, never the
    order late; the OMS hears VENUE_UNAVAILABLE for it."""
    s = fresh_stack(venue=False)
    venue = _raw_venue(s.venue_port)
    s.wait_venue_up()
    oms = s.connect("oms1")
    oms.send_line("35=D|11=RS-V1|55=AAPL|54=1|38=100|40=2|44=190")
    sent = venue.expect(lambda m: m.get(35) == "D" and m.get(11) == "oms1.RS-V1")
    venue.send("2", f"7={sent[34]}|16=0")
    gap = venue.expect(lambda m: m.get(35) == "4")
    assert (gap[34], gap.get(123), gap.get(43)) == (sent[34], "Y", "Y")
    assert int(gap[36]) > int(sent[34])
    reject = oms.wait_for(messages(oms)(**{"35": "j", "379": "RS-V1"}))["fields"]
    assert reject["58"].startswith("VENUE_UNAVAILABLE: ")
    venue.close()
