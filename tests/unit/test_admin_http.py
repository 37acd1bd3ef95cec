"""The HTTP admin API's pure parts (tokens and roles, request checks, the [admin] config, the OpenAPI
document) and the aiohttp application in process over a real ProxyCore (no network beyond loopback)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from fixproxy.admin import client as client_module
from fixproxy.admin.client import base_url, render_result, render_status
from fixproxy.admin.control import Control, Feed
from fixproxy.admin.http import (
    PREFIX,
    ROUTES,
    AdminApi,
    Auth,
    BadRequest,
    Denied,
    ExposureHistory,
    Identity,
    KillRequest,
    LimitRequest,
    ReferenceRequest,
    allows,
    firm_totals,
    openapi_document,
    openapi_text,
    parse_body,
    parse_limit,
)
from fixproxy.config import ApiToken, ConfigError, load

from .conftest import Harness, order

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "spec" / "admin-api.openapi.json"

TOKENS = [
    ApiToken("vera", "viewer", "viewer-secret-0123456789"),
    ApiToken("rita", "risk", "risk-secret-0123456789"),
    ApiToken("adam", "admin", "admin-secret-0123456789"),
]


def bearer(role: str) -> dict:
    return {"Authorization": f"Bearer {next(t.secret for t in TOKENS if t.role == role)}"}


# ---------------------------------------------------------------- tokens and roles


@pytest.mark.parametrize(
    "role, required, expected",
    [
        ("viewer", "viewer", True),
        ("viewer", "risk", False),
        ("viewer", "admin", False),
        ("risk", "viewer", True),
        ("risk", "risk", True),
        ("risk", "admin", False),
        ("admin", "viewer", True),
        ("admin", "risk", True),
        ("admin", "admin", True),
        ("nobody", "viewer", False),
    ],
)
def test_role_allows_only_its_own_level_and_below(role, required, expected):
    """viewer < risk < admin: a role may do what it and the roles below it may."""
    assert allows(role, required) is expected


@pytest.mark.parametrize(
    "header, expected",
    [
        ("Bearer risk-secret-0123456789", Identity("rita", "risk")),
        ("bearer   admin-secret-0123456789  ", Identity("adam", "admin")),
        ("Bearer risk-secret-012345678", None),  # a prefix of a token
        ("Bearer risk-secret-0123456789x", None),
        ("Basic risk-secret-0123456789", None),
        ("risk-secret-0123456789", None),
        ("Bearer ", None),
        ("Bearer ünïcode-token", None),
        (None, None),
    ],
)
def test_bearer_header_identifies_only_an_exact_configured_token(header, expected):
    """Only ``Bearer <exact token>`` identifies a caller; anything else is unknown."""
    assert Auth(TOKENS).identify(header) == expected


@pytest.mark.parametrize(
    "header, required, status, reason",
    [
        (None, "viewer", 401, "missing token"),
        ("", "viewer", 401, "missing token"),
        ("Bearer wrong-token-0123456789", "viewer", 401, "unknown token"),
        ("Bearer viewer-secret-0123456789", "risk", 403, "role too low"),
        ("Bearer risk-secret-0123456789", "admin", 403, "role too low"),
    ],
)
def test_auth_check_refuses_with_401_or_403(header, required, status, reason):
    """No or an unknown token is 401; a known token whose role is too low is 403."""
    verdict = Auth(TOKENS).check(header, required)
    assert isinstance(verdict, Denied) and (verdict.status, verdict.reason) == (status, reason)
    assert "secret" not in verdict.message  # the message never repeats a token


def test_auth_check_passes_identity_of_sufficient_role():
    """A risk token may do risk and viewer things and is identified by its name."""
    auth = Auth(TOKENS)
    assert auth.check("Bearer risk-secret-0123456789", "risk") == Identity("rita", "risk")
    assert auth.check("Bearer risk-secret-0123456789", "viewer") == Identity("rita", "risk")


def test_api_token_repr_hides_the_secret():
    """A token printed by accident (a log, a traceback) does not show its secret."""
    assert "0123456789" not in repr(TOKENS[0]) and "vera" in repr(TOKENS[0])


# ---------------------------------------------------------------- request checks


def test_kill_request_decodes_a_valid_body():
    """scope, action and reason decode into a KillRequest."""
    body = parse_body(b'{"scope": "account:ACC1", "action": "halt_and_cancel", "reason": "runaway"}', KillRequest)
    assert (body.scope, body.action, body.reason) == ("account:ACC1", "halt_and_cancel", "runaway")


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"", "request body is empty"),
        (b"{", "not valid JSON"),
        (b"[]", "Expected `object`, got `array`"),
        (b'{"scope": "firm", "action": "halt"}', "Object missing required field `reason`"),
        (b'{"scope": "firm", "action": "halt", "reason": " "}', "reason must not be empty"),
        (b'{"scope": "firm", "action": "pause", "reason": "x"}', "action: Invalid enum value 'pause'"),
        (b'{"scope": "desk", "action": "halt", "reason": "x"}', "scope must be 'firm' or"),
        (b'{"scope": "account:", "action": "halt", "reason": "x"}', "scope must be 'firm' or"),
        (b'{"scope": "firm", "action": "halt", "reason": "x", "who": "me"}', "unknown field `who`"),
        (b'{"scope": 5, "action": "halt", "reason": "x"}', "scope: Expected `str`, got `int`"),
    ],
)
def test_bad_kill_request_is_refused_with_reason(raw, message):
    """Each malformed kill-switch body raises BadRequest (HTTP 400) saying what is wrong."""
    with pytest.raises(BadRequest) as info:
        parse_body(raw, KillRequest)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "value, expected",
    [
        (500, 500),
        ("500", "500"),
        (0.1, Decimal("0.1")),
        (None, None),
        (["TSLA", "GME"], ["TSLA", "GME"]),
    ],
)
def test_limit_request_keeps_value_exact(value, expected):
    """Numbers stay exact (a JSON 0.1 becomes Decimal('0.1')), null clears, lists pass for restricted_symbols."""
    raw = json.dumps({"layer": "firm", "field": "max_order_qty", "value": value, "reason": "r"}).encode()
    assert parse_body(raw, LimitRequest).value == expected


@pytest.mark.parametrize(
    "body, message",
    [
        ({"layer": "firm", "field": "max_qty", "value": 1, "reason": "r"}, "'max_qty' is not a limit"),
        ({"layer": "desk", "field": "max_order_qty", "value": 1, "reason": "r"}, "layer must be 'firm' or"),
        ({"layer": "firm", "field": "max_order_qty", "value": True, "reason": "r"}, "value must be a number"),
        ({"layer": "firm", "field": "max_order_qty", "value": {"a": 1}, "reason": "r"}, "value must be a number"),
        ({"layer": "firm", "field": "max_order_qty", "reason": "r"}, "missing required field `value`"),
        ({"layer": "firm", "field": "max_order_qty", "value": 1, "reason": ""}, "reason must not be empty"),
    ],
)
def test_bad_limit_request_is_refused_with_reason(body, message):
    """An unknown limit, a bad layer, a value of the wrong kind, a missing value or reason: 400."""
    with pytest.raises(BadRequest) as info:
        parse_body(json.dumps(body).encode(), LimitRequest)
    assert message in str(info.value)


def test_reference_request_takes_number_or_string_and_refuses_bool():
    """price decodes exactly from a JSON number or string; true is refused."""
    for price in (190.25, "190.25"):
        raw = json.dumps({"symbol": "AAPL", "price": price, "reason": "r"}).encode()
        assert parse_body(raw, ReferenceRequest).price == Decimal("190.25")
    with pytest.raises(BadRequest, match="price: Expected `decimal`"):
        parse_body(b'{"symbol": "AAPL", "price": true, "reason": "r"}', ReferenceRequest)


@pytest.mark.parametrize("text, expected", [(None, 100), ("", 100), ("1", 1), ("500", 500)])
def test_limit_query_parameter_defaults_and_bounds(text, expected):
    """?limit= defaults to 100 and takes 1 to 500."""
    assert parse_limit(text) == expected


@pytest.mark.parametrize("text", ["0", "501", "-1", "ten", "1.5"])
def test_bad_limit_query_parameter_is_refused(text):
    """A limit outside 1..500 or not a whole number is a 400."""
    with pytest.raises(BadRequest):
        parse_limit(text)


# ---------------------------------------------------------------- [admin] config

ADMIN_HEAD = '\n[admin]\nhttp_host = "127.0.0.1"\nhttp_port = 9999\n'


@pytest.fixture
def cfg(tmp_path):
    """Write cfg/fixproxy.toml with the test's [admin] section instead of the shipped one."""
    text = (ROOT / "cfg" / "fixproxy.toml").read_text()
    head = text[: text.index("[admin]")]
    for f in (ROOT / "cfg").glob("*.csv"):
        (tmp_path / f.name).write_text(f.read_text())

    def write(admin: str) -> Path:
        (tmp_path / "fixproxy.toml").write_text(head + admin)
        return tmp_path / "fixproxy.toml"

    return write


