"""One FIX session (FIX 4.2/4.4 session layer) and the TCP connection carrying it.

Sequence numbers, Logon/Logout, Heartbeat/TestRequest, ResendRequest (answered with
PossDupFlag resends, or gap fills), SequenceReset, and the queue of messages that arrived ahead
of a gap. Everything runs on the engine's event loop thread; application messages go to the
``Owner`` (the engine), which runs the core.
"""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from functools import cache
from typing import Protocol

from ...fix import build, check, parse
from .store import NO_CORK, Cork, FileLog, FileStore

_DAY_NS = 86_400 * 1_000_000_000
#: Message types the session layer answers itself.
_SESSION_TYPES = frozenset(("0", "1", "2", "3", "4", "5", "A"))
#: How far a SendingTime (52) may be from this machine's clock (quickfix's MaxLatency default).
MAX_LATENCY_S = 120


@cache
def desk_types() -> frozenset[str]:
    """The message types the risk-desk session adds to FIX 4.4 (spec/admin-dictionary.xml, as quickfix reads it)."""
    from ...admin.fixsession import SPEC_EXTENSION

    return frozenset(m.get("msgtype", "") for m in ET.parse(SPEC_EXTENSION).getroot().iter("message"))


class Owner(Protocol):
    def deliver(self, session: "Session", raw: str, fields: dict[int, str], now: int) -> None: ...
    def session_up(self, session: "Session") -> None: ...
    def session_down(self, session: "Session") -> None: ...
    def not_resent(self, session: "Session", cl_ord_ids: list[str]) -> None: ...
    def logon_allowed(self, session: "Session", fields: dict[int, str]) -> bool: ...
    def garbled(self, session: "Session | None", why: str) -> None: ...


