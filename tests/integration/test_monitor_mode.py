"""Monitor (shadow) mode over real sessions: a limit monitored from the config and a rule put in
monitor mode over the HTTP API let through orders they would refuse, which reach the venue and fill;
the would-have-refused decisions show in the API, survive a restart of the proxy, land in the audit
store and the end-of-day report, and a replay of the journal reproduces every decision.

One stack serves the module and the tests run in order (each builds on the one before).
"""

from __future__ import annotations

import json

import pytest

from fixproxy.audit import open_for_reading
from fixproxy.audit.query import Filters, select
from fixproxy.cli import main

from .harness import Stack
from .test_admin_http import api, cli, filled, refused
from .test_order_path import order

#: WATCH's own quantity limit (20) is watched; the firm's (10,000) applies to it meanwhile.
EXTRA = """
[limits.accounts.WATCH]
max_order_qty = 20
monitor = ["max_order_qty"]
"""


@pytest.fixture(scope="module")
def watch(tmp_path_factory, engine):
    s = Stack(tmp_path_factory.mktemp("monitor"), extra=EXTRA)
    try:
        s.connect("oms1")
        yield s
    finally:
        s.close()


def _would_refuse(stack: Stack) -> list[dict]:
    status, items = api(stack, "GET", "/decisions?limit=500", role="viewer")
    assert status == 200
    return [i for i in items if i.get("would_refuse")]


def test_limit_monitored_in_config_lets_order_through(watch):
    """WATCH buys 30 over its monitored limit of 20: filled, with a would-have-refused decision; 20,000 is
    still refused by the firm's limit."""
    oms = watch.oms["oms1"]
    start = oms.mark()
    oms.send_line(order("MW-1", qty="30", account="WATCH"))
    filled(oms, "MW-1", start)
    [hit] = [w for w in _would_refuse(watch) if w["cl_ord_id"] == "MW-1"]
    assert (hit["code"], hit["observed"], hit["limit"], hit["scope"], hit["rule"]) == (
        "MAX_ORDER_QTY",
        "30",
        "20",
        "account:WATCH",
        "max_order_qty",
    )
    start = oms.mark()
    oms.send_line(order("MW-2", qty="20000", account="WATCH"))
    assert refused(oms, "MW-2", start).startswith("MAX_ORDER_QTY: ")
    status, modes = api(watch, "GET", "/modes", role="viewer")
    assert status == 200 and modes["limits"] == [
        {"layer": "account:WATCH", "field": "max_order_qty", "mode": "monitor"}
    ]


def test_rule_set_to_monitor_over_http_forwards_order(watch):
    """SMALL's 50-share limit refuses 100 shares; with the rule in monitor mode (set by a risk user over
    HTTP) the same order fills, and the would-have-refused decision is recorded."""
    oms = watch.oms["oms1"]
    start = oms.mark()
    oms.send_line(order("MR-1", qty="100", account="SMALL"))
    assert refused(oms, "MR-1", start).startswith("MAX_ORDER_QTY: ")

    status, result = api(
        watch, "POST", "/modes", {"rule": "max_order_qty", "mode": "monitor", "reason": "watch the new limit"}
    )
    assert status == 200, result
    assert (result["kind"], result["operator"], result["before"], result["after"]) == (
        "mode",
        "desk-risk",
        "enforce",
        "monitor",
    )
    status, result = api(
        watch, "POST", "/modes", {"rule": "max_order_qty", "mode": "monitor", "reason": "x"}, role="viewer"
    )
    assert status == 403

    start = oms.mark()
    oms.send_line(order("MR-2", qty="100", account="SMALL"))
    filled(oms, "MR-2", start)
    [hit] = [w for w in _would_refuse(watch) if w["cl_ord_id"] == "MR-2"]
    assert (hit["code"], hit["observed"], hit["limit"], hit["scope"]) == ("MAX_ORDER_QTY", "100", "50", "account:SMALL")
    assert "Monitor mode: rule max_order_qty, account:WATCH max_order_qty" in cli(watch, "status").stdout


def test_modes_survive_restart(watch):
    """Stopped and started again, the proxy keeps the rule in monitor mode (recovered from its journal)."""
    oms = watch.oms["oms1"]
    assert watch.proxy.stop() == 0
    mark = oms.mark()
    watch.start_proxy()
    oms.wait_for(lambda r: r.get("event") == "logon", start=mark)
    shown = cli(watch, "modes", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["rules"]["max_order_qty"] == "monitor"
    start = oms.mark()
    oms.send_line(order("MR-3", qty="100", account="SMALL"))
    filled(oms, "MR-3", start)

    done = cli(watch, "modes", "set", "--rule", "max_order_qty", "--mode", "enforce", "--reason", "trial over")
    assert done.returncode == 0, done.stderr
    assert "firm rule max_order_qty: monitor -> enforce" in done.stdout
    start = oms.mark()
    oms.send_line(order("MR-4", qty="100", account="SMALL"))
    assert refused(oms, "MR-4", start).startswith("MAX_ORDER_QTY: ")


def test_audit_report_and_replay_count_would_refuse(watch, tmp_path, capsys):
    """The audit store holds a would_refuse record per forwarded order a monitored check would have
    refused, the report counts them by code, and replaying the journal reproduces every decision."""
    assert watch.proxy.stop() == 0
    db_path = watch.root / "var" / "audit.sqlite"
    db = open_for_reading(db_path)
    rows = [r for r in select(db, Filters()) if r.kind == "would_refuse"]
    assert sorted((r.cl_ord_id, r.code, r.account) for r in rows) == [
        ("MR-2", "MAX_ORDER_QTY", "SMALL"),
        ("MR-3", "MAX_ORDER_QTY", "SMALL"),
        ("MW-1", "MAX_ORDER_QTY", "WATCH"),
    ]
    commands = [json.loads(r.data) for r in select(db, Filters()) if r.kind == "command" and r.code == "mode"]
    assert [(c["rule"], c["mode"], c["operator"]) for c in commands] == [
        ("max_order_qty", "monitor", "desk-risk"),
        ("max_order_qty", "enforce", "desk-risk"),
    ]

    assert main(["report", "--db", str(db_path), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    counts = {(w["code"], w["scope"]): w["count"] for w in report["would_have_refused"]}
    assert counts == {("MAX_ORDER_QTY", "account:SMALL"): 2, ("MAX_ORDER_QTY", "account:WATCH"): 1}
    assert main(["report", "--db", str(db_path)]) == 0
    text = capsys.readouterr().out
    assert "Would have refused (monitor mode)" in text

    journal = watch.root / "var" / "journal"
    assert main(["audit", "verify", "--db", str(db_path), "--journal", str(journal)]) == 0
    capsys.readouterr()

    for source in (journal, db_path):
        out = tmp_path / "replay.json"
        main(["replay", str(source), "--config", str(watch.config), "--no-progress", "--json", str(out)])
        doc = json.loads(out.read_text())
        assert doc["summary"]["differences"] == 0, source
        outcome = {row["cl_ord_id"]: row["replayed"] for row in doc["rows"] if row["msg_type"] == "D"}
        assert {k: outcome[k] for k in ("MR-1", "MR-2", "MR-3", "MR-4", "MW-1", "MW-2")} == {
            "MR-1": "rejected",
            "MR-2": "forwarded",
            "MR-3": "forwarded",
            "MR-4": "rejected",
            "MW-1": "forwarded",
            "MW-2": "rejected",
        }