def token(name: str, role: str, line: str) -> str:
    return f'\n[[admin.tokens]]\nname = "{name}"\nrole = "{role}"\n{line}\n'


def test_shipped_config_has_example_viewer_and_risk_tokens_on_loopback():
    """cfg/ as shipped: the API binds 127.0.0.1:9880 with one viewer and one risk example token."""
    loaded = load(ROOT / "cfg" / "fixproxy.toml")
    admin = loaded.config.admin
    assert (admin.http_host, admin.http_port) == ("127.0.0.1", 9880)
    assert sorted(t.role for t in loaded.api_tokens) == ["risk", "viewer"]
    assert all("example" in t.secret for t in loaded.api_tokens)


def test_token_env_is_read_from_the_environment(cfg, monkeypatch):
    """token_env names a variable; its value is the token (and nothing is read without secrets)."""
    path = cfg(ADMIN_HEAD + token("desk", "risk", 'token_env = "FIXPROXY_TEST_RISK_TOKEN"'))
    monkeypatch.setenv("FIXPROXY_TEST_RISK_TOKEN", "from-the-environment-0123")
    (t,) = load(path).api_tokens
    assert (t.name, t.role, t.secret) == ("desk", "risk", "from-the-environment-0123")
    monkeypatch.delenv("FIXPROXY_TEST_RISK_TOKEN")
    assert load(path, secrets=False).api_tokens == ()


