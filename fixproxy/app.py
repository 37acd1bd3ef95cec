"""Composition root: config -> core -> FIX engine (quickfix or native); start and stop in order."""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import os
import pickle
import signal
import socket
import sqlite3
import sys
import time
from pathlib import Path

import msgspec
import quickfix as fix
import structlog

from .fix import codec
from .fix.parse import parse as parse_fields
from .admin.control import Control, Feed
from .admin.fixsession import build_dictionary
from .config import LoadedConfig
from .core import events as ev
from .core.proxy import ProxyCore
from .engines.guard import raise_fd_limit
from .engines.quickfix.edge import ProxyApplication, session_info
from .engines.quickfix.recovery import sent_messages, store_prefix
from .engines.quickfix.settings import (
    common_defaults,
    dictionary,
    log_out,
    session_block,
    write_settings,
)
from .journal import format as journal_format
from .journal.recovery import oms_key, recover, write_snapshot
from .journal.writer import ClosedJournal, Journal, JournalError
from .offload import WriterStartError


def configure_logging(level: str = "info") -> None:
    """structlog: JSON lines when not on a terminal (files, pipes, tests), readable on a terminal."""
    renderer = structlog.dev.ConsoleRenderer() if sys.stderr.isatty() else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),  # one write per line: processes share stderr
        cache_logger_on_first_use=True,
    )


class exec_id_generator:
    """ExecIDs for the proxy's own execution reports: unique across restarts of the process.
    ``drawn`` (how many were made) goes into a snapshot taken mid-segment (the day roll's), so a
    recovery from it goes on where the process was."""

    __slots__ = ("prefix", "drawn")

    def __init__(self, start_ns: int, drawn: int = 0) -> None:
        self.prefix = f"FP{start_ns // 1_000_000:x}-"
        self.drawn = drawn

    def __call__(self) -> str:
        self.drawn += 1
        return f"{self.prefix}{self.drawn}"


def build_core(loaded: LoadedConfig, start_ns: int, next_id=None) -> ProxyCore:
    """A core from the config, with start-of-day positions loaded (callers restore saved state on top)."""
    cfg = loaded.config
    # The decoder's identifier limits are the config's too: the proxy, its recovery and replays
    # (which all build their core here) decode each journaled message alike.
    codec.configure(cfg.identifiers.limits())
    core = ProxyCore(
        sessions=cfg.session_policies(),
        venues=[v.name for v in cfg.venues],
        instruments=loaded.instruments,
        limits=cfg.limits,
        rules=cfg.rule_names(),
        next_id=next_id or exec_id_generator(start_ns),
        settings=cfg.risk_settings(),
        locates=cfg.locate_table(),
        finished_grace_s=None if cfg.proxy.finished_grace_s < 0 else cfg.proxy.finished_grace_s,
    )
    for p in loaded.positions:
        core.book.load_position(p.account, p.symbol, p.qty, p.avg_cost)
    return core


class Recorder:
    """Where decisions, alerts, admin results and notices go once journaled: the admin API's live
    feed (if any), then structured log lines. (The audit store follows the journal.)"""

    def __init__(self, feed: Feed | None = None, log_accepted: bool = False) -> None:
        self.log = structlog.get_logger("fixproxy")
        self.feed = feed
        # Accepted decisions are in the journal, the audit store and the feed; a log line each
        # (log_level "debug") costs the order path more than the risk checks do.
        self.log_accepted = log_accepted

    def __call__(self, action: ev.Action) -> None:
        if self.feed is not None:
            self.feed.add(action)  # recent items and server-sent events; never blocks
        if isinstance(action, ev.Decision):
            if action.accepted and not self.log_accepted:
                return
            fields = msgspec.structs.asdict(action)
            fields.pop("now_ns")
            log = self.log.debug if action.accepted else self.log.warning
            log("decision", **{k: v for k, v in fields.items() if v not in ("", None)})
        elif isinstance(action, ev.Alert):
            self.log.warning("alert", limit_name=action.limit_name, scope=action.scope, level_pct=action.level_pct,
                             observed=action.observed, limit=action.limit, text=action.text)
        elif isinstance(action, ev.AdminResult):
            # Who, what, scope, why, before/after.
            fields = {k: v for k, v in msgspec.structs.asdict(action).items() if v not in ("", None)}
            fields.pop("now_ns")
            (self.log.info if action.ok else self.log.warning)("admin_action", **fields)
        elif isinstance(action, ev.Notice):
            self.log.info(action.kind, detail=action.detail)


