"""What the simulators share: JSON-line output and engine start-up."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

import quickfix as fix

from ..engines.quickfix.settings import common_defaults, log_out, write_settings
from ..fix.parse import parse as parse_fields

_print_lock = threading.Lock()


def emit(record: dict) -> None:
    """One JSON object per line on stdout (what tests and people read)."""
    line = json.dumps(record, separators=(",", ":"))
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def fields_of(message: fix.Message) -> dict[str, str]:
    return {str(k): v for k, v in parse_fields(message.toString()).items()}


def build_message(begin_string: str, fields: list[tuple[int, str]]) -> fix.Message:
    msg = fix.Message()
    header = msg.getHeader()
    header.setField(fix.BeginString(begin_string))
    for tag, value in fields:
        if tag == 35:
            header.setField(fix.MsgType(value))
        elif tag not in (8, 9, 10):
            msg.setField(tag, value)
    return msg


def start_engine(
    kind: str, app: fix.Application, state_dir: Path, role: str, defaults: dict, sessions: list[dict]
) -> fix.SocketAcceptor | fix.SocketInitiator:
    """Start a quickfix acceptor or initiator with settings written under ``state_dir``."""
    settings = write_settings(
        state_dir / f"quickfix-{role}.cfg",
        {**common_defaults(state_dir, role), "ConnectionType": kind, **defaults},
        sessions,
    )
    store = fix.FileStoreFactory(settings)
    cls = fix.SocketAcceptor if kind == "acceptor" else fix.SocketInitiator
    engine = cls(app, store, settings)
    engine.start()
    engine._keep = (settings, store)  # the engine uses both for its whole life
    return engine


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.2):
        pass


def logout_all(session_ids: Iterable[fix.SessionID]) -> None:
    log_out(session_ids, "simulator stopping", timeout_s=2.0)


def leave(code: int = 0) -> NoReturn:
    """End the process without stopping the quickfix engine (its stop() has segfaulted here)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