class Session:
    """State of one configured session; ``connection`` is set while a TCP connection carries it."""

    def __init__(self, *, name: str, role: str, begin_string: str, sender: str, target: str, heartbeat_s: int,
                 store: FileStore, log: FileLog | None, owner: Owner, initiator: bool, resend_app: bool,
                 clock=time.time_ns):
        self.name, self.role = name, role
        self.begin_string, self.sender, self.target = begin_string, sender, target
        self.heartbeat_s = heartbeat_s
        self.store, self.log, self.owner = store, log, owner
        self.initiator = initiator
        self.resend_app = resend_app  # resend application messages (OMS side) or gap-fill them (venue side)
        self.clock = clock
        self.info = None  # the engine's SessionInfo of this session
        self.connection: Connection | None = None
        self.logged_on = False
        self.logout_sent = False
        self.last_sent = self.last_received = time.monotonic()
        self.test_request_sent = False
        self.resend_until = 0  # > 0 while a ResendRequest of ours is outstanding (its end)
        self.queued: dict[int, tuple[str, dict[int, str], str]] = {}
        self._window = (0, "", "")  # (second, earliest, latest SendingTime accepted in it)

    # ------------------------------------------------------------------ sending

    def send(self, msg_type: str, body: list[tuple[int, str]], now: int) -> bytes | None:
        """Send (or, for an OMS session that is down, store for resend) one message.

        Returns the bytes when they went on the wire or into the store for a resend (an OMS session
        that is down), None when they did not. A venue session that is down takes nothing: no
        sequence number is used, and the caller hears it failed.
        """
        conn = self.connection
        if msg_type == "A" or msg_type == "5":
            if conn is None:
                return None
        elif not (self.logged_on and conn is not None):
            if self.role == "venue" or msg_type in parse.ADMIN_TYPES:
                return None
            seq = self.store.next_sender
            data = build.build(self.begin_string, msg_type, seq, self.sender, self.target, build.stamp(now), body)
            self.store.sent(seq, data)
            return data  # kept in the store: the peer gets it by ResendRequest after its next Logon (as quickfix)
        seq = self.store.next_sender
        data = build.build(self.begin_string, msg_type, seq, self.sender, self.target, build.stamp(now), body)
        self.store.sent(seq, data)
        if self.log is not None:
            self.log.message(data, now)
        conn.write(data)
        self.last_sent = time.monotonic()
        return data

    def _send_raw(self, data: bytes, now: int) -> None:
        if self.connection is not None:
            if self.log is not None:
                self.log.message(data, now)
            self.connection.write(data)
            self.last_sent = time.monotonic()

    def event(self, text: str) -> None:
        if self.log is not None:
            self.log.event(text, self.clock())

    # ------------------------------------------------------------------ logon and logout

    def send_logon(self, reset: bool = False) -> None:
        body = [(98, "0"), (108, str(self.heartbeat_s))]
        if reset:
            body.append((141, "Y"))
        self.send("A", body, self.clock())

    def logout(self, text: str = "") -> None:
        """Send Logout; the connection closes when the peer answers (or on the engine's timer)."""
        if self.connection is None or self.logout_sent:
            return
        self.logout_sent = True
        self.send("5", [(58, text)] if text else [], self.clock())
        self.event(f"Initiated logout request: {text}")

    def disconnect(self, why: str) -> None:
        if self.connection is not None:
            self.event(f"Disconnecting: {why}")
            self.connection.close()

    def attach(self, conn: "Connection") -> None:
        self.connection = conn
        self.logout_sent = False
        self.test_request_sent = False
        self.resend_until = 0
        self.queued.clear()
        self.last_sent = self.last_received = time.monotonic()

    def detached(self) -> None:
        self.connection = None
        was = self.logged_on
        self.logged_on = False
        self.queued.clear()
        self.resend_until = 0
        if was:
            self.event("Disconnected")
            self.owner.session_down(self)

    def on_logon(self, fields: dict[int, str], now: int) -> None:
        """A Logon on this session's connection (the acceptor found the session by its CompIDs)."""
        seq = int(fields.get(34, "0"))
        reset = fields.get(141) == "Y"
        if not self.initiator:
            self.event("Received logon request")
            if not self.owner.logon_allowed(self, fields):
                self.send("5", [(58, "bad Username (553) or Password (554)")], now)
                self.disconnect("logon refused")
                return
            hb = fields.get(108, "")
            if hb.isdigit() and int(hb) > 0:
                self.heartbeat_s = int(hb)
            if reset:
                self.store.reset(now)
        elif reset and seq == 1:
            self.store.reset(now)
        if seq < self.store.next_target:
            text = f"MsgSeqNum too low, expecting {self.store.next_target} but received {seq}"
            self.event(text)
            self.send("5", [(58, text)], now)
            self.disconnect(text)
            return
        self.logged_on = True
        if not self.initiator:
            self.event("Responding to logon request")
            self.send_logon(reset)
        else:
            self.event("Received logon response")
        if seq > self.store.next_target:
            self._request_resend(seq, now)
            self.queued[seq] = ("", {35: "A", 34: str(seq)}, "")  # counted when the gap is filled
        else:
            self.store.next_target = seq + 1
            self.store.save_seqnums()
        self.owner.session_up(self)

    # ------------------------------------------------------------------ receiving

    def on_message(self, raw: str, fields: dict[int, str], problem: str, data: bytes, now: int) -> None:
        """One framed message on this session's logged-on connection.

        Checked in quickfix's order: readable at all, BeginString, MsgSeqNum, the header's required
        fields and SendingTime, CompIDs, then the sequence number; the dictionary's checks of the
        message itself come when its number is the expected one (``_process``).
        """
        if self.log is not None:
            self.log.message(data, now)
        self.last_received = time.monotonic()
        self.test_request_sent = False
        if problem and problem.reason == parse.IGNORE:
            self.event(f"Invalid message ignored: {problem}")
            return
        if fields.get(8) != self.begin_string:
            text = f"Incorrect BeginString {fields.get(8, '')[:16]}"
            self.event(text)
            self.logout(text)
            self.disconnect(text)
            return
        msg_type = fields.get(35, "")
        seq_text = fields.get(34, "")
        if not (seq_text.isdigit() and seq_text.isascii() and len(seq_text) < 19):
            self.event(f"Incorrect data format for value with tag: 34: {seq_text[:20]!r}: message ignored")
            return
        seq = int(seq_text)
        for tag in (49, 56):
            if tag not in fields:
                if msg_type in _SESSION_TYPES:
                    self._refuse(seq, msg_type, 1, f"Required tag missing: {check.tag_name(tag)}", tag)
                else:  # as quickfix answers an application message whose header lacks a CompID
                    self._business_reject(seq, msg_type, f"Conditionally Required Field Missing ({tag})")
                return
        sending = fields.get(52)
        if sending is None or not check.good_timestamp(sending):
            self._refuse(seq, msg_type, 1 if sending is None else 6,
                         "Required tag missing: SendingTime (52)" if sending is None
                         else "Incorrect data format for value: SendingTime (52) is not a UTC timestamp", 52)
            return
        if not self.good_time(sending, now):
            self._reject(seq, msg_type, 10, "SendingTime accuracy problem")
            self.logout("SendingTime accuracy problem")
            return
        if fields[49] != self.target or fields[56] != self.sender:
            self._reject(seq, msg_type, 9, "CompID problem")
            self.logout("CompID problem")
            return
        if msg_type == "4" and fields.get(123) != "Y":
            self._sequence_reset(fields, now)
            return
        expected = self.store.next_target
        if seq > expected:
            if msg_type == "2" and not problem:
                self._resend(fields, now)  # answered at once; its number is counted when the gap fills
                raw, fields = "", {35: "0", 34: seq_text}
            elif msg_type == "5":
                self._logout_received(fields)
                return
            self.queued[seq] = (raw, fields, problem)
            if not self.resend_until:
                self._request_resend(seq, now)
            return
        if seq < expected:
            if fields.get(43) == "Y":
                if msg_type != "4":  # a duplicate of what we already had, if its OrigSendingTime says so
                    orig = fields.get(122)
                    if orig is None:
                        self._reject(seq, msg_type, 1, "Required tag missing: OrigSendingTime (122)", 122)
                    elif orig > sending:
                        self._reject(seq, msg_type, 10, "SendingTime accuracy problem: OrigSendingTime (122) "
                                                         "is later than SendingTime (52)")
                        self.logout("SendingTime accuracy problem")
                return
            text = f"MsgSeqNum too low, expecting {expected} but received {seq}"
            self.event(text)
            self.logout(text)
            self.disconnect(text)
            return
        self._process(raw, fields, problem, msg_type, seq, now)
        while self.queued and self.connection is not None:
            nxt = self.store.next_target
            for stale in [s for s in self.queued if s < nxt]:
                del self.queued[stale]
            item = self.queued.pop(nxt, None)
            if item is None:
                break
            q_raw, q_fields, q_problem = item
            self._process(q_raw, q_fields, q_problem, q_fields.get(35, ""), nxt, now)
        if self.resend_until and self.store.next_target > self.resend_until and not self.queued:
            self.resend_until = 0
            self.event("Resend complete")

    def good_time(self, sending: str, now: int) -> bool:
        """SendingTime within MAX_LATENCY_S of ``now`` (two string comparisons: the bounds are
        made once a second, and UTC timestamps order as text)."""
        second = now // 1_000_000_000
        if self._window[0] != second:
            self._window = (second, build.stamp((second - MAX_LATENCY_S) * 1_000_000_000),
                            build.stamp((second + MAX_LATENCY_S + 1) * 1_000_000_000))
        return self._window[1] <= sending <= self._window[2]

    def _process(self, raw: str, fields: dict[int, str], problem: str, msg_type: str, seq: int, now: int) -> None:
        store = self.store
        if not raw:  # a Logon or ResendRequest already acted on, counted now that the gap is filled
            store.next_target = seq + 1
            store.save_seqnums()
            return
        if problem:
            bad: tuple[int, int, str] | None = (problem.reason, problem.tag, str(problem))
        else:
            bad = check.check(self.begin_string, msg_type, fields,
                             desk_types() if self.role == "admin" else frozenset())
        if bad is None and msg_type not in _SESSION_TYPES:
            # An application message is journaled (by the owner) before its number counts as
            # received: a kill -9 in between, and recovery counts it from the journal.
            self.owner.deliver(self, raw, fields, now)
            store.next_target = seq + 1
            store.save_seqnums()
            return
        store.next_target = seq + 1
        if bad is not None:
            store.save_seqnums()
            self._reject(seq, msg_type, bad[0], bad[2], bad[1])
            return
        if msg_type == "4":  # SequenceReset-GapFill (NewSeqNo is a number: checked above)
            store.next_target = max(int(fields[36]), seq + 1)
        store.save_seqnums()
        if msg_type == "1":
            self.send("0", [(112, fields[112])], now)
        elif msg_type == "2":
            self._resend(fields, now)
        elif msg_type == "3":
            self.event(f"Message {fields.get(45, '?')} rejected: {fields.get(58, fields.get(373, ''))}")
        elif msg_type == "5":
            self._logout_received(fields)
        elif msg_type == "A":  # a second Logon on a logged-on session (quickfix drops the connection too)
            self.disconnect("Logon state is not valid for message")

    def _refuse(self, seq: int, msg_type: str, reason: int, text: str, ref_tag: int = 0) -> None:
        """A session Reject for a message refused before its number was checked: the number counts
        if it was the expected one (as quickfix's generateReject)."""
        if seq == self.store.next_target and msg_type not in ("A", "4"):
            self.store.next_target = seq + 1
            self.store.save_seqnums()
        self._reject(seq, msg_type, reason, text, ref_tag)

    def _business_reject(self, seq: int, msg_type: str, text: str) -> None:
        """BusinessMessageReject 380=5 (conditionally required field missing), as quickfix sends
        for an application message whose header lacks a field it needs."""
        if seq == self.store.next_target:
            self.store.next_target = seq + 1
            self.store.save_seqnums()
        self.event(f"Message {seq} Rejected: {text}")
        self.send("j", [(45, str(seq)), (372, msg_type or "?"), (380, "5"), (58, text)], self.clock())

    def _logout_received(self, fields: dict[int, str]) -> None:
        self.event(f"Received logout{': ' + fields[58] if 58 in fields else ''}")
        if not self.logout_sent:
            self.logout_sent = True
            self.send("5", [], self.clock())
        self.disconnect("logout")

    def _reject(self, ref_seq: int, msg_type: str, reason: int, text: str, ref_tag: int = 0) -> None:
        body = [(45, str(ref_seq))]
        if ref_tag:
            body.append((371, str(ref_tag)))
        body += [(372, msg_type or "?"), (373, str(reason))]
        body.append((58, text))
        self.event(f"Message {ref_seq} Rejected: {text}")
        self.send("3", body, self.clock())

    def _sequence_reset(self, fields: dict[int, str], now: int) -> None:
        new = fields.get(36, "")
        if not new.isdigit():
            self._reject(int(fields.get(34, "0")), "4", 1, "Required tag missing: NewSeqNo (36)", 36)
            return
        if int(new) < self.store.next_target:
            self._reject(int(fields[34]), "4", 5, f"NewSeqNo {new} is below the expected {self.store.next_target}", 36)
            return
        self.event(f"Received SequenceReset FROM: {self.store.next_target} TO: {new}")
        self.store.next_target = int(new)
        self.store.save_seqnums()

    def _request_resend(self, received: int, now: int) -> None:
        begin = self.store.next_target
        self.event(f"MsgSeqNum too high, expecting {begin} but received {received}")
        self.resend_until = received - 1
        self.send("2", [(7, str(begin)), (16, "0")], now)
        self.event(f"Sent ResendRequest FROM: {begin} TO: 0")

    def _resend(self, fields: dict[int, str], now: int) -> None:
        """Answer a ResendRequest: application messages again with PossDupFlag (OMS side) or, for
        admin messages and everything on a venue session, SequenceReset-GapFill."""
        begin_text, end_text = fields.get(7, ""), fields.get(16, "")
        if not (begin_text.isdigit() and end_text.isdigit()):
            self._reject(int(fields.get(34, "0")), "2", 1, "BeginSeqNo (7) and EndSeqNo (16) are required")
            return
        last = self.store.next_sender - 1
        begin, end = int(begin_text), int(end_text)
        end = last if end == 0 or end > last else end
        self.event(f"Received ResendRequest FROM: {begin} TO: {end_text}")
        gap_start = 0
        not_resent: list[str] = []
        stamp = build.stamp(now)
        for seq, raw in self.store.get(begin, end) if begin <= end else ():
            parsed = parse.fields(raw)[0]
            msg_type = parsed.get(35, "")
            if msg_type in parse.ADMIN_TYPES or not self.resend_app:
                if msg_type in ("D", "G", "F") and not self.resend_app:
                    not_resent.append(parsed.get(11, ""))
                gap_start = gap_start or seq
                continue
            if gap_start:
                self._gap_fill(gap_start, seq, stamp, now)
                gap_start = 0
            header = [(43, "Y"), (122, parsed.get(52, stamp))]
            data = build.build(self.begin_string, msg_type, seq, self.sender, self.target, stamp,
                              parse.body_of(raw), header)
            self._send_raw(data, now)
        if begin <= end:
            if gap_start:
                self._gap_fill(gap_start, end + 1, stamp, now)
            elif not self.store.get(end, end):
                self._gap_fill(begin, end + 1, stamp, now)
        if not_resent:
            self.event(f"{len(not_resent)} order message(s) gap-filled, not sent late")
            self.owner.not_resent(self, not_resent)

    def _gap_fill(self, seq: int, new_seq: int, stamp: str, now: int) -> None:
        data = build.build(self.begin_string, "4", seq, self.sender, self.target, stamp,
                          [(36, str(new_seq)), (123, "Y")], [(43, "Y"), (122, stamp)])
        self._send_raw(data, now)

    # ------------------------------------------------------------------ timers

    def tick(self, now_mono: float, now_ns: int) -> None:
        """Heartbeats, TestRequests, dead peers, logon and logout timeouts, the daily reset."""
        conn = self.connection
        if conn is None:
            if now_ns // _DAY_NS != self.store.created_day:
                self.store.reset(now_ns)
            return
        if now_ns // _DAY_NS != self.store.created_day:
            self.logout("end of the session day")
            self.disconnect("end of the session day")
            self.store.reset(now_ns)
            return
        if not self.logged_on or self.logout_sent:
            if now_mono - conn.opened > 10 or (self.logout_sent and now_mono - self.last_sent > 5):
                self.disconnect("no Logon within 10 s" if not self.logged_on else "no answer to Logout")
            return
        hb = self.heartbeat_s
        silent = now_mono - self.last_received
        if silent > 2.4 * hb and self.test_request_sent:
            self.disconnect(f"nothing received for {silent:.0f} s")
            return
        if silent > 1.2 * hb and not self.test_request_sent:
            self.test_request_sent = True
            self.send("1", [(112, f"TEST{now_ns}")], now_ns)
        elif now_mono - self.last_sent >= hb:
            self.send("0", [], now_ns)


