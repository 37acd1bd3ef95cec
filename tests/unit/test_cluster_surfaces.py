"""The firm-wide picture of a cluster on the admin surfaces, without a database: the metrics of this
instance's shares over a real core and a stand-in lease manager, GET /api/v1/cluster in process, and
the "Cluster" part of ``fixproxy status`` rendered from a view."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
from aiohttp.test_utils import TestClient, TestServer

from fixproxy.admin.client import render_cluster, render_status
from fixproxy.admin.control import Control, Feed
from fixproxy.admin.http import PREFIX, AdminApi
from fixproxy.admin.metrics import ProxyCollector, registry
from fixproxy.core import events as ev
from fixproxy.core.risk.limits import LimitSet

from .conftest import LIMITS, T0, Harness, limits
from .test_admin_http import TOKENS, bearer
from .test_metrics import Wire, new_order, scrape, value

GROSS = "max_gross_exposure|firm"
OPEN = "max_open_orders|account:ACC"
SHARED = LimitSet(
    firm=msgspec.structs.replace(LIMITS.firm, max_gross_exposure=Decimal(100_000)),
    accounts={"ACC": limits(max_open_orders=10)},
)


class FakeManager:
    """What the surfaces read of a ClusterManager: its health and its last view of the database."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {
            "state": "ok",
            "instance": "a",
            "database": "up",
            "reason": "",
            "lost_since": None,
            "fenced": "",
            "leases_expire_in_s": 2.5,
            "listener": "ok",
            "commands_applied": 3,
            "commands_published": 1,
        }
        self.instances: list[dict[str, Any]] = [
            instance("a", True, used="20000", allowance="30000"),
            instance("b", True, used="5000", allowance="10000"),
            instance("c", False, used="0", allowance="2000"),
        ]

    def health(self) -> dict[str, Any]:
        return dict(self.state)

    def view(self) -> dict[str, Any]:
        return {"instance": "a", "health": self.health(), "instances": self.instances, "limits": LIMITS_VIEW}


def instance(name: str, alive: bool, used: str, allowance: str, fenced: str = "") -> dict[str, Any]:
    return {
        "instance": name,
        "started_at": "2024-05-02T09:00:00+00:00",
        "heartbeat": "2024-05-02T10:00:00+00:00",
        "alive": alive,
        "status": {
            "sessions": [
                {"name": "oms1", "role": "oms", "up": True},
                {"name": "sim", "role": "venue", "up": alive},
            ],
            "usage": {GROSS: {"used": used, "allowance": allowance}},
            "fenced": fenced,
            "health": "ok",
            "engine": "native",
            "open_orders": 2,
            "admin": "127.0.0.1:9880",
        },
        "positions": [
            {"account": "ACC", "symbol": f"S{i}", "qty": str(100 * (i + 1)), "avg_cost": "10"} for i in range(7)
        ]
        if name == "a"
        else [],
    }


LIMITS_VIEW = [
    {
        "key": GROSS,
        "field": "max_gross_exposure",
        "scope": "firm",
        "limit": "100000",
        "shares": [
            {"instance": "a", "allowance": "30000", "reserve": "4000", "used": "20000", "lease_live": True},
            {"instance": "b", "allowance": "10000", "reserve": "4000", "used": "5000", "lease_live": True},
            {"instance": "c", "allowance": "2000", "reserve": "0", "used": "0", "lease_live": False},
        ],
    }
]


def wired_cluster() -> tuple[Harness, Wire, FakeManager, Any]:
    h = Harness(rules=["max_order_qty"], limits=SHARED)
    h.core.shares.enabled = True
    wire = Wire(h.core)
    manager = FakeManager()
    collector = ProxyCollector(
        wire.lock, h.core, wire.counts, [(i.name, i.role) for i in wire.sessions()], engine="native", cluster=manager
    )
    return h, wire, manager, registry(collector, process=False)


# ---------------------------------------------------------------- metrics


def test_cluster_metrics_show_shares_usage_database_and_instances_alive():
    """Shares handed to the core and an order working: allowance and usage per shared limit (a shared limit
    without a share yet at 0), the database up, not fenced, two instances alive, the commands counted."""
    _, wire, _, reg = wired_cluster()
    wire.submit(ev.ClusterShare(GROSS, Decimal(30_000), Decimal(25_000), T0))
    wire.submit(ev.SessionUp("oms1", T0))
    wire.receive(wire.infos["oms1"], new_order("C1", 1, qty=100, px="100"), T0)
    s = scrape(reg)
    assert value(s, "fixproxy_cluster_allowance", limit="max_gross_exposure", scope="firm") == 30_000
    assert value(s, "fixproxy_cluster_usage", limit="max_gross_exposure", scope="firm") == 10_000
    assert value(s, "fixproxy_cluster_allowance", limit="max_open_orders", scope="account:ACC") == 0
    assert value(s, "fixproxy_cluster_usage", limit="max_open_orders", scope="account:ACC") == 1
    assert value(s, "fixproxy_cluster_up", reason="") == 1
    assert value(s, "fixproxy_cluster_fenced", reason="") == 0
    assert value(s, "fixproxy_cluster_leases_expire_in_seconds") == 2.5
    assert value(s, "fixproxy_cluster_instances_alive") == 2
    assert value(s, "fixproxy_cluster_commands_applied_total") == 3
    assert value(s, "fixproxy_cluster_commands_published_total") == 1


