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
import traceback
from collections.abc import Callable
from typing import Any

import quickfix as fix

from ...core import events as ev
from ...core.proxy import ProxyCore
from ...fix.build import frame
from ...fix.parse import first_value, parse as parse_fields
from ...fix.versions import FIXT, appl_ver_problem
from ..bridge import _SHARE_WAITERS, CoreBridge, SessionInfo
from .watch import VenueWatching


def wire_text(text: str) -> str:
    """quickfix's text of a message as the native engine reads the same bytes: one character per
    byte (latin-1), which is how the proxy holds FIX text on both engines (journal, core, stores).

    The binding decodes a message's bytes as UTF-8, a byte that is not UTF-8 becoming a lone
    surrogate (surrogateescape): ``encode`` gives the bytes back exactly.
    """
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def binding_text(text: str) -> str:
    """The inverse of ``wire_text`` for a message handed to quickfix, which takes a str and sends
    it as UTF-8. Never raises: bytes that are not UTF-8 cannot pass the binding (they become
    U+FFFD), nor can a lone surrogate (it becomes "?")."""
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a character no byte stands for (text of the proxy's own): as it is
        return text.encode("utf-8", "replace").decode("utf-8")


def binding_frame(begin_string: str, msg_type: str, body: list[tuple[int, str]]) -> str:
    """``fix.build.frame`` as quickfix's ``Message(str)`` takes it (it adds the session header).
    Total: any str values give a message the binding accepts (see ``binding_text``)."""
    return frame(begin_string, msg_type, body, _as_sent).decode()


def _as_sent(text: str) -> bytes:
    """The bytes the binding sends for ``text``: its UTF-8 of ``binding_text``."""
    return binding_text(text).encode()


def session_info(name: str, role: str, sid: fix.SessionID) -> SessionInfo:
    return SessionInfo(name, role, sid.getBeginString().getValue(), sid)


# quickfix's socket threads are not Python threads: each callback from one makes a new Python
# thread state (with a fresh frame stack, mapped and unmapped, and new thread-local dicts) and drops
# it on return, three times per order. One extra PyGILState_Ensure, made inside a callback, keeps the
# thread's state until the matching PyGILState_Release (both only ever called inside a callback,
# where the callback's own Ensure keeps the count above zero).
_PYGILSTATE_LOCKED = 0

#: The exceptions a callback may raise on purpose: each has a defined wire effect. Any other
#: exception leaving a callback makes the binding print it and call Py_Exit from quickfix's thread
#: (src/python/quickfix.i, "director:except"), which stops that thread for good: every callback
#: therefore catches everything else itself (``_failed``).
_WIRE_EFFECTS = (
    fix.DoNotSend,
    fix.RejectLogon,
    fix.UnsupportedMessageType,
    fix.IncorrectTagValue,
    fix.IncorrectDataFormat,
    fix.FieldNotFound,
)


class QuickfixBridge(VenueWatching, CoreBridge, fix.Application):
    """The quickfix Application: bridges quickfix sessions and one ProxyCore (``SessionInfo.handle``
    is the quickfix SessionID)."""

    def __init__(
        self, core: ProxyCore, sessions: list[SessionInfo], on_record: Callable[[ev.Action], None], **kwargs: Any
    ):
        fix.Application.__init__(self)
        CoreBridge.__init__(self, core, sessions, on_record, **kwargs)
        self._by_sid: dict[str, SessionInfo] = {}
        # (BeginString, SenderCompID, TargetCompID) of a message received on the session.
        self._by_header: dict[tuple[str, str, str], SessionInfo] = {}
        for s in sessions:
            sid: fix.SessionID = s.handle
            self._by_sid[sid.toString()] = s
            self._by_header[
                (sid.getBeginString().getValue(), sid.getTargetCompID().getValue(), sid.getSenderCompID().getValue())
            ] = s
        self._sessions: dict[str, fix.Session] = {}
        self._local = threading.local()  # .sending: the SessionInfo this thread is sending on in _send
        self._kept_threads: set[int] = set()  # quickfix threads whose Python thread state is kept
        # Events for the core, or the records of a callback's failure (_failed); None stops the thread.
        self._control: queue.SimpleQueue[ev.Event | list[ev.Action] | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._control_loop, name="fixproxy-control", daemon=True)
        self._worker.start()
        self._engine_threads: list[threading.Thread] = []  # quickfix's acceptor and initiator (``run``)
        self._closed = False
        self._broken = ""  # why an edge thread cannot go on, once one cannot
        #: ``[ha]``: session name -> next outgoing sequence number, as seen in toApp/toAdmin.
        self._ha_seqs: dict[str, int] = {}
        #: ``[ha]``: waits (up to the seconds given) for the leadership lease to be valid again.
        self.ha_wait: Callable[[float], bool] | None = None

    # -------------------------------------------------------------- engine threads and health

    def run(self, engine: fix.SocketAcceptor | fix.SocketInitiator, name: str) -> None:
        """Start a quickfix acceptor or initiator on a thread of ours (what its ``start`` does, with
        a handle kept so that ``engine_problem`` sees the thread end)."""
        thread = threading.Thread(target=engine.block, name=f"quickfix-{name}", daemon=True)
        thread.start()
        self._engine_threads.append(thread)

    def engine_problem(self) -> str:
        """Why this edge cannot serve ("" when it can): a quickfix or control thread ended while the
        proxy runs, or a failure could not even be recorded. /healthz fails on it."""
        if self._closed:
            return ""
        dead = [t.name for t in (self._worker, *self._engine_threads) if not t.is_alive()]
        if dead:
            return f"thread {', '.join(dead)} ended"
        return self._broken

    # -------------------------------------------------------------- quickfix callbacks

    # Every callback catches what it does not raise on purpose (see _WIRE_EFFECTS and _failed).

    def onCreate(self, sid: fix.SessionID) -> None:
        try:
            info = self._by_sid.get(sid.toString())
            if info is not None:
                self._sessions[info.name] = fix.Session.lookupSession(sid)
        except Exception as exc:  # noqa: BLE001 - see _failed
            self._failed("onCreate", sid, exc)

    def onLogon(self, sid: fix.SessionID) -> None:
        try:
            info = self._by_sid.get(sid.toString())
            if info is not None:
                self._watch_logon(sid)
                self.submit(ev.SessionUp(info.name, self.clock()))
        except Exception as exc:  # noqa: BLE001 - see _failed
            self._failed("onLogon", sid, exc)

    def onLogout(self, sid: fix.SessionID) -> None:
        # Called with the session's mutex held: hand the event over instead of taking the core lock.
        try:
            info = self._by_sid.get(sid.toString())
            if info is not None:
                self._watch_logout(sid)
                self._control.put(ev.SessionDown(info.name, self.clock()))
        except Exception as exc:  # noqa: BLE001 - see _failed
            self._failed("onLogout", sid, exc, locked_out=True)
        if threading.get_ident() in self._kept_threads:
            # A threaded socket class ends a session's thread with its connection: let its state go.
            self._kept_threads.discard(threading.get_ident())
            ctypes.pythonapi.PyGILState_Release(_PYGILSTATE_LOCKED)

    def toAdmin(self, message: fix.Message, sid: fix.SessionID) -> None:
        try:
            self._watch_out(message, sid)  # bytes towards a venue (watch.py)
            if self.ha_gate is not None:
                self._ha_admin(message, sid)
        except Exception as exc:  # noqa: BLE001 - see _failed
            self._failed("toAdmin", sid, exc, locked_out=True)

    def _ha_received(self, message: fix.Message, sid: fix.SessionID) -> None:
        info = self._by_sid.get(sid.toString())
        seq = message.getHeader().getField(34)
        if info is not None and seq.isdigit():
            self._ha_seqs[info.name + "/in"] = int(seq) + 1

    def _ha_admin(self, message: fix.Message, sid: fix.SessionID) -> None:
        """``[ha]``: an admin message takes a sequence number the standby must know of, and it cannot
        be dropped (quickfix sends it whatever this callback does): it waits for the gate."""
        info = self._by_sid.get(sid.toString())
        seq = message.getHeader().getField(34)
        if info is not None and seq.isdigit():
            self._ha_seqs[info.name] = int(seq) + 1
        gate, wait = self.ha_gate, self.ha_wait
        assert gate is not None
        while not gate() and not self._closed:
            if wait is not None:
                wait(1.0)

    def fromAdmin(self, message: fix.Message, sid: fix.SessionID) -> None:
        try:
            self._from_admin(message, sid)
            if self.ha_gate is not None:
                self._ha_received(message, sid)
        except _WIRE_EFFECTS:
            raise
        except Exception as exc:  # noqa: BLE001 - see _failed
            self._failed("fromAdmin", sid, exc)
            if message.getHeader().getField(35) == "A":
                raise fix.RejectLogon("the Logon could not be checked") from None  # fail closed

    def _from_admin(self, message: fix.Message, sid: fix.SessionID) -> None:
        if threading.get_ident() not in self._kept_threads:
            self._keep_thread()
        self._watch_in(sid)
        if not self.check_logon and sid.getBeginString().getValue() != FIXT:
            return
        info = self._by_sid.get(sid.toString())
        if info is not None and message.getHeader().getField(35) == "A":
            fields = parse_fields(message.toString())
            if info.begin_string == FIXT:
                # quickfix takes any DefaultApplVerID (1137): the proxy reads FIX 5.0SP2 only
                text = appl_ver_problem(1137, fields.get(1137))
                if text:
                    raise fix.RejectLogon(text)
            if self.check_logon and not self.logon_allowed(info, fields.get(553, ""), fields.get(554, "")):
                raise fix.RejectLogon("bad Username (553) or Password (554)")

    def toApp(self, message: fix.Message, sid: fix.SessionID) -> None:
        try:
            self._to_app(message, sid)
        except _WIRE_EFFECTS:
            raise
        except Exception as exc:  # noqa: BLE001 - see _failed
            # Called with the session's mutex held (no core lock here). Not sent: fail closed, and
            # the core hears the send failed.
            self._failed("toApp", sid, exc, locked_out=True)
            raise fix.DoNotSend() from None

    def _to_app(self, message: fix.Message, sid: fix.SessionID) -> None:
        own = getattr(self._local, "sending", None)
        if own is not None:  # the proxy's own message, sent by _send on this thread
            if own.role == "venue" and not self._sessions[own.name].isLoggedOn():
                raise fix.DoNotSend()  # not queued for later: the core is told the send failed
            if self.ha_gate is not None:
                # [ha]: journaled as it will go on the wire (header filled), then the gate: the
                # standby has it before the peer can (the store is written after this callback).
                raw = wire_text(message.toString())
                self._sent(own.name, raw, self._local.now)
                seq = first_value(raw, 34)
                if seq.isdigit():
                    self._ha_seqs[own.name] = int(seq) + 1
                if not self.ha_gate():
                    raise fix.DoNotSend()
            return
        info = self._by_sid.get(sid.toString())
        if info is not None and info.role == "venue":
            header = message.getHeader()
            if header.isSetField(43) and header.getField(43) == "Y":
                # A resend request from the venue: an order is never sent late; quickfix gap-fills
                # instead, and the OMS hears that it did not reach the venue (via the control thread:
                # this callback holds the session's mutex).
                if message.isSetField(11) and not self._refused_late(info.name, message.getField(11)):
                    self._control.put(ev.VenueSendFailed(info.name, message.getField(11), self.clock(), "not_resent"))
                raise fix.DoNotSend()
            if not self._sessions[info.name].isLoggedOn():
                raise fix.DoNotSend()  # not queued for later: the core is told the send failed
        if self.ha_gate is not None and not self.ha_gate():
            raise fix.DoNotSend()  # a resend from the store: not while the lease is in doubt

    def fromApp(self, message: fix.Message, sid: fix.SessionID) -> None:
        try:
            self._from_app(message, sid)
            if self.ha_gate is not None:
                self._ha_received(message, sid)  # journaled by now: the standby may count it
        except _WIRE_EFFECTS:
            raise
        except Exception as exc:  # noqa: BLE001 - see _failed
            self._failed("fromApp", sid, exc, message=message)

    def _from_app(self, message: fix.Message, sid: fix.SessionID) -> None:
        # The core lock first, before any call into the binding: each such call releases the GIL, and
        # a message read meanwhile on the other quickfix thread would take it, make its own calls and
        # hand it back and forth with this one before it blocked on the lock anyway. Waiting for the
        # lock at once, it waits asleep (measured: a lower p99 and p99.9 at 1,000 orders/s).
        # The message's time is read before the wait, as it was: when it reached the proxy.
        now = self.clock()
        if self.core.shares.hungry and message.getHeader().getField(35) in _SHARE_WAITERS:
            self.wait_for_share()  # a venue's message never waits; an OMS's order may, for a top-up
        with self.lock:
            if threading.get_ident() not in self._kept_threads:
                self._keep_thread()
            raw = wire_text(message.toString())
            fields = parse_fields(raw)
            info = self._by_header.get((fields.get(8, ""), fields.get(49, ""), fields.get(56, "")))
            if info is None:
                raise fix.UnsupportedMessageType()
            refused = 1128 in fields and info.begin_string == FIXT and self._refused_version(info, fields)
            if not refused:
                self.receive_locked(info, raw, now, fields)
        if info.role == "venue":
            self._watch_in(sid)  # the venue answered, whatever it said
        elif refused:
            return
        elif info.role == "admin":
            self._desk_message(info, fields, now)
        elif info.role == "drop_copy":
            self._drop_copy_message(info, fields)

    def _refused_version(self, info: SessionInfo, fields: dict[int, str]) -> bool:
        """An ApplVerID (1128) the proxy does not read: a session Reject naming it, as the native
        session layer sends (quickfix counts the message; it never reaches the journal or the core)."""
        text = appl_ver_problem(1128, fields[1128])
        if text:
            body = [(45, fields.get(34, "0")), (371, "1128"), (372, fields.get(35, "?")), (373, "5"), (58, text)]
            fix.Session.sendToTarget(fix.Message(binding_frame(info.begin_string, "3", body), False), info.handle)
        return bool(text)

    def _failed(
        self,
        callback: str,
        sid: fix.SessionID,
        exc: Exception,
        message: fix.Message | None = None,
        locked_out: bool = False,
    ) -> None:
        """An exception in a callback: recorded (a notice and an alert), the application message
        answered with a session Reject (373=99 "Other", 0 on FIX 4.2) as the native engine answers
        it, and quickfix's thread goes on. Never raises. ``locked_out``: the callback holds the
        session's mutex, so the record goes through the control thread."""
        try:
            info = self._by_sid.get(sid.toString())
            name = info.name if info is not None else sid.toString()
            where = traceback.extract_tb(exc.__traceback__)[-1:]
            at = f" at {where[0].filename.rsplit('/', 1)[-1]}:{where[0].lineno}" if where else ""
            now = self.clock()
            detail = f"{name}: {callback} failed: {exc!r}{at}"
            records: list[ev.Action] = [
                ev.Notice("engine_error", now, detail),
                ev.Alert(
                    "engine_error",
                    f"session:{name}",
                    "100",
                    callback,
                    "",
                    now,
                    f"ENGINE_ERROR: {detail}; refused, the session serves on",
                ),
            ]
            if locked_out:
                self._control.put(records)
            else:
                with self.lock:
                    for record in records:
                        self._record(record)
            if message is not None and info is not None:
                header = message.getHeader()
                seq = header.getField(34) if header.isSetField(34) else "0"
                msg_type = header.getField(35) if header.isSetField(35) else "?"
                body = [
                    (45, seq),
                    (372, msg_type),
                    (373, "0" if info.fix42 else "99"),
                    (58, f"PROXY_ERROR: the message could not be handled ({type(exc).__name__})"),
                ]
                fix.Session.sendToTarget(fix.Message(binding_frame(info.begin_string, "3", body), False), info.handle)
        except Exception as again:  # noqa: BLE001 - nothing may leave a callback (see _WIRE_EFFECTS)
            self._broken = f"{callback} failed ({exc!r}) and the failure could not be handled ({again!r})"

    def _keep_thread(self) -> None:
        """Keep this quickfix thread's Python thread state between callbacks (see _PYGILSTATE_LOCKED)."""
        ctypes.pythonapi.PyGILState_Ensure()
        self._kept_threads.add(threading.get_ident())

    # -------------------------------------------------------------- the control thread

    def _control_loop(self) -> None:
        while (item := self._control.get()) is not None:
            try:
                if isinstance(item, list):  # records of a callback's failure (_failed)
                    with self.lock:
                        for record in item:
                            self._record(record)
                else:
                    self.submit(item)
            except Exception as exc:  # noqa: BLE001 - the control thread must survive
                try:
                    self.notice(ev.Notice("control_error", self.clock(), repr(exc)))
                except Exception as again:  # noqa: BLE001 - recording failed too: say so on health, keep the thread
                    self._broken = f"the control thread cannot record ({again!r})"

    def close(self) -> None:
        self._closed = True
        self._control.put(None)

    def sent_seqs(self) -> dict[str, int]:
        return dict(self._ha_seqs)

    def _send(self, info: SessionInfo, msg_type: str, body: list[tuple[int, str]], now: int) -> bool:
        # One call into the binding to build the message, not one per field: each call releases
        # the GIL, and with other threads waiting every release can cost a thread switch.
        msg = fix.Message(binding_frame(info.begin_string, msg_type, body), False)
        local = self._local
        local.sending = info
        local.now = now
        try:
            sent = fix.Session.sendToTarget(msg, info.handle)
        except fix.SessionNotFound:
            sent = False
        finally:
            local.sending = None
        if sent and (self.journal is not None or info.role == "venue"):
            raw = wire_text(msg.toString())  # quickfix filled in the header
            if self.journal is not None and self.ha_gate is None:
                self._sent(info.name, raw, now)
            if info.role == "venue":
                self._watch_sent(info, msg_type, body, len(raw))
        return sent
