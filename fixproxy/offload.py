"""Store writers in processes of their own, fed in batches.

In the proxy, a writer thread shares the interpreter lock with the thread that handles orders:
turning each message into a chained, hashed, indexed audit row, or each order change into state
rows, is Python work, and at a few thousand orders a second it held the lock long enough to queue
orders behind it (the benchmark: p50 at 2,000 orders/s went from 1.9 ms to 0.6 ms with the audit
store off). A ``WriterProcess`` has the writer's interface, but ``put`` only appends to a deque;
a sender thread ships what accumulated every ``send_interval_ms`` as one pickled batch over a
pipe to a child process, where the plain writer (``AuditWriter``, ``StateStore``) does the work.
The stores, their rows and the audit chain are the same. What the child has not written when
the proxy is killed is lost, as with a thread (the loss window grows by the send interval).
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import signal
import threading
from pathlib import Path

import structlog

from .audit.store import _ACTION, _MESSAGE
from .core import events as ev

_FLUSH, _STOP = "flush", "stop"


class WriterStartError(Exception):
    """The writer process could not open its store; the message says why."""


def _audit_writer(path: str, batch_size: int, flush_interval_ms: int, note: str):
    from .audit.store import AuditWriter

    writer = AuditWriter(Path(path), batch_size=batch_size, flush_interval_ms=flush_interval_ms)
    writer.start(note=note)
    return writer


def _state_writer(path: str, flush_ms: int):
    from .state import StateStore

    writer = StateStore(Path(path), flush_ms=flush_ms)
    writer.start()
    return writer


_WRITERS = {"audit": _audit_writer, "state": _state_writer}


def _child(requests, replies, kind: str, kwargs: dict, log_level: str) -> None:
    """The writer process: batches of items in, flush acknowledgements out."""
    import sqlite3

    from .app import configure_logging
    from .audit.store import AuditError

    configure_logging(log_level)
    # ^C in a terminal (and a service manager's SIGTERM) reaches the whole process group: the
    # writer must outlive it long enough to write what the proxy hands over while it stops. It
    # stops when the proxy says so, or when the proxy is gone (end of the pipe).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        writer = _WRITERS[kind](**kwargs)
    except (AuditError, sqlite3.Error, OSError) as exc:
        replies.send(("error", str(exc)))
        return
    replies.send(("ready", ""))
    put = writer.put
    try:
        while True:
            try:
                batch = requests.recv()
            except (EOFError, OSError):
                break  # the proxy is gone: write what came and stop
            stop = False
            for item in batch:
                if type(item) is tuple and item and item[0] == _FLUSH:
                    writer.flush(60)
                    replies.send((_FLUSH, item[1]))
                elif type(item) is tuple and item and item[0] == _STOP:
                    stop = True
                else:
                    put(item)
            if stop:
                break
    finally:
        writer.close()
    replies.send((_STOP, ""))


class WriterProcess:
    """A store writer (``kind`` "audit" or "state") in a child process; see the module's doc."""

    def __init__(self, kind: str, kwargs: dict, *, send_interval_ms: int = 20, log_level: str = "info"):
        self.kind = kind
        self.kwargs = kwargs
        self.send_s = send_interval_ms / 1000
        self.log_level = log_level
        self.lost = 0
        self._items: collections.deque = collections.deque()
        self._ids = itertools.count(1)
        self._acks: dict[int, threading.Event] = {}
        self._send_lock = threading.Lock()
        self._stopping = threading.Event()
        self._process = None
        self._requests = self._replies = None
        self._log = structlog.get_logger(f"fixproxy.{kind}")

    def put(self, item) -> None:
        """Queue one item for the writer (any thread; never blocks)."""
        self._items.append(item)

    def start(self) -> None:
        """Start the writer process (it opens the store: WriterStartError if it cannot) and the sender."""
        ctx = multiprocessing.get_context("spawn")  # never fork a process that runs FIX engine threads
        child_requests, self._requests = ctx.Pipe(duplex=False)
        self._replies, child_replies = ctx.Pipe(duplex=False)
        self._process = ctx.Process(target=_child, name=f"fixproxy-{self.kind}-writer", daemon=True,
                                    args=(child_requests, child_replies, self.kind, self.kwargs, self.log_level))
        self._process.start()
        child_requests.close()
        child_replies.close()
        if not self._replies.poll(60):
            raise WriterStartError(f"the {self.kind} writer process did not start")
        kind, detail = self._replies.recv()
        if kind == "error":
            self._process.join(5)
            raise WriterStartError(detail)
        threading.Thread(target=self._send_loop, name=f"fixproxy-{self.kind}-sender", daemon=True).start()
        threading.Thread(target=self._reply_loop, name=f"fixproxy-{self.kind}-replies", daemon=True).start()

    def _drain(self) -> list:
        items = self._items
        return [items.popleft() for _ in range(len(items))]

    def _send(self, batch: list) -> None:
        """Ship a batch (the caller holds the send lock, so batches leave in the order taken)."""
        try:
            self._requests.send(batch)
        except (OSError, ValueError) as exc:
            self.lost += len(batch)
            self._log.error("writer_send_failed", records=len(batch), error=str(exc))

    def _send_loop(self) -> None:
        while not self._stopping.wait(self.send_s):
            with self._send_lock:
                batch = self._drain()
                if batch:
                    self._send(batch)

    def _reply_loop(self) -> None:
        while True:
            try:
                kind, detail = self._replies.recv()
            except (EOFError, OSError):
                return
            if kind == _FLUSH:
                done = self._acks.pop(detail, None)
                if done is not None:
                    done.set()
            elif kind == _STOP:
                return

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything put so far is written; False on timeout or when not running."""
        if self._process is None or not self._process.is_alive():
            return False
        flush_id = next(self._ids)
        done = self._acks[flush_id] = threading.Event()
        with self._send_lock:
            self._send([*self._drain(), (_FLUSH, flush_id)])
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write everything put, stop the writer process."""
        if self._process is None:
            return
        self._stopping.set()
        with self._send_lock:
            self._send([*self._drain(), (_STOP,)])
        self._process.join(timeout)
        self._process = None


class AuditProcess(WriterProcess):
    """``AuditWriter``'s interface as the proxy uses it (message, record), the writer in a child process."""

    def __init__(self, path: Path, *, batch_size: int = 1000, flush_interval_ms: int = 200, note: str = "",
                 log_level: str = "info"):
        super().__init__("audit", {"path": str(path), "batch_size": batch_size,
                                   "flush_interval_ms": flush_interval_ms, "note": note}, log_level=log_level)

    def message(self, direction: str, session: str, raw: str, now_ns: int) -> None:
        self._items.append((_MESSAGE, direction, session, raw, now_ns))

    def record(self, action: ev.Action | ev.AdminCommand) -> None:
        self._items.append((_ACTION, action))


class StateProcess(WriterProcess):
    """``StateStore``'s writing half (put, flush, close), the writer in a child process.

    ``source`` (a ``ChangeCollector.take``), when given, is asked for a capture each time a batch
    leaves: what the core changed since the last one, copied out then.
    """

    def __init__(self, path: Path, *, flush_ms: int = 20, log_level: str = "info", source=None):
        super().__init__("state", {"path": str(path), "flush_ms": flush_ms}, log_level=log_level)
        self._source = source

    def _drain(self) -> list:
        items = super()._drain()
        if self._source is not None:
            capture = self._source()
            if capture is not None:
                items.append(capture)
        return items
