"""The simulators' side of an active/passive pair (issue 22), over real FIX sessions, without the pair
itself: an OMS given a second proxy address logs on to it when the first proxy dies and back again,
with its session's sequence numbers going on; the venue simulator tells its connections apart and
refuses a second Logon for a session already logged on, as a quickfix acceptor does.

The second proxy here is a plain one started on a copy of the first one's state directory after a
kill -9 (what the standby of a pair holds when it takes over), so the OMS's and the venue's sessions
go on where they were.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

from fixproxy.fix.parse import parse

from .flows import until
from .harness import Stack, messages
from .rawfix import RawFix
from .test_order_path import order


def acked(oms, cl: str, start: int = 0) -> dict:
    return oms.wait_for(messages(oms)(**{"35": "8", "11": cl, "150": "0"}), start=start)["fields"]


def venue_conn(stack: Stack, cl: str) -> int:
    """The venue connection the order ``oms1.<cl>`` came in on."""
    rec = stack.venue.wait_for(messages(stack.venue)(**{"35": "D", "11": f"oms1.{cl}"}))
    return rec["conn"]


def conn_pid(stack: Stack, conn: int) -> int | None:
    return stack.venue.wait_for(lambda r: r.get("event") == "connect" and r.get("conn") == conn)["peer_pid"]


def oms_inbound(stack: Stack) -> list[dict[int, str]]:
    """What the proxy's OMS sessions received, as its message logs hold it (exact wire bytes)."""
    text = stack.message_log("oms")
    return [parse(chunk) for chunk in _messages(text)]


def _messages(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        start = line.find("8=FIX")
        if start >= 0:
            out.append(line[start:].rstrip("\x01"))
    return out


def take_over(dead: Stack, heir: Stack) -> None:
    """``heir`` starts on a copy of ``dead``'s state, as a standby would hold it."""
    shutil.rmtree(heir.root / "var", ignore_errors=True)
    shutil.copytree(dead.root / "var", heir.root / "var")
    heir.start_proxy()


def pair_of_plain_proxies(root: Path) -> tuple[Stack, Stack]:
    a = Stack(root / "a", behaviours={"MSFT": "ack"})
    try:
        a.venue.stop()  # again with connections tracked
        a.start_venue("--track-connections")
        a.wait_venue_up(start=a.proxy.mark())
        b = Stack(root / "b", venue=False, proxy=False, venue_port=a.venue_port)
    except BaseException:
        a.close()
        raise
    return a, b


def test_oms_logs_on_to_the_failover_address_when_its_proxy_dies_and_back(tmp_path):
    """An OMS given b's address as its failover: a killed -9, b started on a's state, the OMS logs on
    to b with its sequence numbers going on (no reset), and an order it sent while no proxy was up
    reaches b resent as PossDup (the OMS answered b's ResendRequest); a raw session reconnects to b
    the same way; b killed and a started again on b's state, the OMS logs on to a again. The venue
    saw each proxy on a connection of its own."""
    a, b = pair_of_plain_proxies(tmp_path)
    raw = RawFix(a.acceptor_port, "OMS2", begin="FIX.4.2")
    try:
        raw.logon()
        raw.send("1", "112=BEFORE")
        raw.expect(lambda m: m.get(35) == "0" and m.get(112) == "BEFORE")
        oms = a.connect("oms1", "--failover", f"127.0.0.1:{b.acceptor_port}")
        assert oms.wait_for(lambda r: r.get("event") == "logon")["address"] == f"127.0.0.1:{a.acceptor_port}"
        oms.send_line(order("F1"))
        acked(oms, "F1")
        first = venue_conn(a, "F1")
        assert conn_pid(a, first) == a.proxy.pid

        a.proxy.stop(signal.SIGKILL)
        oms.wait_for(lambda r: r.get("event") == "logout")
        start = oms.mark()
        oms.send_line(order("F-GAP"))  # no proxy up: kept in the OMS's store, resent on its next logon
        oms.wait_for(lambda r: r.get("dir") == "out" and r["fields"].get("11") == "F-GAP", start=start)
        take_over(a, b)
        logon = oms.wait_for(lambda r: r.get("event") == "logon", start=start, timeout=30)
        assert logon["address"] == f"127.0.0.1:{b.acceptor_port}"
        oms.send_line(order("F2"))
        acked(oms, "F2", start)
        second = venue_conn(a, "F2")
        assert second != first and conn_pid(a, second) == b.proxy.pid
        # a raw session follows too, its numbers going on (no reset): b answers its TestRequest
        assert raw.reconnect([a.acceptor_port, b.acceptor_port]) == b.acceptor_port
        assert raw.logon(reset=False).get(141) != "Y"
        raw.send("1", "112=AFTER")
        raw.expect(lambda m: m.get(35) == "0" and m.get(112) == "AFTER")

        # b's message log is written behind its sessions: wait for the resent order to be in it
        received = until(lambda: (r := oms_inbound(b)) and any(m.get(11) == "F-GAP" for m in r) and r, "F-GAP logged")
        logons = [m for m in received if m.get(35) == "A" and m.get(49) == "OMS1"]
        assert logons and int(logons[-1][34]) > 2 and logons[-1].get(141) != "Y", logons  # b's, after a's
        gap = [m for m in received if m.get(35) == "D" and m.get(11) == "F-GAP"]
        assert [m.get(43) for m in gap] == ["Y"], gap

        b.proxy.stop(signal.SIGKILL)
        start = oms.mark()
        take_over(b, a)
        logon = oms.wait_for(lambda r: r.get("event") == "logon", start=start, timeout=30)
        assert logon["address"] == f"127.0.0.1:{a.acceptor_port}"
        oms.send_line(order("F3"))
        acked(oms, "F3", start)
        assert conn_pid(a, venue_conn(a, "F3")) == a.proxy.pid
    finally:
        raw.close()
        b.close()
        a.close()


def test_venue_refuses_a_second_logon_while_the_first_connection_is_up(tmp_path):
    """A second connection logging on as the proxy's venue session while the proxy is logged on is
    closed by the venue simulator without an answer (quickfix's acceptor: the session is taken); the
    proxy's connection goes on and its orders are tagged with its connection."""
    a, b = pair_of_plain_proxies(tmp_path)
    try:
        oms = a.connect("oms1")
        oms.send_line(order("V1"))
        acked(oms, "V1")
        first = venue_conn(a, "V1")

        intruder = RawFix(a.venue_port, "FIXPROXY", "VENUE")
        try:
            mark = a.venue.mark()
            intruder.send("A", "98=0|108=30")
            assert intruder.read(3.0) is None  # no Logon, no Logout: the connection is just closed
            assert intruder.closed()
        finally:
            intruder.close()
        refused = a.venue.wait_for(lambda r: r.get("event") == "refused", start=mark)
        assert refused["conn"] != first and refused["session"] == "FIX.4.4:VENUE->FIXPROXY"

        oms.send_line(order("V2"))
        acked(oms, "V2")
        assert venue_conn(a, "V2") == first
        assert not any(r.get("event") in ("logout", "disconnect") and r.get("conn") == first for r in a.venue.lines)
    finally:
        b.close()
        a.close()
