"""The audit follower stopped, then killed, while orders flow: /healthz says degraded (trading goes on:
the journal has everything), an alert is raised, and once it is back the store has a record for every
message and verifies against the journal and the FIX stores. ``journal show`` prints the same day."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from fixproxy.audit.store import iter_records, open_for_reading

from .harness import messages
from .test_admin_http import api
from .test_order_path import order


def health(s) -> dict:
    with urllib.request.urlopen(s.api_url.removesuffix("/api/v1") + "/healthz", timeout=5) as r:
        assert r.status == 200
        return json.loads(r.read())


def wait_audit(s, want, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        h = health(s)
        if want(h["audit"]):
            return h
        time.sleep(0.2)
    raise AssertionError(f"audit follower never got there: {health(s)}")


def test_follower_stopped_then_killed_loses_no_record(fresh_stack):
    """SIGSTOP: degraded and an alert while orders still trade; SIGKILL: restarted, catches up, verify ok
    with a record for every message the OMS exchanged."""
    s = fresh_stack(behaviours={"AAPL": "fill"})
    oms = s.connect("oms1")
    m = messages(oms)
    pid = wait_audit(s, lambda a: a["state"] == "ok" and a["pid"])["audit"]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        for i in range(30):
            oms.send_line(order(f"S{i}", account="AUD"))
            oms.wait_for(m(**{"35": "8", "11": f"S{i}", "39": "2"}))  # trading goes on
            time.sleep(0.2)
        h = wait_audit(s, lambda a: a["state"] in ("behind", "stuck"))
        assert h["status"] == "degraded" and h["journal"]["state"] == "ok"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGCONT)
    for i in range(30, 40):
        oms.send_line(order(f"S{i}", account="AUD"))
        oms.wait_for(m(**{"35": "8", "11": f"S{i}", "39": "2"}))
    h = wait_audit(s, lambda a: a["state"] == "ok" and a["pid"] not in (None, pid) and a["lag_bytes"] == 0)
    assert h["audit"]["restarts"] >= 1
    alerts = api(s, "GET", "/alerts?limit=50", role="viewer")[1]
    assert any(a["limit_name"] == "audit_follower" for a in alerts), alerts

    exchanged = {
        ("in" if r["dir"] == "out" else "out", r["fields"]["34"])
        for r in list(oms.lines)
        if r.get("dir") in ("in", "out") and r["fields"].get("35") in ("D", "8")
    }
    recorded = {
        (r.direction, json.loads(r.data)["raw"].split("\x0134=")[1].split("\x01")[0])
        for r, _ in iter_records(open_for_reading(s.root / "var" / "audit.sqlite"), "kind = 'message'")
        if r.session == "oms1"
    }
    assert exchanged - recorded == set()
    done = subprocess.run(
        [sys.executable, "-m", "fixproxy", "audit", "verify", "--config", str(s.config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    shown = subprocess.run(
        [sys.executable, "-m", "fixproxy", "journal", "show", "--config", str(s.config), "--kind", "in"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=s.root,
    )
    ins = [json.loads(line)["record"] for line in shown.stdout.splitlines()]
    assert sum(1 for r in ins if r["session"] == "oms1" and "|35=D|" in r["raw"]) == 40
