"""The simulators' connection tracking (fixproxy/sim/relay.py, sockets.py) on loopback sockets, with a
stand-in acceptor behind the relay that answers a Logon or closes the connection without a word."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from fixproxy.sim.process import free_port
from fixproxy.sim.relay import Relay, _first_message
from fixproxy.sim.sockets import own_connection_to, process_of

SOH = "\x01"


def fix(body: str, begin: str = "FIX.4.4") -> bytes:
    body = body.replace("|", SOH)
    head = f"8={begin}{SOH}9={len(body)}{SOH}"
    total = sum((head + body).encode()) % 256
    return (head + body + f"10={total:03d}{SOH}").encode()


LOGON = "35=A|34=1|49=FIXPROXY|56=VENUE|98=0|108=30|"
ANSWER = "35=A|34=1|49=VENUE|56=FIXPROXY|98=0|108=30|"


class Acceptor:
    """Answers the first Logon on each connection while ``answer`` is set, else closes it at once."""

    def __init__(self) -> None:
        self.answer = True
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        self.received: list[bytes] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            conn, _ = self.server.accept()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        data = conn.recv(65536)
        if not self.answer:
            conn.close()
            return
        conn.sendall(fix(ANSWER))
        while data:
            self.received.append(data)
            data = conn.recv(65536)
        conn.close()


@pytest.fixture
def relayed() -> Iterator[tuple[Relay, Acceptor, list[dict]]]:
    acceptor = Acceptor()
    events: list[dict] = []
    relay = Relay(free_port(), acceptor.port, lambda record: events.append(json.loads(json.dumps(record))))
    yield relay, acceptor, events
    relay.server.close()


def wait(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.01)
    raise AssertionError("not within the time allowed")


def test_first_message_reads_the_logon_tags_once_whole() -> None:
    """Tags 8, 35, 49 and 56 of the first message, None while it is not whole."""
    data = bytearray(fix(LOGON))
    assert _first_message(data[:-3]) is None
    assert _first_message(data) == {b"8": b"FIX.4.4", b"35": b"A", b"49": b"FIXPROXY", b"56": b"VENUE"}


def test_relay_numbers_connections_and_binds_the_session_to_the_one_logged_on(relayed) -> None:
    """A connection whose Logon is answered is bound to its session (named as the acceptor names it),
    its peer's process known; its bytes reach the acceptor; its close unbinds it."""
    relay, acceptor, events = relayed
    port = relay.server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(fix(LOGON))
    assert _first_message(bytearray(client.recv(65536)))[b"35"] == b"A"
    assert relay.session_conn("FIX.4.4:VENUE->FIXPROXY", wait_s=2) == 1
    connect = events[0]
    assert connect["event"] == "connect" and connect["conn"] == 1 and connect["peer_pid"] == os.getpid()
    client.sendall(fix("35=0|34=2|49=FIXPROXY|56=VENUE|"))
    wait(lambda: any(b"35=0" in chunk for chunk in acceptor.received))
    client.close()
    closed = wait(lambda: [e for e in events if e["event"] == "disconnect"])
    assert closed == [
        {"event": "disconnect", "conn": 1, "session": "FIX.4.4:VENUE->FIXPROXY", "logged_on": True, "closed_by": "peer"}
    ]
    assert relay.session_conn("FIX.4.4:VENUE->FIXPROXY") is None


def test_relay_reports_a_logon_closed_unanswered_as_refused(relayed) -> None:
    """A Logon the acceptor closes without answering (quickfix: the session is taken) is "refused",
    and the session stays bound to the connection logged on before."""
    relay, acceptor, events = relayed
    port = relay.server.getsockname()[1]
    first = socket.create_connection(("127.0.0.1", port))
    first.sendall(fix(LOGON))
    first.recv(65536)
    acceptor.answer = False
    second = socket.create_connection(("127.0.0.1", port))
    second.sendall(fix(LOGON))
    assert second.recv(65536) == b""  # closed without a word
    refused = wait(lambda: [e for e in events if e["event"] == "refused"])
    assert refused == [{"event": "refused", "conn": 2, "session": "FIX.4.4:VENUE->FIXPROXY"}]
    assert relay.session_conn("FIX.4.4:VENUE->FIXPROXY") == 1
    first.close()
    second.close()


def test_own_connection_to_names_the_address_this_process_is_connected_to() -> None:
    """Of two listening ports, the one this process holds a connection to; the peer's pid by ports."""
    listening = [socket.socket(), socket.socket()]
    for s in listening:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
    ports = [s.getsockname()[1] for s in listening]
    client = socket.create_connection(("127.0.0.1", ports[1]))
    try:
        assert own_connection_to(set(ports)) == f"127.0.0.1:{ports[1]}"
        assert process_of(client.getsockname()[1], ports[1]) == os.getpid()
        assert own_connection_to({free_port()}) is None
    finally:
        client.close()
        for s in listening:
            s.close()
