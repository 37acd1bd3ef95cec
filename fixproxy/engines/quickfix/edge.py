"""The quickfix edge: Application callbacks decode -> core -> send. Nothing else.

Threading: quickfix calls back on its own threads. The bridge's lock serialises ProxyCore.handle()
and the sends of its actions, so every message leaves in decision order. quickfix holds a
session's mutex while it calls toApp/toAdmin/onLogout, and sending needs that mutex: those
callbacks therefore never take the core lock (they hand their event to a worker thread).

Every call into the binding releases the interpreter lock, and while the other quickfix thread
waits for it each release can cost a thread switch: the callbacks on an order's path make as few
as they can. A received message is told apart by its header (read from the one ``toString``), not
by its SessionID; ``toApp`` of a message the proxy is sending itself is told apart by a
thread-local flag set in ``_send``, so it makes no call for an OMS and one (is the venue session
logged on) for a venue.
"""

from __future__ import annotations

import ctypes
import queue
import threading

import quickfix as fix

from ... import codec
from ...core import events as ev
from ..bridge import CoreBridge, SessionInfo


def frame(begin_string: str, msg_type: str, body: list[tuple[int, str]]) -> str:
    """A complete FIX message (BodyLength and CheckSum filled in); quickfix adds the session header."""
    text = f"35={msg_type}\x01" + "".join(f"{tag}={value}\x01" for tag, value in body)
    head = f"8={begin_string}\x019={len(text.encode())}\x01"
    return f"{head}{text}10={sum((head + text).encode()) % 256:03d}\x01"


def session_info(name: str, role: str, sid: fix.SessionID) -> SessionInfo:
    return SessionInfo(name, role, sid.getBeginString().getValue(), sid)


# quickfix's socket threads are not Python threads: each callback from one makes a new Python
# thread state (with a fresh frame stack, mapped and unmapped, and new thread-local dicts) and drops
# it on return, three times per order. One extra PyGILState_Ensure, made inside a callback, keeps the
# thread's state until the matching PyGILState_Release (both only ever called inside a callback,
# where the callback's own Ensure keeps the count above zero).
_PYGILSTATE_LOCKED = 0