def test_missing_token_env_variable_stops_start_up_naming_it(cfg, monkeypatch):
    """A token_env variable that is not set is a configuration error naming the variable and the token."""
    monkeypatch.delenv("FIXPROXY_TEST_UNSET", raising=False)
    path = cfg(ADMIN_HEAD + token("desk", "risk", 'token_env = "FIXPROXY_TEST_UNSET"'))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).endswith(
        "admin.tokens[0]: environment variable FIXPROXY_TEST_UNSET (token 'desk') is not set"
    )


BAD_ADMIN = [
    (
        "both",
        token("a", "risk", 'token = "0123456789abcdef"\ntoken_env = "X"'),
        "admin.tokens[0]: token 'a': give exactly one of token or token_env",
    ),
    ("neither", token("a", "risk", ""), "admin.tokens[0]: token 'a': give exactly one of token or token_env"),
    ("short", token("a", "risk", 'token = "short"'), "at least 16 ASCII characters"),
    ("role", token("a", "boss", 'token = "0123456789abcdef"'), "admin.tokens[0].role: Invalid enum value 'boss'"),
    (
        "name_twice",
        token("a", "risk", 'token = "0123456789abcdef"') + token("a", "viewer", 'token = "0123456789abcdeX"'),
        "tokens[1].name: 'a' is used twice",
    ),
    (
        "same_secret",
        token("a", "risk", 'token = "0123456789abcdef"') + token("b", "viewer", 'token = "0123456789abcdef"'),
        "admin.tokens[1]: token 'b' has the same secret as another token",
    ),
    ("unknown_key", token("a", "risk", 'token = "0123456789abcdef"\nscope = "x"'), "unknown field `scope`"),
]


@pytest.mark.parametrize("tokens, message", [b[1:] for b in BAD_ADMIN], ids=[b[0] for b in BAD_ADMIN])
def test_bad_admin_tokens_stop_start_up_naming_the_key(cfg, tokens, message):
    """Each kind of token mistake is refused with the path of the bad key."""
    with pytest.raises(ConfigError) as info:
        load(cfg(ADMIN_HEAD + tokens))
    assert message in str(info.value)


def test_http_port_zero_disables_and_negative_is_refused(cfg):
    """http_port = 0 is allowed (the API is off); -1 names admin.http_port."""
    assert load(cfg("\n[admin]\nhttp_port = 0\n")).config.admin.http_port == 0
    with pytest.raises(ConfigError, match=r"admin\.http_port: Expected `int` >= 0"):
        load(cfg("\n[admin]\nhttp_port = -1\n"))


