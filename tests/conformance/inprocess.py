"""``.fixscript`` cases run in process against the native engine: no socket, no waiting.

``run_in_process(path)`` runs every case of a script (the conformance table, tests/golden/) against
a fresh NativeBridge per case, built from the conformance stack's config (tests/integration/harness.py
``config_text``) with the real core and a journal in a temporary folder. Its connections carry fake
transports: an OMS connection per ``iCONNECT``/``iLOGON``, and the venue connection, whose peer is
a sans-IO ``Session`` answering as the venue simulator does (fixproxy/sim/venue.py: the loopback
stack's behaviours, MSFT acked, XOM rejected, anything else filled). Every step's consequences
(the proxy's answers, the venue's answers to what the proxy sent it, closed connections) are
carried out before the next step, so a case takes milliseconds. The steps are fixscript.Runner's;
only the transport differs.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fixproxy.admin.control import Control, Feed
from fixproxy.assemble import build_core
from fixproxy.config import LoadedConfig, load
from fixproxy.engines.native.bridge import NativeBridge
from fixproxy.engines.native.connection import Connection
from fixproxy.engines.native.session import Received, Session
from fixproxy.engines.native.store import MemoryStore
from fixproxy.fix import parse
from fixproxy.journal import format as journal_format
from fixproxy.journal.writer import Journal
from fixproxy.sim.pipe import Pipe

from ..integration.harness import REPO, config_text
from .fixscript import SESSIONS, Case, Runner, Step, expand, frame, load as load_cases

#: The venue simulator's behaviours in the conformance stack (test_conformance.py).
BEHAVIOURS = {"MSFT": "ack", "XOM": "reject"}
#: Where each case's state folder goes: in memory where the system has one (files there cost
#: microseconds, on a disk milliseconds).
_MEMORY_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
#: Steps the in-process stack cannot run (they need the admin HTTP server): their cases are skipped.


class Unsupported(Exception):
    """A case uses a step only the loopback stack runs."""


class _Venue:
    """The venue's side of the proxy's venue connection: a sans-IO acceptor session and the venue
    simulator's order handling."""

    def __init__(self, begin_string: str, now: int) -> None:
        from fixproxy.sim.venue import VenueSim  # imports the quickfix binding: only when a case runs

        self.session = Session(
            name="venue-sim",
            role="oms",
            begin_string=begin_string,
            sender="VENUE",
            target="FIXPROXY",
            heartbeat_s=30,
            store=MemoryStore(now),
            log=None,
            initiator=False,
            resend_app=True,
        )
        self.sim = VenueSim(per_symbol=BEHAVIOURS, quiet=True)
        self.sim.fix42 = begin_string == "FIX.4.2"
        self.handlers: dict[str, Callable[[dict[str, str]], list[list[tuple[int, str]]]]] = {
            "D": self.sim._new,
            "G": self.sim._replace,
            "F": self.sim._cancel,
        }  # as VenueSim.fromApp
        self.framer = parse.Framer()
        self.lines: list[dict[str, Any]] = []  # as the simulator's records: {"dir": "in", "fields", "raw"}
        self.out = bytearray()

    def feed(self, data: bytes, now: int) -> None:
        for data_frame in self.framer.feed(data):
            if not self.session.connected:
                self.session.connect(now)
            events, out = self.session.receive(data_frame, now)
            while True:
                self.out += out
                for event in events:
                    if isinstance(event, Received):
                        self._answer(event, now)
                if not self.session.paused:
                    break
                events, out = self.session.resume(now)

    def _answer(self, event: Received, now: int) -> None:
        fields = {str(tag): value for tag, value in event.fields.items()}
        self.lines.append({"dir": "in", "fields": fields, "raw": event.raw.replace("\x01", "|")})
        for message in self.handlers.get(fields.get("35", ""), lambda f: [])(fields):
            sent = self.session.send(message[0][1], message[1:], now)
            if sent is not None and sent[1]:
                self.out += sent[0]

    # the simulator process's interface, as fixscript.Runner uses it
    def mark(self) -> int:
        return len(self.lines)

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 0, start: int = 0) -> dict[str, Any]:
        for record in self.lines[start:]:
            if pred(record):
                return record
        raise AssertionError("no such record")