class ProxyApplication(CoreBridge, fix.Application):
    """Bridges quickfix sessions and one ProxyCore (``SessionInfo.handle`` is the quickfix SessionID)."""

    def __init__(self, core, sessions: list[SessionInfo], on_record, **kwargs):
        fix.Application.__init__(self)
        CoreBridge.__init__(self, core, sessions, on_record, **kwargs)
        self._by_sid = {s.handle.toString(): s for s in sessions}
        # (BeginString, SenderCompID, TargetCompID) of a message received on the session.
        self._by_header = {(s.handle.getBeginString().getValue(), s.handle.getTargetCompID().getValue(),
                            s.handle.getSenderCompID().getValue()): s for s in sessions}
        self._sessions: dict[str, fix.Session] = {}
        self._local = threading.local()  # .sending: the SessionInfo this thread is sending on in _send
        self._kept_threads: set[int] = set()  # quickfix threads whose Python thread state is kept
        self._control: queue.SimpleQueue[ev.Event | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._control_loop, name="fixproxy-control", daemon=True)
        self._worker.start()

    # -------------------------------------------------------------- quickfix callbacks

    def onCreate(self, sid: fix.SessionID) -> None:
        info = self._by_sid.get(sid.toString())
        if info is not None:
            self._sessions[info.name] = fix.Session.lookupSession(sid)

    def onLogon(self, sid: fix.SessionID) -> None:
        info = self._by_sid.get(sid.toString())
        if info is not None:
            self.submit(ev.SessionUp(info.name, self.clock()))

    def onLogout(self, sid: fix.SessionID) -> None:
        # Called with the session's mutex held: hand the event over instead of taking the core lock.
        info = self._by_sid.get(sid.toString())
        if info is not None:
            self._control.put(ev.SessionDown(info.name, self.clock()))
        if threading.get_ident() in self._kept_threads:
            # A threaded socket class ends a session's thread with its connection: let its state go.
            self._kept_threads.discard(threading.get_ident())
            ctypes.pythonapi.PyGILState_Release(_PYGILSTATE_LOCKED)

    def toAdmin(self, message: fix.Message, sid: fix.SessionID) -> None:
        pass

    def fromAdmin(self, message: fix.Message, sid: fix.SessionID) -> None:
        if threading.get_ident() not in self._kept_threads:
            self._keep_thread()
        if not self.check_logon:
            return
        info = self._by_sid.get(sid.toString())
        if info is not None and message.getHeader().getField(35) == "A":
            fields = codec.parse(message.toString())
            if not self.logon_allowed(info, fields.get(553, ""), fields.get(554, "")):
                raise fix.RejectLogon("bad Username (553) or Password (554)")

    def toApp(self, message: fix.Message, sid: fix.SessionID) -> None:
        own = getattr(self._local, "sending", None)
        if own is not None:  # the proxy's own message, sent by _send on this thread
            if own.role == "venue" and not self._sessions[own.name].isLoggedOn():
                raise fix.DoNotSend()  # not queued for later: the core is told the send failed
            return
        info = self._by_sid.get(sid.toString())
        if info is not None and info.role == "venue":
            header = message.getHeader()
            if header.isSetField(43) and header.getField(43) == "Y":
                # A resend request from the venue: an order is never sent late; quickfix gap-fills
                # instead, and the OMS hears that it did not reach the venue (via the control thread:
                # this callback holds the session's mutex).
                if message.isSetField(11):
                    self._control.put(ev.VenueSendFailed(info.name, message.getField(11), self.clock(), "not_resent"))
                raise fix.DoNotSend()
            if not self._sessions[info.name].isLoggedOn():
                raise fix.DoNotSend()  # not queued for later: the core is told the send failed

    def fromApp(self, message: fix.Message, sid: fix.SessionID) -> None:
        # The core lock first, before any call into the binding: each such call releases the GIL, and
        # a message read meanwhile on the other quickfix thread would take it, make its own calls and
        # hand it back and forth with this one before it blocked on the lock anyway. Waiting for the
        # lock at once, it waits asleep (A/B at 1,000 orders/s: p99 0.79-0.88x, p99.9 0.58-0.70x).
        # The message's time is read before the wait, as it was: when it reached the proxy.
        now = self.clock()
        with self.lock:
            if threading.get_ident() not in self._kept_threads:
                self._keep_thread()
            raw = message.toString()
            fields = codec.parse(raw)
            info = self._by_header.get((fields.get(8), fields.get(49), fields.get(56)))
            if info is None:
                raise fix.UnsupportedMessageType()
            self.receive_locked(info, raw, now, fields)
        if info.role == "admin":
            self._desk_message(info, fields, now)

    def _keep_thread(self) -> None:
        """Keep this quickfix thread's Python thread state between callbacks (see _PYGILSTATE_LOCKED)."""
        ctypes.pythonapi.PyGILState_Ensure()
        self._kept_threads.add(threading.get_ident())

    # -------------------------------------------------------------- the control thread

    def _control_loop(self) -> None:
        while (event := self._control.get()) is not None:
            try:
                self.submit(event)
            except Exception as exc:  # noqa: BLE001 - the control thread must survive
                self.notice(ev.Notice("control_error", self.clock(), repr(exc)))

    def close(self) -> None:
        self._control.put(None)

    def _send(self, info: SessionInfo, msg_type: str, body: list[tuple[int, str]], now: int) -> bool:
        # One call into the binding to build the message, not one per field: each call releases
        # the GIL, and with other threads waiting every release can cost a thread switch.
        msg = fix.Message(frame(info.begin_string, msg_type, body), False)
        local = self._local
        local.sending = info
        try:
            sent = fix.Session.sendToTarget(msg, info.handle)
        except fix.SessionNotFound:
            sent = False
        finally:
            local.sending = None
        if sent and self.journal is not None:
            self._sent(info.name, msg.toString(), now)  # quickfix filled in the header
        return sent
