"""Store writer processes at idle priority while they keep up, back to normal when they fall behind."""

from __future__ import annotations

import os
import threading
import time

import pytest

from fixproxy.audit import open_for_reading
from fixproxy.audit.follower import AuditFollowerProcess, FollowerSettings
from fixproxy.audit.store import iter_records
from fixproxy.journal.format import Start
from fixproxy.journal.writer import Journal
from fixproxy.offload import WriterPriority

pytestmark = pytest.mark.skipif(
    not WriterPriority.available(), reason="this user may not raise a thread's priority back (CAP_SYS_NICE)"
)


def policies(pid: int) -> set[int]:
    return {os.sched_getscheduler(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


@pytest.fixture
def thread_id():
    """A thread of this process that waits (the priorities are set on it, not on the test's threads)."""
    ready, done, tid = threading.Event(), threading.Event(), []

    def run() -> None:
        tid.append(threading.get_native_id())
        ready.set()
        done.wait(30)

    thread = threading.Thread(target=run)
    thread.start()
    ready.wait(5)
    yield tid[0]
    done.set()
    thread.join(5)


def test_a_late_cycle_raises_the_writer_and_it_goes_back_to_idle_after_the_hold(thread_id):
    pacer = WriterPriority(late_s=0.25, hold_s=0.3, tids=[thread_id])
    pacer.lower()
    assert os.sched_getscheduler(thread_id) == os.SCHED_IDLE
    pacer.cycle(0.1)  # on time (within late_s): stays idle
    assert os.sched_getscheduler(thread_id) == os.SCHED_IDLE and pacer.raised == 0
    pacer.cycle(0.6)
    assert os.sched_getscheduler(thread_id) == os.SCHED_OTHER and pacer.raised == 1
    pacer.cycle(0.0)  # within the hold: stays at normal priority
    assert os.sched_getscheduler(thread_id) == os.SCHED_OTHER
    time.sleep(0.35)
    pacer.cycle(0.0)
    assert os.sched_getscheduler(thread_id) == os.SCHED_IDLE and pacer.idle


@pytest.mark.parametrize("priority, policy", [("idle", os.SCHED_IDLE), ("normal", os.SCHED_OTHER)])
def test_the_audit_follower_process_runs_at_its_priority_and_writes(tmp_path, priority, policy):
    journal = Journal(tmp_path / "journal", 1, Start(1, time.time_ns(), os.getpid(), "test"))
    journal.inbound("oms1", time.time_ns(), "8=FIX.4.4\x0135=D\x0111=A1\x01")
    follower = AuditFollowerProcess(
        FollowerSettings(
            store=str(tmp_path / "audit.sqlite"), journal_dir=str(tmp_path / "journal"), flush_interval_ms=20
        ),
        journal_position=lambda: journal.position,
        priority=priority,
    )
    follower.start()
    try:
        deadline = time.monotonic() + 30
        while follower.health()["position"]["offset"] < journal.size:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert policies(follower.pid) == {policy}
    finally:
        journal.close()
        assert follower.stop()
    kinds = [(r.kind, r.cl_ord_id) for r, _ in iter_records(open_for_reading(tmp_path / "audit.sqlite"))]
    assert kinds == [("notice", ""), ("message", "A1")]
