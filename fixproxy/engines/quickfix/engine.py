"""The quickfix engine as the proxy runs it: settings, stores and sockets from the config, the
bridge (``edge.QuickfixBridge``) they call back, the front door, start and stop."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import ClassVar, cast

import quickfix as fix

from ...config import LoadedConfig
from ...core import events as ev
from ...core.proxy import ProxyCore
from ...journal.writer import Journal
from .bridge import QuickfixBridge, session_info
from .dictionary import build_dictionary
from .settings import common_defaults, dictionary, log_out, session_block, write_settings


class QuickfixSessions:
    """The proxy's quickfix sessions as configured, without an application: the settings (written
    beside the stores), the store and log factories and the socket classes. ``QuickfixEngine``
    runs the proxy on them; the benchmark's quickfix relay runs the same sessions with no proxy in them."""

    def __init__(self, loaded: LoadedConfig, accept_port: int = 0) -> None:
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
        oms_blocks += [session_block(d.fix_version, acc.comp_id, d.comp_id) for d in cfg.drop_copy]
        venue_blocks = [
            session_block(
                v.fix_version,
                v.our_comp_id,
                v.comp_id,
                SocketConnectHost=v.host,
                SocketConnectPort=v.port,
                HeartBtInt=v.heartbeat_s,
                ReconnectInterval=v.reconnect_s,
            )
            for v in cfg.venues
        ]
        self.acceptor_settings = write_settings(
            state / "quickfix-acceptor.cfg",
            {
                **common_defaults(state, "oms"),
                "ConnectionType": "acceptor",
                "SocketAcceptPort": accept_port or acc.port,
                "UseDataDictionary": "Y" if cfg.proxy.validate_messages else "N",
                # Behind the front door (door.py) only the door, on loopback, connects.
                "AllowedRemoteAddresses": "127.0.0.1" if accept_port else ",".join(acc.allowed_remote_addresses),
            },
            oms_blocks,
        )
        self.initiator_settings = write_settings(
            state / "quickfix-initiator.cfg",
            {**common_defaults(state, "venue"), "ConnectionType": "initiator"},
            venue_blocks,
        )
        self.infos = [
            session_info(s.name, "oms", fix.SessionID(s.begin_string, acc.comp_id, s.comp_id)) for s in cfg.oms
        ]
        self.infos += [
            session_info(v.name, "venue", fix.SessionID(v.begin_string, v.our_comp_id, v.comp_id)) for v in cfg.venues
        ]
        if desk.comp_id:
            self.infos.append(session_info(desk.name, "admin", fix.SessionID("FIX.4.4", acc.comp_id, desk.comp_id)))
        self.infos += [
            session_info(d.name, "drop_copy", fix.SessionID(d.begin_string, acc.comp_id, d.comp_id))
            for d in cfg.drop_copy
        ]
        oms_store = (
            fix.MemoryStoreFactory()
            if cfg.proxy.oms_store == "memory"
            else fix.FileStoreFactory(self.acceptor_settings)
        )
        self._stores = [oms_store, fix.FileStoreFactory(self.initiator_settings)]
        self._logs = (
            [fix.FileLogFactory(self.acceptor_settings), fix.FileLogFactory(self.initiator_settings)]
            if cfg.proxy.message_log
            else [None, None]
        )
        self._threaded = cfg.proxy.threaded_sockets

    def engines(self, application: fix.Application) -> tuple[fix.Acceptor, fix.Initiator]:
        """The acceptor (OMS and risk-desk sessions) and the initiator (venues), calling back ``application``."""
        threaded = self._threaded
        return (
            self._engine(
                fix.ThreadedSocketAcceptor if threaded else fix.SocketAcceptor, application, self.acceptor_settings, 0
            ),
            self._engine(
                fix.ThreadedSocketInitiator if threaded else fix.SocketInitiator,
                application,
                self.initiator_settings,
                1,
            ),
        )

    def _engine(self, cls: type, application: fix.Application, settings: fix.SessionSettings, i: int) -> object:
        if self._logs[i] is None:
            return cls(application, self._stores[i], settings)
        return cls(application, self._stores[i], settings, self._logs[i])


