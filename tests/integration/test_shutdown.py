"""Stopping the proxy the way people do: ^C in a terminal reaches its whole process group."""

from __future__ import annotations

import os
import signal

from fixproxy.audit.store import iter_records, open_for_reading
from fixproxy.audit.verify import verify

from .harness import messages


def test_interrupt_to_the_process_group_loses_no_audit_record(fresh_stack):
    """SIGINT to the proxy and its store writer processes at once: the proxy logs out, its writers
    still write everything handed to them, and the audit chain is intact."""
    s = fresh_stack()
    oms = s.connect("oms1")
    oms.send_line("35=D|11=SIG-1|55=AAPL|54=1|38=100|40=2|44=190")
    oms.wait_for(messages(oms)(**{"35": "8", "11": "SIG-1", "39": "2"}))
    os.killpg(s.proxy.pid, signal.SIGINT)  # the proxy leads its own process group (start_new_session)
    assert s.proxy.popen.wait(30) == 0
    db = open_for_reading(s.root / "var" / "audit.sqlite")
    assert verify(db).ok
    ours = [r for r, _ in iter_records(db) if r.kind == "message" and r.cl_ord_id in ("SIG-1", "oms1.SIG-1")]
    # D in and out, and the ack and the fill, each in from the venue and out to the OMS
    assert sorted((r.direction, r.msg_type) for r in ours) == [
        ("in", "8"),
        ("in", "8"),
        ("in", "D"),
        ("out", "8"),
        ("out", "8"),
        ("out", "D"),
    ]
    failures = [r for r in s.proxy.lines if r.get("level") == "error"]
    assert not failures  # e.g. writer_send_failed: a writer gone before the proxy handed it everything
