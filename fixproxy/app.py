"""Composition root: config -> core -> quickfix engine; start and stop in order."""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import sys
import time
from pathlib import Path

import msgspec
import quickfix as fix
import structlog

from .config import LoadedConfig
from .core import events as ev
from .core.proxy import ProxyCore
from .engines.quickfix.edge import ProxyApplication, SessionInfo
from .engines.quickfix.settings import common_defaults, session_block, write_settings


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
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def exec_id_generator(start_ns: int):
    """ExecIDs for the proxy's own execution reports: unique across restarts of the process."""
    prefix = f"FP{start_ns // 1_000_000:x}-"
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter)}"


def build_core(loaded: LoadedConfig, start_ns: int, next_id=None) -> ProxyCore:
    """A core from the config, with start-of-day positions loaded (callers restore saved state on top)."""
    cfg = loaded.config
    core = ProxyCore(
        sessions=cfg.session_policies(),
        venues=[v.name for v in cfg.venues],
        instruments=loaded.instruments,
        limits=cfg.limits,
        rules=cfg.rule_names(),
        next_id=next_id or exec_id_generator(start_ns),
        settings=cfg.risk_settings(),
        locates=cfg.locate_table(),
    )
    for p in loaded.positions:
        core.book.load_position(p.account, p.symbol, p.qty, p.avg_cost)
    return core


class Recorder:
    """Where decisions and notices go: structured log lines (the audit store comes later)."""

    def __init__(self) -> None:
        self.log = structlog.get_logger("fixproxy")

    def __call__(self, action: ev.Action) -> None:
        if isinstance(action, ev.Decision):
            fields = msgspec.structs.asdict(action)
            fields.pop("now_ns")
            if action.accepted:
                self.log.info("decision", **{k: v for k, v in fields.items() if v not in ("", None)})
            else:
                self.log.warning("decision", **{k: v for k, v in fields.items() if v not in ("", None)})
        elif isinstance(action, ev.Notice):
            self.log.info(action.kind, detail=action.detail)


class Proxy:
    """The running proxy: one quickfix acceptor (OMS sessions), one initiator (venues)."""

    def __init__(self, loaded: LoadedConfig):
        self.loaded = loaded
        cfg = loaded.config
        self.start_ns = time.time_ns()
        self.core = build_core(loaded, self.start_ns)
        state = loaded.state_dir
        acc = cfg.acceptor
        oms_blocks = [session_block(s.fix_version, acc.comp_id, s.comp_id) for s in cfg.oms]
        venue_blocks = [
            session_block(v.fix_version, v.our_comp_id, v.comp_id, SocketConnectHost=v.host, SocketConnectPort=v.port,
                          HeartBtInt=v.heartbeat_s, ReconnectInterval=v.reconnect_s)
            for v in cfg.venues
        ]
        self.acceptor_settings = write_settings(
            state / "quickfix-acceptor.cfg",
            {**common_defaults(state, "oms"), "ConnectionType": "acceptor", "SocketAcceptPort": acc.port,
             "AllowedRemoteAddresses": ",".join(acc.allowed_remote_addresses)},
            oms_blocks,
        )
        self.initiator_settings = write_settings(
            state / "quickfix-initiator.cfg",
            {**common_defaults(state, "venue"), "ConnectionType": "initiator"},
            venue_blocks,
        )
        infos = [SessionInfo(s.name, "oms", fix.SessionID(s.fix_version, acc.comp_id, s.comp_id)) for s in cfg.oms]
        infos += [SessionInfo(v.name, "venue", fix.SessionID(v.fix_version, v.our_comp_id, v.comp_id)) for v in cfg.venues]
        self.recorder = Recorder()
        self.application = ProxyApplication(self.core, infos, self.recorder)
        self._stores = [fix.FileStoreFactory(self.acceptor_settings), fix.FileStoreFactory(self.initiator_settings)]
        self._logs = (
            [fix.FileLogFactory(self.acceptor_settings), fix.FileLogFactory(self.initiator_settings)]
            if cfg.proxy.message_log else [None, None]
        )
        self.acceptor = self._engine(fix.SocketAcceptor, self.acceptor_settings, 0)
        self.initiator = self._engine(fix.SocketInitiator, self.initiator_settings, 1)

    def _engine(self, cls, settings, i):
        if self._logs[i] is None:
            return cls(self.application, self._stores[i], settings)
        return cls(self.application, self._stores[i], settings, self._logs[i])

    def start(self) -> None:
        self.initiator.start()
        self.acceptor.start()

    def stop(self) -> None:
        """Log every session out, then stop the engines."""
        for info in self.application._by_sid.values():
            session = fix.Session.lookupSession(info.sid)
            if session is not None and session.isLoggedOn():
                session.logout("fixproxy shutting down")
        time.sleep(0.5)
        self.acceptor.stop()
        self.initiator.stop()
        self.application.close()


async def serve(loaded: LoadedConfig) -> None:
    """Run the proxy until SIGINT or SIGTERM."""
    log = structlog.get_logger("fixproxy")
    proxy = Proxy(loaded)
    proxy.start()
    cfg = loaded.config
    log.info(
        "started",
        oms_endpoint=f"127.0.0.1:{cfg.acceptor.port}",
        oms_sessions=[f"{s.fix_version} {s.comp_id}->{cfg.acceptor.comp_id}" for s in cfg.oms],
        venues=[f"{v.name}={v.host}:{v.port}" for v in cfg.venues],
        state_dir=str(loaded.state_dir),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    await loop.run_in_executor(None, proxy.stop)
    log.info("stopped")


def run(loaded: LoadedConfig) -> None:
    import uvloop

    configure_logging(loaded.config.proxy.log_level)
    Path(loaded.state_dir).mkdir(parents=True, exist_ok=True)
    uvloop.run(serve(loaded))
