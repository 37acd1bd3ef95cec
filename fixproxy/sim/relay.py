"""A TCP relay in front of the venue simulator's quickfix acceptor, for telling connections apart
(``fixproxy sim venue --track-connections``): quickfix does not say which socket a message came on,
so the relay owns the public port, numbers each connection, forwards its bytes both ways to the
acceptor's private port, and reads only each side's first message (the Logon and the answer to it).

Lines printed (JSON): ``connect`` (conn, peer, peer_pid: the process holding the other end, when
/proc shows it), ``refused`` (conn, session: the acceptor closed a connection whose Logon it did not
answer, as quickfix does with a second Logon for a session already logged on), ``disconnect`` (conn,
session, logged_on, closed_by "peer" or "venue"). ``session_conn(session)``: the connection whose
Logon the acceptor answered, while it lasts (the simulator's ``logon`` line and message lines carry it).
"""

from __future__ import annotations

import itertools
import re
import socket
import threading
import time
from collections.abc import Callable

from .sockets import process_of

_END = re.compile(rb"\x0110=\d{3}\x01")
_TAG = re.compile(rb"(?:^|\x01)(8|35|49|56)=([^\x01]*)")


def _first_message(buffer: bytearray) -> dict[bytes, bytes] | None:
    """Tags 8, 35, 49 and 56 of the first whole message in ``buffer``, or None if none is whole yet."""
    end = _END.search(buffer)
    if end is None:
        return None
    return {tag: value for tag, value in _TAG.findall(bytes(buffer[: end.end()]))}


class _Conn:
    __slots__ = ("id", "client", "upstream", "peer", "session", "logged_on", "closed_by", "lock")

    def __init__(self, cid: int, client: socket.socket, upstream: socket.socket, peer: str) -> None:
        self.id = cid
        self.client = client
        self.upstream = upstream
        self.peer = peer
        self.session = ""  # quickfix's name for it, from the acceptor's side: FIX.4.4:VENUE->FIXPROXY
        self.logged_on = False
        self.closed_by = ""
        self.lock = threading.Lock()


class Relay:
    """Listens on 127.0.0.1:``port``; each connection is relayed to 127.0.0.1:``upstream_port``."""

    def __init__(self, port: int, upstream_port: int, emit: Callable[[dict], None]) -> None:
        self.upstream_port = upstream_port
        self.emit = emit
        self.ids = itertools.count(1)
        self.bound: dict[str, int] = {}  # session -> the connection logged on for it
        self.lock = threading.Lock()
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(16)
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    def session_conn(self, session: str, wait_s: float = 0.0) -> int | None:
        """The connection logged on for ``session`` (waiting up to ``wait_s`` for it to be known)."""
        deadline = time.monotonic() + wait_s
        while True:
            with self.lock:
                cid = self.bound.get(session)
            if cid is not None or time.monotonic() >= deadline:
                return cid
            time.sleep(0.002)

    def _accept(self) -> None:
        while True:
            try:
                client, (host, port) = self.server.accept()
            except OSError:  # the listening socket closed: the relay is done
                return
            cid = next(self.ids)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError as exc:
                self.emit({"event": "relay_error", "conn": cid, "detail": f"the acceptor is unreachable: {exc}"})
                client.close()
                continue
            upstream.settimeout(None)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(cid, client, upstream, f"{host}:{port}")
            pid = process_of(port, self.server.getsockname()[1])
            self.emit({"event": "connect", "conn": cid, "peer": conn.peer, "peer_pid": pid})
            threading.Thread(target=self._pump, args=(conn, True), name=f"relay-{cid}-in", daemon=True).start()
            threading.Thread(target=self._pump, args=(conn, False), name=f"relay-{cid}-out", daemon=True).start()

    def _pump(self, conn: _Conn, inbound: bool) -> None:
        """Copy one direction until it ends; the first message each way says who logs on."""
        source, sink = (conn.client, conn.upstream) if inbound else (conn.upstream, conn.client)
        head: bytearray | None = bytearray()
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                self._close(conn, "peer" if inbound else "venue")
                return
            if head is not None:
                head += data
                first = _first_message(head)
                if first is not None:
                    head = None
                    self._first(conn, first, inbound)
            try:
                sink.sendall(data)
            except OSError:
                self._close(conn, "venue" if inbound else "peer")
                return

    def _first(self, conn: _Conn, tags: dict[bytes, bytes], inbound: bool) -> None:
        if tags.get(b"35") != b"A":
            return
        if inbound:  # the peer's Logon: name the session as the acceptor does
            begin, sender, target = (tags.get(t, b"").decode("latin-1") for t in (b"8", b"49", b"56"))
            conn.session = f"{begin}:{target}->{sender}"
            return
        with conn.lock:
            conn.logged_on = True
        with self.lock:  # bound before the answer goes on, so before the peer can send anything else
            self.bound[conn.session] = conn.id

    def _close(self, conn: _Conn, by: str) -> None:
        with conn.lock:
            if conn.closed_by:
                return
            conn.closed_by = by
        with self.lock:
            if self.bound.get(conn.session) == conn.id:
                del self.bound[conn.session]
        for s in (conn.client, conn.upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        if conn.session and not conn.logged_on and by == "venue":
            self.emit({"event": "refused", "conn": conn.id, "session": conn.session})
        self.emit(
            {
                "event": "disconnect",
                "conn": conn.id,
                "session": conn.session,
                "logged_on": conn.logged_on,
                "closed_by": by,
            }
        )
