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
import os
import signal
import threading
import time
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


class WriterPriority:
    """A writer process that yields the CPU to the order path while it keeps up.

    Its threads run under ``SCHED_IDLE``: on a machine whose cores are shared with the proxy (and,
    in the benchmark, with the load generator and the venue), the writer's bursts of SQLite work
    then wait for a free core instead of taking one from a process that carries an order. A writer
    at idle priority gets almost no CPU while every core is busy, so it falls behind exactly when
    the load is highest: when a cycle of the writer ends more than ``late_s`` after it was due, its
    threads go back to normal priority, and stay there until ``hold_s`` pass without that.

    Going back needs the right to raise a thread's priority (CAP_SYS_NICE, or RLIMIT_NICE of 20
    or more: root has it; a service can be given it with systemd's ``AmbientCapabilities`` or
    ``LimitNICE``). ``available`` checks it on a throwaway thread; without it the writer stays at
    normal priority, since it could not be brought back.
    """

    def __init__(self, late_s: float = 0.25, hold_s: float = 10.0, tids=None):
        self.late_s, self.hold_s = late_s, hold_s
        self._tids = tids  # None: every thread of this process, as it is at each change
        self.idle = False
        self._normal_until = 0.0
        self.raised = 0  # times the writer went back to normal priority
        self._log = structlog.get_logger("fixproxy.writer")

    @staticmethod
    def available() -> bool:
        """Whether a thread of this process can go to idle priority and back."""
        if not hasattr(os, "SCHED_IDLE"):
            return False
        ok: list[bool] = []

        def probe() -> None:
            try:
                os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
                ok.append(True)
            except OSError:
                ok.append(False)

        thread = threading.Thread(target=probe, name="fixproxy-priority-probe")
        thread.start()
        thread.join()
        return ok == [True]

    def _set(self, policy: int) -> None:
        tids = self._tids if self._tids is not None else [int(t) for t in os.listdir("/proc/self/task")]
        for tid in tids:
            try:
                os.sched_setscheduler(tid, policy, os.sched_param(0))
            except OSError:  # a thread that ended meanwhile
                pass

    def lower(self) -> None:
        self._set(os.SCHED_IDLE)
        self.idle = True

    def cycle(self, late_s: float) -> None:
        """After each writer cycle: how much later than due it ended."""
        now = time.monotonic()
        if late_s > self.late_s:
            self._normal_until = now + self.hold_s
            if self.idle:
                self._set(os.SCHED_OTHER)
                self.idle = False
                self.raised += 1
                self._log.info("writer_priority_raised", late_ms=round(late_s * 1000, 1),
                               detail=f"the writer fell behind at idle priority; normal priority for "
                                      f"at least {self.hold_s:g} s")
        elif not self.idle and now >= self._normal_until:
            self.lower()


def _child(requests, replies, kind: str, kwargs: dict, log_level: str, priority: str = "normal") -> None:
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
    if priority == "idle":
        if WriterPriority.available():
            pacer = WriterPriority()
            pacer.lower()
            writer.on_cycle = pacer.cycle
        else:
            structlog.get_logger(f"fixproxy.{kind}").warning(
                "writer_priority_unavailable", detail="no right to raise a thread's priority back "
                "(CAP_SYS_NICE or RLIMIT_NICE); the writer runs at normal priority")
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

    def __init__(self, kind: str, kwargs: dict, *, send_interval_ms: int = 20, log_level: str = "info",
                 priority: str = "normal"):
        self.kind = kind
        self.kwargs = kwargs
        self.priority = priority  # "idle": see WriterPriority
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
                                    args=(child_requests, child_replies, self.kind, self.kwargs, self.log_level,
                                          self.priority))
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
                 log_level: str = "info", priority: str = "normal"):
        super().__init__("audit", {"path": str(path), "batch_size": batch_size,
                                   "flush_interval_ms": flush_interval_ms, "note": note}, log_level=log_level,
                         priority=priority)

    def message(self, direction: str, session: str, raw: str, now_ns: int) -> None:
        self._items.append((_MESSAGE, direction, session, raw, now_ns))

    def record(self, action: ev.Action | ev.AdminCommand) -> None:
        self._items.append((_ACTION, action))


class StateProcess(WriterProcess):
    """``StateStore``'s writing half (put, flush, close), the writer in a child process.

    ``source`` (a ``ChangeCollector.take``), when given, is asked for a capture each time a batch
    leaves: what the core changed since the last one, copied out then.
    """

    def __init__(self, path: Path, *, flush_ms: int = 20, log_level: str = "info", source=None,
                 priority: str = "normal"):
        super().__init__("state", {"path": str(path), "flush_ms": flush_ms}, log_level=log_level, priority=priority)
        self._source = source

    def _drain(self) -> list:
        items = super()._drain()
        if self._source is not None:
            capture = self._source()
            if capture is not None:
                items.append(capture)
        return items