class _Client:
    """An OMS connection to the proxy, as fixscript.Client: raw bytes out, whole messages in."""

    def __init__(self, stack: InProcessStack) -> None:
        self.stack = stack
        self.pipe = Pipe(40000 + len(stack.pipes))
        self.conn = Connection(stack.bridge.resolve, owner=stack.bridge, cork=stack.bridge.cork, limits=stack.bridge)
        stack.pipes.append((self.pipe, self.conn))
        self.conn.connection_made(self.pipe)
        self.buffer = b""
        self.eof = False
        self.closed = False
        self.last_seq = 0

    def send(self, data: bytes) -> None:
        if not self.closed and not self.pipe.closing:
            self.conn.data_received(data)
        for m in re.finditer(rb"\x0134=(\d+)\x01", data):
            self.last_seq = max(self.last_seq, int(m.group(1)))
        self.stack.pump()

    def read(self, timeout: float = 0) -> dict[int, str] | None:
        """The next message (tag -> value, first occurrence kept; 0 -> raw text), None if there is none."""
        self.stack.pump()
        self.buffer += self.pipe.take()
        end = self.buffer.find(b"\x0110=")
        stop = self.buffer.find(b"\x01", end + 4) if end >= 0 else -1
        if stop < 0:
            self.eof = self.pipe.closing
            return None
        raw, self.buffer = self.buffer[: stop + 1], self.buffer[stop + 1 :]
        msg: dict[int, str] = {0: raw.decode("latin-1").replace("\x01", "|")}
        for part in raw.decode("latin-1").split("\x01"):
            tag, _, value = part.partition("=")
            if tag.isdigit():
                msg.setdefault(int(tag), value)
        return msg

    def close(self) -> None:
        self.closed = True
        self.pipe.closing = True
        self.stack.pump()


class InProcessStack:
    """A NativeBridge with the real core and journal, its venue connected to ``_Venue``."""

    def __init__(self, loaded: LoadedConfig, state_dir: Path) -> None:
        now = time.time_ns()
        cfg = loaded.config
        self.root = state_dir
        self.records: list[Any] = []
        self.journal = Journal(state_dir / "journal", 1, journal_format.Start(1, now, os.getpid(), "in process"))
        self.bridge = NativeBridge(
            build_core(loaded, now),
            self.records.append,
            config=cfg,
            state_dir=state_dir,
            journal=self.journal,
            identifiers=cfg.identifiers.limits(),
        )
        #: The admin surfaces' way in (admin/control.py), as the HTTP API uses it.
        self.control = Control(self.bridge.submit, self.bridge.lock, self.bridge.core, Feed())
        self.pipes: list[tuple[Pipe, Connection]] = []
        venue_cfg = cfg.venues[0]
        self.venue = _Venue(venue_cfg.begin_string, now)
        self.venue_pipe = Pipe(venue_cfg.port)
        session = next(i.handle for i in self.bridge.sessions() if i.name == venue_cfg.name)
        self.venue_conn = Connection(self.bridge.resolve, session, owner=self.bridge, cork=self.bridge.cork)
        self.pipes.append((self.venue_pipe, self.venue_conn))
        self.venue_conn.connection_made(self.venue_pipe)
        self.pump()

    def pump(self) -> None:
        """Carry bytes between the proxy and the venue, and closes, until nothing moves."""
        while True:
            moved = False
            data = self.venue_pipe.take()
            if data:
                moved = True
                self.venue.feed(data, time.time_ns())
            if self.venue.out and not self.venue_pipe.closing:
                moved = True
                data, self.venue.out = bytes(self.venue.out), bytearray()
                self.venue_conn.data_received(data)
            for pipe, conn in self.pipes:
                if pipe.closing and not pipe.lost:
                    moved = pipe.lost = True
                    conn.connection_lost(None)
            if not moved:
                return

    def close(self) -> None:
        for info in self.bridge.sessions():
            info.handle.store.close()
            if info.handle.log is not None:
                info.handle.log.close()
        self.journal.close()


