"""The FIX 4.2/4.4 and FIXT.1.1 session layer as a state machine that does no I/O and reads no clock.

Sequence numbers, Logon/Logout, Heartbeat/TestRequest, ResendRequest (answered with PossDupFlag
resends or gap fills), SequenceReset, the queue of messages that arrived ahead of a gap and the
SendingTime window. After h11's shape, the caller hands in what happened and the time, and gets
back events and the bytes to write (``Step``)::

    events, out = session.connect(now_ns)          # a connection carries the session (initiator: our Logon)
    events, out = session.receive(frame, now_ns)   # one framed message (parse.Framer) from the peer
    events, out = session.resume(now_ns)           # after a Received event: count it, go on
    events, out = session.tick(now_ns)             # about once a second: heartbeats, test requests, timeouts
    sent = session.send(msg_type, body, now_ns)    # an application message of ours
    events = session.disconnected(now_ns)          # the connection is gone

``out`` goes on the wire before the events are acted on. ``Close`` asks the transport to close
the connection; ``connected`` stays True until the transport says ``disconnected``. The session
stops after each ``Received`` (an application message for the owner) until ``resume``: the owner
journals the message before its number counts as received, and its answers go out before the
session handles the messages queued behind it. ``paused`` says a ``resume`` is due.

Decisions that are not the session's: which configured session a Logon's CompIDs name (the
transport's, connection.py), and whether its Username/Password pass (``check_logon``, injected).
Two dependencies are injected the way the time is: the ``store`` (sequence numbers and the
messages sent, for resends: ``Store``; store.FileStore in production, store.MemoryStore in tests)
and the message ``log`` (``Log``: store.FileLog, or None). Timers run on the ``now_ns`` given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ...fix import build, check, parse
from ...fix.versions import APPL_VER_ID, FIXT, appl_ver_problem

_S = 1_000_000_000
_DAY_NS = 86_400 * _S
#: Message types the session layer answers itself.
_SESSION_TYPES = frozenset(("0", "1", "2", "3", "4", "5", "A"))
#: How far a SendingTime (52) may be from the time given (quickfix's MaxLatency default).
MAX_LATENCY_S = 120
#: A connection whose Logon exchange has not completed within this is closed (seconds).
LOGON_TIMEOUT_S = 10
#: A Logout of ours unanswered for this long: the connection is closed (seconds).
LOGOUT_TIMEOUT_S = 5


class Store(Protocol):
    """Sequence numbers and the messages sent (store.FileStore, store.MemoryStore)."""

    next_sender: int
    next_target: int
    created_day: int  # the UTC day (days since the epoch) the store was started

    def reset(self, now_ns: int) -> None: ...
    def save_seqnums(self) -> None: ...
    def sent(self, seq: int, data: bytes) -> None: ...
    def get(self, begin: int, end: int) -> list[tuple[int, str]]: ...


class Log(Protocol):
    """The message and event logs of a session (store.FileLog)."""

    def message(self, data: bytes, now_ns: int) -> None: ...
    def event(self, text: str, now_ns: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Received:
    """An application message in sequence and checked, for the owner; ``resume`` counts it."""

    raw: str
    fields: dict[int, str]


@dataclass(frozen=True, slots=True)
class LoggedOn:
    """The Logon exchange completed."""


@dataclass(frozen=True, slots=True)
class LoggedOut:
    """A logged-on session lost its connection."""


@dataclass(frozen=True, slots=True)
class NotResent:
    """Orders (their ClOrdIDs) that a ResendRequest got a gap fill for: never sent late."""

    cl_ord_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection, after writing the bytes that came before."""

    why: str


Event = Received | LoggedOn | LoggedOut | NotResent | Close
#: What a call returns: the events, in order, and the bytes to write first.
Step = tuple[list[Event], bytes]


def _allow(fields: dict[int, str]) -> bool:
    return True