def logon_check(logon):
    """Username/Password check for a session's Logon (constant time), or None when none is configured."""
    if not logon.username:
        return None
    password = logon.password or os.environ.get(logon.password_env, "")  # load() checked it is set
    user, secret = logon.username.encode(), password.encode()

    def check(username: str, given: str) -> bool:
        ok_user = hmac.compare_digest(username.encode(), user)
        ok_password = hmac.compare_digest(given.encode(), secret)
        return ok_user and ok_password

    return check


class QuickfixSessions:
    """The proxy's quickfix sessions as configured, without an application: the settings (written
    beside the stores), the store and log factories and the socket classes. ``QuickfixEngine``
    runs the proxy on them; ``scripts/bench_qfrelay.py`` runs the same sessions with no proxy in them."""

    def __init__(self, loaded: LoadedConfig, accept_port: int = 0):
        """``accept_port``: where quickfix's acceptor listens (default ``[acceptor] port``)."""
        cfg = loaded.config
        state = loaded.state_dir
        acc = cfg.acceptor
        oms_blocks = [session_block(s.fix_version, acc.comp_id, s.comp_id) for s in cfg.oms]
        desk = cfg.risk_desk
        if desk.comp_id:
            # The risk-desk session validates against FIX 4.4 extended with spec/admin-dictionary.xml.
            desk_dictionary = build_dictionary(dictionary("FIX.4.4"), state / "dictionaries" / "FIX44-admin.xml")
            oms_blocks.append(session_block("FIX.4.4", acc.comp_id, desk.comp_id, DataDictionary=desk_dictionary))
        venue_blocks = [
            session_block(v.fix_version, v.our_comp_id, v.comp_id, SocketConnectHost=v.host, SocketConnectPort=v.port,
                          HeartBtInt=v.heartbeat_s, ReconnectInterval=v.reconnect_s)
            for v in cfg.venues
        ]
        self.acceptor_settings = write_settings(
            state / "quickfix-acceptor.cfg",
            {**common_defaults(state, "oms"), "ConnectionType": "acceptor", "SocketAcceptPort": accept_port or acc.port,
             "UseDataDictionary": "Y" if cfg.proxy.validate_messages else "N",
             # Behind the front door (engines/quickfix/door.py) only the door, on loopback, connects.
             "AllowedRemoteAddresses": "127.0.0.1" if accept_port else ",".join(acc.allowed_remote_addresses)},
            oms_blocks,
        )
        self.initiator_settings = write_settings(
            state / "quickfix-initiator.cfg",
            {**common_defaults(state, "venue"), "ConnectionType": "initiator"},
            venue_blocks,
        )
        self.infos = [session_info(s.name, "oms", fix.SessionID(s.fix_version, acc.comp_id, s.comp_id))
                      for s in cfg.oms]
        self.infos += [session_info(v.name, "venue", fix.SessionID(v.fix_version, v.our_comp_id, v.comp_id))
                       for v in cfg.venues]
        if desk.comp_id:
            self.infos.append(session_info(desk.name, "admin", fix.SessionID("FIX.4.4", acc.comp_id, desk.comp_id)))
        oms_store = (fix.MemoryStoreFactory() if cfg.proxy.oms_store == "memory"
                     else fix.FileStoreFactory(self.acceptor_settings))
        self._stores = [oms_store, fix.FileStoreFactory(self.initiator_settings)]
        self._logs = (
            [fix.FileLogFactory(self.acceptor_settings), fix.FileLogFactory(self.initiator_settings)]
            if cfg.proxy.message_log else [None, None]
        )
        self._threaded = cfg.proxy.threaded_sockets

    def engines(self, application: fix.Application) -> tuple[fix.Acceptor, fix.Initiator]:
        """The acceptor (OMS and risk-desk sessions) and the initiator (venues), calling back ``application``."""
        threaded = self._threaded
        return (self._engine(fix.ThreadedSocketAcceptor if threaded else fix.SocketAcceptor, application,
                             self.acceptor_settings, 0),
                self._engine(fix.ThreadedSocketInitiator if threaded else fix.SocketInitiator, application,
                             self.initiator_settings, 1))

    def _engine(self, cls, application, settings, i):
        if self._logs[i] is None:
            return cls(application, self._stores[i], settings)
        return cls(application, self._stores[i], settings, self._logs[i])


