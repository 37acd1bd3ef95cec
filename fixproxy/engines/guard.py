"""Bounds at the proxy's edges, shared by both engines: slow venues and connections that never log on.

``VenueWatch`` follows one venue connection: the bytes handed towards it, what its TCP has
acknowledged (``tcp_acked``), the orders not yet acknowledged and when they were written, and
whether the venue answers. It decides; the engine acts, through the journal like any other input
(a venue marked down is a ``SessionDown``, an order too old to leave a ``VenueSendFailed``).

``PendingLimits`` bounds the connections that have not logged on yet, in total and per address;
``PreLogon`` keeps one such connection's part (its place in the bounds, its Logon timer and byte
count) and says why it closes it, in the same words on both engines.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import ctypes.util
import resource
import socket
import struct
from collections.abc import Callable, Hashable
from typing import Any, Generic, Protocol, TypeVar

C = TypeVar("C", bound=Hashable)  # a pending connection, as the engine keeps it

#: Offset of ``tcpi_bytes_acked`` (u64) in Linux's ``struct tcp_info`` (Linux 4.1 and later).
_TCPI_BYTES_ACKED = 120
_TCP_INFO_LEN = 128


def tcp_acked(sock: socket.socket) -> int | None:
    """Bytes of the stream the peer's TCP has acknowledged (None when the kernel cannot say)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except OSError:
        return None
    if len(info) < _TCPI_BYTES_ACKED + 8:
        return None
    acked = struct.unpack_from("Q", info, _TCPI_BYTES_ACKED)[0]
    return max(acked - 1, 0)  # the SYN counts as one byte


_libc = None


