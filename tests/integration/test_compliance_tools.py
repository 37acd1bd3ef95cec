"""Compliance tools over a real session: end-of-day positions export and its round trip into the next
day's start, the report's final positions and admin actions, an order's whole chain in `audit show`."""

from __future__ import annotations

import json
import shutil
import urllib.request
from decimal import Decimal

from fixproxy.assemble import build_core
from fixproxy.cli import main
from fixproxy.config import load, load_positions

from .harness import TOKENS, messages
from .test_order_path import order


def get(stack, path: str) -> object:
    request = urllib.request.Request(stack.api_url + path, headers={"Authorization": f"Bearer {TOKENS['viewer']}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def post(stack, path: str, body: dict) -> int:
    request = urllib.request.Request(
        stack.api_url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {TOKENS['risk']}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def book(positions: list[dict]) -> dict[tuple[str, str], tuple[str, str]]:
    """(account, symbol) -> (qty, avg_cost) of the positions with a quantity, as the API renders them."""
    return {(p["account"], p["symbol"]): (p["qty"], p["avg_cost"]) for p in positions if p["qty"] not in ("0", "")}


def exported_lines(path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.startswith("# positions of")]


def test_positions_export_round_trips_into_the_next_day(fresh_stack, tmp_path, capsys):
    """Fills on two accounts and one order without an account: the export (running, then stopped) holds the
    proxy's positions; read back as the start-of-day file, a new day starts from exactly them."""
    s = fresh_stack(behaviours={"MSFT": "ack"})
    oms = s.connect("oms1")
    m = messages(oms)
    for cl, line in (
        ("P1", order("P1", qty="100", account="A1")),
        ("P2", order("P2", qty="30", side="2", account="A1")),
        ("P3", order("P3", symbol="NVDA", price="120", qty="50", account="A2")),
        ("P4", order("P4", qty="10")),
        ("P5", order("P5", qty="7", price="191", account="A2")),
    ):
        start = oms.mark()
        oms.send_line(line)
        oms.wait_for(m(**{"35": "8", "11": cl, "39": "2"}), start=start)
    live = book(get(s, "/positions"))
    assert live[("A1", "AAPL")][0] == "70" and live[("A2", "NVDA")][0] == "50" and live[("", "AAPL")][0] == "10"

    running, stopped = tmp_path / "running.csv", tmp_path / "eod.csv"
    assert main(["positions", "export", "--config", str(s.config), "--out", str(running)]) == 0
    assert s.proxy.stop() == 0
    assert main(["positions", "export", "--config", str(s.config), "--out", str(stopped)]) == 0
    err = capsys.readouterr().err
    assert f"3 position(s) written to {stopped}" in err and "1 position(s) of orders without an account" in err
    assert exported_lines(running) == exported_lines(stopped)
    assert any(line.startswith("# no account") and "symbol AAPL, qty 10," in line for line in exported_lines(stopped))

    read_back = load_positions(stopped)
    with_account = {k: v for k, v in live.items() if k[0]}
    assert {(p.account, p.symbol): (p.qty, p.avg_cost) for p in read_back} == {
        k: (Decimal(qty), Decimal(cost)) for k, (qty, cost) in with_account.items()
    }

    # The next day's start: the exported file as [risk] positions, the day's journal archived.
    sod = 'instruments = "instruments.csv"\npositions = "eod.csv"'
    s.config.write_text(s.config.read_text().replace('instruments = "instruments.csv"', sod))
    shutil.copy(stopped, s.root / "eod.csv")
    core = build_core(load(s.config, secrets=False), 0)
    assert {k: (p.qty, p.avg_cost) for k, p in core.book.positions.items() if p.qty} == {
        (p.account, p.symbol): (p.qty, p.avg_cost) for p in read_back
    }
    (s.root / "var" / "journal").rename(s.root / "var" / "journal-day1")
    (s.root / "var" / "audit.sqlite").rename(s.root / "var" / "audit-day1.sqlite")
    s.start_proxy()
    assert book(get(s, "/positions")) == with_account


def test_report_and_show_tell_the_day_as_compliance_reads_it(fresh_stack, capsys):
    """The report's final positions equal the proxy's book; its admin actions say halt, resume and a refused
    limit change; `audit show` on the replace finds the whole chain."""
    s = fresh_stack(behaviours={"MSFT": "ack"})
    oms = s.connect("oms1")
    m = messages(oms)
    for cl, line, want in (
        ("B1", order("B1", qty="100", account="A1"), {"39": "2"}),
        ("W1", order("W1", symbol="MSFT", price="410", qty="10", account="A1"), {"39": "0"}),
        ("W1-R", "35=G|11=W1-R|41=W1|55=MSFT|54=1|38=20|40=2|44=411|1=A1", {"150": "5"}),
        ("W1-C", "35=F|11=W1-C|41=W1-R|55=MSFT|54=1|38=20|1=A1", {"39": "4"}),
    ):
        start = oms.mark()
        oms.send_line(line)
        oms.wait_for(m(**{"35": "8", "11": cl, **want}), start=start)
    assert post(s, "/kill-switch", {"scope": "account:A1", "action": "halt", "reason": "check"}) == 200
    assert post(s, "/kill-switch", {"scope": "account:A1", "action": "resume", "reason": "checked"}) == 200
    assert post(s, "/limits", {"layer": "firm", "field": "max_order_qty", "value": "-5", "reason": "typo"}) == 422
    live = book(get(s, "/positions"))
    assert s.proxy.stop() == 0

    assert main(["report", "--config", str(s.config), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {(p["account"], p["symbol"]): (p["qty"], p["avg_cost"]) for p in report["final_positions"]} == live
    actions = [
        (a["action"], a["scope"], a["change"], a["refused"]) for a in report["admin_actions"] if a["what"] != "day_roll"
    ]
    assert actions == [
        ("halt", "account:A1", "ACTIVE -> HALTED", False),
        ("resume", "account:A1", "HALTED -> ACTIVE", False),
        ("limit max_order_qty", "firm", "", True),
    ]
    assert main(["report", "--config", str(s.config)]) == 0
    text = capsys.readouterr().out
    assert "REFUSED: " in text and "HALTED -> ACTIVE" in text

    assert main(["audit", "show", "--config", str(s.config), "--cl-ord-id", "W1-R", "--kind", "message"]) == 0
    shown = capsys.readouterr().out
    for cl in ("W1", "W1-R", "W1-C", "oms1.W1", "oms1.W1-R", "oms1.W1-C"):
        assert f" {cl} " in shown
