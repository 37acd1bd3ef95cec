"""The quickfix engine's front door: the bounds quickfix's acceptor does not have.

quickfix's C++ acceptor keeps a connection that never logs on for ever, buffers whatever BodyLength
(9) a first message announces, and binds every interface. So the proxy accepts OMS and risk-desk
connections itself, on the configured address and port, with the native engine's bounds (a
guard.PreLogon per connection: ``[acceptor] logon_timeout_s``, ``max_logon_bytes``,
``max_connections``, ``max_connections_per_address``): a connection is relayed
to quickfix, listening on loopback, only once its first message is a whole Logon for a configured
session, and counts as logged on once quickfix answers with a Logon. After that every byte is
relayed both ways as it comes, on the event loop's thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from ...config import AcceptorSection
from ..guard import PendingLimits, PreLogon

#: How much a relayed direction may hold unsent before it stops reading the other side.
_HIGH_WATER = 256 << 10


def _first_message(buf: bytes | bytearray) -> tuple[int, dict[int, bytes]] | None:
    """The end of the first whole message in ``buf`` and its header fields, or None if incomplete."""
    end = buf.find(b"\x0110=")
    if end < 0:
        return None
    stop = buf.find(b"\x01", end + 4)
    if stop < 0:
        return None
    fields: dict[int, bytes] = {}
    for part in bytes(buf[:stop]).split(b"\x01"):
        tag, _, value = part.partition(b"=")
        if tag.isdigit() and int(tag) in (8, 35, 49, 56) and int(tag) not in fields:
            fields[int(tag)] = value
    return stop + 1, fields


class Door:
    """Accepts on the configured port and relays each connection that logs on to quickfix."""

    def __init__(
        self,
        acceptor: AcceptorSection,
        upstream_port: int,
        sessions: set[tuple[str, str, str]],
        on_refused: Callable[[str], None],
    ):
        self.cfg = acceptor
        self.upstream_port = upstream_port
        self.sessions = sessions  # (BeginString, SenderCompID of the peer, our CompID) of configured sessions
        self.on_refused = on_refused
        # The bounds on connections that have not logged on (guard.PreLogonBounds).
        self.pending: PendingLimits[PreLogon] = PendingLimits(
            acceptor.max_connections, acceptor.max_connections_per_address
        )
        self.logon_timeout_s = acceptor.logon_timeout_s
        self.max_logon_bytes = acceptor.max_logon_bytes
        self.allowed = frozenset(acceptor.allowed_remote_addresses) or None
        self.server: asyncio.base_events.Server | None = None
        self.relays: set[_Client] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Client(self), self.cfg.host, self.cfg.port, backlog=1024)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


class _Client(asyncio.Protocol):
    """The OMS's side of one relayed connection."""

    transport: asyncio.Transport  # set by connection_made, which asyncio calls before anything else

    def __init__(self, door: Door):
        self.door = door
        self.upstream: _Upstream | None = None
        self.pre: PreLogon | None = None  # until quickfix answers the Logon
        self.peer = ""
        self.buf = bytearray()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # a TCP connection's
        door = self.door
        peer = transport.get_extra_info("peername")
        pre = PreLogon(door, peer, self.abort, door.on_refused)
        self.peer = pre.peer
        if door.allowed is not None and (peer is None or peer[0] not in door.allowed):
            door.on_refused(f"connection from {self.peer} refused: not in allowed_remote_addresses")
            transport.abort()
            return
        self.pre = pre
        pre.admit()

    def logged_on(self) -> None:
        """No longer a connection waiting for its Logon."""
        if self.pre is not None:
            self.pre.done()
            self.pre = None

    def abort(self) -> None:
        self.logged_on()
        if not self.closed:
            self.closed = True
            self.transport.abort()
            if self.upstream is not None:
                self.upstream.close()

    def data_received(self, data: bytes) -> None:
        up = self.upstream
        if up is not None and up.transport is not None:
            up.transport.write(data)
            return
        # Before the Logon reached quickfix: a few KiB at most, and the first message must be a Logon.
        self.buf += data
        if self.pre is not None and not self.pre.read(len(data)):
            return  # closed
        if up is not None:
            return  # quickfix's connection is being opened: the bytes go when it is
        first = _first_message(self.buf)
        if first is None:
            return
        _, fields = first
        key = tuple(fields.get(t, b"").decode("latin-1") for t in (8, 49, 56))
        if fields.get(35) != b"A" or key not in self.door.sessions:
            why = "the first message is not a Logon" if fields.get(35) != b"A" else "Logon of an unknown session"
            self.door.on_refused(f"connection from {self.peer} closed: {why}")
            self.abort()
            return
        up = self.upstream = _Upstream(self)
        asyncio.get_running_loop().create_task(self._connect(up))

    async def _connect(self, up: _Upstream) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: up, "127.0.0.1", self.door.upstream_port)
        except OSError as exc:
            self.door.on_refused(f"connection from {self.peer} closed: quickfix's acceptor cannot be reached ({exc})")
            self.abort()

    def upstream_made(self, up: _Upstream, transport: asyncio.Transport) -> None:
        if self.closed:
            up.close()
            return
        self.door.relays.add(self)
        transport.write(bytes(self.buf))
        self.buf = bytearray()

    def pause_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.resume_reading()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.logged_on()
        self.closed = True
        self.door.relays.discard(self)
        if self.upstream is not None:
            self.upstream.close()


class _Upstream(asyncio.Protocol):
    """quickfix's side of one relayed connection (a loopback connection to its acceptor)."""

    def __init__(self, client: _Client):
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # a TCP connection's
        transport.set_write_buffer_limits(high=_HIGH_WATER)
        self.client.transport.set_write_buffer_limits(high=_HIGH_WATER)
        self.client.upstream_made(self, transport)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client.pre is not None and b"\x0135=A\x01" in data:
            client.logged_on()  # quickfix answered the Logon
        if not client.closed:
            client.transport.write(data)

    def pause_writing(self) -> None:
        if not self.client.closed:
            self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if not self.client.closed:
            self.client.transport.resume_reading()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        client = self.client
        if not client.closed:
            client.closed = True
            client.logged_on()
            client.transport.close()  # what quickfix sent last (a Logout) still goes out first