class Session:
    """One configured session: its state across connections, and the rules of the session layer."""

    def __init__(
        self,
        *,
        name: str,
        role: str,
        begin_string: str,
        sender: str,
        target: str,
        heartbeat_s: int,
        store: Store,
        log: Log | None,
        initiator: bool,
        resend_app: bool,
        check_logon: Callable[[dict[int, str]], bool] = _allow,
        extra_types: frozenset[str] = frozenset(),
    ):
        self.name, self.role = name, role
        self.begin_string, self.sender, self.target = begin_string, sender, target
        #: FIXT.1.1 (FIX 5.0SP2): DefaultApplVerID (1137) on Logon, ApplVerID (1128) checked when present.
        self.fixt = begin_string == FIXT
        self.heartbeat_s = heartbeat_s
        self.store, self.log = store, log
        self.initiator = initiator
        self.resend_app = resend_app  # resend application messages (OMS side) or gap-fill them (venue side)
        self.check_logon = check_logon  # the owner's Username/Password decision on an acceptor's Logon
        self.extra_types = extra_types  # message types this session adds to its dictionary (the desk's)
        self.connected = False
        self.logged_on = False
        self.logout_sent = False
        self.opened = self.last_sent = self.last_received = 0
        self.test_request_sent = False
        self.resend_until = 0  # > 0 while a ResendRequest of ours is outstanding (its end)
        self.queued: dict[int, tuple[str, dict[int, str], parse.Problem | str]] = {}
        self._window = (0, "", "")  # (second, earliest, latest SendingTime accepted in it)
        self._pending = 0  # the number of a Received waiting for resume()
        self._events: list[Event] = []
        self._out: list[bytes] = []

    @property
    def paused(self) -> bool:
        """A Received was returned and ``resume`` has not been called yet."""
        return self._pending > 0

    def _take(self) -> Step:
        events, out = self._events, b"".join(self._out)
        self._events, self._out = [], []
        return events, out

    def _begin(self) -> None:
        self._events, self._out = [], []

    # ------------------------------------------------------------------ the transport's inputs

    def connect(self, now: int) -> Step:
        """A connection carries this session from now on; an initiator sends its Logon."""
        self._begin()
        self.connected = True
        self.logout_sent = False
        self.test_request_sent = False
        self.resend_until = 0
        self._pending = 0
        self.queued.clear()
        self.opened = self.last_sent = self.last_received = now
        if self.initiator:
            self._send_logon(now)
        return self._take()

    def disconnected(self, now: int) -> list[Event]:
        """The connection is gone."""
        self.connected = False
        was = self.logged_on
        self.logged_on = False
        self._pending = 0
        self.queued.clear()
        self.resend_until = 0
        if was:
            self.event("Disconnected", now)
            return [LoggedOut()]
        return []

    def receive(self, data: bytes, now: int) -> Step:
        """One framed message from the peer."""
        self._begin()
        self._pending = 0  # a Received never resumed is not counted: the peer's resend brings it again
        raw = data.decode("latin-1")
        fields, problem = parse.fields(raw)
        if self.logged_on:
            self._message(raw, fields, problem, data, now)
        else:
            self._logon_message(fields, problem, data, now)
        return self._take()

    def resume(self, now: int) -> Step:
        """Count the message of the last Received and handle what was queued behind it."""
        self._begin()
        seq, self._pending = self._pending, 0
        if seq:
            self.store.next_target = seq + 1
            self.store.save_seqnums()
            self._drain(now)
        return self._take()

    def tick(self, now: int) -> Step:
        """Heartbeats, TestRequests, dead peers, Logon and Logout timeouts, the daily reset."""
        self._begin()
        day_over = now // _DAY_NS != self.store.created_day
        if not self.connected:
            if day_over:
                self.store.reset(now)
            return self._take()
        if day_over:
            self._logout("end of the session day", now)
            self._disconnect("end of the session day", now)
            self.store.reset(now)
            return self._take()
        if not self.logged_on or self.logout_sent:
            if now - self.opened > LOGON_TIMEOUT_S * _S or (
                self.logout_sent and now - self.last_sent > LOGOUT_TIMEOUT_S * _S
            ):
                self._disconnect(
                    f"no Logon within {LOGON_TIMEOUT_S} s" if not self.logged_on else "no answer to Logout", now
                )
            return self._take()
        hb = self.heartbeat_s * _S
        silent = now - self.last_received
        if silent > 2.4 * hb and self.test_request_sent:
            self._disconnect(f"nothing received for {silent / _S:.0f} s", now)
        elif silent > 1.2 * hb and not self.test_request_sent:
            self._test_request(now)
        elif now - self.last_sent >= hb:
            self._send("0", [], now)
        return self._take()

    # ------------------------------------------------------------------ the owner's inputs

    def send(self, msg_type: str, body: list[tuple[int, str]], now: int) -> tuple[bytes, bool] | None:
        """Number, build and store one message of ours.

        Returns the message and whether it goes on the wire now (the caller writes it). An OMS
        session that is down keeps an application message in the store: the peer gets it by
        ResendRequest after its next Logon (as quickfix). None: not sent, no number used (a venue
        session that is down, or a session message with no connection to carry it).
        """
        if msg_type == "A" or msg_type == "5":
            if not self.connected:
                return None
        elif not (self.logged_on and self.connected):
            if self.role == "venue" or msg_type in parse.ADMIN_TYPES:
                return None
            seq = self.store.next_sender
            data = build.build(self.begin_string, msg_type, seq, self.sender, self.target, build.stamp(now), body)
            self.store.sent(seq, data)
            return data, False
        seq = self.store.next_sender
        data = build.build(self.begin_string, msg_type, seq, self.sender, self.target, build.stamp(now), body)
        self.store.sent(seq, data)
        if self.log is not None:
            self.log.message(data, now)
        self.last_sent = now
        return data, True

    def logout(self, text: str, now: int) -> Step:
        """Send Logout; the connection closes when the peer answers (or on ``tick``'s timeout)."""
        self._begin()
        self._logout(text, now)
        return self._take()

    def close(self, why: str, now: int) -> Step:
        """Close the connection now (its reason goes to the event log)."""
        self._begin()
        self._disconnect(why, now)
        return self._take()

    def test_request(self, now: int) -> bytes:
        """A TestRequest (a peer that may be gone); its Heartbeat is awaited as ``tick``'s is."""
        self._begin()
        self._test_request(now)
        return self._take()[1]

    def failed(self, fields: dict[int, str], error: str, now: int) -> bytes:
        """A session Reject (373=99 "Other", 0 on FIX 4.2) of a message whose handling raised ``error``."""
        self._begin()
        seq = fields.get(34, "")
        self._reject(
            int(seq) if seq.isdigit() and len(seq) < 19 else 0,
            fields.get(35, ""),
            0 if self.begin_string == "FIX.4.2" else 99,
            f"PROXY_ERROR: the message could not be handled ({error})",
            now,
        )
        return self._take()[1]

    def event(self, text: str, now: int) -> None:
        """A line in the session's event log."""
        if self.log is not None:
            self.log.event(text, now)

    # ------------------------------------------------------------------ sending

    def _send(self, msg_type: str, body: list[tuple[int, str]], now: int) -> None:
        sent = self.send(msg_type, body, now)
        if sent is not None and sent[1]:
            self._out.append(sent[0])

    def _send_raw(self, data: bytes, now: int) -> None:
        if self.connected:
            if self.log is not None:
                self.log.message(data, now)
            self._out.append(data)
            self.last_sent = now

    def _send_logon(self, now: int, reset: bool = False) -> None:
        body = [(98, "0"), (108, str(self.heartbeat_s))]
        if reset:
            body.append((141, "Y"))
        if self.fixt:
            body.append((1137, APPL_VER_ID))
        self._send("A", body, now)

    def _test_request(self, now: int) -> None:
        self.test_request_sent = True
        self._send("1", [(112, f"TEST{now}")], now)

    def _logout(self, text: str, now: int) -> None:
        if not self.connected or self.logout_sent:
            return
        self.logout_sent = True
        self._send("5", [(58, text)] if text else [], now)
        self.event(f"Initiated logout request: {text}", now)

    def _disconnect(self, why: str, now: int) -> None:
        if self.connected:
            self.event(f"Disconnecting: {why}", now)
            self._events.append(Close(why))

    # ------------------------------------------------------------------ logon

    def _logon_message(self, fields: dict[int, str], problem: parse.Problem | str, data: bytes, now: int) -> None:
        """A message on a connection whose Logon exchange has not completed."""
        if self.log is not None:
            self.log.message(data, now)
        if fields.get(35) != "A":
            self.event("First message is not a Logon", now)
            self._events.append(Close("first message is not a Logon"))
            return
        # A Logon the dictionary or the clock refuses is not answered (no Reject before a Logon):
        # the connection is closed, as quickfix does ("Logon message is not valid").
        bad = self._logon_problem(fields, problem, now)
        if bad:
            self.event(f"Logon message is not valid: {bad}", now)
            self._events.append(Close(f"Logon message is not valid: {bad}"))
            return
        self.last_received = now
        self._on_logon(fields, now)

    def _logon_problem(self, fields: dict[int, str], problem: parse.Problem | str, now: int) -> str:
        """Why a Logon cannot be taken ("" when it can)."""
        if problem:
            return str(problem)
        if not fields.get(34, "").isdigit():
            return "Logon without MsgSeqNum (34)"
        bad = check.check(self.begin_string, "A", fields)
        if bad is not None:
            return bad[2]
        sending = fields.get(52, "")
        if not check.good_timestamp(sending):
            return "SendingTime (52) missing or not a timestamp"
        if not self.good_time(sending, now):
            return "SendingTime accuracy problem"
        return ""

    def _on_logon(self, fields: dict[int, str], now: int) -> None:
        seq = int(fields.get(34, "0"))
        reset = fields.get(141) == "Y"
        if self.fixt:
            text = appl_ver_problem(1137, fields.get(1137))
            if text:  # an application version the proxy does not read: refused, as a bad password is
                self.event(f"Logon refused: {text}", now)
                self._send("5", [(58, text)], now)
                self._disconnect("logon refused", now)
                return
        if not self.initiator:
            self.event("Received logon request", now)
            if not self.check_logon(fields):
                self._send("5", [(58, "bad Username (553) or Password (554)")], now)
                self._disconnect("logon refused", now)
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
            self.event(text, now)
            self._send("5", [(58, text)], now)
            self._disconnect(text, now)
            return
        self.logged_on = True
        if not self.initiator:
            self.event("Responding to logon request", now)
            self._send_logon(now, reset)
        else:
            self.event("Received logon response", now)
        if seq > self.store.next_target:
            self._request_resend(seq, now)
            self.queued[seq] = ("", {35: "A", 34: str(seq)}, "")  # counted when the gap is filled
        else:
            self.store.next_target = seq + 1
            self.store.save_seqnums()
        self._events.append(LoggedOn())

    # ------------------------------------------------------------------ receiving

    def _message(self, raw: str, fields: dict[int, str], problem: parse.Problem | str, data: bytes, now: int) -> None:
        """One message on the logged-on session.

        Checked in quickfix's order: readable at all, BeginString, MsgSeqNum, the header's required
        fields and SendingTime, CompIDs, then the sequence number; the dictionary's checks of the
        message itself come when its number is the expected one (``_process``).
        """
        if self.log is not None:
            self.log.message(data, now)
        self.last_received = now
        self.test_request_sent = False
        if isinstance(problem, parse.Problem) and problem.reason == parse.IGNORE:
            self.event(f"Invalid message ignored: {problem}", now)
            return
        if fields.get(8) != self.begin_string:
            text = f"Incorrect BeginString {fields.get(8, '')[:16]}"
            self.event(text, now)
            self._logout(text, now)
            self._disconnect(text, now)
            return
        msg_type = fields.get(35, "")
        seq_text = fields.get(34, "")
        if not (seq_text.isdigit() and seq_text.isascii() and len(seq_text) < 19):
            self.event(f"Incorrect data format for value with tag: 34: {seq_text[:20]!r}: message ignored", now)
            return
        seq = int(seq_text)
        for tag in (49, 56):
            if tag not in fields:
                if msg_type in _SESSION_TYPES:
                    self._refuse(seq, msg_type, 1, f"Required tag missing: {check.tag_name(tag)}", now, tag)
                else:  # as quickfix answers an application message whose header lacks a CompID
                    self._business_reject(seq, msg_type, f"Conditionally Required Field Missing ({tag})", now)
                return
        sending = fields.get(52)
        if sending is None or not check.good_timestamp(sending):
            self._refuse(
                seq,
                msg_type,
                1 if sending is None else 6,
                "Required tag missing: SendingTime (52)"
                if sending is None
                else "Incorrect data format for value: SendingTime (52) is not a UTC timestamp",
                now,
                52,
            )
            return
        if not self.good_time(sending, now):
            self._reject(seq, msg_type, 10, "SendingTime accuracy problem", now)
            self._logout("SendingTime accuracy problem", now)
            return
        if fields[49] != self.target or fields[56] != self.sender:
            self._reject(seq, msg_type, 9, "CompID problem", now)
            self._logout("CompID problem", now)
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
                self._logout_received(fields, now)
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
                        self._reject(seq, msg_type, 1, "Required tag missing: OrigSendingTime (122)", now, 122)
                    elif orig > sending:
                        self._reject(
                            seq,
                            msg_type,
                            10,
                            "SendingTime accuracy problem: OrigSendingTime (122) is later than SendingTime (52)",
                            now,
                        )
                        self._logout("SendingTime accuracy problem", now)
                return
            text = f"MsgSeqNum too low, expecting {expected} but received {seq}"
            self.event(text, now)
            self._logout(text, now)
            self._disconnect(text, now)
            return
        self._process(raw, fields, problem, msg_type, seq, now)
        if not self._pending:
            self._drain(now)

    def _drain(self, now: int) -> None:
        """Handle the queued messages that are now in sequence (stopping at a Received)."""
        while self.queued and self.connected:
            nxt = self.store.next_target
            for stale in [s for s in self.queued if s < nxt]:
                del self.queued[stale]
            item = self.queued.pop(nxt, None)
            if item is None:
                break
            q_raw, q_fields, q_problem = item
            self._process(q_raw, q_fields, q_problem, q_fields.get(35, ""), nxt, now)
            if self._pending:
                return
        if self.resend_until and self.store.next_target > self.resend_until and not self.queued:
            self.resend_until = 0
            self.event("Resend complete", now)

    def good_time(self, sending: str, now: int) -> bool:
        """SendingTime within MAX_LATENCY_S of ``now`` (two string comparisons: the bounds are
        made once a second, and UTC timestamps order as text)."""
        second = now // _S
        if self._window[0] != second:
            self._window = (
                second,
                build.stamp((second - MAX_LATENCY_S) * _S),
                build.stamp((second + MAX_LATENCY_S + 1) * _S),
            )
        return self._window[1] <= sending <= self._window[2]

    def _process(
        self, raw: str, fields: dict[int, str], problem: parse.Problem | str, msg_type: str, seq: int, now: int
    ) -> None:
        store = self.store
        if not raw:  # a Logon or ResendRequest already acted on, counted now that the gap is filled
            store.next_target = seq + 1
            store.save_seqnums()
            return
        if isinstance(problem, parse.Problem):
            bad: tuple[int, int, str] | None = (problem.reason, problem.tag, str(problem))
        else:
            bad = check.check(self.begin_string, msg_type, fields, self.extra_types)
            if self.fixt and bad is None and 1128 in fields:
                text = appl_ver_problem(1128, fields[1128])
                if text:
                    bad = (5, 1128, text)
        if bad is None and msg_type not in _SESSION_TYPES:
            # The owner journals it, then resume() counts its number: a kill -9 in between, and
            # recovery counts it from the journal.
            self._events.append(Received(raw, fields))
            self._pending = seq
            return
        store.next_target = seq + 1
        if bad is not None:
            store.save_seqnums()
            self._reject(seq, msg_type, bad[0], bad[2], now, bad[1])
            return
        if msg_type == "4":  # SequenceReset-GapFill (NewSeqNo is a number: checked above)
            store.next_target = max(int(fields[36]), seq + 1)
        store.save_seqnums()
        if msg_type == "1":
            self._send("0", [(112, fields[112])], now)
        elif msg_type == "2":
            self._resend(fields, now)
        elif msg_type == "3":
            self.event(f"Message {fields.get(45, '?')} rejected: {fields.get(58, fields.get(373, ''))}", now)
        elif msg_type == "5":
            self._logout_received(fields, now)
        elif msg_type == "A":  # a second Logon on a logged-on session (quickfix drops the connection too)
            self._disconnect("Logon state is not valid for message", now)

    def _refuse(self, seq: int, msg_type: str, reason: int, text: str, now: int, ref_tag: int = 0) -> None:
        """A session Reject for a message refused before its number was checked: the number counts
        if it was the expected one (as quickfix's generateReject)."""
        if seq == self.store.next_target and msg_type not in ("A", "4"):
            self.store.next_target = seq + 1
            self.store.save_seqnums()
        self._reject(seq, msg_type, reason, text, now, ref_tag)

    def _business_reject(self, seq: int, msg_type: str, text: str, now: int) -> None:
        """BusinessMessageReject 380=5 (conditionally required field missing), as quickfix sends
        for an application message whose header lacks a field it needs."""
        if seq == self.store.next_target:
            self.store.next_target = seq + 1
            self.store.save_seqnums()
        self.event(f"Message {seq} Rejected: {text}", now)
        self._send("j", [(45, str(seq)), (372, msg_type or "?"), (380, "5"), (58, text)], now)

    def _logout_received(self, fields: dict[int, str], now: int) -> None:
        self.event(f"Received logout{': ' + fields[58] if 58 in fields else ''}", now)
        if not self.logout_sent:
            self.logout_sent = True
            self._send("5", [], now)
        self._disconnect("logout", now)

    def _reject(self, ref_seq: int, msg_type: str, reason: int, text: str, now: int, ref_tag: int = 0) -> None:
        body = [(45, str(ref_seq))]
        if ref_tag:
            body.append((371, str(ref_tag)))
        body += [(372, msg_type or "?"), (373, str(reason))]
        body.append((58, text))
        self.event(f"Message {ref_seq} Rejected: {text}", now)
        self._send("3", body, now)

    def _sequence_reset(self, fields: dict[int, str], now: int) -> None:
        new = fields.get(36, "")
        if not new.isdigit():
            self._reject(int(fields.get(34, "0")), "4", 1, "Required tag missing: NewSeqNo (36)", now, 36)
            return
        if int(new) < self.store.next_target:
            self._reject(
                int(fields[34]), "4", 5, f"NewSeqNo {new} is below the expected {self.store.next_target}", now, 36
            )
            return
        self.event(f"Received SequenceReset FROM: {self.store.next_target} TO: {new}", now)
        self.store.next_target = int(new)
        self.store.save_seqnums()

    def _request_resend(self, received: int, now: int) -> None:
        begin = self.store.next_target
        self.event(f"MsgSeqNum too high, expecting {begin} but received {received}", now)
        self.resend_until = received - 1
        self._send("2", [(7, str(begin)), (16, "0")], now)
        self.event(f"Sent ResendRequest FROM: {begin} TO: 0", now)

    def _resend(self, fields: dict[int, str], now: int) -> None:
        """Answer a ResendRequest: application messages again with PossDupFlag (OMS side) or, for
        admin messages and everything on a venue session, SequenceReset-GapFill."""
        begin_text, end_text = fields.get(7, ""), fields.get(16, "")
        if not (begin_text.isdigit() and end_text.isdigit()):
            self._reject(int(fields.get(34, "0")), "2", 1, "BeginSeqNo (7) and EndSeqNo (16) are required", now)
            return
        last = self.store.next_sender - 1
        begin, end = int(begin_text), int(end_text)
        end = last if end == 0 or end > last else end
        self.event(f"Received ResendRequest FROM: {begin} TO: {end_text}", now)
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
            if 97 in parsed:  # PossResend stays on a message sent again, as quickfix keeps it
                header.append((97, parsed[97]))
            data = build.build(
                self.begin_string, msg_type, seq, self.sender, self.target, stamp, parse.body_of(raw), header
            )
            self._send_raw(data, now)
        if begin <= end:
            if gap_start:
                self._gap_fill(gap_start, end + 1, stamp, now)
            elif not self.store.get(end, end):
                self._gap_fill(begin, end + 1, stamp, now)
        if not_resent:
            self.event(f"{len(not_resent)} order message(s) gap-filled, not sent late", now)
            self._events.append(NotResent(tuple(not_resent)))

    def _gap_fill(self, seq: int, new_seq: int, stamp: str, now: int) -> None:
        data = build.build(
            self.begin_string,
            "4",
            seq,
            self.sender,
            self.target,
            stamp,
            [(36, str(new_seq)), (123, "Y")],
            [(43, "Y"), (122, stamp)],
        )
        self._send_raw(data, now)
