"""Composition root: config -> core -> FIX engine (quickfix or native) -> admin API -> audit
follower; start and stop in order."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import msgspec
import structlog

from .admin.control import Control, Feed
from .admin.metrics import HaNodeView, ProxyCollector, registry as metrics_registry
from .assemble import build_core, exec_id_generator
from .config import LoadedConfig
from .core import events as ev, snapshot
from .core.proxy import ProxyCore
from .engines.bridge import CoreBridge
from .engines.guard import raise_fd_limit
from .engines.logon import LogonCheck, logon_checks
from .engines.quickfix.recovery import sent_messages, store_prefix
from .fix.parse import parse as parse_fields
from .journal import format as journal_format
from .journal.recovery import oms_key, recover, write_snapshot
from .journal.writer import ClosedJournal, Journal, JournalError
from .logs import Recorder, configure_logging
from .memory import keep_heap_frozen
from .offload import WriterStartError

if TYPE_CHECKING:
    from .admin.http import AdminApi
    from .audit.follower import AuditFollowerProcess
    from .cluster.manager import ClusterManager
    from .ha.node import HaNode


class Engine(Protocol):
    """What the proxy runs a FIX engine by (``engines/quickfix/engine.py``, ``engines/native/engine.py``)."""

    #: Exceptions of the engine's own that mean "cannot start" (reported in one line).
    start_errors: ClassVar[tuple[type[Exception], ...]]

    @property
    def bridge(self) -> CoreBridge: ...

    def __init__(
        self,
        loaded: LoadedConfig,
        core: ProxyCore,
        on_record: Callable[[ev.Action], None],
        *,
        journal: Journal,
        check_logon: dict[str, LogonCheck],
    ) -> None: ...

    def count_journaled(self, inbound_seq: dict[str, int]) -> None: ...

    async def start(self) -> None: ...

    async def stop(self, reason: str) -> None: ...


def _poss_resend(a: ev.Action) -> ev.Action:
    """An OMS report (or its drop copy) sent again after a crash goes with PossResend (97=Y)."""
    if isinstance(a, ev.OmsReport):
        return msgspec.structs.replace(a, poss_resend=True)
    if isinstance(a, ev.DropCopy):
        return msgspec.structs.replace(a, copy=msgspec.structs.replace(a.copy, poss_resend=True))
    return a


def engine_class(name: str) -> type[Engine]:
    """The engine ``[proxy] engine`` names; only its module is imported (quickfix is loaded only for it)."""
    if name == "native":
        from .engines.native.engine import NativeEngine

        return NativeEngine
    from .engines.quickfix.engine import QuickfixEngine

    return QuickfixEngine


class Proxy:
    """The running proxy: the core rebuilt from its journal, the journal, the audit follower and a
    FIX engine (quickfix or native)."""

    def __init__(self, loaded: LoadedConfig) -> None:
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
        snapshot.import_state(self.core, pickle.loads(self.recovered.snapshot))
        j = cfg.journal
        self.journal = Journal(
            journal_dir,
            self.recovered.segment,
            journal_format.Start(self.recovered.segment, self.start_ns, os.getpid(), f"config {loaded.path}"),
            sync=j.sync,
            sync_interval_ms=j.sync_interval_ms,
            chunk=j.preallocate_kb << 10,
            reserve=min(j.reserve_kb, j.preallocate_kb // 2) << 10,
        )
        self.feed = Feed()
        self.recorder = Recorder(self.feed, log_accepted=cfg.proxy.log_level == "debug")
        self.engine = engine_class(cfg.proxy.engine)(
            loaded, self.core, self.recorder, journal=self.journal, check_logon=logon_checks(cfg)
        )
        self.bridge = self.engine.bridge
        self.cluster = self._cluster_manager()
        self._reconcile()
        self.bridge.day_roll = (cfg.proxy.day_roll, cfg.proxy.timezone)
        self.bridge.check_day()  # a day roll missed while the proxy was down comes first
        self.audit = self._audit_follower() if cfg.audit.enabled else None
        #: ``[ha]``: this instance's part in an active/passive pair (ha/node.py HaNode), attached after
        #: construction; the surfaces read it lazily, so None means HA is not (yet) configured.
        self.ha: HaNodeView | None = None
        # The one way in for the HTTP API (and later admin surfaces): same lock, same core.
        self.control = Control(
            self.bridge.submit,
            self.bridge.lock,
            self.core,
            self.feed,
            health=self.health,
            resume_recording=self.bridge.resume_recording,
            cluster=self.cluster.view if self.cluster is not None else None,
            ha=self._ha_view,
        )
        # GET /metrics: the bridge's running counts and the core's state, read at each scrape.
        self.metrics = metrics_registry(
            ProxyCollector(
                self.bridge.lock,
                self.core,
                self.bridge.counts,
                [(s.name, s.role) for s in self.bridge.sessions()],
                health=self.health,
                engine=cfg.proxy.engine,
                cluster=self.cluster,
                ha=self._ha_view,
            )
        )

    def _ha_view(self) -> dict[str, Any] | None:
        """The HA node's view (role, token, copy and partner), or None without ``[ha]``."""
        node = self.ha
        return node.view() if node is not None else None

    # ------------------------------------------------------------ recovery

    def _make_core(self) -> ProxyCore:
        """The live core (and the one recovery replays into: they must decide alike)."""
        core = build_core(self.loaded, self.start_ns)
        # In a cluster the shared limits are checked against this instance's shares (core/cluster.py).
        core.shares.enabled = self.loaded.config.cluster is not None
        core.recover_orders = True  # a report for an order the proxy never knew still reaches its OMS
        return core

    def _store_dir(self, side: str) -> Path:
        return self.loaded.state_dir / "store" / side

    def _venue_sent(self, venue: str) -> dict[str, str]:
        v = next(v for v in self.loaded.config.venues if v.name == venue)
        return {
            parse_fields(raw).get(11, ""): raw
            for raw in sent_messages(self._store_dir("venue"), store_prefix(v.begin_string, v.our_comp_id, v.comp_id))
        }

    def _oms_sent(self, session: str) -> dict[tuple[str, ...], str] | None:
        cfg = self.loaded.config
        if cfg.proxy.oms_store == "memory":
            return None  # nothing kept across a restart: nothing to send again from
        s = next((s for s in cfg.oms if s.name == session), None)
        # A drop-copy session's store is beside the OMS sessions' (the acceptor's).
        begin, comp_id = (
            (s.begin_string, s.comp_id)
            if s
            else next((d.begin_string, d.comp_id) for d in cfg.drop_copy if d.name == session)
        )
        return {
            oms_key(parse_fields(raw)): raw
            for raw in sent_messages(self._store_dir("oms"), store_prefix(begin, cfg.acceptor.comp_id, comp_id))
        }

    def _reconcile(self) -> None:
        """What the crash cut short: inbound messages journaled but not counted by the session
        store are counted; orders that never reached the venue store are refused back to their OMS;
        reports that never reached an OMS store are sent (kept for its resend request)."""
        r = self.recovered
        for session, raw in r.journal_out:  # sent just before the crash, not journaled yet
            self.journal.outbound(session, time.time_ns(), raw)
        self.engine.count_journaled(r.inbound_seq)
        for venue, cl_ord_id in r.send_failed:
            self.bridge.submit(ev.VenueSendFailed(venue, cl_ord_id, time.time_ns(), "down"))
        if r.resend:
            with self.bridge.lock:
                self.bridge._perform([_poss_resend(a) for a in r.resend])
        self.log.info(
            "recovered",
            segments=r.segments_read,
            inputs_replayed=r.replayed,
            seconds=round(r.seconds, 3),
            not_sent_to_venue=len(r.send_failed),
            oms_resent=len(r.resend),
            sent_not_journaled=len(r.journal_out),
            journal_segment=r.segment,
        )

    def _cluster_manager(self) -> ClusterManager | None:
        """``[cluster]``: the lease manager, told of desk commands and of shares running low by the bridge."""
        settings = self.loaded.config.cluster
        if settings is None:
            return None
        from .cluster.manager import ClusterManager
        from .cluster.mirror_process import MirrorProcess

        password = os.environ.get(settings.password_env, "") if settings.password_env else ""
        manager = ClusterManager(settings, self.bridge, self.loaded.state_dir, self._status, password)
        # Positions and fills reach the database from the journal, in a process of their own.
        manager.mirror = MirrorProcess(self.loaded, password, journal_position=lambda: self.journal.position)
        self.bridge.cluster = manager
        self.bridge.share_wait_s = settings.topup_wait_ms / 1000
        return manager

    def _status(self) -> dict[str, Any]:
        """What this instance writes of itself for the firm-wide view (beside sessions and usage)."""
        with self.bridge.lock:
            open_orders = len(self.core.orders.open_orders())
        health = self.health()
        return {
            "health": health["status"],
            "engine": self.loaded.config.proxy.engine,
            "open_orders": open_orders,
            "admin": f"{self.loaded.config.admin.http_host}:{self.loaded.config.admin.http_port}",
        }

    def _audit_follower(self) -> AuditFollowerProcess:
        from .audit.follower import AuditFollowerProcess

        cfg = self.loaded.config
        return AuditFollowerProcess(
            self.loaded,
            journal_position=lambda: self.journal.position,
            on_problem=self._audit_problem,
            log_level=cfg.proxy.log_level,
            priority=cfg.proxy.writer_priority,
        )

    def _audit_problem(self, kind: str, detail: str) -> None:
        """The audit follower died, is stuck or recovered (called on the follower supervisor's thread)."""
        if kind == "ok":
            self.bridge.notice(ev.Notice("audit_follower_ok", time.time_ns(), detail))
        else:
            self.bridge.notice(
                ev.Alert(
                    "audit_follower",
                    "firm",
                    "100",
                    kind,
                    "",
                    time.time_ns(),
                    f"AUDIT_FOLLOWER_{kind.upper()}: {detail}",
                )
            )

    # ------------------------------------------------------------ health

    def health(self) -> dict[str, Any]:
        """What /healthz, status and the dashboard show beside the core's views."""
        j = self.journal
        failure = self.core.recording_failure or j.failed
        journal = {
            "state": "failed" if failure else "ok",
            "reason": failure,
            "segment": j.segment,
            "bytes": j.size,
            "lost_records": j.lost,
            "sync": j.sync,
        }
        audit = self.audit.health() if self.audit is not None else {"state": "disabled"}
        problem = self.bridge.engine_problem()  # a thread of the FIX engine ended: fail closed
        engine = {"state": "failed" if problem else "ok", "reason": problem}
        cluster = self.cluster.health() if self.cluster is not None else {"state": "disabled"}
        node = self.ha
        ha = dict(node.health()) if node is not None else {"state": "disabled"}
        if node is not None and "role" not in ha:
            ha["role"] = node.view().get("role", "")
        degraded = (
            audit.get("state") not in ("ok", "disabled")
            or cluster["state"] not in ("ok", "disabled")
            or ha["state"] not in ("ok", "disabled")
        )
        fenced = ha["state"] == "failed"  # an HA instance fenced: it writes to no socket
        status = "failed" if failure or problem or fenced else ("degraded" if degraded else "ok")
        roll = self.loaded.config.proxy
        day = {"day": self.core.day, "roll": f"{roll.day_roll} {roll.timezone}"}
        return {
            "status": status,
            "journal": journal,
            "audit": audit,
            "engine": engine,
            "trading_day": day,
            "cluster": cluster,
            "ha": ha,
        }

    # ------------------------------------------------------------ start and stop

    async def start(self) -> None:
        if self.audit is not None and self.ha is None:
            self.audit.start()
        if self.cluster is not None:
            self.cluster.start()
            # The first shares before the first order, if the database answers soon enough.
            await asyncio.get_running_loop().run_in_executor(None, self.cluster.wait_ready, 5.0)
        await self.engine.start()
        if self.audit is not None and self.ha is not None:
            # A takeover trades first: the follower (a process to spawn) catches up from the journal.
            self.audit.start()

    async def stop(self) -> None:
        """Log every session out and write everything down (the caller ends the process)."""
        await self.engine.stop("fixproxy shutting down")
        if self.cluster is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.cluster.stop)
        await asyncio.get_running_loop().run_in_executor(None, self._close_stores)

    def _close_stores(self) -> None:
        with self.bridge.lock:
            # Whatever still arrives while the sessions close is refused, not handled unrecorded.
            self.bridge.journal = ClosedJournal(*self.journal.position)
            self.journal.close()
        if self.audit is not None:
            self.audit.stop()


