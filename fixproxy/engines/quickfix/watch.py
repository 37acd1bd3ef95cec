"""Backpressure of the venue sessions on the quickfix engine (the native engine's, native/bridge.py, alike).

quickfix queues whatever ``sendToTarget`` is given, without bound, and returns True while the
session is logged on, whether or not the venue reads: its socket writes happen on its own thread,
out of the proxy's sight. So the proxy counts the bytes it hands quickfix for each venue connection
(its own orders in ``_send``, quickfix's session messages in ``toAdmin``) and asks the kernel how
many of them the venue's TCP has acknowledged (TCP_INFO on the connection's socket, found in
/proc at Logon). The difference is what quickfix and the socket still hold. guard.VenueWatch
decides; a thread here acts, through the journal: a venue marked down or up is a SessionDown or
SessionUp; orders too old to leave are refused (VenueSendFailed "late") after the connection is
reset (RST, so what quickfix and the socket hold never reaches the venue).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterable

import quickfix as fix

from ...config import Venue
from ...core import events as ev
from ...fix.build import frame
from ..bridge import CoreBridge, SessionInfo
from ..guard import VenueWatch, reset, tcp_acked

#: How often each venue connection is checked (seconds).
WATCH_S = 0.1
_ORDER_TYPES = frozenset(("D", "G", "F"))


def find_socket(host: str, port: int) -> tuple[int, int] | None:
    """(descriptor, inode) of this process's established TCP connection to ``host``:``port`` (IPv4, Linux)."""
    try:
        want = f"{socket.inet_aton(socket.gethostbyname(host))[::-1].hex().upper()}:{port:04X}"
        inodes: dict[str, int] = {}
        for name in os.listdir("/proc/self/fd"):
            try:
                link = os.readlink(f"/proc/self/fd/{name}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes[link[8:-1]] = int(name)
        with open("/proc/net/tcp") as table:
            next(table)
            for line in table:
                parts = line.split()
                if parts[2] == want and parts[3] == "01" and parts[9] in inodes:
                    return inodes[parts[9]], int(parts[9])
    except (OSError, StopIteration, ValueError):
        return None
    return None


class _Venue:
    __slots__ = ("watch", "lock", "host", "port", "fd", "inode", "info")

    def __init__(self, watch: VenueWatch, host: str, port: int, info: SessionInfo):
        self.watch, self.host, self.port, self.info = watch, host, port, info
        self.lock = threading.Lock()
        self.fd: int | None = None
        self.inode = 0


class VenueWatching(CoreBridge):
    """QuickfixBridge's part that watches the venues: the hooks its callbacks call, and the thread that checks."""

    _watched: dict[str, _Venue]  # by SessionID string
    _closed: bool  # set by QuickfixBridge.close: the checking thread ends

    def watch_venues(self, venues: Iterable[Venue]) -> None:
        by_name = {info.name: info for info in self.sessions() if info.role == "venue"}
        self._watched = {}
        for v in venues:
            info = by_name[v.name]
            watch = VenueWatch(
                v.name, v.max_unsent_kb << 10, v.max_order_age_ms / 1000, v.answer_timeout_ms / 1000, margin_s=WATCH_S
            )
            sid: fix.SessionID = info.handle  # quickfix's SessionID (SessionInfo keeps any engine's handle)
            self._watched[sid.toString()] = _Venue(watch, v.host, v.port, info)
        self._watched_by_name = {w.info.name: w for w in self._watched.values()}

    def start_watch(self) -> None:
        threading.Thread(target=self._watch_loop, name="fixproxy-venue-watch", daemon=True).start()

    # ------------------------------------------------------------ hooks (quickfix threads)

    def _watch_out(self, message: fix.Message, sid: fix.SessionID) -> None:
        """toAdmin: a session message quickfix is about to write; a Logon starts a new connection."""
        venue = self._watched.get(sid.toString()) if getattr(self, "_watched", None) else None
        if venue is None:
            return
        raw = message.toString()
        with venue.lock:
            if message.getHeader().getField(35) == "A":
                venue.watch.connect(time.monotonic())
                venue.fd = None
            venue.watch.wrote(len(raw))

    def _watch_sent(self, info: SessionInfo, msg_type: str, body: list[tuple[int, str]], nbytes: int) -> None:
        """_send: an application message handed to quickfix for a venue."""
        venue = self._watched_by_name[info.name]
        with venue.lock:
            venue.watch.wrote(nbytes)
            if msg_type in _ORDER_TYPES:
                venue.watch.order(body[0][1], time.monotonic())

    def _watch_in(self, sid: fix.SessionID) -> None:
        """fromAdmin / fromApp: the venue sent something."""
        venue = self._watched.get(sid.toString()) if getattr(self, "_watched", None) else None
        if venue is not None:
            with venue.lock:
                venue.watch.received(time.monotonic())

    def _watch_logon(self, sid: fix.SessionID) -> None:
        venue = self._watched.get(sid.toString()) if getattr(self, "_watched", None) else None
        if venue is not None:
            found = find_socket(venue.host, venue.port)
            with venue.lock:
                venue.fd, venue.inode = found if found is not None else (None, 0)

    def _watch_logout(self, sid: fix.SessionID) -> None:
        venue = self._watched.get(sid.toString()) if getattr(self, "_watched", None) else None
        if venue is not None:
            with venue.lock:
                venue.fd = None
                venue.watch.disconnect()

    def _refused_late(self, venue_name: str, cl_ord_id: str) -> bool:
        venue = self._watched_by_name.get(venue_name) if getattr(self, "_watched", None) else None
        return venue is not None and cl_ord_id in venue.watch.refused_late

    # ------------------------------------------------------------ the checking thread

    def _watch_loop(self) -> None:
        while not self._closed:
            time.sleep(WATCH_S)
            for venue in self._watched.values():
                try:
                    self._check_venue(venue)
                except Exception as exc:  # noqa: BLE001 - one venue's check must not stop the others'
                    self.notice(ev.Notice("venue_watch_error", self.clock(), f"{venue.info.name}: {exc!r}"))

    def _check_venue(self, venue: _Venue) -> None:
        name = venue.info.name
        with venue.lock:
            if venue.fd is None:
                return
            try:
                dup = os.dup(venue.fd)
            except OSError:
                venue.fd = None
                return
            try:
                if os.fstat(dup).st_ino != venue.inode:
                    venue.fd = None  # quickfix closed it (the number may be another socket's now)
                    return
                sock = socket.socket(fileno=dup)
                dup = -1
                try:
                    verdict = venue.watch.check(time.monotonic(), tcp_acked(sock))
                    if verdict.late:
                        reset(sock.fileno())  # RST: what quickfix and the socket hold never reaches the venue
                        venue.fd = None
                finally:
                    sock.close()
            finally:
                if dup >= 0:
                    os.close(dup)
        now = self.clock()
        if verdict.late:
            self.notice(
                ev.Notice(
                    "venue_reset", now, f"{name}: {verdict.reason}; the connection was reset and the orders refused"
                )
            )
            self.submit(ev.SessionDown(name, self.clock()))  # down now, not when quickfix sees the reset
            for cl_ord_id in verdict.late:
                self.submit(ev.VenueSendFailed(name, cl_ord_id, self.clock(), "late"))
            return
        if verdict.probe:
            probe = frame(venue.info.begin_string, "1", [(112, f"TEST{now}")]).decode()  # a TestRequest
            fix.Session.sendToTarget(fix.Message(probe, False), venue.info.handle)
        if verdict.down:
            self.notice(ev.Notice("venue_backpressure", now, f"{name}: {verdict.reason}; new orders refused"))
            self.submit(ev.SessionDown(name, self.clock()))
        elif verdict.up:
            self.notice(ev.Notice("venue_backpressure_over", now, f"{name}: {verdict.reason}"))
            self.submit(ev.SessionUp(name, self.clock()))