# ---------------------------------------------------------------- the OpenAPI document


def test_spec_file_equals_the_served_document():
    """spec/admin-api.openapi.json is the document the API serves (UPDATE_SPEC=1 rewrites the file)."""
    if os.environ.get("UPDATE_SPEC"):
        SPEC.write_text(openapi_text())
    assert json.loads(SPEC.read_text()) == openapi_document(), (
        "spec/admin-api.openapi.json is stale: run UPDATE_SPEC=1 pytest tests/unit/test_admin_http.py"
    )


def test_every_route_is_in_the_document_with_its_role():
    """Each route of the application has its path and method in the document, and nothing else is there."""
    app = AdminApi(_control(Harness()), TOKENS).app()
    routes = {(r.resource.canonical, r.method.lower()) for r in app.router.routes() if r.method != "HEAD"}
    paths = openapi_document()["paths"]
    documented = {(path, method) for path, ops in paths.items() for method in ops}
    assert routes == documented
    for r in ROUTES:
        op = paths[r.url][r.method.lower()]
        assert op.get("x-required-role") == r.role and ("security" in op) == (r.role is None)
    assert openapi_document()["openapi"] == "3.1.0"


def test_client_prefix_matches_the_api():
    """The CLI client builds URLs with the API's prefix (it does not import the server module)."""
    assert client_module.PREFIX == PREFIX
    assert base_url("0.0.0.0", 9880) == "http://127.0.0.1:9880/api/v1"
    assert base_url("::1", 9880) == "http://[::1]:9880/api/v1"


# ---------------------------------------------------------------- the application in process


def _control(h: Harness) -> Control:
    lock = threading.Lock()

    def submit(event):
        with lock:
            return h.core.handle(event)

    return Control(submit, lock, h.core, Feed())


@pytest.fixture
async def client():
    """The API over a real core (venue "sim" up), served on loopback by aiohttp's test server."""
    h = Harness(rules=[])
    api = AdminApi(_control(h), TOKENS, sessions=["oms1", "oms2"], heartbeat_s=0.05)
    async with TestClient(TestServer(api.app())) as c:
        c.harness = h
        yield c


async def test_in_process_openapi_and_healthz_need_no_token(client):
    """The OpenAPI document and /healthz answer without a token; the document equals the spec file."""
    response = await client.get(PREFIX + "/openapi.json")
    assert response.status == 200 and await response.json() == json.loads(SPEC.read_text())
    assert (await client.get("/healthz")).status == 200


async def test_in_process_kill_records_token_name_and_ok_maps_to_200(client):
    """A risk token's halt: 200 with the AdminResult, operator = the token's name, and the core is HALTED."""
    response = await client.post(
        PREFIX + "/kill-switch", headers=bearer("risk"), json={"scope": "account:A1", "action": "halt", "reason": "why"}
    )
    body = await response.json()
    assert response.status == 200
    assert (body["ok"], body["operator"], body["before"], body["after"]) == (True, "rita", "ACTIVE", "HALTED")
    assert "type" not in body and "error" not in body
    assert client.harness.core.kill.get("account:A1").state.value == "HALTED"


async def test_in_process_refused_limit_change_maps_to_422_with_error(client):
    """The core refusing a limit value (not positive) answers 422 with ok false and the reason in error."""
    response = await client.post(
        PREFIX + "/limits",
        headers=bearer("admin"),
        json={"layer": "firm", "field": "max_order_qty", "value": "-1", "reason": "r"},
    )
    body = await response.json()
    assert response.status == 422 and body["ok"] is False and "must be a positive number" in body["error"]


async def test_in_process_unknown_route_and_method_answer_json(client):
    """Unknown paths and methods answer JSON errors too (404, 405)."""
    response = await client.get(PREFIX + "/nothing", headers=bearer("viewer"))
    assert response.status == 404 and "error" in await response.json()
    response = await client.delete(PREFIX + "/kill-switch", headers=bearer("risk"))
    assert response.status == 405 and "error" in await response.json()