class Connection(asyncio.Protocol):
    """One TCP connection: frames bytes, finds (acceptor) or knows (initiator) its session."""

    def __init__(self, resolve, session: Session | None = None, owner: Owner | None = None, allowed=None,
                 cork: Cork = NO_CORK, limits=None, watch=None):
        self.resolve = resolve  # (begin_string, their CompID, our CompID) -> Session | None
        self.session = session
        self.owner = owner
        self.allowed = allowed
        self.framer = parse.Framer()
        self.cork = cork
        self.out: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.opened = time.monotonic()
        self.closed = False
        self.lost = asyncio.get_running_loop().create_future()  # done when the connection closes
        # Acceptor side: the bounds on connections that have not logged on (guard.PendingLimits and
        # the [acceptor] settings, from the engine); ``address`` is set while this one counts as pending.
        self.limits = limits
        self.address: str | None = None
        self.received = 0  # bytes read before the Logon completed
        self.timer: asyncio.TimerHandle | None = None
        self.watch = watch  # initiator side: the venue's guard.VenueWatch
        self.sock = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if self.allowed is not None and (peer is None or peer[0] not in self.allowed):
            transport.abort()
            return
        limits = self.limits
        if limits is not None and self.session is None:
            self.address = peer[0] if peer else "?"
            for old in limits.pending.admit(self, self.address):
                old.address = None
                if old is not self and self.owner is not None:
                    self.owner.garbled(None, f"connection from {old.transport.get_extra_info('peername')} closed "
                                             "before its Logon: too many connections not logged on")
                old.abort()
            if self.address is not None:
                self.timer = asyncio.get_running_loop().call_later(limits.logon_timeout_s, self._logon_timeout)
            return
        if self.session is not None:
            if self.watch is not None:
                self.sock = transport.get_extra_info("socket")
                self.watch.connect(time.monotonic())
            self.session.attach(self)
            self.session.send_logon()

    def _logon_timeout(self) -> None:
        self.timer = None
        if self.address is not None and not (self.session is not None and self.session.logged_on):
            if self.owner is not None:
                self.owner.garbled(None, f"connection from {self.transport.get_extra_info('peername')} closed: "
                                         f"no Logon within {self.limits.logon_timeout_s:g} s")
            self.abort()

    def _logged_on(self) -> None:
        """No longer a connection waiting for its Logon."""
        if self.address is not None:
            self.limits.pending.done(self, self.address)
            self.address = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

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
        if self.cork.depth:
            self.out.append(data)
            self.cork.dirty[self] = None
        else:
            self.transport.write(data)

    def flush(self) -> None:
        if self.out:
            if not self.closed:
                self.transport.write(b"".join(self.out))
            self.out.clear()

    def close(self) -> None:
        if not self.closed:
            self.flush()  # what was answered before closing (a Logout) still goes out
            self.closed = True
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.address is not None:  # not logged on yet: a few KiB at most
            self.received += len(data)
            if self.received > self.limits.max_logon_bytes:
                if self.owner is not None:
                    self.owner.garbled(None, f"connection from {self.transport.get_extra_info('peername')} "
                                             f"closed: over {self.limits.max_logon_bytes} bytes before its Logon")
                self.abort()
                return
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
        if self.address is not None:
            self._pending_frames(frames)
            return
        # The first message of a read is answered at once: its writes go out as it is handled, so
        # the peer works on them while this side records what it did (an ack is not held back by the
        # fill that came in the same read). The messages after it (a backlog) are all handled before
        # anything more is written: then each socket gets one write for them, as a system call costs
        # more here than handling a message.
        self._handle(frames[0])
        if len(frames) > 1:
            self.cork.hold()
            try:
                for frame in frames[1:]:
                    self._handle(frame)
            finally:
                self.cork.release()

    def _handle(self, data: bytes) -> None:
        if self.closed:
            return
        now = time.time_ns()
        raw = data.decode("latin-1")
        fields, problem = parse.fields(raw)
        session = self.session
        try:
            if session is None or not session.logged_on:
                self._logon(raw, fields, data, now, problem)
            else:
                session.on_message(raw, fields, problem, data, now)
        except Exception as exc:  # noqa: BLE001 - one message's failure must not end the connection
            self._failed(exc, fields, now)

    def _failed(self, exc: Exception, fields: dict[int, str], now: int) -> None:
        """A message whose handling raised: recorded by the owner (a notice and an alert), answered
        with a session Reject (373=99 "Other", 0 on FIX 4.2) if the session is logged on here, and
        the connection reads on (as the quickfix edge does)."""
        session = self.session
        failed = getattr(self.owner, "handler_failed", None)
        if failed is not None:
            failed(session, "message handling", exc, now)
        if session is not None and session.logged_on and session.connection is self:
            seq = fields.get(34, "")
            session._reject(int(seq) if seq.isdigit() and len(seq) < 19 else 0, fields.get(35, ""),
                            0 if session.begin_string == "FIX.4.2" else 99,
                            f"PROXY_ERROR: the message could not be handled ({type(exc).__name__})")

    def _logon(self, raw: str, fields: dict[int, str], data: bytes, now: int, problem: str = "") -> None:
        if fields.get(35) != "A":
            if self.session is not None and self.session.log is not None:
                self.session.log.message(data, now)
                self.session.event("First message is not a Logon")
            elif self.owner is not None:
                self.owner.garbled(None, "the first message on a connection is not a Logon")
            self.close()
            return
        if self.session is None:
            session = self.resolve(fields.get(8, ""), fields.get(49, ""), fields.get(56, ""))
            if session is None or (session.connection is not None and session.connection is not self):
                if self.owner is not None:
                    why = "unknown session" if session is None else "session already connected"
                    self.owner.garbled(None, f"Logon refused ({why}): {raw[:160]!r}")
                self.close()
                return
            self.session = session
            session.attach(self)
        if self.session.log is not None:
            self.session.log.message(data, now)
        # A Logon the dictionary or the clock refuses is not answered (no Reject before a Logon):
        # the connection is closed, as quickfix does ("Logon message is not valid").
        bad = self._logon_problem(fields, problem, now)
        if bad:
            self.session.event(f"Logon message is not valid: {bad}")
            self.close()
            return
        self.session.last_received = time.monotonic()
        self.session.on_logon(fields, now)

    def _logon_problem(self, fields: dict[int, str], problem: str, now: int) -> str:
        """Why a Logon cannot be taken ("" when it can)."""
        if problem:
            return problem
        if not fields.get(34, "").isdigit():
            return "Logon without MsgSeqNum (34)"
        bad = check.check(self.session.begin_string, "A", fields)
        if bad is not None:
            return bad[2]
        sending = fields.get(52, "")
        if not check.good_timestamp(sending):
            return "SendingTime (52) missing or not a timestamp"
        if not self.session.good_time(sending, now):
            return "SendingTime accuracy problem"
        return ""

    def _pending_frames(self, frames: list[bytes]) -> None:
        for frame in frames:
            self._handle(frame)
            if self.session is not None and self.session.logged_on and self.session.connection is self:
                self._logged_on()
            if self.closed:
                return

    def connection_lost(self, exc) -> None:
        self._logged_on()
        if self.watch is not None:
            self.watch.disconnect()
        self.closed = True
        if not self.lost.done():
            self.lost.set_result(None)
        if self.session is not None and self.session.connection is self:
            self.session.detached()