class QuickfixEngine:
    """The quickfix engines of the proxy: one acceptor (OMS and risk-desk sessions), one initiator (venues)."""

    def __init__(self, proxy: "Proxy", kwargs: dict):
        cfg = proxy.loaded.config
        acc = cfg.acceptor
        # quickfix's acceptor cannot bound connections that never log on: the proxy accepts them
        # itself and relays each to quickfix on loopback once its Logon is read (door.py).
        self.door_port = (acc.quickfix_port or free_loopback_port()) if acc.quickfix_relay else 0
        self.sessions = QuickfixSessions(proxy.loaded, self.door_port)  # kept: quickfix's threads use its factories
        self.application = ProxyApplication(proxy.core, self.sessions.infos, proxy.recorder, **kwargs)
        self.application.watch_venues(cfg.venues)
        self.acceptor, self.initiator = self.sessions.engines(self.application)
        self.door = None
        if self.door_port:
            from .engines.quickfix.door import Door

            keys = {(info.begin_string, info.handle.getTargetCompID().getValue(), acc.comp_id)
                    for info in self.sessions.infos if info.role != "venue"}
            self.door = Door(acc, self.door_port, keys, lambda why: self.application.notice(
                ev.Notice("connection_refused", time.time_ns(), why)))

    def count_journaled(self, inbound_seq: dict[str, int]) -> None:
        """Count inbound messages the journal has and the session stores had not yet counted (a kill
        -9 between quickfix's fromApp and its store update): the peer is not asked for them again."""
        for info in self.application.sessions():
            seq = inbound_seq.get(info.name)
            session = fix.Session.lookupSession(info.handle)
            if seq is not None and session is not None and session.getExpectedTargetNum() == seq:
                session.setNextTargetMsgSeqNum(seq + 1)

    async def start(self) -> None:
        # As their start() does, on threads whose end /healthz sees (ProxyApplication.engine_problem).
        self.application.run(self.initiator, "initiator")
        self.application.run(self.acceptor, "acceptor")
        if self.door is not None:
            await self.door.start()
        self.application.start_watch()

    async def stop(self, reason: str) -> None:
        """Log every session out. The quickfix engines are not stopped: ``SocketAcceptor.stop()`` has
        crashed the process here (segfault), and once the sessions are logged out and the stores
        written there is nothing left for it to do. The caller ends the process."""
        if self.door is not None:
            self.door.close()
        sids = [info.handle for info in self.application.sessions()]
        await asyncio.get_running_loop().run_in_executor(None, log_out, sids, reason)
        self.application.close()
        # quickfix's threads keep running until the process ends, and use the application, stores
        # and logs: those must not be freed when the proxy object goes (that crashed the process).
        _STOPPED_ENGINES.append(self)


def free_loopback_port() -> int:
    """A TCP port free on loopback now (for quickfix's acceptor behind the front door)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: Stopped quickfix engines (their threads still running), kept until the process ends (see QuickfixEngine.stop).
_STOPPED_ENGINES: list[QuickfixEngine] = []


class NativeProxyEngine:
    """The native engine (``[proxy] engine = "native"``): every session on the event loop's thread."""

    def __init__(self, proxy: "Proxy", kwargs: dict):
        from .engines.native.engine import NativeEngine

        self.application = NativeEngine(proxy.core, proxy.recorder, config=proxy.loaded.config,
                                        state_dir=proxy.loaded.state_dir, **kwargs)

    def count_journaled(self, inbound_seq: dict[str, int]) -> None:
        """As ``QuickfixEngine.count_journaled``, on the native engine's stores."""
        for info in self.application.sessions():
            seq = inbound_seq.get(info.name)
            store = info.handle.store
            if seq is not None and store.next_target == seq:
                store.next_target = seq + 1
                store.save_seqnums()

    async def start(self) -> None:
        await self.application.start()

    async def stop(self, reason: str) -> None:
        await self.application.stop(reason)


