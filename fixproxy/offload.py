"""Store writers in processes of their own, at idle priority while they keep up.

In the proxy, a writer thread shares the interpreter lock with the thread that handles orders:
turning each message into a chained, hashed, indexed audit row is Python work, and at a few
thousand orders a second it held the lock long enough to queue orders behind it
(docs/benchmarks.md). The audit store is written by a follower of the journal in a process of its
own (``audit.follower``); this module keeps what such a process shares: ``WriterPriority`` and
``WriterStartError``.
"""

from __future__ import annotations

import os
import threading
import time

import structlog


class WriterStartError(Exception):
    """The writer process could not open its store; the message says why."""


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

    def __init__(self, late_s: float = 0.25, hold_s: float = 10.0, tids: list[int] | None = None) -> None:
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
                self._log.info(
                    "writer_priority_raised",
                    late_ms=round(late_s * 1000, 1),
                    detail=f"the writer fell behind at idle priority; normal priority for at least {self.hold_s:g} s",
                )
        elif not self.idle and now >= self._normal_until:
            self.lower()
