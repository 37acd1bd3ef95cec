"""The TCP connection carrying a FIX session: the native engine's only transport code.

Frames the bytes read (``parse.Framer``), finds the session of an acceptor's first Logon by its
CompIDs, feeds each message and the time to the sans-IO ``Session`` and writes what it returns,
closes when told, and hands the session's events to the ``Owner`` (the engine). It also keeps the
bounds on connections that have not logged on (a guard.PreLogon), the write cork and a venue's
guard.VenueWatch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

from ...fix import parse
from ..guard import PreLogon, PreLogonBounds, VenueWatch
from .session import Close, Event, LoggedOn, LoggedOut, NotResent, Received, Session, Step
from .store import NO_CORK, Cork


class Owner(Protocol):
    """What the connection tells the engine (and where the engine finds a session's connection)."""

    links: dict[str, Connection]  # session name -> the connection carrying it

    def deliver(self, session: Session, raw: str, fields: dict[int, str], now: int) -> None: ...
    def session_up(self, session: Session) -> None: ...
    def session_down(self, session: Session) -> None: ...
    def not_resent(self, session: Session, cl_ord_ids: list[str]) -> None: ...
    def garbled(self, session: Session | None, why: str) -> None: ...
    def handler_failed(self, session: Session | None, where: str, exc: Exception, now: int) -> None: ...


class Connection(asyncio.Protocol):
    """One TCP connection: frames bytes, finds (acceptor) or knows (initiator) its session."""

    def __init__(
        self,
        resolve: Callable[[str, str, str], Session | None],
        session: Session | None = None,
        owner: Owner | None = None,
        allowed: Collection[str] | None = None,
        cork: Cork = NO_CORK,
        limits: PreLogonBounds | None = None,
        watch: VenueWatch | None = None,
    ):
        self.resolve = resolve  # (begin_string, their CompID, our CompID) -> Session | None
        self.session = session
        self.owner = owner
        self.allowed = allowed
        self.framer = parse.Framer()
        self.cork = cork
        self.out: list[bytes] = []
        self.transport: Any = None  # asyncio.Transport, or a test's stand-in with write/close/abort
        self.closed = False
        self.lost = asyncio.get_running_loop().create_future()  # done when the connection closes
        # Acceptor side: the bounds on connections that have not logged on (from the engine), and
        # this connection's part in them until its Logon completes.
        self.limits = limits
        self.pre: PreLogon | None = None
        self.watch = watch  # initiator side: the venue's guard.VenueWatch
        self.sock: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if self.allowed is not None and (peer is None or peer[0] not in self.allowed):
            transport.abort()
            return
        if self.limits is not None and self.session is None:
            self.pre = PreLogon(self.limits, peer, self.abort, self._refused)
            self.pre.admit()
            return
        if self.session is not None:
            if self.watch is not None:
                self.sock = transport.get_extra_info("socket")
                self.watch.connect(time.monotonic())
            self._link(self.session)
            now = time.time_ns()
            self.apply(self.session, self.session.connect(now), now)

    def _link(self, session: Session) -> None:
        self.session = session
        if self.owner is not None:
            self.owner.links[session.name] = self

    def _refused(self, why: str) -> None:
        if self.owner is not None:
            self.owner.garbled(None, why)

    def _logged_on(self) -> None:
        """No longer a connection waiting for its Logon."""
        if self.pre is not None:
            self.pre.done()
            self.pre = None

    def abort(self) -> None:
        """Close at once, dropping what is unsent (a connection that never logged on, or a venue
        connection whose unsent orders became too old to send)."""
        self._logged_on()
        if not self.closed:
            self.closed = True
            self.out.clear()
            self.transport.abort()

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if self.watch is not None:
            self.watch.wrote(len(data))
        cork = self.cork
        if cork.depth:
            self.out.append(data)
            cork.dirty[self] = None
        elif cork.gate is not None and not cork.gate():
            self.abort()
        else:
            self.transport.write(data)

    def flush(self) -> None:
        if self.out:
            if not self.closed:
                gate = self.cork.gate
                if gate is not None and not gate():
                    self.abort()
                    return
                self.transport.write(b"".join(self.out))
            self.out.clear()

    def close(self) -> None:
        if not self.closed:
            self.flush()  # what was answered before closing (a Logout) still goes out
            self.closed = True
            self.transport.close()

    def apply(self, session: Session, step: Step, now: int) -> None:
        """Write what the session returned, act on its events, and resume it after each Received."""
        events, out = step
        while True:
            if out:
                self.write(out)
            for event in events:
                self._event(session, event, now)
            if not session.paused:
                return
            events, out = session.resume(now)

    def _event(self, session: Session, event: Event, now: int) -> None:
        owner = self.owner
        if isinstance(event, Close):
            self.close()
        elif owner is None:
            return
        elif isinstance(event, Received):
            owner.deliver(session, event.raw, event.fields, now)
        elif isinstance(event, LoggedOn):
            owner.session_up(session)
        elif isinstance(event, LoggedOut):
            owner.session_down(session)
        elif isinstance(event, NotResent):
            owner.not_resent(session, list(event.cl_ord_ids))

    def data_received(self, data: bytes) -> None:
        if self.pre is not None and not self.pre.read(len(data)):  # not logged on yet: a few KiB at most
            return  # closed
        frames = self.framer.feed(data)
        if self.framer.garbled:
            for why in self.framer.garbled:
                if self.owner is not None:
                    self.owner.garbled(self.session, why)
            self.framer.garbled.clear()
            if self.session is None or not self.session.logged_on:
                self.close()  # garbled before the Logon: quickfix drops the connection too
                return
        if not frames:
            return
        if self.watch is not None:
            self.watch.received(time.monotonic())
        if self.pre is not None:
            self._pending_frames(frames)
            return
        # The first message of a read is answered at once: its writes go out as it is handled, so
        # the peer works on them while this side records what it did (an ack is not held back by the
        # fill that came in the same read). The messages after it (a backlog) are all handled before
        # anything more is written: then each socket gets one write for them, as a system call costs
        # more here than handling a message.
        cork = self.cork
        if cork.gate is not None and len(frames) > 1:
            # [ha]: every write first waits for the standby (a round trip in sync copy): one wait
            # for the whole read, not one for its first message and another for the rest.
            cork.hold()
            try:
                for frame in frames:
                    self._handle(frame)
            finally:
                cork.release()
            return
        self._handle(frames[0])
        if len(frames) > 1:
            cork.hold()
            try:
                for frame in frames[1:]:
                    self._handle(frame)
            finally:
                cork.release()

    def _handle(self, data: bytes) -> None:
        if self.closed:
            return
        now = time.time_ns()
        session = self.session
        try:
            if session is None:
                session = self._find_session(data, now)
                if session is None:
                    return
            self.apply(session, session.receive(data, now), now)
        except Exception as exc:  # noqa: BLE001 - one message's failure must not end the connection
            self._failed(exc, data, now)

    def _find_session(self, data: bytes, now: int) -> Session | None:
        """The session an acceptor's first message (a Logon) names by its CompIDs; None: closed."""
        raw = data.decode("latin-1")
        fields = parse.fields(raw)[0]
        if fields.get(35) != "A":
            if self.owner is not None:
                self.owner.garbled(None, "the first message on a connection is not a Logon")
            self.close()
            return None
        session = self.resolve(fields.get(8, ""), fields.get(49, ""), fields.get(56, ""))
        if session is None or session.connected:
            if self.owner is not None:
                why = "unknown session" if session is None else "session already connected"
                self.owner.garbled(None, f"Logon refused ({why}): {raw[:160]!r}")
            self.close()
            return None
        self._link(session)
        self.apply(session, session.connect(now), now)
        return session

    def _failed(self, exc: Exception, data: bytes, now: int) -> None:
        """A message whose handling raised: recorded by the owner (a notice and an alert), answered
        with a session Reject (373=99 "Other", 0 on FIX 4.2) if the session is logged on here, and
        the connection reads on (as the quickfix edge does)."""
        session = self.session
        if self.owner is not None:
            self.owner.handler_failed(session, "message handling", exc, now)
        if session is not None and session.logged_on:
            fields = parse.fields(data.decode("latin-1"))[0]
            self.write(session.failed(fields, type(exc).__name__, now))

    def _pending_frames(self, frames: list[bytes]) -> None:
        for frame in frames:
            self._handle(frame)
            if self.session is not None and self.session.logged_on:
                self._logged_on()
            if self.closed:
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self._logged_on()
        if self.watch is not None:
            self.watch.disconnect()
        self.closed = True
        if not self.lost.done():
            self.lost.set_result(None)
        session = self.session
        if session is None or not session.connected:
            return
        if self.owner is not None:
            if self.owner.links.get(session.name) is not self:
                return
            del self.owner.links[session.name]
        now = time.time_ns()
        for event in session.disconnected(now):
            self._event(session, event, now)