async def _day_roll_timer(proxy: Proxy, every_s: float = 1.0) -> None:
    """Once a second: a new trading day (``[proxy] day_roll``) is journaled and rolled (``check_day``)."""
    loop = asyncio.get_running_loop()
    log = structlog.get_logger("fixproxy")
    while True:
        await asyncio.sleep(every_s)
        try:
            if proxy.bridge.day_due():
                # The core lock may be held by a quickfix thread: wait for it off the loop.
                await loop.run_in_executor(None, proxy.bridge.check_day)
        except Exception as exc:  # noqa: BLE001 - the timer must outlive one failure (it is logged)
            log.error("day_roll_failed", error=repr(exc))


async def serve(loaded: LoadedConfig, ha: HaNode | None = None) -> None:
    """Run the proxy until SIGINT or SIGTERM (``ha``: this instance leads its pair: serve the copy)."""
    log = structlog.get_logger("fixproxy")
    start_errors: tuple[type[Exception], ...] = (
        sqlite3.Error,
        OSError,
        JournalError,
        *engine_class(loaded.config.proxy.engine).start_errors,
    )
    try:
        proxy = Proxy(loaded)
    except start_errors as exc:
        # An unreadable store or state folder, or settings quickfix refuses: one clear line, no traceback.
        log.error("start_failed", error=str(exc), state_dir=str(loaded.state_dir))
        raise SystemExit(f"fixproxy: cannot start: {exc} (state in {loaded.state_dir})") from None
    cfg = loaded.config
    if ha is not None:
        try:
            ha.activate(proxy)
        except OSError as exc:
            raise SystemExit(
                f"fixproxy: cannot serve the standby's copy on {cfg.ha.copy_listen if cfg.ha else ''}: {exc.strerror or exc}"
            ) from None
        proxy.ha = ha
    api = await start_admin_api(proxy, loaded, log)  # before the engines: a port in use stops start-up cleanly
    try:
        await proxy.start()
    except WriterStartError as exc:
        log.error("start_failed", error=str(exc))
        raise SystemExit(f"fixproxy: cannot start: {exc}") from None
    except OSError as exc:
        log.error("start_failed", error=str(exc), port=cfg.acceptor.port)
        raise SystemExit(
            f"fixproxy: cannot listen for OMS sessions on port {cfg.acceptor.port}: {exc.strerror or exc}"
        ) from None
    log.info(
        "started",
        engine=cfg.proxy.engine,
        oms_endpoint=f"{cfg.acceptor.host}:{cfg.acceptor.port}",
        oms_sessions=[f"{s.fix_version} {s.comp_id}->{cfg.acceptor.comp_id}" for s in cfg.oms],
        drop_copies=[f"{d.fix_version} {d.comp_id}->{cfg.acceptor.comp_id}" for d in cfg.drop_copy],
        venues=[f"{v.name}={v.host}:{v.port}" for v in cfg.venues],
        state_dir=str(loaded.state_dir),
        journal_segment=proxy.journal.segment,
        inputs_replayed=proxy.recovered.replayed,
    )
    gc_task = asyncio.create_task(keep_heap_frozen())
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
    if ha is not None:
        await loop.run_in_executor(None, ha.stop)
    log.info("stopped")


