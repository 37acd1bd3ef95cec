"""What every FIX engine edge shares: decoded message in -> ProxyCore -> messages out.

An engine (quickfix, native) owns the sessions and the wire; it hands each application message
it accepted to ``receive`` and implements ``_send``. The bridge journals each input, decodes it
once and runs the core under one lock (so every message leaves in decision order), sends what the
core decided and journals what went out and what was decided.
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import threading
import time
from collections.abc import Callable
from typing import Protocol

from ..core import events as ev, snapshot
from ..core.proxy import ProxyCore
from ..dayroll import trading_day
from ..fix import codec, desk
from ..fix.codec import DEFAULT_LIMITS, IdentifierLimits
from ..fix.parse import parse as parse_fields
from ..journal.recovery import write_snapshot
from ..journal.writer import Journal, JournalSink
from ..timefmt import fix_timestamp_ms
from .counts import EdgeCounts

_VENUE_ACTIONS = (ev.VenueNewOrder, ev.VenueReplace, ev.VenueCancel)
#: Order messages that may wait for a top-up of a shared limit's share (``wait_for_share``).
_SHARE_WAITERS = ("D", "G")


class ClusterHooks(Protocol):
    """What the bridge tells a cluster's lease manager (cluster/manager.py)."""

    def wake(self) -> None: ...

    def command_done(self, event: ev.Event, actions: list[ev.Action]) -> None: ...


#: Fault injection for the crash tests: the process kills itself (SIGKILL) right after journaling an
#: inbound message that this regular expression finds, before the core sees it. Unset in production.
_CRASH_AFTER_JOURNAL = (
    re.compile(os.environ["FIXPROXY_FAILPOINT_JOURNALED"], re.S)
    if os.environ.get("FIXPROXY_FAILPOINT_JOURNALED")
    else None
)
#: Fault injection for the edge tests: handling an inbound message that this regular expression finds
#: raises (after it is journaled), as a bug would. Unset in production.
_RAISE_AFTER_JOURNAL = (
    re.compile(os.environ["FIXPROXY_FAILPOINT_RAISE"], re.S) if os.environ.get("FIXPROXY_FAILPOINT_RAISE") else None
)

