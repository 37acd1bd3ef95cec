"""An instance's HA role and the copy's lag on every surface, over a real proxy (native engine, built in
process and never started) with a stand-in HA node: /healthz's ``ha`` part and the status it gives,
GET /api/v1/ha, the ``fixproxy_ha_*`` metrics, and the "High availability" part of ``fixproxy status``."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from fixproxy.admin.client import render_ha, render_status
from fixproxy.admin.http import PREFIX, AdminApi, openapi_document
from fixproxy.app import Proxy
from fixproxy.config import load

from ..integration.harness import REPO, config_text
from .test_admin_http import TOKENS, bearer
from .test_metrics import scrape, value

ACTIVE_VIEW: dict[str, Any] = {
    "pair": "gw",
    "instance": "a",
    "role": "active",
    "token": 7,
    "copy": "sync",
    "database": "ok",
    "lease_left_ms": 812,
    "copy_state": "sync",
    "partner": {"instance": "b", "connected": True, "lag_bytes": 4096, "lag_ms": 2.5, "position": [3, 1024]},
}


class StubNode:
    """What the surfaces read of an HA node (ha/node.py HaNode): a view and a health a test sets."""

    def __init__(self, view: dict[str, Any], state: str = "ok", reason: str = "") -> None:
        self.v = copy.deepcopy(view)
        self.h = {"state": state, "reason": reason}

    def view(self) -> dict[str, Any]:
        return copy.deepcopy(self.v)

    def health(self) -> dict[str, Any]:
        return dict(self.h)


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    """A proxy of the integration tests' config, native engine, with its state in ``tmp_path``."""
    (tmp_path / "instruments.csv").write_bytes((REPO / "cfg" / "instruments.csv").read_bytes())
    path = tmp_path / "fixproxy.toml"
    path.write_text(config_text(1, 2, engine="native").replace('state_dir = "var"', f'state_dir = "{tmp_path}/var"'))
    p = Proxy(load(path))
    try:
        yield p
    finally:
        p._close_stores()


def api(p: Proxy) -> AdminApi:
    return AdminApi(p.control, TOKENS, metrics=p.metrics)


# ---------------------------------------------------------------- /healthz and GET /api/v1/ha


def test_health_takes_the_role_the_node_health_gives(proxy):
    """A node whose health names its role (ha/node.py does) is shown as it says."""
    node = StubNode(ACTIVE_VIEW, "degraded", "no standby has the copy (alone)")
    node.h["role"] = "active"
    node.v["role"] = "starting"  # not read: health has the role
    proxy.ha = node
    assert proxy.health()["ha"] == {"state": "degraded", "reason": "no standby has the copy (alone)", "role": "active"}


def test_health_of_a_proxy_without_ha_says_disabled(proxy):
    """No HA node: the ``ha`` part is {"state": "disabled"} and the status stays ok."""
    health = proxy.health()
    assert health["ha"] == {"state": "disabled"}
    assert health["status"] == "ok"


@pytest.mark.parametrize(
    "role, state, reason, status",
    [
        ("active", "ok", "", "ok"),
        ("active", "degraded", "no standby in copy", "degraded"),
        ("standby", "degraded", "not in copy: catching up", "degraded"),
        ("fenced", "failed", "leadership not renewed before the deadline", "failed"),
    ],
)
def test_health_carries_the_ha_part_and_its_state_sets_the_status(proxy, role, state, reason, status):
    """The node's health with its role; degraded makes the proxy degraded, failed (fenced) makes it failed."""
    proxy.ha = StubNode(ACTIVE_VIEW | {"role": role}, state, reason)
    health = proxy.health()
    assert health["ha"] == {"state": state, "reason": reason, "role": role}
    assert health["status"] == status


