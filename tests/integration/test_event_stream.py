"""The event stream (GET /api/v1/events) with many clients, over real HTTP against a running proxy: 300
viewer streams connected while orders are answered and every stream gets the decisions; a client over
[admin] max_stream_clients is answered 503; a client that stops reading is dropped while the others and
the order path carry on. (Nothing here is timed: the figures are in python -m bench streams.)"""

from __future__ import annotations

import json
import socket
import time

import pytest

from .harness import TOKENS, Stack
from .rawfix import RawFix

STREAMS = 300


class Sse:
    """A raw HTTP/1.1 client of the event stream: one socket, chunked transfer decoded by hand."""

    def __init__(self, port: int, token: str = TOKENS["viewer"], rcvbuf: int = 0):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(20)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(
            f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        self.raw = b""
        self.text = b""  # the body, de-chunked
        self.ended = False
        self.status = 0
        self.error: dict = {}

    def start(self) -> int:
        """Read the response's head (and for an error, its JSON body); returns the status."""
        while b"\r\n\r\n" not in self.raw:
            self._recv()
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        self.status = int(head.split()[1])
        if self.status != 200:
            length = int(
                next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            )
            while len(self.raw) < length:
                self._recv()
            self.error = json.loads(self.raw[:length])
        return self.status

    def _recv(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            self.ended = True
            raise EOFError("the proxy closed the stream")
        self.raw += data

    def _dechunk(self) -> None:
        while True:
            line, sep, rest = self.raw.partition(b"\r\n")
            if not sep:
                return
            size = int(line, 16)
            if size == 0:
                self.ended = True
                self.raw = b""
                return
            if len(rest) < size + 2:
                return
            self.text += rest[:size]
            self.raw = rest[size + 2 :]

    def events(self) -> list[tuple[str, dict]]:
        """Every complete event read so far: (event name, data)."""
        out = []
        for block in self.text.split(b"\n\n"):
            lines = dict(line.split(b": ", 1) for line in block.split(b"\n") if line and not line.startswith(b":"))
            if b"event" in lines and b"data" in lines:
                out.append((lines[b"event"].decode(), json.loads(lines[b"data"])))
        return out

    def read_until(self, predicate, timeout: float = 20.0) -> list[tuple[str, dict]]:
        deadline = time.monotonic() + timeout
        while True:
            self._dechunk()
            events = self.events()
            if predicate(events):
                return events
            if self.ended or time.monotonic() > deadline:
                raise AssertionError(f"stream ended or timed out with {len(events)} events: {events[-3:]}")
            self._recv()

    def drain(self, timeout: float = 30.0) -> bool:
        """Read until the proxy ends the stream (closes or resets the connection): True if it did."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self._recv()
        except (EOFError, ConnectionResetError):
            return True
        return False

    def close(self) -> None:
        self.sock.close()


def decided(cl_ids: set[str]):
    return lambda events: cl_ids <= {d["cl_ord_id"] for kind, d in events if kind == "decision"}


@pytest.fixture
def oms(request):
    clients: list[RawFix] = []

    def make(stack: Stack) -> RawFix:
        c = RawFix(stack.acceptor_port, "OMS1")
        c.logon()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def test_300_streams_get_every_decision_while_orders_are_answered_and_one_more_is_refused_503(fresh_stack, oms):
    """300 viewer streams connected (the cap): orders are still acknowledged and refused as usual, each
    stream receives the decision of every order; a 301st stream is answered 503 with a JSON error naming
    [admin] max_stream_clients; once a stream leaves, a new one is let in."""
    stack = fresh_stack(behaviours={"MSFT": "ack"}, admin_extra=f"max_stream_clients = {STREAMS}")
    streams = [Sse(stack.http_port) for _ in range(STREAMS)]
    try:
        assert all(s.start() == 200 for s in streams)
        over = Sse(stack.http_port)
        assert over.start() == 503 and "max_stream_clients" in over.error["error"]
        over.close()

        client = oms(stack)
        ids = {f"S{i}" for i in range(6)}
        for i, cl in enumerate(sorted(ids)):
            qty = "20000" if i % 3 == 2 else "10"  # every third is over max_order_qty: refused
            client.send("D", f"11={cl}|55=MSFT|54=1|38={qty}|40=2|44=410|60=20240101-00:00:00")
        answers = {}
        while len(answers) < len(ids):
            m = client.expect(lambda m: m.get(35) in ("8", "j") and (m.get(11) or m.get(379)) in ids)
            answers[m.get(11) or m.get(379)] = m.get(35)
        assert sorted(answers.values()) == ["8"] * 4 + ["j"] * 2

        for s in streams:
            events = s.read_until(decided(ids))
            verdicts = {
                d["cl_ord_id"]: d["accepted"] for kind, d in events if kind == "decision" and d["cl_ord_id"] in ids
            }
            assert sum(verdicts.values()) == 4

        streams.pop().close()
        again = Sse(stack.http_port)
        deadline = time.monotonic() + 10
        while again.start() == 503 and time.monotonic() < deadline:  # the proxy notices the close on its next write
            again.close()
            time.sleep(0.2)
            again = Sse(stack.http_port)
        assert again.status == 200
        streams.append(again)
    finally:
        for s in streams:
            s.close()


def test_stream_that_stops_reading_is_dropped_while_others_and_orders_continue(fresh_stack, oms):
    """A client that stops reading is dropped once [admin] stream_queue items wait for it (logged, with a
    last "dropped" event written to it); a client that reads gets every decision, and every order is
    answered."""
    stack = fresh_stack(admin_extra="stream_queue = 20")
    stalled = Sse(stack.http_port, rcvbuf=4096)
    reader = Sse(stack.http_port)
    try:
        assert stalled.start() == 200 and reader.start() == 200
        client = oms(stack)
        start = stack.proxy.mark()
        sent: set[str] = set()
        dropped = False
        for batch in range(40):
            ids = {f"B{batch}-{i}" for i in range(100)}
            for cl in sorted(ids):  # over max_order_qty: each refused at once, each a decision on the stream
                client.send("D", f"11={cl}|55=AAPL|54=1|38=20000|40=2|44=190|60=20240101-00:00:00")
            last = f"B{batch}-99"
            client.expect(lambda m, last=last: m.get(35) == "j" and m.get(379) == last)
            sent |= ids
            reader.read_until(decided(ids))
            if any(r.get("event") == "event_stream_client_dropped" for r in stack.proxy.lines[start:]):
                dropped = True
                break
        assert dropped, "the stalled client was never dropped"
        record = stack.proxy.wait_for(lambda r: r.get("event") == "event_stream_client_dropped", start=start)
        assert record["token_name"] == "desk-viewer" and record["queued"] > 20

        # The order path and the reading client carry on after the drop.
        ids = {f"AFTER-{i}" for i in range(20)}
        for cl in sorted(ids):
            client.send("D", f"11={cl}|55=AAPL|54=1|38=20000|40=2|44=190|60=20240101-00:00:00")
        client.expect(lambda m: m.get(35) == "j" and m.get(379) == "AFTER-19")
        reader.read_until(decided(ids))
        assert decided(sent)(reader.events())

        # The stalled client, reading at last, finds its stream ended (its last event if it got that far).
        assert stalled.drain()
        stalled._dechunk()
        events = stalled.events()
        assert len(events) < len(sent) + len(ids)
        kinds = [kind for kind, _ in events]
        assert set(kinds) <= {"decision", "notice", "dropped"}, set(kinds)
        assert "dropped" not in kinds[:-1]
        if kinds[-1:] == ["dropped"]:
            assert events[-1][1]["detail"].startswith("dropped: too slow")
    finally:
        stalled.close()
        reader.close()