def reset(fd: int) -> bool:
    """Abort a TCP connection at once (RST; what its send queue holds is dropped, never sent),
    without closing the descriptor, which stays its owner's: ``connect(AF_UNSPEC)`` (Linux)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    addr = (ctypes.c_ubyte * 16)()  # sockaddr with sa_family = AF_UNSPEC (0)
    return _libc.connect(fd, addr, 16) == 0


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft limit of open files to the hard limit (idle connections must not use up the
    descriptors the OMS sessions and the HTTP API need); returns (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft, hard


class Verdict:
    """What ``VenueWatch.check`` asks the engine to do."""

    __slots__ = ("late", "down", "up", "probe", "reason")

    def __init__(self) -> None:
        self.late: list[str] = []  # ClOrdIDs that would leave too late: reset the connection, refuse them
        self.down = False  # mark the venue down (new orders refused at once)
        self.up = False  # mark it up again
        self.probe = False  # send a TestRequest
        self.reason = ""


class VenueWatch:
    """Backpressure and liveness of one venue session (engine-neutral; times are monotonic seconds)."""

    def __init__(
        self, name: str, max_unsent_bytes: int, max_age_s: float, answer_timeout_s: float, margin_s: float = 0.1
    ):
        self.name = name
        self.max_unsent = max_unsent_bytes
        self.max_age = max_age_s
        self.answer_timeout = answer_timeout_s
        self.margin = margin_s  # the check's period: a check this early still refuses in time
        self.connected = False
        self.handed = 0  # bytes handed towards the venue on this connection
        self.acked = 0
        self.orders: collections.deque[tuple[int, str, float]] = collections.deque()  # (end, ClOrdID, written)
        self.awaiting_since: float | None = None  # an order went out and nothing came back since
        self.probe_sent: float | None = None  # our TestRequest is unanswered since
        self.marked_down = False  # this watch marked the venue down (it marks it up again)
        self.heard = False  # the venue sent something since it was marked down
        self.refused_late: set[str] = set()  # refused here: not refused again when the venue asks for them

    def connect(self, now: float) -> None:
        self.connected = True
        self.handed = self.acked = 0
        self.orders.clear()
        self.awaiting_since = self.probe_sent = None
        self.marked_down = False

    def disconnect(self) -> None:
        self.connected = False
        self.orders.clear()
        self.marked_down = False

    def wrote(self, nbytes: int) -> None:
        self.handed += nbytes

    def order(self, cl_ord_id: str, now: float) -> None:
        """An order message (its bytes already counted by ``wrote``) went to the venue."""
        self.orders.append((self.handed, cl_ord_id, now))
        if self.awaiting_since is None:
            self.awaiting_since = now

    def received(self, now: float) -> None:
        self.awaiting_since = self.probe_sent = None
        self.heard = True

    @property
    def unsent(self) -> int:
        return self.handed - self.acked

    def over(self) -> bool:
        """A cheap test after a write: are the bytes handed since the last check past the bound?"""
        return self.handed - self.acked > self.max_unsent

    def check(self, now: float, acked: int | None) -> Verdict:
        v = Verdict()
        if not self.connected:
            return v
        if acked is not None:
            self.acked = acked
            orders = self.orders
            while orders and orders[0][0] <= acked:
                orders.popleft()
            if orders and now - orders[0][2] >= self.max_age - self.margin:
                v.late = [o[1] for o in orders]
                v.reason = (
                    f"{len(orders)} order(s) not taken by the venue within {self.max_age * 1000:.0f} ms "
                    f"({self.unsent} bytes unsent)"
                )
                self.refused_late.update(v.late)
                if len(self.refused_late) > 100_000:
                    self.refused_late = set(v.late)
                orders.clear()
                return v
        if (
            self.awaiting_since is not None
            and self.probe_sent is None
            and now - self.awaiting_since >= self.answer_timeout
        ):
            v.probe = True
            self.probe_sent = now
        congested = acked is not None and self.unsent > self.max_unsent
        silent = self.probe_sent is not None and now - self.probe_sent >= self.answer_timeout
        if (congested or silent) and not self.marked_down:
            self.marked_down = v.down = True
            self.heard = False
            v.reason = (
                f"{self.unsent} bytes unsent, over the bound of {self.max_unsent}"
                if congested
                else f"no answer to a TestRequest within {self.answer_timeout * 1000:.0f} ms"
            )
        elif self.marked_down and not silent and self.heard and self.unsent <= self.max_unsent // 2:
            # Up again once the venue has answered since and taken most of what it was sent (not on
            # a moment's ack of bytes already in flight while it still reads nothing).
            self.marked_down = False
            v.up = True
            v.reason = "the venue takes and answers messages again"
        return v


class PendingLimits(Generic[C]):
    """Connections that have not logged on: at most ``total``, and ``per_address`` from one address.

    Past a bound the oldest pending connection of the busiest address is closed, not the new one:
    a flood of idle connections then cannot keep a configured session (which sends its Logon at
    once) from logging on, and cannot hold more than the bound of sockets and buffers.
    """

    def __init__(self, total: int, per_address: int):
        self.total = total
        self.per_address = per_address
        self.by_address: dict[str, dict[C, None]] = {}  # address -> pending connections, oldest first
        self.count = 0
        self.evicted = 0

    def admit(self, conn: C, address: str) -> list[C]:
        """Count ``conn`` as pending; returns the connections to close to stay within the bounds."""
        mine = self.by_address.setdefault(address, {})
        mine[conn] = None
        self.count += 1
        out = []
        if len(mine) > self.per_address:
            out.append(self._pop(address))
        if self.count > self.total:
            busiest = max(self.by_address, key=lambda a: len(self.by_address[a]))
            out.append(self._pop(busiest))
        self.evicted += len(out)
        return out

    def _pop(self, address: str) -> C:
        conns = self.by_address[address]
        conn = next(iter(conns))
        self.done(conn, address)
        return conn

    def done(self, conn: C, address: str) -> None:
        """``conn`` logged on or closed: no longer pending."""
        conns = self.by_address.get(address)
        if conns is not None and conns.pop(conn, 0) is None:
            self.count -= 1
            if not conns:
                del self.by_address[address]


class PreLogonBounds(Protocol):
    """The ``[acceptor]`` bounds on connections that have not logged on, as an engine keeps them."""

    pending: PendingLimits[PreLogon]
    logon_timeout_s: float
    max_logon_bytes: int


class PreLogon:
    """One accepted connection until its Logon completes (both engines' acceptors).

    ``admit`` counts it in ``bounds.pending`` (closing the oldest pending connections past the
    bounds) and starts the Logon timer; ``read`` counts the bytes read before the Logon; ``done``
    ends it (logged on or closed). A connection it closes gets ``report(why)`` and then ``close()``,
    which must abort the connection and call ``done``.
    """

    __slots__ = ("bounds", "peer", "address", "received", "timer", "close", "report")

    def __init__(
        self,
        bounds: PreLogonBounds,
        peername: tuple[Any, ...] | None,
        close: Callable[[], None],
        report: Callable[[str], None],
    ) -> None:
        self.bounds = bounds
        self.peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        self.address: str | None = str(peername[0]) if peername else "?"  # None once done
        self.received = 0
        self.timer: asyncio.TimerHandle | None = None
        self.close = close
        self.report = report

    def admit(self) -> None:
        """Count this connection as pending and start its Logon timer (needs a running event loop)."""
        assert self.address is not None, "admitted after done"
        for old in self.bounds.pending.admit(self, self.address):
            old.address = None  # already out of bounds.pending
            old._refuse(f"connection from {old.peer} closed before its Logon: too many connections not logged on")
        if self.address is not None:
            self.timer = asyncio.get_running_loop().call_later(self.bounds.logon_timeout_s, self._timeout)

    def read(self, nbytes: int) -> bool:
        """Count bytes read before the Logon; past ``max_logon_bytes`` the connection is closed (False)."""
        self.received += nbytes
        if self.received <= self.bounds.max_logon_bytes:
            return True
        self._refuse(f"connection from {self.peer} closed: over {self.bounds.max_logon_bytes} bytes before its Logon")
        return False

    def done(self) -> None:
        """Logged on or closed: no longer pending, no timer (a second call does nothing)."""
        if self.address is not None:
            self.bounds.pending.done(self, self.address)
            self.address = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timeout(self) -> None:
        self.timer = None
        if self.address is not None:
            self._refuse(f"connection from {self.peer} closed: no Logon within {self.bounds.logon_timeout_s:g} s")

    def _refuse(self, why: str) -> None:
        self.report(why)
        self.close()
