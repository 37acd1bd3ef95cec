"""The native engine: every FIX session of the proxy on one asyncio (uvloop) thread.

An acceptor for the OMS and risk-desk sessions and an initiator per venue: the sans-IO session
layer of ``session.py``, carried by the connections of ``connection.py``. A message is read,
checked by the core and forwarded on the thread that read it, with no thread hand-off and no
foreign-function calls on the way: the design's "second engine under the same core". Stores and
logs are quickfix's file formats (``store.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from ...config import Config
from ...core import events as ev
from ...core.proxy import ProxyCore
from ..bridge import CoreBridge, SessionInfo
from ..guard import PendingLimits, PreLogon, VenueWatch, reset, tcp_acked
from ..quickfix.dictionary import SPEC_EXTENSION
from .connection import Connection
from .session import Session, Step
from .store import Cork, FileLog, FileStore

#: How often the message logs are written (seconds).
LOG_FLUSH_S = 0.02
#: How often each venue connection's unsent bytes and unanswered orders are checked (seconds).
WATCH_S = 0.1
#: Messages towards a venue that carry an order (ClOrdID first in their body).
_ORDER_TYPES = frozenset(("D", "G", "F"))


def prefix(begin_string: str, sender: str, target: str) -> str:
    return f"{begin_string}-{sender}-{target}"


@cache
def desk_types() -> frozenset[str]:
    """The message types the risk-desk session adds to FIX 4.4 (spec/admin-dictionary.xml, as quickfix reads it)."""
    return frozenset(m.get("msgtype", "") for m in ET.parse(SPEC_EXTENSION).getroot().iter("message"))


class NativeBridge(CoreBridge):
    """Runs the proxy's sessions and one ProxyCore on the running event loop."""

    def __init__(
        self, core: ProxyCore, on_record: Callable[[ev.Action], None], *, config: Config, state_dir: Path, **kwargs: Any
    ):
        cfg = config
        self.config = cfg
        now = time.time_ns()
        self._sessions: dict[tuple[str, str, str], Session] = {}  # (BeginString, their CompID, ours)
        self._info: dict[str, SessionInfo] = {}
        #: Session name -> the session (SessionInfo.handle, typed).
        self.by_name: dict[str, Session] = {}
        self._stores: list[FileStore] = []
        self._logs: list[FileLog] = []
        #: Session name -> the connection carrying it (kept by Connection).
        self.links: dict[str, Connection] = {}
        self._venue_addresses: dict[str, tuple[str, int, int]] = {}
        acc = cfg.acceptor
        infos: list[SessionInfo] = []
        self.cork = Cork()
        # Bounds on connections that have not logged on (read by Connection).
        self.pending: PendingLimits[PreLogon] = PendingLimits(acc.max_connections, acc.max_connections_per_address)
        self.logon_timeout_s = acc.logon_timeout_s
        self.max_logon_bytes = acc.max_logon_bytes
        self._watches: dict[str, VenueWatch] = {
            v.name: VenueWatch(
                v.name, v.max_unsent_kb << 10, v.max_order_age_ms / 1000, v.answer_timeout_ms / 1000, margin_s=WATCH_S
            )
            for v in cfg.venues
        }
        self._watch_due: set[str] = set()

        def add(name: str, role: str, begin: str, ours: str, theirs: str, heartbeat: int, initiator: bool) -> Session:
            side = "venue" if role == "venue" else "oms"
            info = SessionInfo(name, role, begin)

            def check_logon(fields: dict[int, str]) -> bool:
                return self.logon_allowed(info, fields.get(553, ""), fields.get(554, ""))

            store = FileStore(state_dir / "store" / side, prefix(begin, ours, theirs), now)
            log = (
                FileLog(state_dir / "log" / side, prefix(begin, ours, theirs), deferred=True)
                if cfg.proxy.message_log
                else None
            )
            self._stores.append(store)
            if log is not None:
                self._logs.append(log)
            session = Session(
                name=name,
                role=role,
                begin_string=begin,
                sender=ours,
                target=theirs,
                heartbeat_s=heartbeat,
                store=store,
                log=log,
                initiator=initiator,
                resend_app=role != "venue",
                check_logon=check_logon,
                extra_types=desk_types() if role == "admin" else frozenset(),
            )
            info.handle = session
            self._sessions[(begin, theirs, ours)] = session
            self._info[name] = info
            self.by_name[name] = session
            infos.append(info)
            return session

        for s in cfg.oms:
            add(s.name, "oms", s.begin_string, acc.comp_id, s.comp_id, acc.heartbeat_s, False)
        if cfg.risk_desk.comp_id:
            add(cfg.risk_desk.name, "admin", "FIX.4.4", acc.comp_id, cfg.risk_desk.comp_id, acc.heartbeat_s, False)
        for d in cfg.drop_copy:
            add(d.name, "drop_copy", d.begin_string, acc.comp_id, d.comp_id, acc.heartbeat_s, False)
        for v in cfg.venues:
            add(v.name, "venue", v.begin_string, v.our_comp_id, v.comp_id, v.heartbeat_s, True)
            self._venue_addresses[v.name] = (v.host, v.port, v.reconnect_s)
        super().__init__(core, infos, on_record, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: list[asyncio.Task] = []
        self._stopping = False

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Listen for OMS sessions and connect to the venues (raises OSError if the port is taken)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        acc = self.config.acceptor
        allowed = frozenset(acc.allowed_remote_addresses) or None
        self._server = await self._loop.create_server(
            lambda: Connection(self.resolve, owner=self, allowed=allowed, cork=self.cork, limits=self),
            acc.host,
            acc.port,
            backlog=1024,
        )
        for info in self.sessions():
            if info.role == "venue":
                self._tasks.append(
                    asyncio.create_task(self._initiate(self.by_name[info.name], *self._venue_addresses[info.name]))
                )
        self._tasks.append(asyncio.create_task(self._tick()))
        self._tasks.append(asyncio.create_task(self._watch()))
        self._tasks.append(asyncio.create_task(self._flush_logs()))

    async def stop(self, reason: str, timeout_s: float = 3.0) -> None:
        """Log every session out, wait (bounded) for the peers' Logouts, close everything."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        sessions = list(self.by_name.values())
        for s in sessions:
            if s.logged_on:
                self._apply(s, s.logout(reason, time.time_ns()))
        lost = [conn.lost for conn in self.links.values()]
        if lost:
            await asyncio.wait(lost, timeout=timeout_s)
        for s in sessions:
            self._apply(s, s.close("stopping", time.time_ns()))
        for task in self._tasks:
            task.cancel()
        await asyncio.sleep(0)
        for store in self._stores:
            store.close()
        for log in self._logs:
            log.close()

    def resolve(self, begin_string: str, theirs: str, ours: str) -> Session | None:
        session = self._sessions.get((begin_string, theirs, ours))
        return session if session is not None and not session.initiator else None

    async def _initiate(self, session: Session, host: str, port: int, reconnect_s: int) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                session.event(f"Connecting to {host} on port {port}", time.time_ns())
                _, conn = await loop.create_connection(
                    lambda: Connection(
                        self.resolve, session, owner=self, cork=self.cork, watch=self._watches[session.name]
                    ),
                    host,
                    port,
                )
                await conn.lost
            except OSError as exc:
                session.event(f"Connection failed: {exc.strerror or exc}", time.time_ns())
            if not self._stopping:
                await asyncio.sleep(reconnect_s)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now_ns = time.time_ns()
            for session in self.by_name.values():
                try:
                    self._apply(session, session.tick(now_ns))
                except Exception as exc:  # noqa: BLE001 - one session's timer must not stop the others'
                    self.notice(ev.Notice("session_timer_error", now_ns, f"{session.name}: {exc!r}"))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_S)
            for name in self._watches:
                try:
                    self._check_venue(name)
                except Exception as exc:  # noqa: BLE001 - one venue's check must not stop the others'
                    self.notice(ev.Notice("venue_watch_error", self.clock(), f"{name}: {exc!r}"))

    def _apply(self, session: Session, step: Step) -> None:
        """What a session returned outside a read (timers, stopping), on its connection if it has one."""
        conn = self.links.get(session.name)
        if conn is not None:
            conn.apply(session, step, time.time_ns())

    def _check_soon(self, name: str) -> None:
        if name not in self._watch_due and self._loop is not None:
            self._watch_due.add(name)
            self._loop.call_soon(self._check_venue, name)

    def _check_venue(self, name: str) -> None:
        """Backpressure of one venue (guard.VenueWatch): unsent orders too old to leave are refused
        and the connection reset; a venue that does not take or answer what it is sent is marked
        down until it does. Each through the journal (VenueSendFailed, SessionDown, SessionUp)."""
        self._watch_due.discard(name)
        watch = self._watches[name]
        session = self.by_name[name]
        conn = self.links.get(name)
        if conn is None or conn.closed or conn.sock is None or not session.logged_on:
            return
        verdict = watch.check(time.monotonic(), tcp_acked(conn.sock))
        now = self.clock()
        if verdict.late:
            reset(conn.sock.fileno())  # RST: what the socket still holds never reaches the venue
            conn.abort()
            session.event(f"Connection reset: {verdict.reason}", now)
            self.notice(
                ev.Notice(
                    "venue_reset", now, f"{name}: {verdict.reason}; the connection was reset and the orders refused"
                )
            )
            self.submit(ev.SessionDown(name, self.clock()))  # down now, not when the loop sees the close
            for cl_ord_id in verdict.late:
                self.submit(ev.VenueSendFailed(name, cl_ord_id, self.clock(), "late"))
            return
        if verdict.probe:
            conn.write(session.test_request(now))
        if verdict.down:
            session.event(f"Marked down: {verdict.reason}", now)
            self.notice(ev.Notice("venue_backpressure", now, f"{name}: {verdict.reason}; new orders refused"))
            self.submit(ev.SessionDown(name, self.clock()))
        elif verdict.up:
            session.event(f"Marked up: {verdict.reason}", now)
            self.notice(ev.Notice("venue_backpressure_over", now, f"{name}: {verdict.reason}"))
            self.submit(ev.SessionUp(name, self.clock()))

    async def _flush_logs(self) -> None:
        # Message log lines are written every LOG_FLUSH_S, not one system call per message (a crash
        # loses at most that much of the logs; the stores and the audit trail have every message).
        logs = self._logs
        while True:
            await asyncio.sleep(LOG_FLUSH_S)
            for log in logs:
                log.flush()

    # -------------------------------------------------------------- the core, from any thread

    def submit(self, event: ev.Event) -> list[ev.Action]:
        """Run one event through the core: directly on the loop thread, handed to it from any other."""
        if self._loop is None or threading.get_ident() == self._loop_thread:
            return super().submit(event)
        done: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(CoreBridge.submit(self, event))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result(timeout=30)

    def _send(self, info: SessionInfo, msg_type: str, body: list[tuple[int, str]], now: int) -> bool:
        session = self.by_name[info.name]
        sent = session.send(msg_type, body, now)
        if sent is None:
            return False
        data, on_wire = sent
        if self.journal is not None:
            # Journaled before the socket write: with [ha] the write waits for the standby to have it.
            self._sent(info.name, data.decode("latin-1"), now)
        if on_wire:
            self.links[info.name].write(data)
        if msg_type in _ORDER_TYPES and info.role == "venue":
            watch = self._watches[info.name]
            watch.order(body[0][1], time.monotonic())
            if watch.over():
                self._check_soon(info.name)
        return True

    def set_ha_gate(self, gate: Callable[[], bool]) -> None:
        self.ha_gate = gate
        self.cork.gate = gate

    def sent_seqs(self) -> dict[str, int]:
        """Session name -> the next outgoing sequence number, ``<name>/in`` -> the next inbound one
        (every message, admin ones included)."""
        out = {}
        for name, session in self.by_name.items():
            store = session.store
            out[name] = store.next_sender
            out[name + "/in"] = store.next_target
        return out

    # -------------------------------------------------------------- what sessions report (connection.Owner)

    def deliver(self, session: Session, raw: str, fields: dict[int, str], now: int) -> None:
        try:
            self.receive(self._info[session.name], raw, now, fields)
        except Exception as exc:  # noqa: BLE001 - fail closed: the message is refused, the proxy keeps running
            self.handler_failed(session, "deliver", exc, now)
            conn = self.links.get(session.name)
            if conn is not None:
                conn.write(session.failed(fields, type(exc).__name__, now))

    def handler_failed(self, session: Session | None, where: str, exc: Exception, now: int) -> None:
        """An exception while handling a message: a notice and an alert (as the quickfix edge's ``_failed``)."""
        name = session.name if session is not None else "(not logged on)"
        tb = traceback.extract_tb(exc.__traceback__)[-1:]
        at = f" at {tb[0].filename.rsplit('/', 1)[-1]}:{tb[0].lineno}" if tb else ""
        detail = f"{name}: {where} failed: {exc!r}{at}"
        try:
            self.notice(ev.Notice("engine_error", now, detail))
            self.notice(
                ev.Alert(
                    "engine_error",
                    f"session:{name}",
                    "100",
                    where,
                    "",
                    now,
                    f"ENGINE_ERROR: {detail}; refused, the session serves on",
                )
            )
        except Exception:  # noqa: BLE001 - recording failed too (the journal says why on /healthz)
            pass

    def session_up(self, session: Session) -> None:
        self.submit(ev.SessionUp(session.name, self.clock()))

    def session_down(self, session: Session) -> None:
        if not self._stopping:
            self.submit(ev.SessionDown(session.name, self.clock()))

    def not_resent(self, session: Session, cl_ord_ids: list[str]) -> None:
        refused = self._watches[session.name].refused_late
        for cl_ord_id in cl_ord_ids:
            if cl_ord_id and cl_ord_id not in refused:  # refused already, when it became too old to send
                self.submit(ev.VenueSendFailed(session.name, cl_ord_id, self.clock(), "not_resent"))

    def garbled(self, session: Session | None, why: str) -> None:
        if session is not None:
            session.event(f"Garbled input skipped: {why}", self.clock())
        else:
            self.notice(ev.Notice("connection_refused", self.clock(), why))