async def test_in_process_event_stream_sends_heartbeat_comments(client):
    """With nothing happening, the event stream still sends a comment line every heartbeat."""
    response = await client.get(PREFIX + "/events", headers=bearer("viewer"))
    assert response.headers["Content-Type"].startswith("text/event-stream")
    lines = [await asyncio.wait_for(response.content.readline(), 2) for _ in range(4)]
    assert lines[:2] == [b": connected\n", b"\n"] and lines[2:] == [b": heartbeat\n", b"\n"]
    response.close()


async def test_in_process_whoami_names_token_role_and_alert_levels(client):
    """GET /whoami answers the token's name and role and the [risk] alert levels; without a token it is 401."""
    response = await client.get(PREFIX + "/whoami", headers=bearer("viewer"))
    assert response.status == 200
    assert await response.json() == {"name": "vera", "role": "viewer", "alert_levels": ["70", "90"]}
    assert (await client.get(PREFIX + "/whoami")).status == 401


async def test_in_process_dashboard_page_and_assets_need_no_token_and_forbid_outside_sources(client):
    """GET / serves the dashboard's page, /dashboard/<file> its script and style sheet, all with a CSP that
    allows only this server; the page itself and unknown names under /dashboard/ are 404."""
    page = await client.get("/")
    text = await page.text()
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert '<script src="/dashboard/dashboard.js"' in text and "http://" not in text and "https://" not in text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    script = await client.get("/dashboard/dashboard.js")
    assert script.status == 200 and script.headers["Content-Type"].startswith("text/javascript")
    assert "/api/v1/events" in await script.text()
    assert (await client.get("/dashboard/dashboard.css")).headers["Content-Type"].startswith("text/css")
    for path in ("/dashboard/index.html", "/dashboard/nothing.js", "/dashboard/..%2Fhttp.py"):
        response = await client.get(path)
        assert response.status == 404 and "error" in await response.json(), path


async def test_in_process_exposure_history_follows_the_firm_and_filters_since(client):
    """The history starts at zero, gains a point when an order changes the firm's gross, and since_ns filters."""
    first = await (await client.get(PREFIX + "/exposure-history", headers=bearer("viewer"))).json()
    assert [(p["gross"], p["net"]) for p in first["points"]] == [("0", "0")]
    client.harness.new(order("H1", qty=10, price=100, account="A1"))  # a working order counts in gross
    second = await (
        await client.get(
            PREFIX + "/exposure-history",
            headers=bearer("viewer"),
            params={"since_ns": str(first["points"][-1]["t_ns"])},
        )
    ).json()
    assert [p["gross"] for p in second["points"]] == ["1000"]
    assert second["now_ns"] >= second["points"][-1]["t_ns"]
    response = await client.get(PREFIX + "/exposure-history?since_ns=-1", headers=bearer("viewer"))
    assert response.status == 400 and "since_ns must not be negative" in (await response.json())["error"]


def test_exposure_history_keeps_a_point_only_when_gross_or_net_changes():
    """Repeated samples of the same gross and net add nothing; ``since`` returns the points after a time."""
    history = ExposureHistory(size=3)
    for t, gross, net in [(1, "0", "0"), (2, "0", "0"), (3, "5", "5"), (4, "5", "-5"), (5, "5", "-5"), (6, "9", "1")]:
        history.add(t, gross, net)
    assert [p["t_ns"] for p in history.since()] == [3, 4, 6]  # at most 3 kept, oldest dropped
    assert history.since(4) == [{"t_ns": 6, "gross": "9", "net": "1"}]
    assert firm_totals([{"scope": "account:A", "gross": "1", "net": "1"}]) == ("0", "0")


# ---------------------------------------------------------------- CLI rendering


