"""The quickfix edge: Application callbacks decode -> core -> send. Nothing else.

Threading: quickfix calls back on its own threads. One lock serialises ProxyCore.handle()
and the sends of its actions, so every message leaves in decision order. quickfix holds a
session's mutex while it calls toApp/toAdmin/onLogout, and sending needs that mutex: those
callbacks therefore never take the core lock (onLogout hands its event to a worker thread).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

import quickfix as fix

from ... import codec
from ...admin import fixsession
from ...core import events as ev
from ...core.proxy import Changes, ProxyCore

_MESSAGE_ACTIONS = (ev.VenueNewOrder, ev.VenueReplace, ev.VenueCancel, ev.OmsReport, ev.OmsCancelReject,
                    ev.OmsBusinessReject)
_VENUE_ACTIONS = (ev.VenueNewOrder, ev.VenueReplace, ev.VenueCancel)
#: The risk desk's commands: recorded as given (before what they do), so that replay can apply them again.
_ADMIN_COMMANDS = frozenset(ev.ADMIN_COMMANDS)


def frame(begin_string: str, msg_type: str, body: list[tuple[int, str]]) -> str:
    """A complete FIX message (BodyLength and CheckSum filled in); quickfix adds the session header."""
    text = f"35={msg_type}\x01" + "".join(f"{tag}={value}\x01" for tag, value in body)
    head = f"8={begin_string}\x019={len(text.encode())}\x01"
    return f"{head}{text}10={sum((head + text).encode()) % 256:03d}\x01"


_second = [-1, ""]  # the last whole second formatted (one strftime a second, not one a message)


def transact_time(now_ns: int) -> str:
    """UTCTimestamp with milliseconds, e.g. ``20261125-12:28:04.277``."""
    second, ms = divmod(now_ns // 1_000_000, 1000)
    if second != _second[0]:
        _second[1] = datetime.fromtimestamp(second, tz=timezone.utc).strftime("%Y%m%d-%H:%M:%S.")
        _second[0] = second
    return f"{_second[1]}{ms:03d}"


#: ``on_message(direction, session, raw, now_ns)``: direction "in" or "out", raw with SOH delimiters.
MessageHook = Callable[[str, str, str, int], None]


class SessionInfo:
    __slots__ = ("name", "role", "fix42", "sid", "begin_string")

    def __init__(self, name: str, role: str, sid: fix.SessionID):
        self.name = name
        self.role = role  # "oms", "venue" or "admin" (the risk-desk session)
        self.sid = sid
        self.begin_string = sid.getBeginString().getValue()
        self.fix42 = self.begin_string == "FIX.4.2"


class ProxyApplication(fix.Application):
    """Bridges quickfix sessions and one ProxyCore."""

    def __init__(self, core: ProxyCore, sessions: list[SessionInfo], on_record: Callable[[ev.Action], None],
                 clock: Callable[[], int] = time.time_ns, on_message: MessageHook | None = None,
                 on_changes: Callable[[Changes], None] | None = None,
                 check_logon: dict[str, Callable[[str, str], bool]] | None = None):
        super().__init__()
        self.core = core
        self.on_record = on_record  # decisions, notices and risk-desk commands: logging and the audit trail
        # Every application message in and out, as (direction, session, raw, now_ns): the audit trail.
        # Called on quickfix's threads, so it must only enqueue.
        self.on_message = on_message
        # What the core changed while handling an event (orders, fills, ...), for the state store.
        # Called under the core lock, after the event's messages are sent.
        self.on_changes = on_changes
        # Username (553) / Password (554) checks of a session's Logon, by session name.
        self.check_logon = check_logon or {}
        self.clock = clock
        self.lock = threading.Lock()
        self._by_sid = {s.sid.toString(): s for s in sessions}
        self._oms = {s.name: s for s in sessions if s.role == "oms"}
        self._venues = {s.name: s for s in sessions if s.role == "venue"}
        self._sessions: dict[str, fix.Session] = {}
        self._control: queue.SimpleQueue[ev.Event | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._control_loop, name="fixproxy-control", daemon=True)
        self._worker.start()

    # -------------------------------------------------------------- quickfix callbacks

    def onCreate(self, sid: fix.SessionID) -> None:
        self._sessions[sid.toString()] = fix.Session.lookupSession(sid)

    def onLogon(self, sid: fix.SessionID) -> None:
        info = self._by_sid.get(sid.toString())
        if info is not None:
            self.submit(ev.SessionUp(info.name, self.clock()))

    def onLogout(self, sid: fix.SessionID) -> None:
        # Called with the session's mutex held: hand the event over instead of taking the core lock.
        info = self._by_sid.get(sid.toString())
        if info is not None:
            self._control.put(ev.SessionDown(info.name, self.clock()))

    def toAdmin(self, message: fix.Message, sid: fix.SessionID) -> None:
        pass

    def fromAdmin(self, message: fix.Message, sid: fix.SessionID) -> None:
        if not self.check_logon:
            return
        info = self._by_sid.get(sid.toString())
        check = self.check_logon.get(info.name) if info is not None else None
        if check is not None and message.getHeader().getField(35) == "A":
            fields = codec.parse(message.toString())
            if not check(fields.get(553, ""), fields.get(554, "")):
                kind = "desk_logon_refused" if info.role == "admin" else "logon_refused"
                self.on_record(ev.Notice(kind, self.clock(), f"{info.name}: bad Username/Password"))
                raise fix.RejectLogon("bad Username (553) or Password (554)")

    def toApp(self, message: fix.Message, sid: fix.SessionID) -> None:
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
            if not self._sessions[sid.toString()].isLoggedOn():
                raise fix.DoNotSend()  # not queued for later: the core is told the send failed

    def fromApp(self, message: fix.Message, sid: fix.SessionID) -> None:
        now = self.clock()
        info = self._by_sid.get(sid.toString())
        if info is None:
            raise fix.UnsupportedMessageType()
        raw = message.toString()
        if self.on_message is not None:
            self.on_message("in", info.name, raw, now)
        fields = codec.parse(raw)
        if info.role == "admin":
            self._desk_message(info, fields, now)
            return
        if info.role == "oms":
            event = codec.decode_oms(fields, info.name, now)
        else:
            try:
                event = codec.decode_venue(fields, info.name, now)
            except codec.Invalid as exc:
                self.on_record(ev.Notice("bad_venue_message", now, f"{info.name}: {exc}"))
                return
            if event is None:
                return
        self.submit(event)

    def sessions(self) -> list[SessionInfo]:
        return list(self._by_sid.values())

    # -------------------------------------------------------------- core hand-off

    def submit(self, event: ev.Event) -> list[ev.Action]:
        """Run one event through the core and send what it decides, in order; returns the actions."""
        with self.lock:
            if type(event) in _ADMIN_COMMANDS:
                self.on_record(event)  # under the lock: the command sits in the audit trail where the core took it
            actions = self.core.handle(event)
            self._perform(actions)
            # Saved after the sends: a ClOrdID must not count as handled (and a resent possible
            # duplicate be ignored) unless its answer really went out.
            if self.on_changes is not None and self.core.changes:
                self.on_changes(self.core.take_changes())
        return actions

    def _control_loop(self) -> None:
        while (event := self._control.get()) is not None:
            try:
                self.submit(event)
            except Exception as exc:  # noqa: BLE001 - the control thread must survive
                self.on_record(ev.Notice("control_error", self.clock(), repr(exc)))

    def close(self) -> None:
        self._control.put(None)

    def _perform(self, actions: list[ev.Action]) -> None:
        failed: list[ev.Event] = []
        for action in actions:
            if not isinstance(action, _MESSAGE_ACTIONS):
                self.on_record(action)
                continue
            if isinstance(action, _VENUE_ACTIONS):
                info = self._venues[action.venue]
            else:
                info = self._oms.get(action.session)
                if info is None:
                    continue
            now = self.clock()
            msg_type, body = codec.encode(action, info.fix42, transact_time(now))
            if not self._send(info, msg_type, body, now):
                if isinstance(action, _VENUE_ACTIONS):
                    failed.append(ev.VenueSendFailed(action.venue, action.cl_ord_id, now))
                else:
                    self.on_record(ev.Notice("send_failed", now, f"{info.name}: {msg_type} not sent (session down); "
                                             "kept in the quickfix store for resend"))
        for event in failed:
            self._perform(self.core.handle(event))

    def _send(self, info: SessionInfo, msg_type: str, body: list[tuple[int, str]], now: int) -> bool:
        # One call into the binding to build the message, not one per field: each call releases
        # the GIL, and with other threads waiting every release can cost a thread switch.
        msg = fix.Message(frame(info.begin_string, msg_type, body), False)
        try:
            sent = fix.Session.sendToTarget(msg, info.sid)
        except fix.SessionNotFound:
            sent = False
        if sent and self.on_message is not None:
            self.on_message("out", info.name, msg.toString(), now)  # quickfix filled in the header
        return sent

    # -------------------------------------------------------------- the risk-desk session

    def _desk_message(self, info: SessionInfo, fields: dict[int, str], now: int) -> None:
        """KillSwitchRequest in, KillSwitchReport out; anything else on this session is refused."""
        msg_type = fields.get(35, "")
        report_id = f"K{now}"
        if msg_type == "U1":
            event = fixsession.decode_request(fields, info.name, now)
            if isinstance(event, str):
                reply = fixsession.rejected(fields, event, report_id)
                self.on_record(ev.Notice("desk_request_refused", now, f"{info.name}: {event}"))
            else:
                result = next(a for a in self.submit(event) if isinstance(a, ev.AdminResult))
                reply = fixsession.encode_report(result, fields, report_id)
            self._send(info, reply[0][1], reply[1:], now)
            return
        is_order = msg_type in ("D", "G", "F")
        text = ("UNSUPPORTED_MESSAGE: the risk-desk session does not take orders" if is_order
                else f"UNSUPPORTED_MESSAGE: message type {msg_type} is not accepted on the risk-desk session")
        self.on_record(ev.Notice("desk_message_refused", now, f"{info.name}: {text}"))
        _, body = codec.encode(ev.OmsBusinessReject(info.name, int(fields.get(34, "0") or 0), msg_type,
                                                    fields.get(11, ""), 6 if is_order else 3, text), False, "")
        self._send(info, "j", body, now)
