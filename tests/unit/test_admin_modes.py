"""Monitor mode over the admin API in process: GET and POST /modes, roles, request checks, and the
would-have-refused decisions in the decisions feed."""

from __future__ import annotations

import threading

import pytest
from aiohttp.test_utils import TestClient, TestServer

from fixproxy.admin.client import render_modes
from fixproxy.admin.control import Control, Feed
from fixproxy.admin.http import PREFIX, AdminApi, BadRequest, ModeRequest, parse_body
from fixproxy.config import ApiToken
from fixproxy.core import events as ev

from .conftest import Harness, order

TOKENS = [ApiToken("vera", "viewer", "viewer-secret-0123456789"), ApiToken("rita", "risk", "risk-secret-0123456789")]


def bearer(role: str) -> dict:
    return {"Authorization": f"Bearer {next(t.secret for t in TOKENS if t.role == role)}"}


@pytest.fixture
async def client():
    """The API over a core running the quantity and notional rules."""
    h = Harness(rules=["max_order_qty", "max_order_notional"])
    lock = threading.Lock()

    def submit(event):
        with lock:
            actions = h.core.handle(event)
        for action in actions:
            feed.add(action)
        return actions

    feed = Feed()
    api = AdminApi(Control(submit, lock, h.core, feed), TOKENS, sessions=["oms1", "oms2"])
    async with TestClient(TestServer(api.app())) as c:
        c.harness, c.submit = h, submit
        yield c


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"mode": "monitor", "reason": "x"}', "give either rule, or layer and field"),
        (
            b'{"rule": "max_order_qty", "layer": "firm", "field": "max_order_qty", "mode": "monitor", "reason": "x"}',
            "either",
        ),
        (b'{"rule": "max_qty", "mode": "monitor", "reason": "x"}', "is not a rule"),
        (b'{"rule": "max_order_qty", "mode": "shadow", "reason": "x"}', "Invalid enum value 'shadow'"),
        (b'{"layer": "firm", "mode": "monitor", "reason": "x"}', "both layer and field"),
        (b'{"layer": "firm", "field": "monitor", "mode": "monitor", "reason": "x"}', "is not a limit"),
        (b'{"layer": "desk", "field": "max_order_qty", "mode": "monitor", "reason": "x"}', "layer must be"),
        (b'{"rule": "max_order_qty", "mode": "monitor", "reason": " "}', "reason"),
    ],
)
def test_mode_request_refuses_malformed_body(raw: bytes, message: str):
    """A mode request names a rule, or a layer and a limit, a mode and a reason."""
    with pytest.raises(BadRequest, match=message):
        parse_body(raw, ModeRequest)


async def test_set_rule_mode_over_http_then_order_goes_on(client):
    """A risk user puts a rule in monitor mode; GET /modes shows it; the order it would refuse is
    accepted, and the decisions feed shows the would-have-refused entry."""
    before = await (await client.get(PREFIX + "/modes", headers=bearer("viewer"))).json()
    assert before == {"rules": {"max_order_qty": "enforce", "max_order_notional": "enforce"}, "limits": []}
    response = await client.post(
        PREFIX + "/modes", json={"rule": "max_order_qty", "mode": "monitor", "reason": "trial"}, headers=bearer("risk")
    )
    body = await response.json()
    assert response.status == 200
    assert (body["kind"], body["operator"], body["before"], body["after"]) == ("mode", "rita", "enforce", "monitor")
    modes = await (await client.get(PREFIX + "/modes", headers=bearer("viewer"))).json()
    assert modes["rules"]["max_order_qty"] == "monitor"
    assert "max_order_qty       monitor" in render_modes(modes).splitlines()[1]
    h = client.harness
    client.submit(ev.NewOrder("oms1", 1, h.now, order("B", qty=20_000, price=1)))
    items = await (await client.get(PREFIX + "/decisions", headers=bearer("viewer"))).json()
    would = [i for i in items if i.get("would_refuse")]
    accepted = [i for i in items if i.get("accepted")]
    assert [(i["code"], i["cl_ord_id"], i["rule"], i["observed"], i["limit"]) for i in would] == [
        ("MAX_ORDER_QTY", "B", "max_order_qty", "20000", "10000")
    ]
    assert [i["cl_ord_id"] for i in accepted] == ["B"]


async def test_set_layer_mode_over_http(client):
    """A layer's limit in monitor mode shows in GET /modes with its layer."""
    response = await client.post(
        PREFIX + "/modes",
        json={"layer": "account:A1", "field": "max_gross_exposure", "mode": "monitor", "reason": "new limit"},
        headers=bearer("risk"),
    )
    assert response.status == 200 and (await response.json())["scope"] == "account:A1"
    modes = await (await client.get(PREFIX + "/modes", headers=bearer("viewer"))).json()
    assert modes["limits"] == [{"layer": "account:A1", "field": "max_gross_exposure", "mode": "monitor"}]


async def test_viewer_cannot_set_mode(client):
    """Setting a mode needs the risk role."""
    response = await client.post(
        PREFIX + "/modes", json={"rule": "max_order_qty", "mode": "monitor", "reason": "x"}, headers=bearer("viewer")
    )
    assert response.status == 403
    assert client.harness.core.monitored == frozenset()


async def test_mode_of_rule_not_run_is_422(client):
    """A rule the proxy does not run has no mode: the core refuses (422) and says why."""
    response = await client.post(
        PREFIX + "/modes", json={"rule": "price_collar", "mode": "monitor", "reason": "x"}, headers=bearer("risk")
    )
    body = await response.json()
    assert response.status == 422 and "not a rule this proxy runs" in body["error"]
