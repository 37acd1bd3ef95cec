"""The position-limit view: each account's position, working orders included, against its position limits."""

from __future__ import annotations

from decimal import Decimal

from aiohttp.test_utils import TestClient, TestServer

from fixproxy.admin.http import PREFIX, AdminApi
from fixproxy.core import events as ev, views
from fixproxy.core.model import ExecType, OrdStatus, Side
from fixproxy.core.risk.limits import Limits, LimitSet

from .conftest import Harness, order
from .test_admin_http import TOKENS, _control, bearer

D = Decimal

LIMITS = LimitSet(
    firm=Limits(max_short_position=D(400)),
    sessions={"oms1": Limits(max_long_position=D(1))},  # per session: not an account's limit
    accounts={"A1": Limits(max_long_position=D(1000))},
    symbols={"TSLA": Limits(max_long_position=D(50))},
)


def _harness() -> Harness:
    h = Harness(limits=LIMITS, rules=["max_position"])
    return h


def _fill(h: Harness, cl: str, qty: int, side: Side = Side.BUY, account: str = "A1") -> None:
    h.live(cl, qty=qty, side=side, account=account, session="oms2")
    h.report(f"oms2.{cl}", ExecType.TRADE, OrdStatus.FILLED, last_qty=qty, last_px=100, cum=qty, leaves=0, avg_px=100)


def _row(rows: list[dict], account: str, symbol: str) -> dict:
    return next(r for r in rows if (r["account"], r["symbol"]) == (account, symbol))


def test_view_counts_working_orders_as_the_rule_does():
    """Long use is position + working buys, short use working sells - position; limits resolve per symbol."""
    h = _harness()
    _fill(h, "F1", 300)
    h.live("W1", qty=200, account="A1", session="oms2")
    h.live("W2", qty=100, side=Side.SELL, account="A1", session="oms2")
    h.live("T1", symbol="TSLA", qty=20, account="A1", session="oms2")
    rows = views.position_limits(h.core)
    aapl = _row(rows, "A1", "AAPL")
    assert (aapl["position"], aapl["working_buy"], aapl["working_sell"]) == ("300", "200", "100")
    assert aapl["long"] == {"observed": "500", "limit": "1000", "scope": "account:A1", "utilization_pct": "50.0"}
    assert aapl["short"] == {"observed": "-200", "limit": "400", "scope": "firm", "utilization_pct": "0.0"}
    tsla = _row(rows, "A1", "TSLA")
    assert tsla["long"] == {"observed": "20", "limit": "50", "scope": "symbol:TSLA", "utilization_pct": "40.0"}


def test_view_observed_is_what_the_rule_refuses_above():
    """An order taking long use past the limit the view shows is refused with the view's figure + its quantity."""
    h = _harness()
    h.live("W1", qty=900, account="A1", session="oms2")
    assert _row(views.position_limits(h.core), "A1", "AAPL")["long"]["observed"] == "900"
    refused = next(a for a in h.new(order("W2", qty=101, account="A1"), "oms2") if isinstance(a, ev.Decision))
    assert (refused.code, refused.observed, refused.limit) == ("MAX_POSITION", "1001", "1000")


def test_view_leaves_out_flat_lines_and_lines_without_a_limit():
    """No row for an account with nothing in the symbol, or whose symbol no position limit covers."""
    limit_set = LimitSet(accounts={"A1": Limits(max_long_position=D(1000))})
    h = Harness(limits=limit_set, rules=[])
    h.live("W1", qty=10, account="A2", session="oms2")  # A2: no position limit anywhere
    assert views.position_limits(h.core) == []
    h.live("W2", qty=10, account="A1", session="oms2")
    assert [(r["account"], r["symbol"]) for r in views.position_limits(h.core)] == [("A1", "AAPL")]
    assert "position_limits" in views.summary(h.core)


async def test_http_serves_the_view_and_the_summary_carries_it():
    """GET /position-limits answers the view to a viewer; the summary has the same rows."""
    h = _harness()
    h.live("W1", qty=250, account="A1", session="oms2")
    api = AdminApi(_control(h), TOKENS, sessions=["oms1", "oms2"], heartbeat_s=0.05)
    async with TestClient(TestServer(api.app())) as c:
        response = await c.get(PREFIX + "/position-limits", headers=bearer("viewer"))
        assert response.status == 200
        rows = await response.json()
        assert _row(rows, "A1", "AAPL")["long"]["utilization_pct"] == "25.0"
        summary = await (await c.get(PREFIX + "/summary", headers=bearer("viewer"))).json()
        assert summary["position_limits"] == rows
        assert (await c.get(PREFIX + "/position-limits")).status == 401