def test_status_rendering_lists_states_sessions_and_exposure():
    """`fixproxy status` shows each non-ACTIVE scope, every session up or down, and exposure per scope."""
    summary = {
        "trading_states": [
            {
                "scope": "account:ACC1",
                "state": "HALTED",
                "reason": "runaway",
                "operator": "rita",
                "since_ns": 1_700_000_000_000_000_000,
            }
        ],
        "sessions": {
            "oms": [{"name": "oms1", "up": True, "cancel_on_disconnect": True}],
            "venues": [{"name": "sim", "up": False}],
        },
        "exposure": [
            {
                "scope": "firm",
                "gross": "19000",
                "net": "19000",
                "net_long": "19000",
                "net_short": "0",
                "open_orders": 2,
                "limits": {"max_open_orders": {"utilization_pct": "40.0"}},
            }
        ],
        "orders": {"open": 2, "decisions": {"accepted": 5, "rejected": 2, "rejects_by_code": {"HALTED": 2}}},
        "kill_cancels_pending": 0,
    }
    text = render_status(summary)
    lines = text.splitlines()
    assert any(line.split()[:5] == ["account:ACC1", "HALTED", "2023-11-14", "22:13:20", "rita"] for line in lines)
    assert any(line.split()[:3] == ["oms1", "OMS", "up"] for line in lines)
    assert any(line.split()[:3] == ["sim", "venue", "DOWN"] for line in lines)
    assert any(line.split()[:2] == ["firm", "19000"] and "max_open_orders 40.0%" in line for line in lines)
    assert "Open orders: 2" in text and "Decisions: 5 accepted, 2 rejected (HALTED 2)" in text
    assert "all ACTIVE" in render_status({**summary, "trading_states": []})


def test_result_rendering_says_before_after_and_who():
    """One line per admin result: scope, before -> after, cancels, and who did it why."""
    line = render_result(
        {
            "kind": "kill",
            "scope": "account:A",
            "before": "ACTIVE",
            "after": "HALTED",
            "orders_cancelled": 3,
            "operator": "rita",
            "reason": "runaway",
        }
    )
    assert line == ("account:A: ACTIVE -> HALTED; 3 working order(s) cancelled at the venues (by rita: runaway)")
    line = render_result(
        {
            "kind": "limit",
            "scope": "firm",
            "detail": "max_order_qty",
            "before": "10000",
            "after": "",
            "operator": "rita",
            "reason": "r",
        }
    )
    assert line.startswith("firm max_order_qty: 10000 -> (unset)")


# ---------------------------------------------------------------- event-stream cap, paged orders


async def test_in_process_stream_over_the_cap_is_refused_503_and_a_freed_place_is_taken():
    """With [admin] max_stream_clients = 1, a second stream gets 503 with a JSON error naming the setting;
    once the first leaves, a new one is let in and receives the next decision."""
    h = Harness(rules=[])
    api = AdminApi(_control(h), TOKENS, sessions=["oms1"], heartbeat_s=0.05, max_stream_clients=1, stream_batch_s=0.01)
    async with TestClient(TestServer(api.app())) as c:
        first = await c.get(PREFIX + "/events", headers=bearer("viewer"))
        assert first.status == 200
        second = await c.get(PREFIX + "/events", headers=bearer("viewer"))
        assert second.status == 503 and "max_stream_clients" in (await second.json())["error"]
        first.close()
        for _ in range(100):
            third = await c.get(PREFIX + "/events", headers=bearer("viewer"))
            if third.status == 200:
                break
            await asyncio.sleep(0.05)
        assert third.status == 200
        await asyncio.wait_for(third.content.readline(), 2)  # ": connected"
        await asyncio.sleep(0.05)
        api.control.feed.add(h.new(order("EV1", qty=10))[0])
        text = b""
        while b"EV1" not in text:
            text += await asyncio.wait_for(third.content.readline(), 2)
        assert b"event: decision" in text
        third.close()


async def test_in_process_orders_are_paged_by_key_and_bad_limits_refused(client):
    """GET /orders?limit=&after= pages the open orders in key order; the summary counts them."""
    for i in range(5):
        client.harness.new(order(f"P{i}", qty=10, price=100, account="A1"))
    first = await (await client.get(PREFIX + "/orders?limit=2", headers=bearer("viewer"))).json()
    assert [o["cl_ord_id"] for o in first] == ["P0", "P1"]
    rest = await (
        await client.get(
            PREFIX + "/orders", headers=bearer("viewer"), params={"limit": "10", "after": first[-1]["key"]}
        )
    ).json()
    assert [o["cl_ord_id"] for o in rest] == ["P2", "P3", "P4"]
    summary = await (await client.get(PREFIX + "/summary", headers=bearer("viewer"))).json()
    assert summary["orders"]["open"] == 5 and summary["orders"]["decisions"]["accepted"] == 5
    for bad in ("0", "1001", "x"):
        response = await client.get(PREFIX + "/orders?limit=" + bad, headers=bearer("viewer"))
        assert response.status == 400 and "limit must be" in (await response.json())["error"]
