"""The day roll on a running proxy: at ``[proxy] day_roll`` finished orders leave memory, working
orders and positions carry over, yesterday's ClOrdIDs may be used again; a kill -9 after the roll
recovers the same state from the snapshot written at the roll."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from datetime import UTC, datetime, time as dt_time, timedelta
from decimal import Decimal

from .harness import messages
from .test_admin_http import api, cli
from .test_crash_recovery import restart
from .test_order_path import order


def _health(s) -> dict:
    with urllib.request.urlopen(s.api_url.removesuffix("/api/v1") + "/healthz", timeout=5) as r:
        return json.loads(r.read())


def _orders(s) -> dict[str, dict]:
    body = api(s, "GET", "/orders", role="viewer")[1]
    rows = body["orders"] if isinstance(body, dict) else body
    return {o["cl_ord_id"]: o for o in rows}


def _positions(s) -> dict[tuple[str, str], Decimal]:
    return {(p["account"], p["symbol"]): Decimal(p["qty"]) for p in api(s, "GET", "/positions", role="viewer")[1]}


def test_day_roll_keeps_working_orders_and_positions_and_survives_kill9(fresh_stack):
    """Orders before and after a roll a few seconds ahead: the filled one is gone from memory (its
    ClOrdID takes a new order), the resting one is still cancellable, positions carry over, /healthz
    names the new day; after kill -9 the restarted proxy shows the same."""
    roll_at = datetime.now(UTC) + timedelta(seconds=8)
    s = fresh_stack(
        behaviours={"MSFT": "ack"},
        proxy_extra=f'day_roll = "{roll_at:%H:%M:%S}"\ntimezone = "UTC"\nfinished_grace_s = -1',
    )
    before = _health(s)["trading_day"]["day"]
    oms = s.connect("oms1")
    m = messages(oms)
    oms.send_line(order("DR-F", qty="30", account="ROLL"))
    oms.wait_for(m(**{"35": "8", "11": "DR-F", "39": "2"}))
    oms.send_line(order("DR-W", symbol="MSFT", price="410", account="ROLL"))
    oms.wait_for(m(**{"35": "8", "11": "DR-W", "39": "0"}))
    assert set(_orders(s)) >= {"DR-W"}

    s.proxy.wait_for(
        lambda r: r.get("event") == "admin_action" and r.get("kind") == "day_roll" and r.get("after") != before,
        timeout=30,
    )
    after = _health(s)["trading_day"]["day"]
    # A roll after noon names the day it opens by the next date (it mostly falls on it), one before
    # noon by its own date (fixproxy/dayroll.py): the test runs at any hour.
    late = roll_at.replace(microsecond=0).time() > dt_time(12)
    assert after == (roll_at.date() + timedelta(days=1 if late else 0)).isoformat() != before
    assert _positions(s)[("ROLL", "AAPL")] == Decimal(30)
    status = cli(s, "status")
    assert f"Trading day: {after}" in status.stdout, status.stdout + status.stderr

    mark = oms.mark()
    oms.send_line(order("DR-F", qty="20", account="ROLL"))  # yesterday's ClOrdID: a new order today
    oms.wait_for(m(**{"35": "8", "11": "DR-F", "39": "2"}), start=mark)
    assert _positions(s)[("ROLL", "AAPL")] == Decimal(50)
    journal = s.root / "var" / "journal"
    assert any(p.name.count(".") == 2 for p in journal.glob("*.snapshot")), sorted(journal.iterdir())

    assert s.proxy.stop(signal.SIGKILL) == -signal.SIGKILL
    restart(s, oms)
    assert _health(s)["trading_day"]["day"] == after
    assert _positions(s)[("ROLL", "AAPL")] == Decimal(50)
    assert _orders(s)["DR-W"]["status"] == "new"
    mark = oms.mark()
    oms.send_line("35=F|11=DR-WC|41=DR-W|55=MSFT|54=1|38=100")
    oms.wait_for(m(**{"35": "8", "11": "DR-WC", "39": "4"}), start=mark)
    time.sleep(0.5)
    assert "DR-W" not in _orders(s) or _orders(s)["DR-W"]["status"] == "canceled"