async def start_admin_api(proxy: Proxy, loaded: LoadedConfig, log: Any) -> AdminApi | None:
    """The HTTP admin API on this loop, unless ``[admin] http_port = 0``; SystemExit if it cannot listen."""
    from .admin.http import AdminApi

    admin = loaded.config.admin
    if not admin.http_port:
        log.info("admin_api_disabled", detail="[admin] http_port = 0")
        return None
    api = AdminApi(
        proxy.control,
        loaded.api_tokens,
        sessions=[s.name for s in loaded.config.oms],
        max_stream_clients=admin.max_stream_clients,
        stream_queue=admin.stream_queue,
        metrics=proxy.metrics,
        metrics_public=admin.metrics_public,
    )
    try:
        url = await api.start(admin.http_host, admin.http_port)
    except OSError as exc:
        log.error("admin_api_failed", host=admin.http_host, port=admin.http_port, error=str(exc))
        raise SystemExit(
            f"fixproxy: the admin HTTP API cannot listen on {admin.http_host}:{admin.http_port}: {exc.strerror or exc}"
        ) from None
    log.info("admin_api_listening", url=url, tokens=[f"{t.name} ({t.role})" for t in loaded.api_tokens])
    if not loaded.api_tokens:
        log.warning("admin_api_no_tokens", detail="no [[admin.tokens]] configured: every request is refused (401)")
    return api


def run(loaded: LoadedConfig, on_exit: Callable[[], None] | None = None) -> None:
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
    ha = None
    if loaded.config.ha is not None:
        from .ha.node import HaNode

        # A standby until this instance leads its pair (ha/node.py); then the proxy, on the copy.
        ha = HaNode(loaded)
        if not uvloop.run(ha.standby_until_leader()):
            if on_exit is not None:
                on_exit()
            os._exit(0)  # stopped while a standby: nothing of the proxy was started
    try:
        uvloop.run(serve(loaded, ha))
    finally:
        if on_exit is not None:
            on_exit()
    # Leave without unwinding quickfix (see Proxy.stop): everything is written by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
