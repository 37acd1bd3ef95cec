"""The risk desk's live actions in replay: halt, limit and reference-price changes given over the HTTP API
mid-session are recorded as commands and applied again when the audit store is replayed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixproxy.audit import open_for_reading, verify
from fixproxy.audit.query import Filters, select
from fixproxy.cli import main
from fixproxy.config import load
from fixproxy.replay import open_sources
from fixproxy.replay.replayer import Replayer

from .harness import Stack, messages
from .test_admin_http import api, filled, kill, refused, rest
from .test_order_path import order

HALT_REASON = "runaway algo"

#: ClOrdID -> (original outcome, code), in the order sent; each desk-caused reject is marked.
EXPECTED = {
    "D1": ("forwarded", ""),
    "R1": ("forwarded", ""),  # rests at the venue; cancelled by the halt_and_cancel
    "H1": ("rejected", "HALTED"),  # account:HX halted
    "H2": ("forwarded", ""),  # another account trades on
    "L1": ("rejected", "MAX_ORDER_QTY"),  # 600 > the firm limit tightened to 500
    "L2": ("forwarded", ""),
    "P1": ("rejected", "PRICE_COLLAR"),  # 188 is 6% off the reference price the desk set (200)
    "RD1": ("rejected", "REDUCING_ONLY"),  # account:HX reduce-only, and it has no position to reduce
    "OK1": ("forwarded", ""),  # after resume
    "L3": ("forwarded", ""),  # after the tightened limit was cleared
}
DESK_CAUSED = {"H1", "L1", "P1", "RD1"}


def post(stack: Stack, path: str, body: dict) -> dict:
    status, result = api(stack, "POST", path, body)
    assert status == 200 and result["ok"], result
    return result


@pytest.fixture(scope="module")
def day(tmp_path_factory, engine):
    """A session in which the desk halts (with cancels), tightens a limit, sets a reference price, sets
    reduce-only, resumes and clears the limit, each between orders; then the proxy is stopped."""
    s = Stack(tmp_path_factory.mktemp("desk_replay"), behaviours={"MSFT": "ack"})
    try:
        oms = s.connect("oms1")

        def send(cl: str, **kw) -> int:
            start = oms.mark()
            oms.send_line(order(cl, **kw))
            return start

        filled(oms, "D1", send("D1", account="ACC1"))
        rest(oms, "R1", "HX")
        start = oms.mark()
        assert kill(s, "account:HX", "halt_and_cancel", HALT_REASON)["orders_cancelled"] == 1
        oms.wait_for(messages(oms)(**{"35": "8", "11": "R1", "39": "4"}), start=start)
        refused(oms, "H1", send("H1", qty="10", account="HX"))
        filled(oms, "H2", send("H2", qty="10", account="ACC1"))
        post(s, "/limits", {"layer": "firm", "field": "max_order_qty", "value": 500, "reason": "volatile open"})
        refused(oms, "L1", send("L1", qty="600", account="ACC1"))
        filled(oms, "L2", send("L2", qty="400", account="ACC1"))
        post(s, "/reference-prices", {"symbol": "AAPL", "price": "200", "reason": "stale close"})
        refused(oms, "P1", send("P1", qty="10", price="188", account="ACC1"))
        kill(s, "account:HX", "reducing", "flatten only")
        refused(oms, "RD1", send("RD1", qty="10", price="199", account="HX"))
        kill(s, "account:HX", "resume", "algo fixed")
        filled(oms, "OK1", send("OK1", qty="10", price="199", account="HX"))
        post(s, "/limits", {"layer": "firm", "field": "max_order_qty", "value": None, "reason": "calm again"})
        filled(oms, "L3", send("L3", qty="600", price="199", account="ACC1"))
        s.proxy.stop()
        yield s
    finally:
        s.close()


def store(day) -> Path:
    return day.root / "var" / "audit.sqlite"


def replayed(day, tmp_path, *args: str) -> dict:
    out = tmp_path / "replay.json"
    assert main(["replay", *args, "--config", str(day.config), "--no-progress", "--json", str(out)]) == 0
    return json.loads(out.read_text())


def outcomes(doc: dict) -> dict[str, tuple[str, str, str, str]]:
    return {r["cl_ord_id"]: (r["original"], r["original_code"], r["replayed"], r["replayed_code"]) for r in doc["rows"]}


def test_desk_actions_are_recorded_as_commands_before_their_results(day):
    """Each HTTP command is a command record (the core event's fields) ahead of its admin result; the chain verifies."""
    db = open_for_reading(store(day))
    assert verify(db).ok
    desk = [r for r in select(db, Filters()) if r.kind in ("command", "admin") and r.code != "day_roll"]
    kinds = ["kill", "limit", "reference", "kill", "kill", "limit"]
    assert [(r.kind, r.code) for r in desk] == [(kind, code) for code in kinds for kind in ("command", "admin")]
    commands = [json.loads(r.data) for r in desk if r.kind == "command"]
    assert commands[0] == {
        "type": "AdminKill",
        "scope": "account:HX",
        "action": "halt_and_cancel",
        "reason": HALT_REASON,
        "operator": "desk-risk",
        "request_id": "",
    }
    assert commands[1] == {
        "type": "AdminSetLimit",
        "layer": "firm",
        "field": "max_order_qty",
        "value": 500,
        "reason": "volatile open",
        "operator": "desk-risk",
    }
    assert commands[2]["type"] == "AdminSetReference" and commands[2]["price"] == "200"
    assert commands[5]["value"] is None
    assert desk[0].account == "HX" and desk[4].symbol == "AAPL"


def test_audit_store_replay_reproduces_desk_caused_rejects_with_zero_differences(day, tmp_path, capsys):
    """Replaying the store under the same config applies the six desk actions again: HALTED, the tightened
    limit, the new reference price and reduce-only are rejected again, and nothing differs."""
    doc = replayed(day, tmp_path, str(store(day)))
    got = outcomes(doc)
    assert got == {cl: (o, c, o, c) for cl, (o, c) in EXPECTED.items()}
    assert doc["summary"]["differences"] == 0
    halted = next(r for r in doc["rows"] if r["cl_ord_id"] == "H1")
    assert halted["replayed_text"] == f"HALTED: trading is halted for account:HX by desk-risk: {HALT_REASON}"
    actions = doc["summary"]["risk_desk_actions"]
    assert [(a["command"], a["scope"], a["what"], a["before"], a["after"], a["ok"]) for a in actions] == [
        ("kill", "account:HX", "halt_and_cancel", "ACTIVE", "HALTED", True),
        ("limit", "firm", "max_order_qty = 500", "10000", "500", True),
        ("reference", "symbol:AAPL", "reference price 200", "190", "200", True),
        ("kill", "account:HX", "reducing", "HALTED", "REDUCING", True),
        ("kill", "account:HX", "resume", "REDUCING", "ACTIVE", True),
        ("limit", "firm", "max_order_qty = (cleared)", "500", "", True),
    ]
    out = capsys.readouterr().out
    assert "differences: 0" in out and "risk-desk actions applied again: 6" in out


def test_replayed_halt_and_cancel_is_settled_by_the_venues_cancel_answer(day):
    """The replay's own cancel of R1 is matched to the venue's answer to the live one: R1 cancelled, none pending."""
    replayer = Replayer(load(day.config))
    replayer.run(open_sources([str(store(day))]))
    core = replayer.core
    assert core.kill_cancels_pending() == 0
    r1 = core.orders.by_oms("oms1", "R1")
    assert r1.status.name == "CANCELED" and not core.kill.states()


def test_filelog_replay_shows_desk_caused_rejects_as_differences_unless_given_the_store(day, tmp_path, capsys):
    """The FileLog alone has no desk actions: exactly the four desk-caused rejects differ; with --audit none do."""
    log = str(day.root / "var" / "log")
    doc = replayed(day, tmp_path, log)
    assert sorted(r["cl_ord_id"] for r in doc["rows"] if r["differs"]) == sorted(DESK_CAUSED)
    assert all(r["replayed"] == "forwarded" for r in doc["rows"] if r["differs"])
    assert "risk-desk actions: none in these inputs" in capsys.readouterr().out
    doc = replayed(day, tmp_path, log, "--audit", str(store(day)))
    assert outcomes(doc) == {cl: (o, c, o, c) for cl, (o, c) in EXPECTED.items()}
    assert doc["summary"]["differences"] == 0 and len(doc["summary"]["risk_desk_actions"]) == 6