class Proxy:
    """The running proxy: the core rebuilt from its journal, the journal, the audit follower and a
    FIX engine (quickfix or native)."""

    def __init__(self, loaded: LoadedConfig):
        self.loaded = loaded
        cfg = loaded.config
        self.start_ns = time.time_ns()
        journal_dir = loaded.journal_dir
        self.log = structlog.get_logger("fixproxy")
        # The core as it was: the latest snapshot and the journal after it (journal/recovery.py).
        self.recovered = recover(journal_dir, cfg, self._make_core, exec_id_generator, self._venue_sent, self._oms_sent)
        # The new segment starts from a snapshot of what was recovered, and the live core is that
        # snapshot read back: a later recovery from it gives exactly this core.
        write_snapshot(journal_dir, self.recovered.segment, self.recovered.snapshot)
        self.core = self._make_core()
        self.core.import_state(pickle.loads(self.recovered.snapshot))
        j = cfg.journal
        self.journal = Journal(journal_dir, self.recovered.segment,
                               journal_format.Start(self.recovered.segment, self.start_ns, os.getpid(),
                                                    f"config {loaded.path}"),
                               sync=j.sync, sync_interval_ms=j.sync_interval_ms,
                               chunk=j.preallocate_kb << 10, reserve=min(j.reserve_kb, j.preallocate_kb // 2) << 10)
        self.feed = Feed()
        self.recorder = Recorder(self.feed, log_accepted=cfg.proxy.log_level == "debug")
        checks = [(s.name, logon_check(s)) for s in cfg.oms] + [(cfg.risk_desk.name, logon_check(cfg.risk_desk))]
        kwargs = dict(journal=self.journal, check_logon={name: check for name, check in checks if check is not None})
        self.engine = (NativeProxyEngine if cfg.proxy.engine == "native" else QuickfixEngine)(self, kwargs)
        self.application = self.engine.application
        self._reconcile()
        self.application.day_roll = (cfg.proxy.day_roll, cfg.proxy.timezone)
        self.application.check_day()  # a day roll missed while the proxy was down comes first
        self.audit = self._audit_follower() if cfg.audit.enabled else None
        # The one way in for the HTTP API (and later admin surfaces): same lock, same core.
        self.control = Control(self.application.submit, self.application.lock, self.core, self.feed,
                               health=self.health, resume_recording=self.application.resume_recording)

    # ------------------------------------------------------------ recovery

    def _make_core(self) -> ProxyCore:
        """The live core (and the one recovery replays into: they must decide alike)."""
        core = build_core(self.loaded, self.start_ns)
        core.recover_orders = True  # a report for an order the proxy never knew still reaches its OMS
        return core

    def _store_dir(self, side: str) -> Path:
        return self.loaded.state_dir / "store" / side

    def _venue_sent(self, venue: str) -> dict[str, str]:
        v = next(v for v in self.loaded.config.venues if v.name == venue)
        return {parse_fields(raw).get(11, ""): raw for raw in
                sent_messages(self._store_dir("venue"), store_prefix(v.fix_version, v.our_comp_id, v.comp_id))}

    def _oms_sent(self, session: str) -> dict[tuple, str] | None:
        cfg = self.loaded.config
        if cfg.proxy.oms_store == "memory":
            return None  # nothing kept across a restart: nothing to send again from
        s = next(s for s in cfg.oms if s.name == session)
        return {oms_key(parse_fields(raw)): raw for raw in
                sent_messages(self._store_dir("oms"), store_prefix(s.fix_version, cfg.acceptor.comp_id, s.comp_id))}

    def _reconcile(self) -> None:
        """What the crash cut short: inbound messages journaled but not counted by the session
        store are counted; orders that never reached the venue store are refused back to their OMS;
        reports that never reached an OMS store are sent (kept for its resend request)."""
        r = self.recovered
        for session, raw in r.journal_out:  # sent just before the crash, not journaled yet
            self.journal.outbound(session, time.time_ns(), raw)
        self.engine.count_journaled(r.inbound_seq)
        for venue, cl_ord_id in r.send_failed:
            self.application.submit(ev.VenueSendFailed(venue, cl_ord_id, time.time_ns(), "down"))
        if r.resend:
            with self.application.lock:
                self.application._perform([msgspec.structs.replace(a, poss_resend=True)
                                           if isinstance(a, ev.OmsReport) else a for a in r.resend])
        self.log.info("recovered", segments=r.segments_read, inputs_replayed=r.replayed,
                      seconds=round(r.seconds, 3), not_sent_to_venue=len(r.send_failed), oms_resent=len(r.resend),
                      sent_not_journaled=len(r.journal_out),
                      journal_segment=r.segment)

    def _audit_follower(self):
        from .audit.follower import AuditFollowerProcess

        cfg = self.loaded.config
        return AuditFollowerProcess(self.loaded, journal_position=lambda: self.journal.position,
                                    on_problem=self._audit_problem, log_level=cfg.proxy.log_level,
                                    priority=cfg.proxy.writer_priority)

    def _audit_problem(self, kind: str, detail: str) -> None:
        """The audit follower died, is stuck or recovered (called on the follower supervisor's thread)."""
        if kind == "ok":
            self.application.notice(ev.Notice("audit_follower_ok", time.time_ns(), detail))
        else:
            self.application.notice(ev.Alert("audit_follower", "firm", "100", kind, "", time.time_ns(),
                                             f"AUDIT_FOLLOWER_{kind.upper()}: {detail}"))

    # ------------------------------------------------------------ health

    def health(self) -> dict:
        """What /healthz, status and the dashboard show beside the core's views."""
        j = self.journal
        failure = self.core.recording_failure or j.failed
        journal = {"state": "failed" if failure else "ok", "reason": failure, "segment": j.segment,
                   "bytes": j.size, "lost_records": j.lost, "sync": j.sync}
        audit = self.audit.health() if self.audit is not None else {"state": "disabled"}
        problem = self.application.engine_problem()  # a thread of the FIX engine ended: fail closed
        engine = {"state": "failed" if problem else "ok", "reason": problem}
        status = "failed" if failure or problem else (
            "degraded" if audit.get("state") not in ("ok", "disabled") else "ok")
        roll = self.loaded.config.proxy
        day = {"day": self.core.day, "roll": f"{roll.day_roll} {roll.timezone}"}
        return {"status": status, "journal": journal, "audit": audit, "engine": engine, "trading_day": day}

    # ------------------------------------------------------------ start and stop

    async def start(self) -> None:
        if self.audit is not None:
            self.audit.start()
        await self.engine.start()

    async def stop(self) -> None:
        """Log every session out and write everything down (the caller ends the process)."""
        await self.engine.stop("fixproxy shutting down")
        await asyncio.get_running_loop().run_in_executor(None, self._close_stores)

    def _close_stores(self) -> None:
        with self.application.lock:
            # Whatever still arrives while the sessions close is refused, not handled unrecorded.
            self.application.journal = ClosedJournal(*self.journal.position)
            self.journal.close()
        if self.audit is not None:
            self.audit.stop()


def freeze_heap() -> None:
    """Collect the young generations and move everything that survived out of the garbage
    collector's view (gc.freeze): the orders and fills the proxy holds only grow, and full
    collections scanning them stalled the order path for hundreds of milliseconds in the benchmark.

    Not a full collection first: a full collection untracks every dict that holds only untracked
    things (the order tables, the store's offsets), so they were not frozen with the rest; the next
    insert tracked each again, in the youngest generation, and every young collection walked it
    whole: pauses grew with the tables, to 17 ms (young) and 78 ms (full) after two minutes at
    1,000 orders/s. Cyclic garbage already in the oldest generation is frozen with the rest; the
    automatic full collections between two freezes still take what becomes garbage there.
    """
    gc.collect(1)
    gc.freeze()


def _malloc_trim():
    """glibc's ``malloc_trim`` (None elsewhere): gives the C heap's free pages back to the system."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


async def _freeze_heap(every_s: float = 10.0) -> None:
    """``freeze_heap`` now and every few seconds; and the C heap trimmed (``malloc_trim``): the blocks
    of finished orders, messages and dict tables freed in the middle of the heap would otherwise stay
    in the process's RSS (docs/memory.md)."""
    trim = _malloc_trim()
    while True:
        freeze_heap()
        if trim is not None:
            trim(0)
        await asyncio.sleep(every_s)


async def _day_roll_timer(proxy: "Proxy", every_s: float = 1.0) -> None:
    """Once a second: a new trading day (``[proxy] day_roll``) is journaled and rolled (``check_day``)."""
    loop = asyncio.get_running_loop()
    log = structlog.get_logger("fixproxy")
    while True:
        await asyncio.sleep(every_s)
        try:
            if proxy.application.day_due():
                # The core lock may be held by a quickfix thread: wait for it off the loop.
                await loop.run_in_executor(None, proxy.application.check_day)
        except Exception as exc:  # noqa: BLE001 - the timer must outlive one failure (it is logged)
            log.error("day_roll_failed", error=repr(exc))


async def serve(loaded: LoadedConfig) -> None:
    """Run the proxy until SIGINT or SIGTERM."""
    log = structlog.get_logger("fixproxy")
    try:
        proxy = Proxy(loaded)
    except (sqlite3.Error, OSError, JournalError, fix.ConfigError, fix.RuntimeError) as exc:
        # An unreadable store or state folder, or settings quickfix refuses: one clear line, no traceback.
        log.error("start_failed", error=str(exc), state_dir=str(loaded.state_dir))
        raise SystemExit(f"fixproxy: cannot start: {exc} (state in {loaded.state_dir})") from None
    cfg = loaded.config
    api = await start_admin_api(proxy, loaded, log)  # before the engines: a port in use stops start-up cleanly
    try:
        await proxy.start()
    except WriterStartError as exc:
        log.error("start_failed", error=str(exc))
        raise SystemExit(f"fixproxy: cannot start: {exc}") from None
    except OSError as exc:
        log.error("start_failed", error=str(exc), port=cfg.acceptor.port)
        raise SystemExit(f"fixproxy: cannot listen for OMS sessions on port {cfg.acceptor.port}: "
                         f"{exc.strerror or exc}") from None
    log.info(
        "started",
        engine=cfg.proxy.engine,
        oms_endpoint=f"{cfg.acceptor.host}:{cfg.acceptor.port}",
        oms_sessions=[f"{s.fix_version} {s.comp_id}->{cfg.acceptor.comp_id}" for s in cfg.oms],
        venues=[f"{v.name}={v.host}:{v.port}" for v in cfg.venues],
        state_dir=str(loaded.state_dir),
        journal_segment=proxy.journal.segment,
        inputs_replayed=proxy.recovered.replayed,
    )
    gc_task = asyncio.create_task(_freeze_heap())
    roll_task = asyncio.create_task(_day_roll_timer(proxy))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    if api is not None:
        await api.stop()
    gc_task.cancel()
    roll_task.cancel()
    await proxy.stop()
    log.info("stopped")


async def start_admin_api(proxy: Proxy, loaded: LoadedConfig, log):
    """The HTTP admin API on this loop, unless ``[admin] http_port = 0``; SystemExit if it cannot listen."""
    from .admin.http import AdminApi

    admin = loaded.config.admin
    if not admin.http_port:
        log.info("admin_api_disabled", detail="[admin] http_port = 0")
        return None
    api = AdminApi(proxy.control, loaded.api_tokens, sessions=[s.name for s in loaded.config.oms],
                   max_stream_clients=admin.max_stream_clients, stream_queue=admin.stream_queue)
    try:
        url = await api.start(admin.http_host, admin.http_port)
    except OSError as exc:
        log.error("admin_api_failed", host=admin.http_host, port=admin.http_port, error=str(exc))
        raise SystemExit(f"fixproxy: the admin HTTP API cannot listen on {admin.http_host}:{admin.http_port}: "
                         f"{exc.strerror or exc}") from None
    log.info("admin_api_listening", url=url, tokens=[f"{t.name} ({t.role})" for t in loaded.api_tokens])
    if not loaded.api_tokens:
        log.warning("admin_api_no_tokens", detail="no [[admin.tokens]] configured: every request is refused (401)")
    return api


def run(loaded: LoadedConfig, on_exit=None) -> None:
    """Serve until SIGINT/SIGTERM, call ``on_exit``, then end the process."""
    import uvloop

    configure_logging(loaded.config.proxy.log_level)
    # Idle FIX connections must not use up the descriptors that sessions and the HTTP API need.
    soft, hard = raise_fd_limit()
    structlog.get_logger("fixproxy").info("open_files_limit", soft=soft, hard=hard)
    Path(loaded.state_dir).mkdir(parents=True, exist_ok=True)
    # A thread waiting for the GIL (a quickfix callback with an order) gets it after at most this long,
    # instead of CPython's 5 ms, while a writer thread is busy with a batch.
    sys.setswitchinterval(loaded.config.proxy.switch_interval_ms / 1000)
    try:
        uvloop.run(serve(loaded))
    finally:
        if on_exit is not None:
            on_exit()
    # Leave without unwinding quickfix (see Proxy.stop): everything is written by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
