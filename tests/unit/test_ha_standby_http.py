"""The standby's own small HTTP server over real loopback (aiohttp's client): /healthz without a token,
GET /api/v1/ha and /metrics with a viewer token, the one-page status, a 404 that says why, and
``fixproxy status`` against it."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fixproxy import cli
from fixproxy.admin.client import TOKEN_ENV
from fixproxy.ha.standby_http import serve_standby_http

from .test_admin_http import TOKENS, bearer
from .test_ha_surfaces import ACTIVE_VIEW, StubNode

STANDBY_VIEW: dict[str, Any] = ACTIVE_VIEW | {
    "instance": "b",
    "role": "standby",
    "lease_left_ms": 640,
    "partner": {"instance": "a", "connected": True, "lag_bytes": 1024, "lag_ms": 3.5, "position": [3, 2048]},
}


class Served:
    def __init__(self, node: StubNode, url: str, host: str) -> None:
        self.node, self.url, self.host = node, url, host


@contextlib.asynccontextmanager
async def standby(metrics_public: bool = False) -> AsyncIterator[Served]:
    node = StubNode(STANDBY_VIEW)
    runner = await serve_standby_http("127.0.0.1", 0, node.view, node.health, TOKENS, metrics_public=metrics_public)
    try:
        host, port = runner.addresses[0][:2]
        yield Served(node, f"http://{host}:{port}", host)
    finally:
        await runner.cleanup()


def samples(text: str) -> dict[str, dict[tuple, float]]:
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


async def test_standby_binds_only_the_host_given():
    """The server listens on 127.0.0.1 only (the address it was given)."""
    async with standby() as s:
        assert s.host == "127.0.0.1"


@pytest.mark.parametrize(
    "state, code, status",
    [("ok", 200, "standby"), ("degraded", 200, "degraded"), ("failed", 503, "failed")],
)
async def test_standby_healthz_is_standby_while_in_copy_without_a_token(state, code, status):
    """/healthz needs no token: status standby while the node is ok (in copy), degraded while it is not,
    503 failed; the HA view and the reason come with it."""
    async with standby() as s, aiohttp.ClientSession() as http:
        s.node.h = {"state": state, "reason": "why" if state != "ok" else ""}
        async with http.get(s.url + "/healthz") as r:
            body = await r.json()
    assert r.status == code
    assert body["status"] == status and body["ha"] == STANDBY_VIEW
    assert body["reason"] == ("why" if state != "ok" else "")


async def test_standby_ha_route_needs_a_viewer_token():
    """GET /api/v1/ha: 401 without a token or with an unknown one, the view with a viewer token."""
    async with standby() as s, aiohttp.ClientSession() as http:
        async with http.get(s.url + "/api/v1/ha") as r:
            assert r.status == 401 and "missing bearer token" in (await r.json())["error"]
        async with http.get(s.url + "/api/v1/ha", headers={"Authorization": "Bearer nope"}) as r:
            assert r.status == 401
        async with http.get(s.url + "/api/v1/ha", headers=bearer("viewer")) as r:
            assert r.status == 200 and await r.json() == STANDBY_VIEW


async def test_standby_metrics_are_the_ha_gauges_with_a_token():
    """GET /metrics: 401 without a token; with one, the role, token, copy lag and partner from the view."""
    async with standby() as s, aiohttp.ClientSession() as http:
        async with http.get(s.url + "/metrics") as r:
            assert r.status == 401
        async with http.get(s.url + "/metrics", headers=bearer("viewer")) as r:
            assert r.status == 200
            m = samples(await r.text())
    assert m["fixproxy_ha_role"][(("role", "standby"),)] == 1
    assert m["fixproxy_ha_role"][(("role", "active"),)] == 0
    assert m["fixproxy_ha_token"][()] == 7
    assert m["fixproxy_ha_copy_lag_bytes"][()] == 1024
    assert m["fixproxy_ha_copy_lag_seconds"][()] == 0.0035
    assert m["fixproxy_ha_partner_connected"][()] == 1


async def test_standby_metrics_public_need_no_token():
    """With metrics_public the scrape needs no token; the view is read at each scrape."""
    async with standby(metrics_public=True) as s, aiohttp.ClientSession() as http:
        s.node.v["partner"]["lag_bytes"] = 0
        async with http.get(s.url + "/metrics") as r:
            assert r.status == 200
            assert samples(await r.text())["fixproxy_ha_copy_lag_bytes"][()] == 0


async def test_standby_page_says_whose_standby_and_the_lag_and_reloads():
    """GET /: whose standby this is and the copy's lag, as text; it reloads every second."""
    async with standby() as s, aiohttp.ClientSession() as http:
        s.node.v["partner"]["instance"] = "<a>"
        async with http.get(s.url + "/") as r:
            page = await r.text()
    assert r.status == 200 and r.content_type == "text/html"
    assert '<meta http-equiv="refresh" content="1">' in page
    assert "b: standby of &lt;a&gt;, copy lag 1,024 bytes, 3.5 ms" in page
    assert "<a>" not in page
    assert 'id="waiting"' not in page


async def test_standby_page_says_why_it_would_not_take_over():
    """A standby waiting (not in copy) says why on its page, and the copy connection's problem."""
    async with standby() as s, aiohttp.ClientSession() as http:
        s.node.v["waiting"] = "the copy is older than the lease's token"
        s.node.v["partner"]["problem"] = "refused: <lineage>"
        async with http.get(s.url + "/") as r:
            page = await r.text()
    assert '<p id="waiting">Would not take over now: the copy is older than the lease&#x27;s token</p>' in page
    assert '<p id="problem">Copy connection: refused: &lt;lineage&gt;</p>' in page


async def test_standby_other_paths_are_404_saying_what_it_serves():
    """A route of the active's API (GET /api/v1/summary) is a JSON 404 that says this is a standby."""
    async with (
        standby() as s,
        aiohttp.ClientSession() as http,
        http.get(s.url + "/api/v1/summary", headers=bearer("viewer")) as r,
    ):
        body = await r.json()
    assert r.status == 404 and "standby" in body["error"] and "/api/v1/ha" in body["error"]


async def test_fixproxy_status_against_a_standby_shows_its_ha_part(monkeypatch):
    """`fixproxy status` on a standby (no /summary there) prints the High availability part alone."""
    monkeypatch.setenv(TOKEN_ENV, next(t.secret for t in TOKENS if t.role == "viewer"))
    out = io.StringIO()
    async with standby() as s:

        def status() -> int:
            with contextlib.redirect_stdout(out):
                return cli.main(["status", "--url", s.url])

        assert await asyncio.get_running_loop().run_in_executor(None, status) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == "High availability: this instance b is STANDBY in pair gw"
    assert "  active: a, connected; copy lag: 1,024 bytes, 3.5 ms" in lines