@pytest.mark.parametrize("state, code", [("ok", 200), ("degraded", 200), ("failed", 503)])
async def test_healthz_answers_the_ha_part_without_a_token(proxy, state, code):
    """/healthz over the real proxy's health: 200 while ok or degraded, 503 once fenced; the ha part is in it."""
    proxy.ha = StubNode(ACTIVE_VIEW | {"role": "fenced" if state == "failed" else "active"}, state, "why")
    async with TestClient(TestServer(api(proxy).app())) as c:
        response = await c.get("/healthz")
        body = await response.json()
    assert response.status == code
    assert body["ha"]["state"] == state and body["ha"]["reason"] == "why"


async def test_ha_route_answers_the_node_view_to_a_viewer(proxy):
    """GET /api/v1/ha with a viewer token is the node's view as it is now; without a token 401."""
    node = StubNode(ACTIVE_VIEW)
    proxy.ha = node
    async with TestClient(TestServer(api(proxy).app())) as c:
        first = await (await c.get(PREFIX + "/ha", headers=bearer("viewer"))).json()
        node.v["partner"]["lag_bytes"] = 0
        node.v["copy_state"] = "catching_up"
        second = await (await c.get(PREFIX + "/ha", headers=bearer("viewer"))).json()
        assert (await c.get(PREFIX + "/ha")).status == 401
    assert first == ACTIVE_VIEW
    assert (second["partner"]["lag_bytes"], second["copy_state"]) == (0, "catching_up")


async def test_ha_route_without_ha_is_404_saying_why(proxy):
    """A proxy without [ha] answers GET /api/v1/ha with 404 and a JSON error naming the missing section."""
    async with TestClient(TestServer(api(proxy).app())) as c:
        response = await c.get(PREFIX + "/ha", headers=bearer("viewer"))
        body = await response.json()
    assert response.status == 404
    assert "[ha]" in body["error"] and "not configured" in body["error"]


def test_openapi_lists_the_ha_route_and_the_health_part():
    """The document has GET /api/v1/ha (viewer, 404 documented) and Health.ha."""
    doc = openapi_document()
    op = doc["paths"][PREFIX + "/ha"]["get"]
    assert op["x-required-role"] == "viewer" and "404" in op["responses"]
    assert doc["components"]["schemas"]["Health"]["properties"]["ha"] == {"$ref": "#/components/schemas/HaHealth"}


# ---------------------------------------------------------------- metrics


def test_ha_metrics_show_role_token_copy_state_and_lag(proxy):
    """The active in sync copy: role active 1 (others 0), token, copy state, partner connected, lag in bytes
    and seconds, lease left."""
    proxy.ha = StubNode(ACTIVE_VIEW)
    s = scrape(proxy.metrics)
    assert [value(s, "fixproxy_ha_role", role=r) for r in ("active", "standby", "fenced", "starting")] == [1, 0, 0, 0]
    assert value(s, "fixproxy_ha_token") == 7
    assert value(s, "fixproxy_ha_copy_state", state="sync") == 1
    assert value(s, "fixproxy_ha_copy_state", state="alone") == 0
    assert value(s, "fixproxy_ha_partner_connected") == 1
    assert value(s, "fixproxy_ha_copy_lag_bytes") == 4096
    assert value(s, "fixproxy_ha_copy_lag_seconds") == 0.0025
    assert value(s, "fixproxy_ha_lease_left_seconds") == 0.812
    assert value(s, "fixproxy_ha_info", pair="gw", name="a", copy="sync") == 1


def test_ha_metrics_of_a_fenced_active_alone(proxy):
    """Fenced with no partner: role fenced 1, copy state alone 1, partner not connected, lags -1."""
    proxy.ha = StubNode(ACTIVE_VIEW | {"role": "fenced", "copy_state": "alone", "partner": None}, "failed")
    s = scrape(proxy.metrics)
    assert value(s, "fixproxy_ha_role", role="fenced") == 1 and value(s, "fixproxy_ha_role", role="active") == 0
    assert value(s, "fixproxy_ha_copy_state", state="alone") == 1
    assert value(s, "fixproxy_ha_partner_connected") == 0
    assert value(s, "fixproxy_ha_copy_lag_bytes") == -1 and value(s, "fixproxy_ha_copy_lag_seconds") == -1
    assert value(s, "fixproxy_health_status", status="failed") == 1


