"""What every FIX engine edge shares: decoded message in -> ProxyCore -> messages out.

An engine (quickfix, native) owns the sessions and the wire; it hands each application message
it accepted to ``receive`` and implements ``_send``. The bridge decodes once, runs the core under
one lock (so every message leaves in decision order), sends what the core decided, records
decisions and saves what changed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .. import codec
from ..admin import fixsession
from ..core import events as ev
from ..core.proxy import ProxyCore
from ..timefmt import fix_timestamp_ms

_MESSAGE_ACTIONS = (ev.VenueNewOrder, ev.VenueReplace, ev.VenueCancel, ev.OmsReport, ev.OmsCancelReject,
                    ev.OmsBusinessReject)
_VENUE_ACTIONS = (ev.VenueNewOrder, ev.VenueReplace, ev.VenueCancel)
#: The risk desk's commands: recorded as given (before what they do), so that replay can apply them again.
_ADMIN_COMMANDS = frozenset(ev.ADMIN_COMMANDS)

#: TransactTime (60) of the proxy's outbound messages.
transact_time = fix_timestamp_ms


#: ``on_message(direction, session, raw, now_ns)``: direction "in" or "out", raw with SOH delimiters.
MessageHook = Callable[[str, str, str, int], None]


class SessionInfo:
    """One configured session as the bridge sees it; ``handle`` is the engine's own session object or id."""

    __slots__ = ("name", "role", "fix42", "begin_string", "handle")

    def __init__(self, name: str, role: str, begin_string: str, handle: object = None):
        self.name = name
        self.role = role  # "oms", "venue" or "admin" (the risk-desk session)
        self.begin_string = begin_string
        self.fix42 = begin_string == "FIX.4.2"
        self.handle = handle


class CoreBridge:
    """Runs one ProxyCore for an engine; subclasses implement ``_send``."""

    def __init__(self, core: ProxyCore, sessions: list[SessionInfo], on_record: Callable[[ev.Action], None],
                 clock: Callable[[], int] = time.time_ns, on_message: MessageHook | None = None,
                 check_logon: dict[str, Callable[[str, str], bool]] | None = None):
        self.core = core
        self.on_record = on_record  # decisions, notices and risk-desk commands: logging and the audit trail
        # Every application message in and out, as (direction, session, raw, now_ns): the audit trail.
        # It must only enqueue.
        self.on_message = on_message
        # Username (553) / Password (554) checks of a session's Logon, by session name.
        self.check_logon = check_logon or {}
        self.clock = clock
        self.lock = threading.Lock()
        self._infos = list(sessions)
        self._oms = {s.name: s for s in sessions if s.role == "oms"}
        self._venues = {s.name: s for s in sessions if s.role == "venue"}

    def sessions(self) -> list[SessionInfo]:
        return list(self._infos)

    def logon_allowed(self, info: SessionInfo, username: str, password: str) -> bool:
        """The session's Username/Password check (True when none is configured); a refusal is recorded."""
        check = self.check_logon.get(info.name)
        if check is None or check(username, password):
            return True
        kind = "desk_logon_refused" if info.role == "admin" else "logon_refused"
        self.on_record(ev.Notice(kind, self.clock(), f"{info.name}: bad Username/Password"))
        return False

    # -------------------------------------------------------------- messages in

    def receive(self, info: SessionInfo, raw: str, now: int, fields: dict[int, str] | None = None) -> None:
        """One application message the engine accepted on ``info``'s session (raw, SOH-delimited;
        ``fields`` when the engine parsed it already)."""
        if fields is None:
            fields = codec.parse(raw)
        # One hold of the core lock records the message, decodes it and runs what it asks. Recorded
        # under the lock: a venue's answer read on another engine thread while the order it answers
        # is still being sent and recorded is recorded after it, not before. One hold, not two: with
        # two engine threads, every release between them is a chance for the other to take the lock.
        with self.lock:
            self.receive_locked(info, raw, now, fields)
        if info.role == "admin":
            self._desk_message(info, fields, now)

    def receive_locked(self, info: SessionInfo, raw: str, now: int, fields: dict[int, str]) -> None:
        """``receive``'s work under the core lock, which the caller holds; a risk-desk message is
        left to the caller, which hands it to ``_desk_message`` once the lock is released."""
        if self.on_message is not None:
            self.on_message("in", info.name, raw, now)
        if info.role == "oms":
            self._run(codec.decode_oms(fields, info.name, now))
        elif info.role == "venue":
            try:
                event = codec.decode_venue(fields, info.name, now)
            except codec.Invalid as exc:
                self.on_record(ev.Notice("bad_venue_message", now, f"{info.name}: {exc}"))
                return
            if event is not None:
                self._run(event)

    # -------------------------------------------------------------- core hand-off

    def submit(self, event: ev.Event) -> list[ev.Action]:
        """Run one event through the core and send what it decides, in order; returns the actions."""
        with self.lock:
            return self._run(event)

    def _run(self, event: ev.Event) -> list[ev.Action]:
        """``submit``'s work; the caller holds the core lock."""
        if type(event) in _ADMIN_COMMANDS:
            self.on_record(event)  # under the lock: the command sits in the audit trail where the core took it
        actions = self.core.handle(event)
        # What the event changed stays in core.changes until the state writer takes it under the
        # lock, so after the sends: a ClOrdID must not count as handled (and a resent possible
        # duplicate be ignored) unless its answer really went out.
        self._perform(actions)
        return actions

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
                                             "kept in the session store for resend"))
        for event in failed:
            self._perform(self.core.handle(event))

    def _send(self, info: SessionInfo, msg_type: str, body: list[tuple[int, str]], now: int) -> bool:
        """Send one application message on ``info``'s session (the engine adds the header); False: not sent."""
        raise NotImplementedError

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