class InProcessRunner(Runner):
    """fixscript.Runner on an InProcessStack: the same steps, nothing to wait for."""

    def __init__(self, stack: InProcessStack, index: int) -> None:
        self.stack = stack
        super().__init__(0, stack.venue, index, "native", venue_log=stack.root)

    def run(self, case: Case) -> None:
        super().run(case)

    def _connect(self, name: str) -> None:
        if self.client is not None:
            self.client.close()
        self.sender, self.begin = SESSIONS[name or "OMS1"]
        self.client = _Client(self.stack)  # type: ignore[assignment] - the in-process client stands in for RawFix

    def _iHTTP(self, step: Step) -> None:
        """``iHTTP POST /kill-switch {...}`` in process: the command the HTTP handler would hand to
        ``Control.kill``, as the risk token's operator (``desk-risk``); its messages go out at once.
        Any other request needs the loopback stack."""
        method, path, *body = step.text.split(None, 2)
        if (method, path) != ("POST", "/kill-switch") or not body:
            raise Unsupported(f"line {step.line}: iHTTP {method} {path} needs the loopback stack")
        request = json.loads(body[0])
        result = self.stack.control.kill(request["scope"], request["action"], request.get("reason", ""), "desk-risk")
        self.stack.pump()
        if not result.ok:
            raise self.fail(step, f"the kill switch refused: {result.detail}")

    def _venue_sent(self) -> list[str]:
        """Every application message the proxy wrote to the venue, as on the wire (``|`` for SOH)."""
        return [record["raw"] for record in self.stack.venue.lines]

    def _iPAUSE(self, step: Step) -> None:
        self.stack.pump()

    def _I(self, step: Step) -> None:
        text = expand(step.text, self.ids)
        split = re.search(r"<SPLIT(-\d+)?>", text)
        if "<NEXT>" in text or split is None:
            super()._I(step)
            return
        data = frame(self.begin, text[: split.start()] + text[split.end() :])
        cut = len(data) + int(split.group(1)) if split.group(1) else len(data) // 2
        self.client.send(data[:cut])  # two reads, as fixscript.Runner sends it in two writes
        self.client.send(data[cut:])


def run_case(loaded: LoadedConfig, case: Case, index: int) -> None:
    """One case on a fresh in-process proxy; AssertionError names the failing line, Unsupported
    says the case needs the loopback stack."""

    async def run() -> None:  # connections need a running loop (their futures), never a socket
        with tempfile.TemporaryDirectory(prefix="fixscript-", dir=_MEMORY_DIR) as folder:
            stack = InProcessStack(loaded, Path(folder))
            try:
                InProcessRunner(stack, index).run(case)
            finally:
                stack.close()

    asyncio.run(run())


def load_config(root: Path, **config: Any) -> LoadedConfig:
    """The conformance stack's config (``config_text`` with ``config``), native engine, in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "cfg" / "instruments.csv", root / "instruments.csv")
    path = root / "fixproxy.toml"
    path.write_text(config_text(1, 2, engine="native", **config))
    return load(path)


def run_in_process(script: Path, **config: Any) -> dict[str, str]:
    """Run every case of ``script``; returns case name -> "" (passed), "skipped: why" or the failure.

    ``config``: keyword arguments of harness.config_text for the proxy's config.
    """
    results: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="fixscript-config-") as folder:
        loaded = load_config(Path(folder), **config)
        for index, case in enumerate(load_cases(script)):
            try:
                run_case(loaded, case, index)
                results[case.name] = ""
            except Unsupported as exc:
                results[case.name] = f"skipped: {exc}"
            except AssertionError as exc:
                results[case.name] = str(exc) or "failed"
    return results