def test_metrics_without_ha_have_no_ha_family(proxy):
    """No HA node: no fixproxy_ha_* metric."""
    assert not [name for name in scrape(proxy.metrics) if name.startswith("fixproxy_ha")]


# ---------------------------------------------------------------- fixproxy status


def test_status_ha_part_shows_role_pair_token_copy_partner_lag_and_lease():
    """The active in copy: every field on its line, and no warning line."""
    assert render_ha(ACTIVE_VIEW, {"state": "ok", "reason": "", "role": "active"}) == [
        "High availability: this instance a is ACTIVE in pair gw",
        "  fencing token: 7",
        "  copy: sync (state: sync)",
        "  database: ok; lease left: 812.0 ms",
        "  standby: b, connected; copy lag: 4,096 bytes, 2.5 ms",
    ]


def test_status_ha_part_of_an_active_alone_says_a_failover_would_lose_state():
    """No standby in copy: the partner line says none and a line says what a failover now would do."""
    lines = render_ha(ACTIVE_VIEW | {"copy_state": "alone", "partner": None})
    assert lines[4] == "  standby: none"
    assert lines[5] == "  NO STANDBY HAS THE COPY: a failover now would start from an older state"


def test_status_ha_part_of_a_fenced_instance_says_so_with_the_reason():
    """Fenced: a line of its own with the reason /healthz gives."""
    why = "the leadership could not be renewed before the deadline (database lost)"
    lines = render_ha(ACTIVE_VIEW | {"role": "fenced", "database": "lost"}, {"state": "failed", "reason": why})
    assert lines[0] == "High availability: this instance a is FENCED in pair gw"
    assert lines[3].startswith("  database: LOST;")
    assert lines[-1] == (
        f"  FENCED: {why}: this instance writes to no socket (OMS or venue); the standby takes over once the "
        "lease lapses"
    )


def test_status_ha_part_of_a_standby_names_its_active_and_whether_it_is_in_copy():
    """A standby names its active; catching up, it says it is not in copy."""
    standby = ACTIVE_VIEW | {
        "instance": "b",
        "role": "standby",
        "token": None,
        "copy_state": "catching_up",
        "partner": {"instance": "a", "connected": False, "lag_bytes": 1_000_000, "lag_ms": 840.0},
    }
    lines = render_ha(standby)
    assert lines[0] == "High availability: this instance b is STANDBY in pair gw"
    assert lines[1] == "  fencing token: none seen yet"
    assert lines[4] == "  active: a, NOT CONNECTED; copy lag: 1,000,000 bytes, 840.0 ms"
    assert lines[5] == "  NOT IN COPY (catching_up): this standby would not take over now"
    refused = standby | {
        "waiting": "the active's lineage differs",
        "partner": standby["partner"] | {"problem": "refused: token 6 < 7"},
    }
    assert render_ha(refused)[5:] == [
        "  copy connection: refused: token 6 < 7",
        "  NOT IN COPY (the active's lineage differs): this standby would not take over now",
    ]


def test_status_shows_the_ha_part_only_in_a_pair():
    """render_status adds the HA part when the summary has the view, with the reason from health."""
    summary: dict[str, Any] = {"trading_states": [], "sessions": {}, "exposure": []}
    assert "High availability" not in render_status(summary)
    text = render_status(
        summary
        | {
            "health": {"journal": {}, "audit": {}, "ha": {"state": "failed", "reason": "lease lost"}},
            "ha": ACTIVE_VIEW | {"role": "fenced"},
        }
    )
    assert "High availability: this instance a is FENCED in pair gw" in text
    assert "  FENCED: lease lost: this instance writes to no socket" in text
