"""Connections that never log on (issue 17 item 6), on both engines (quickfix behind the proxy's
front door): closed after ``[acceptor] logon_timeout_s``, a few KiB read at most before the Logon,
bounded in number in total and per address; a flood of idle sockets locks out neither a configured
OMS nor the HTTP API."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request

import pytest

from .harness import TOKENS, Stack, messages
from .rawfix import RawFix

LOGON_TIMEOUT_S = 2
ACCEPTOR = f"""logon_timeout_s = {LOGON_TIMEOUT_S}
max_logon_bytes = 4096
max_connections = 300
max_connections_per_address = 200"""
IDLE = 1100
HUGE = b"8=FIX.4.4\x019=1000000\x01"
PEER = re.compile(r"connection from 127\.0\.0\.1:\d+ closed")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, engine):
    s = Stack(tmp_path_factory.mktemp("limits"), acceptor_extra=ACCEPTOR)
    try:
        yield s
    finally:
        s.close()


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True once the proxy closes ``sock`` (EOF or reset) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True
    return False


def summary(stack: Stack) -> dict:
    request = urllib.request.Request(
        stack.api_url + "/summary", headers={"Authorization": f"Bearer {TOKENS['viewer']}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


def refusals(stack: Stack, start: int, text: str) -> list[dict]:
    return [
        r for r in stack.proxy.lines[start:] if r.get("event") == "connection_refused" and text in r.get("detail", "")
    ]


def test_idle_flood_locks_out_neither_the_oms_nor_the_http_api(stack):
    """1,100 idle sockets and five announcing 9=1000000 are open; a configured OMS still logs on and
    trades, the HTTP API answers, and every one of those sockets is closed by the proxy (the oldest
    at once past the bounds, the rest at the logon timeout)."""
    start = stack.proxy.mark()
    idle = [socket.create_connection(("127.0.0.1", stack.acceptor_port), timeout=10) for _ in range(IDLE)]
    huge = []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", stack.acceptor_port), timeout=10)
        s.sendall(HUGE)
        huge.append(s)
    try:
        oms = stack.connect("oms1")
        oms.send_line("35=D|11=FLOOD-1|55=AAPL|54=1|38=100|40=2|44=190")
        fill = oms.wait_for(messages(oms)(**{"35": "8", "11": "FLOOD-1", "39": "2"}))["fields"]
        assert fill["14"] == "100"
        assert {"name": "oms1", "up": True} in [
            {"name": s["name"], "up": s["up"]} for s in summary(stack)["sessions"]["oms"]
        ]
        still_open = [s for s in idle + huge if not closed_by_peer(s, LOGON_TIMEOUT_S + 8)]
        assert still_open == []
        assert refusals(stack, start, "closed before its Logon: too many connections not logged on")
        assert refusals(stack, start, f"closed: no Logon within {LOGON_TIMEOUT_S:g} s")
        # Both engines say it in the same words, naming the peer as address:port.
        assert all(PEER.match(r["detail"]) for r in refusals(stack, start, ""))
        # The OMS was never among those closed: it still trades.
        oms.send_line("35=D|11=FLOOD-2|55=AAPL|54=1|38=100|40=2|44=190")
        oms.wait_for(messages(oms)(**{"35": "8", "11": "FLOOD-2", "39": "2"}))
    finally:
        for s in idle + huge:
            s.close()


def test_announced_huge_logon_is_closed_at_the_byte_bound(stack):
    """A first message announcing 9=1000000 and sending on is closed once it passes max_logon_bytes,
    not buffered up to the size it announced."""
    start = stack.proxy.mark()
    s = socket.create_connection(("127.0.0.1", stack.acceptor_port), timeout=10)
    try:
        s.sendall(HUGE + b"x" * 3000)
        time.sleep(0.2)
        try:
            s.sendall(b"y" * 8000)
        except ConnectionError:
            pass
        assert closed_by_peer(s, LOGON_TIMEOUT_S + 8)
        stack.proxy.wait_for(
            lambda r: (
                r.get("event") == "connection_refused"
                and "closed: over 4096 bytes before its Logon" in r.get("detail", "")
                and PEER.match(r["detail"]) is not None
            ),
            start=start,
        )
    finally:
        s.close()


def test_first_message_not_a_logon_is_closed_and_the_session_logs_on_after(stack):
    """A connection whose first message is not a Logon is closed; a raw client then logs on as a
    configured session on a new connection."""
    bad = RawFix(stack.acceptor_port, "OMS2", begin="FIX.4.2")
    try:
        bad.send("D", "11=X|55=AAPL|54=1|38=1|40=1")
        assert bad.closed()
    finally:
        bad.close()
    good = RawFix(stack.acceptor_port, "OMS2", begin="FIX.4.2")
    try:
        assert good.logon()[35] == "A"
        good.send("5")
        good.expect(lambda m: m.get(35) == "5")
    finally:
        good.close()