def test_cluster_metrics_show_the_lost_database_and_the_fence_with_their_cause():
    """The database lost and the core fenced (a journaled ClusterFence): up 0 with the reason, fenced 1 with
    the core's reason."""
    h, wire, manager, reg = wired_cluster()
    why = "the cluster database is unreachable (connection refused) and this instance's leases expired"
    wire.submit(ev.ClusterFence(why, T0))
    manager.state |= {
        "state": "degraded",
        "database": "lost",
        "reason": "connection refused",
        "fenced": h.core.shares.fence,
    }
    s = scrape(reg)
    assert value(s, "fixproxy_cluster_up", reason="connection refused") == 0
    assert value(s, "fixproxy_cluster_fenced", reason=why) == 1


def test_metrics_of_a_proxy_alone_have_no_cluster_family():
    """Without [cluster] (no manager) no fixproxy_cluster_* metric is exposed."""
    h = Harness(rules=["max_order_qty"], limits=SHARED)
    wire = Wire(h.core)
    reg = registry(ProxyCollector(wire.lock, h.core, wire.counts, [], engine="native"), process=False)
    assert not [name for name in scrape(reg) if name.startswith("fixproxy_cluster")]


# ---------------------------------------------------------------- GET /api/v1/cluster


def _control(h: Harness, cluster: Callable[[], dict] | None = None) -> Control:
    lock = threading.Lock()

    def submit(event: ev.Event) -> list[ev.Action]:
        with lock:
            return h.core.handle(event)

    return Control(submit, lock, h.core, Feed(), cluster=cluster)


async def test_cluster_route_answers_the_managers_view_to_a_viewer():
    """A viewer's GET /cluster is the manager's view; without a token it is 401."""
    manager = FakeManager()
    api = AdminApi(_control(Harness(), manager.view), TOKENS)
    async with TestClient(TestServer(api.app())) as c:
        response = await c.get(PREFIX + "/cluster", headers=bearer("viewer"))
        body = await response.json()
        assert response.status == 200
        assert [i["instance"] for i in body["instances"]] == ["a", "b", "c"]
        assert body["limits"][0]["shares"][2]["lease_live"] is False
        assert (await c.get(PREFIX + "/cluster")).status == 401


async def test_cluster_route_of_a_proxy_alone_says_disabled():
    """A proxy without [cluster] answers 200 {"cluster": "disabled"}."""
    api = AdminApi(_control(Harness()), TOKENS)
    async with TestClient(TestServer(api.app())) as c:
        response = await c.get(PREFIX + "/cluster", headers=bearer("viewer"))
        assert response.status == 200 and await response.json() == {"cluster": "disabled"}


# ---------------------------------------------------------------- fixproxy status


def _lines(text: str, heading: str) -> list[list[str]]:
    """The rows of the table under ``heading`` (header row first), split on runs of two spaces."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading)) + 1
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append([cell.strip() for cell in line.strip().split("  ") if cell.strip()])
    return rows


def test_status_cluster_part_lists_instances_limits_and_positions():
    """Every instance with alive/gone, heartbeat age, sessions up, open orders and its usage/allowance; the
    shared limit with the sums of allowances and usage and each share; positions counted, the first five."""
    manager = FakeManager()
    now = datetime(2024, 5, 2, 10, 0, 1, 500_000, tzinfo=UTC)
    text = "\n".join(render_cluster(manager.view(), now=now))
    assert text.splitlines()[0] == "Cluster: this instance is a"
    assert "  database: up (leases renewed, expire in 2.5 s unless renewed)" in text.splitlines()
    assert "  fenced: no" in text.splitlines()
    instances = _lines(text, "Instances")
    assert instances[0] == ["instance", "state", "heartbeat age", "sessions up", "open orders", "health", GROSS]
    assert instances[1] == ["a (this)", "alive", "1.5 s", "2/2", "2", "ok", "20000/30000"]
    assert instances[3] == ["c", "GONE", "1.5 s", "1/2", "2", "ok", "0/2000"]
    shared = _lines(text, "Shared limits")
    assert shared[1][:5] == ["max_gross_exposure", "firm", "100000", "42000", "25000"]
    assert shared[1][5] == "a 20000/30000, b 5000/10000, c 0/2000 (lease expired)"
    positions = _lines(text, "Positions per instance")
    assert positions[0][0].startswith("a: 7 position(s): ACC S0 100, ACC S1 200,")
    assert positions[0][0].endswith("ACC S4 500, and 2 more")
    assert positions[1] == ["b: 0 position(s)"]


def test_status_cluster_part_says_database_lost_and_fenced_with_the_cause():
    """The database lost and the instance fenced: both lines carry the reason."""
    manager = FakeManager()
    manager.state |= {
        "database": "lost",
        "reason": "connection refused",
        "lost_since": 1_714_644_000.0,
        "fenced": "the cluster database is unreachable",
    }
    lines = render_cluster(manager.view())
    assert lines[1] == (
        "  DATABASE LOST since 2024-05-02 10:00:00 UTC: connection refused; this instance trades within the "
        "leases it holds until they expire"
    )
    assert lines[2] == (
        "  FENCED: the cluster database is unreachable: orders that need new headroom of a shared limit are refused"
    )


def test_status_of_a_proxy_alone_has_no_cluster_part():
    """No cluster in the summary (or a disabled one): no Cluster part."""
    summary = {"trading_states": [], "sessions": {}, "exposure": []}
    assert "Cluster" not in render_status(summary)
    assert "Cluster" not in render_status(summary | {"cluster": {"cluster": "disabled"}})
    assert "Cluster: this instance is a" in render_status(summary | {"cluster": FakeManager().view()})