#: TransactTime (60) of the proxy's outbound messages.
transact_time = fix_timestamp_ms


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
    """Runs one ProxyCore for an engine; subclasses implement ``_send``.

    Order of work for every input: append it to the journal, hand it to the core, send what the
    core decided (each message journaled as sent), journal the decisions and notices. All of it
    under the core lock, so the journal holds inputs in the order the core took them.
    """

    def __init__(
        self,
        core: ProxyCore,
        sessions: list[SessionInfo],
        on_record: Callable[[ev.Action], None],
        clock: Callable[[], int] = time.time_ns,
        journal: JournalSink | None = None,
        check_logon: dict[str, Callable[[str, str], bool]] | None = None,
        identifiers: IdentifierLimits = DEFAULT_LIMITS,
    ):
        self.core = core
        #: The config's ``[identifiers]``: what the decoder accepts from an OMS (recovery and replay
        #: decode the journal with the same).
        self.identifiers = identifiers
        self.on_record = on_record  # decisions, notices, alerts, admin results: the log and the live feed
        #: The write-ahead journal (None only in tests of an edge alone).
        self.journal = journal
        # Username (553) / Password (554) checks of a session's Logon, by session name.
        self.check_logon = check_logon or {}
        #: Risk-desk session -> the Username it logged on with (its name when it needs none).
        self.desk_operators: dict[str, str] = {}
        self.clock = clock
        self.lock = threading.Lock()
        self._infos = list(sessions)
        # The sessions the core's OmsReport, OmsCancelReject, OmsBusinessReject and DropCopy go to.
        self._oms = {s.name: s for s in sessions if s.role in ("oms", "drop_copy")}
        self._venues = {s.name: s for s in sessions if s.role == "venue"}
        #: ([proxy] day_roll, timezone): when a new trading day begins (None: never, for tests of an edge alone).
        self.day_roll: tuple[str, str] | None = None
        #: Messages, decisions, alerts and decision latency since start-up, for GET /metrics.
        self.counts = EdgeCounts()
        #: ``[cluster]``: the instance's lease manager (cluster/manager.py), told of desk commands
        #: and of a share running low; None when the proxy runs alone.
        self.cluster: ClusterHooks | None = None
        #: How long an order waits for a top-up under way of a share of a shared limit (seconds).
        self.share_wait_s = 0.0
        #: ``[ha]``: asked before any byte goes on a socket (ha/node.py HaNode.gate); None alone.
        self.ha_gate: Callable[[], bool] | None = None

    def set_ha_gate(self, gate: Callable[[], bool]) -> None:
        self.ha_gate = gate

    def sent_seqs(self) -> dict[str, int]:
        """Session name -> the next outgoing sequence number, ``<name>/in`` -> the next inbound one,
        every message counted (``[ha]``'s copy)."""
        return {}

    def sessions(self) -> list[SessionInfo]:
        return list(self._infos)

    def engine_problem(self) -> str:
        """Why the engine cannot serve ("" when it can; /healthz fails on it). The native engine's
        sessions run on the loop that also answers /healthz; the quickfix edge watches its threads."""
        return ""

    def logon_allowed(self, info: SessionInfo, username: str, password: str) -> bool:
        """The session's Username/Password check (True when none is configured); a refusal is recorded."""
        check = self.check_logon.get(info.name)
        if check is None or check(username, password):
            if info.role == "admin":  # who the desk's requests are recorded as: never a field of theirs
                self.desk_operators[info.name] = username if check is not None else info.name
            return True
        kind = "desk_logon_refused" if info.role == "admin" else "logon_refused"
        self.notice(ev.Notice(kind, self.clock(), f"{info.name}: bad Username/Password"))
        return False

    # -------------------------------------------------------------- recording

    def notice(self, action: ev.Action) -> None:
        """Record an action that comes from the edge itself (takes the core lock: the journal has one writer)."""
        with self.lock:
            self._record(action)

    def _record(self, action: ev.Action) -> None:
        """Journal a decision, notice, alert or admin result, then log and show it; the caller holds the lock."""
        j = self.journal
        if j is not None:
            j.action(action)
        self.counts.action(action)
        self.on_record(action)

    def _sent(self, session: str, raw: str, now: int) -> None:
        """An application message went out (as on the wire); the caller holds the lock."""
        self.counts.outbound(session)
        j = self.journal
        if j is not None:
            j.outbound(session, now, raw)

    def _journal_event(self, event: ev.Event) -> None:
        j = self.journal
        if j is not None:
            j.event(event)
            if j.failed and not self.core.recording_failure:
                self._recording_failed(j, j.failed)

    def _recording_failed(self, j: JournalSink, reason: str) -> None:
        """The journal could not grow: the core refuses new risk from now on (a journaled event itself,
        written into the journal's reserve, so a replay refuses the same orders)."""
        event = ev.RecordingFailed(reason, self.clock())
        j.event(event)
        self._perform(self.core.handle(event))

    def resume_recording(self, operator: str, reason: str) -> ev.AdminResult:
        """A risk user's resume after a recording failure: the journal must be able to grow again."""
        with self.lock:
            j = self.journal
            problem = j.resume() if j is not None and j.failed else ""
            failing = self.core.recording_failure
        if problem:
            result = ev.AdminResult(
                "recording",
                False,
                "firm",
                operator,
                reason,
                self.clock(),
                failing,
                failing,
                f"the journal still cannot grow: {problem}",
            )
            self.notice(result)
            return result
        if not failing:
            return ev.AdminResult(
                "recording",
                True,
                "firm",
                operator,
                reason,
                self.clock(),
                "recording",
                "recording",
                "nothing to resume: the proxy is recording",
            )
        return next(
            a for a in self.submit(ev.RecordingResumed(operator, reason, self.clock())) if isinstance(a, ev.AdminResult)
        )

    # -------------------------------------------------------------- the day roll

    def day_due(self, now: int | None = None) -> bool:
        """Whether the trading day by the clock differs from the core's (read without the lock)."""
        if self.day_roll is None:
            return False
        return trading_day(self.clock() if now is None else now, *self.day_roll) != self.core.day

    def check_day(self) -> ev.AdminResult | None:
        """Roll to the clock's trading day if the core is on another: the DayRoll event is journaled,
        handled, and a snapshot of the core after it written at that point of the journal, so a
        recovery starts there instead of replaying the closed day."""
        if self.day_roll is None:
            return None
        with self.lock:
            now = self.clock()
            day = trading_day(now, *self.day_roll)
            if day == self.core.day:
                return None
            actions = self._run(ev.DayRoll(day, now, "fixproxy", f"day_roll {self.day_roll[0]} {self.day_roll[1]}"))
            j = self.journal
            if isinstance(j, Journal) and not j.failed:
                segment, offset = j.position
                write_snapshot(
                    j.directory,
                    segment,
                    pickle.dumps(snapshot.export_state(self.core), protocol=pickle.HIGHEST_PROTOCOL),
                    offset,
                )
            return next((a for a in actions if isinstance(a, ev.AdminResult)), None)

    # -------------------------------------------------------------- messages in

    def receive(self, info: SessionInfo, raw: str, now: int, fields: dict[int, str] | None = None) -> None:
        """One application message the engine accepted on ``info``'s session (raw, SOH-delimited;
        ``fields`` when the engine parsed it already)."""
        if fields is None:
            fields = parse_fields(raw)
        if self.core.shares.hungry and info.role == "oms" and fields.get(35) in _SHARE_WAITERS:
            self.wait_for_share()
        # One hold of the core lock journals the message, decodes it and runs what it asks. Journaled
        # under the lock: a venue's answer read on another engine thread while the order it answers
        # is still being sent is journaled after it, not before. One hold, not two: with two engine
        # threads, every release between them is a chance for the other to take the lock.
        with self.lock:
            self.receive_locked(info, raw, now, fields)
        if info.role == "admin":
            self._desk_message(info, fields, now)
        elif info.role == "drop_copy":
            self._drop_copy_message(info, fields)

    def receive_locked(self, info: SessionInfo, raw: str, now: int, fields: dict[int, str]) -> None:
        """``receive``'s work under the core lock, which the caller holds; a risk-desk message is
        left to the caller, which hands it to ``_desk_message`` once the lock is released.

        The message is in the journal before the core sees it; the engine counts its sequence
        number only after this returns (a kill -9 in between: recovery counts it from the journal).
        """
        j = self.journal
        if j is not None:
            j.inbound(info.name, now, raw)
            if j.failed and not self.core.recording_failure:
                self._recording_failed(j, j.failed)
            if _CRASH_AFTER_JOURNAL is not None and _CRASH_AFTER_JOURNAL.search(raw):
                os.kill(os.getpid(), signal.SIGKILL)
            if _RAISE_AFTER_JOURNAL is not None and _RAISE_AFTER_JOURNAL.search(raw):
                raise RuntimeError("failpoint FIXPROXY_FAILPOINT_RAISE")
        oms = info.role == "oms"
        self.counts.inbound(info.name, fields.get(35, ""), oms)
        if oms:
            actions = self.core.handle(codec.oms_to_event(fields, info.name, now, self.identifiers))
            self.counts.latency(self.clock() - now)  # from the engine's reading of the message to the decision
            self._perform(actions)
            if self.core.shares.hungry and self.cluster is not None:
                self.cluster.wake()
        elif info.role == "venue":
            try:
                event = codec.venue_to_event(fields, info.name, now)
            except codec.Invalid as exc:
                self._record(ev.Notice("bad_venue_message", now, f"{info.name}: {exc}"))
                return
            if event is not None:
                self._handle(event)

    # -------------------------------------------------------------- core hand-off

    def submit(self, event: ev.Event) -> list[ev.Action]:
        """Journal one event, run it through the core and send what it decides, in order; returns the actions."""
        with self.lock:
            return self._run(event)

    def _run(self, event: ev.Event) -> list[ev.Action]:
        """``submit``'s work; the caller holds the core lock."""
        self._journal_event(event)
        return self._handle(event)

    def _handle(self, event: ev.Event) -> list[ev.Action]:
        """The core's answer to a journaled event, carried out."""
        actions = self.core.handle(event)
        self._perform(actions)
        if self.cluster is not None and isinstance(event, ev.ADMIN_COMMANDS):
            self.cluster.command_done(event, actions)
        return actions

    def wait_for_share(self) -> None:
        """An order arrives while this instance's share of a shared limit runs low: wait (without the
        core lock) up to ``share_wait_s`` for the top-up under way, unless the cluster has none to give."""
        shares = self.core.shares
        deadline = time.monotonic() + self.share_wait_s
        while shares.hungry and not shares.dry and time.monotonic() < deadline:
            time.sleep(0.0005)

    def _perform(self, actions: list[ev.Action]) -> None:
        failed: list[ev.Event] = []
        for action in actions:
            if not isinstance(action, ev.MESSAGE_ACTIONS):
                self._record(action)
                continue
            info: SessionInfo | None
            if isinstance(action, _VENUE_ACTIONS):
                info = self._venues[action.venue]
            else:
                info = self._oms.get(action.session)
                if info is None:
                    continue
            now = self.clock()
            msg_type, body = codec.action_to_message(action, info.fix42, transact_time(now))
            if not self._send(info, msg_type, body, now):
                if isinstance(action, _VENUE_ACTIONS):
                    failed.append(ev.VenueSendFailed(action.venue, action.cl_ord_id, now))
                else:
                    self._record(
                        ev.Notice(
                            "send_failed",
                            now,
                            f"{info.name}: {msg_type} not sent (session down); kept in the session store for resend",
                        )
                    )
        for event in failed:
            self._run(event)

    def _send(self, info: SessionInfo, msg_type: str, body: list[tuple[int, str]], now: int) -> bool:
        """Send one application message on ``info``'s session (the engine adds the header and calls
        ``_sent`` with the bytes that went out); False: not sent."""
        raise NotImplementedError

    # -------------------------------------------------------------- the risk-desk session

    def _desk_message(self, info: SessionInfo, fields: dict[int, str], now: int) -> None:
        """KillSwitchRequest in, KillSwitchReport out; anything else on this session is refused."""
        msg_type = fields.get(35, "")
        report_id = f"K{now}"
        # Under the core lock like every other send: the reply is journaled as it goes out.
        if msg_type == "U1":
            event = desk.request_to_event(fields, self.desk_operators.get(info.name, info.name), now)
            with self.lock:
                if isinstance(event, str):
                    reply = desk.refusal_to_report(fields, event, report_id)
                    self._record(ev.Notice("desk_request_refused", now, f"{info.name}: {event}"))
                else:
                    result = next(a for a in self._run(event) if isinstance(a, ev.AdminResult))
                    reply = desk.result_to_report(result, fields, report_id)
                self._send(info, reply[0][1], reply[1:], now)
            return
        refusal = _not_taken(info.name, fields, "UNSUPPORTED_MESSAGE", "the risk-desk session")
        text = refusal.text
        _, body = codec.action_to_message(refusal, False, "")
        with self.lock:
            self._record(ev.Notice("desk_message_refused", now, f"{info.name}: {text}"))
            self._send(info, "j", body, now)

    # -------------------------------------------------------------- drop-copy sessions

    def _drop_copy_message(self, info: SessionInfo, fields: dict[int, str]) -> None:
        """A drop-copy session sends no orders: any application message from one (journaled as
        received, never handed to the core) is refused with a BusinessMessageReject."""
        refusal = _not_taken(info.name, fields, "NOT_AUTHORIZED", "a drop-copy session")
        with self.lock:
            self._record(ev.Notice("drop_copy_message_refused", self.clock(), f"{info.name}: {refusal.text}"))
            self._perform([refusal])


def _not_taken(session: str, fields: dict[int, str], order_prefix: str, where: str) -> ev.OmsBusinessReject:
    """The BusinessMessageReject of an application message on a session that takes none (the risk
    desk's takes only its own requests, a drop copy's none): an order is NOT_AUTHORIZED (its Text
    starting ``order_prefix``), anything else UNSUPPORTED_MESSAGE."""
    msg_type = fields.get(35, "")
    is_order = msg_type in ("D", "G", "F")
    text = (
        f"{order_prefix}: {where} does not take orders"
        if is_order
        else f"UNSUPPORTED_MESSAGE: message type {msg_type} is not accepted on {where}"
    )
    code = "NOT_AUTHORIZED" if is_order else "UNSUPPORTED_MESSAGE"
    return ev.OmsBusinessReject(session, int(fields.get(34, "0") or 0), msg_type, fields.get(11, ""), code, text)