class QuickfixEngine:
    """The quickfix engine (``[proxy] engine = "quickfix"``): one acceptor (OMS and risk-desk
    sessions), one initiator (venues), calling back one ``QuickfixBridge``."""

    #: What quickfix raises on settings it refuses (start-up stops with one line naming it).
    start_errors: ClassVar[tuple[type[Exception], ...]] = (fix.ConfigError, fix.RuntimeError)

    def __init__(
        self,
        loaded: LoadedConfig,
        core: ProxyCore,
        on_record: Callable[[ev.Action], None],
        *,
        journal: Journal,
        check_logon: dict[str, Callable[[str, str], bool]],
    ) -> None:
        acc = loaded.config.acceptor
        # quickfix's acceptor cannot bound connections that never log on: the proxy accepts them
        # itself and relays each to quickfix on loopback once its Logon is read (door.py).
        self.door_port = (acc.quickfix_port or free_loopback_port()) if acc.quickfix_relay else 0
        self.sessions = QuickfixSessions(loaded, self.door_port)  # kept: quickfix's threads use its factories
        self.bridge = QuickfixBridge(
            core,
            self.sessions.infos,
            on_record,
            journal=journal,
            check_logon=check_logon,
            identifiers=loaded.config.identifiers.limits(),
        )
        self.bridge.watch_venues(loaded.config.venues)
        self.acceptor, self.initiator = self.sessions.engines(self.bridge)
        self.door = None
        if self.door_port:
            from .door import Door

            keys = {
                (info.begin_string, cast(fix.SessionID, info.handle).getTargetCompID().getValue(), acc.comp_id)
                for info in self.sessions.infos
                if info.role != "venue"
            }
            self.door = Door(
                acc,
                self.door_port,
                keys,
                lambda why: self.bridge.notice(ev.Notice("connection_refused", time.time_ns(), why)),
            )

    def count_journaled(self, inbound_seq: dict[str, int]) -> None:
        """Count inbound messages the journal has and the session stores had not yet counted (a kill
        -9 between quickfix's fromApp and its store update): the peer is not asked for them again."""
        for info in self.bridge.sessions():
            seq = inbound_seq.get(info.name)
            session = fix.Session.lookupSession(info.handle)
            if seq is not None and session is not None and session.getExpectedTargetNum() == seq:
                session.setNextTargetMsgSeqNum(seq + 1)

    async def start(self) -> None:
        # As their start() does, on threads whose end /healthz sees (QuickfixBridge.engine_problem).
        self.bridge.run(self.initiator, "initiator")
        self.bridge.run(self.acceptor, "acceptor")
        if self.door is not None:
            await self.door.start()
        self.bridge.start_watch()

    async def stop(self, reason: str) -> None:
        """Log every session out. The quickfix engines are not stopped: ``SocketAcceptor.stop()`` has
        crashed the process here (segfault), and once the sessions are logged out and the stores
        written there is nothing left for it to do. The caller ends the process."""
        if self.door is not None:
            self.door.close()
        sids = [info.handle for info in self.bridge.sessions()]
        await asyncio.get_running_loop().run_in_executor(None, log_out, sids, reason)
        self.bridge.close()
        # quickfix's threads keep running until the process ends, and use the bridge, stores and
        # logs: those must not be freed when the proxy object goes (that crashed the process).
        _STOPPED_ENGINES.append(self)


def free_loopback_port() -> int:
    """A TCP port free on loopback now (for quickfix's acceptor behind the front door)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


#: Stopped quickfix engines (their threads still running), kept until the process ends (see QuickfixEngine.stop).
_STOPPED_ENGINES: list[QuickfixEngine] = []
