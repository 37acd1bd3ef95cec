"""The edge bounds of engines/guard.py (slow venues, connections that never log on) and the native
connection's pre-logon buffer bound, in-process."""

from __future__ import annotations

import asyncio
import socket
import time

from fixproxy.engines.guard import PendingLimits, PreLogon, VenueWatch, tcp_acked
from fixproxy.engines.native.connection import Connection


def watch(**kw) -> VenueWatch:
    w = VenueWatch("sim", kw.get("max_unsent", 1000), kw.get("max_age", 1.0), kw.get("answer", 0.5), margin_s=0.1)
    w.connect(0.0)
    return w


def test_orders_unacknowledged_at_max_age_are_refused_late():
    """Orders the venue's TCP has not acknowledged by their maximum age are named for refusal, once."""
    w = watch()
    w.wrote(100)
    w.order("A", 0.0)
    w.wrote(100)
    w.order("B", 0.2)
    assert w.check(0.5, 100).late == []  # A left (acknowledged), B is young
    v = w.check(1.15, 100)
    assert v.late == ["B"] and "B" in w.refused_late
    assert w.check(2.0, 100).late == []  # refused once


def test_orders_acknowledged_in_time_are_never_refused():
    """Every order acknowledged before its age: nothing refused, however late the check."""
    w = watch()
    for i in range(5):
        w.wrote(50)
        w.order(f"O{i}", 0.0)
    assert w.check(10.0, 250).late == []


def test_unsent_bytes_over_the_bound_mark_down_and_up_only_after_an_answer():
    """Past max_unsent the venue is marked down; it is marked up once it has answered and taken
    most of it, not on acknowledgements alone."""
    w = watch(max_unsent=1000, max_age=100.0)
    w.wrote(3000)
    assert w.check(0.1, 0).down
    assert not w.check(0.2, 3000).up  # everything taken, but nothing heard from the venue yet
    w.received(0.3)
    assert w.check(0.4, 3000).up


def test_unanswered_test_request_marks_down_until_the_venue_answers():
    """An order and then silence: a TestRequest after answer_timeout, marked down when it stays unanswered."""
    w = watch(answer=0.5)
    w.wrote(10)
    w.order("A", 0.0)
    assert w.check(0.1, 10).probe is False
    v = w.check(0.6, 10)
    assert v.probe and not v.down
    assert w.check(1.2, 10).down
    w.received(1.3)
    assert w.check(1.4, 10).up


def test_pending_limits_close_the_oldest_of_the_busiest_address():
    """Past the per-address bound the oldest connection of that address goes; past the total, the
    oldest of the busiest address: a new connection (a configured OMS) is always admitted."""
    p = PendingLimits(total=4, per_address=2)
    assert p.admit("a1", "A") == [] and p.admit("a2", "A") == []
    assert p.admit("a3", "A") == ["a1"]
    assert p.admit("b1", "B") == [] and p.admit("c1", "C") == []
    assert p.admit("d1", "D") == ["a2"]
    assert p.count == 4
    p.done("b1", "B")
    p.done("b1", "B")  # twice: counted once
    assert p.count == 3 and "B" not in p.by_address


def test_tcp_acked_counts_what_the_peer_took():
    """TCP_INFO's bytes_acked, as read here, is the number of bytes sent once the peer has them."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        c = socket.create_connection(srv.getsockname())
        s, _ = srv.accept()
        with c, s:
            c.sendall(b"x" * 5000)
            got = 0
            while got < 5000:
                got += len(s.recv(65536))
            for _ in range(100):
                if tcp_acked(c) == 5000:
                    break
                time.sleep(0.01)
            assert tcp_acked(c) == 5000


class _Transport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.aborted = False

    def get_extra_info(self, name, default=None):
        return ("10.0.0.9", 4242) if name == "peername" else default

    def abort(self):
        self.aborted = True

    def close(self):
        self.aborted = True

    def write(self, data):
        pass


class _Bounds:
    def __init__(self, total=10, per_address=10, logon_timeout_s=60.0, max_logon_bytes=4096):
        self.pending = PendingLimits(total, per_address)
        self.logon_timeout_s = logon_timeout_s
        self.max_logon_bytes = max_logon_bytes


def test_prelogon_closes_the_oldest_at_the_bounds_past_the_bytes_and_at_the_timeout_saying_why():
    """Each connection PreLogon closes is reported in the sentence both engines record, then closed;
    one that logged on in time is not."""
    said, closed = [], []

    async def run():
        bounds = _Bounds(per_address=2, logon_timeout_s=0.05, max_logon_bytes=100)

        def connect(port):
            def close():
                closed.append(port)
                pre.done()

            pre = PreLogon(bounds, ("10.0.0.1", port), close, said.append)
            pre.admit()
            return pre

        connect(1), connect(2)
        third = connect(3)
        assert closed == [1]
        assert said == ["connection from 10.0.0.1:1 closed before its Logon: too many connections not logged on"]
        assert third.read(100) and not third.read(1)
        assert closed == [1, 3] and said[-1] == "connection from 10.0.0.1:3 closed: over 100 bytes before its Logon"
        connect(4).done()  # logged on: not pending, no timer
        assert bounds.pending.count == 1
        await asyncio.sleep(0.2)
        assert closed == [1, 3, 2] and said[-1] == "connection from 10.0.0.1:2 closed: no Logon within 0.05 s"
        return bounds.pending.count

    assert asyncio.run(run()) == 0 and len(said) == 3


def test_native_connection_announcing_a_megabyte_holds_a_few_kib_at_most():
    """A first message announcing 9=1000000 is not buffered up to its size: past max_logon_bytes
    the connection is aborted and its buffer stays within the bound."""

    async def run():
        limits = _Bounds()
        conn = Connection(lambda *a: None, limits=limits)
        t = _Transport()
        conn.connection_made(t)
        assert limits.pending.count == 1
        conn.data_received(b"8=FIX.4.4\x019=1000000\x01")
        for _ in range(100):
            if t.aborted:
                break
            conn.data_received(b"x" * 1024)
        held = len(conn.framer.buf)
        conn.connection_lost(None)
        return t.aborted, held, limits.pending.count

    aborted, held, pending = asyncio.run(run())
    assert aborted and held <= 4096 and pending == 0
