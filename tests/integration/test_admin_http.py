"""Risk-desk controls over the real HTTP API and the CLI, against a proxy, venue simulator and OMS
simulators running as separate processes.

One stack serves the module; each test uses accounts of its own. The two tests that stop parts of
the stack (an OMS session dropping, the proxy restarting) come last.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from fixproxy.sim.process import free_port

from .harness import TOKENS, Stack, messages
from .test_order_path import order


@pytest.fixture(scope="module")
def desk(tmp_path_factory, engine):
    """A proxy whose venue rests MSFT orders (ack only), oms2 with cancel_on_disconnect, both OMSs connected."""
    s = Stack(tmp_path_factory.mktemp("desk"), behaviours={"MSFT": "ack"}, cancel_on_disconnect=("oms2",))
    try:
        s.connect("oms1")
        s.connect("oms2")
        yield s
    finally:
        s.close()


def api(
    stack: Stack,
    method: str,
    path: str,
    body=None,
    *,
    role: str | None = "risk",
    token: str | None = None,
    data: bytes | None = None,
):
    """(status, decoded JSON) of one request to the proxy's admin API."""
    headers = {}
    token = token if token is not None else TOKENS.get(role or "")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body).encode()
    request = urllib.request.Request(stack.api_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def kill(stack: Stack, scope: str, action: str, reason: str = "desk test", role: str = "risk") -> dict:
    status, result = api(stack, "POST", "/kill-switch", {"scope": scope, "action": action, "reason": reason}, role=role)
    assert status == 200, result
    return result


def cli(stack: Stack, *args: str, token: str | None = TOKENS["risk"]) -> subprocess.CompletedProcess:
    """``python -m fixproxy <args> --config <the stack's config>`` with the token in $FIXPROXY_TOKEN."""
    env = {k: v for k, v in os.environ.items() if k != "FIXPROXY_TOKEN"}
    if token:
        env["FIXPROXY_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "fixproxy", *args, "--config", str(stack.config)],
        cwd=stack.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def rest(oms, cl: str, account: str, qty: str = "10") -> None:
    """An MSFT order that the venue acknowledges and leaves working."""
    start = oms.mark()
    oms.send_line(order(cl, symbol="MSFT", price="410", qty=qty, account=account))
    oms.wait_for(messages(oms)(**{"35": "8", "11": cl, "39": "0"}), start=start)


def filled(oms, cl: str, start: int) -> dict:
    return oms.wait_for(messages(oms)(**{"35": "8", "11": cl, "39": "2"}), start=start)["fields"]


def refused(oms, cl: str, start: int) -> str:
    """The 58 text of the BusinessMessageReject for ``cl``."""
    return oms.wait_for(messages(oms)(**{"35": "j", "379": cl}), start=start)["fields"]["58"]


def venue_cancels(stack: Stack, orig_ids: list[str]) -> dict[str, dict]:
    """Wait until the venue simulator has received an OrderCancelRequest (35=F) for each venue ClOrdID."""
    m = messages(stack.venue)
    return {orig: stack.venue.wait_for(m(**{"35": "F", "41": orig}))["fields"] for orig in orig_ids}


def test_halt_and_cancel_over_http_cancels_account_orders_while_other_account_trades(desk):
    """halt_and_cancel on account:H1 cancels its three working orders at the venue, the OMS gets the cancel
    reports, H1's next order is refused HALTED, H2 still trades; after resume H1 trades again."""
    oms = desk.oms["oms1"]
    for cl in ("H1-A", "H1-B", "H1-C"):
        rest(oms, cl, "H1")
    rest(oms, "H2-A", "H2")
    start = oms.mark()

    result = kill(desk, "account:H1", "halt_and_cancel", "runaway algo")
    assert (result["ok"], result["before"], result["after"], result["orders_cancelled"]) == (
        True,
        "ACTIVE",
        "HALTED",
        3,
    )
    assert result["operator"] == "desk-risk"

    cancels = venue_cancels(desk, ["oms1.H1-A", "oms1.H1-B", "oms1.H1-C"])
    assert {f["1"] for f in cancels.values()} == {"H1"}
    m = messages(oms)
    for cl in ("H1-A", "H1-B", "H1-C"):
        report = oms.wait_for(m(**{"35": "8", "11": cl, "39": "4"}), start=start)["fields"]
        assert (report["150"], report["151"]) == ("4", "0")
    # The other account's working order was left alone.
    assert not any(r.get("dir") == "in" and r["fields"].get("41") == "oms1.H2-A" for r in list(desk.venue.lines))

    start = oms.mark()
    oms.send_line(order("H1-N1", account="H1"))
    assert refused(oms, "H1-N1", start).startswith(
        "HALTED: trading is halted for account:H1 by desk-risk: runaway algo"
    )
    oms.send_line(order("H2-N1", account="H2"))
    filled(oms, "H2-N1", start)

    status, states = api(desk, "GET", "/trading-states", role="viewer")
    assert (
        status == 200
        and {"scope": "account:H1", "state": "HALTED"}.items()
        <= next(s for s in states if s["scope"] == "account:H1").items()
    )

    assert kill(desk, "account:H1", "resume", "algo fixed")["after"] == "ACTIVE"
    start = oms.mark()
    oms.send_line(order("H1-N2", account="H1"))
    filled(oms, "H1-N2", start)


def test_halt_and_resume_through_cli_block_then_pass_orders(desk):
    """`fixproxy halt --cancel` cancels the account's working order and blocks it; `status` shows HALTED;
    `fixproxy resume` lets it trade again."""
    oms = desk.oms["oms1"]
    rest(oms, "C1-A", "CLI1")

    done = cli(desk, "halt", "--scope", "account:CLI1", "--reason", "desk drill", "--cancel")
    assert done.returncode == 0, done.stderr
    assert "account:CLI1: ACTIVE -> HALTED; 1 working order(s) cancelled" in done.stdout
    venue_cancels(desk, ["oms1.C1-A"])

    start = oms.mark()
    oms.send_line(order("C1-N1", account="CLI1"))
    assert refused(oms, "C1-N1", start).startswith("HALTED: ")

    status = cli(desk, "status")
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if "account:CLI1" in line)
    assert row.split()[:2] == ["account:CLI1", "HALTED"] and "desk-risk" in row
    raw = json.loads(cli(desk, "status", "--json").stdout)
    assert any(s["scope"] == "account:CLI1" and s["state"] == "HALTED" for s in raw["trading_states"])

    done = cli(desk, "resume", "--scope", "account:CLI1", "--reason", "drill over")
    assert done.returncode == 0, done.stderr
    assert "account:CLI1: HALTED -> ACTIVE" in done.stdout
    start = oms.mark()
    oms.send_line(order("C1-N2", account="CLI1"))
    filled(oms, "C1-N2", start)


def test_cli_with_viewer_token_or_unreachable_proxy_exits_nonzero_with_message(desk):
    """The CLI exits 1 with the server's message on a 403, and with the reason when nothing listens."""
    done = cli(desk, "halt", "--scope", "firm", "--reason", "x", token=TOKENS["viewer"])
    assert done.returncode == 1
    assert "HTTP 403: token 'desk-viewer' has role viewer; this needs risk or above" in done.stderr
    done = cli(desk, "resume", "--scope", "firm", "--reason", "x", "--url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 1 and "cannot reach the proxy's admin API" in done.stderr
    done = cli(desk, "status", token=None)
    assert done.returncode != 0 and "FIXPROXY_TOKEN" in done.stderr
    # Nothing was halted on the way.
    assert not any(s["scope"] == "firm" for s in api(desk, "GET", "/trading-states")[1])


def test_reducing_passes_shrinking_order_and_blocks_growing_one(desk):
    """REDUCING on an account long 100 AAPL: a sell of 40 is filled, a buy of 10 is refused REDUCING_ONLY."""
    oms = desk.oms["oms1"]
    start = oms.mark()
    oms.send_line(order("R-L", qty="100", account="RED"))
    filled(oms, "R-L", start)

    assert kill(desk, "account:RED", "reducing", "flatten only")["after"] == "REDUCING"
    start = oms.mark()
    oms.send_line(order("R-S", qty="40", side="2", account="RED"))
    filled(oms, "R-S", start)
    oms.send_line(order("R-B", qty="10", account="RED"))
    assert refused(oms, "R-B", start).startswith("REDUCING_ONLY: account:RED may only reduce positions")
    kill(desk, "account:RED", "resume", "done")


def test_live_limit_change_applies_to_next_order_and_clearing_restores(desk):
    """POST limits max_order_qty=50 on account:LIM refuses the next 60 lot; clearing it (null) lets it pass."""
    oms = desk.oms["oms1"]
    status, result = api(
        desk, "POST", "/limits", {"layer": "account:LIM", "field": "max_order_qty", "value": 50, "reason": "tighten"}
    )
    assert status == 200 and (result["before"], result["after"]) == ("", "50")
    start = oms.mark()
    oms.send_line(order("L-1", qty="60", account="LIM"))
    assert refused(oms, "L-1", start) == "MAX_ORDER_QTY: order quantity 60 exceeds the limit 50 (account:LIM)"
    assert api(desk, "GET", "/limits", role="viewer")[1]["accounts"]["LIM"] == {"max_order_qty": "50"}

    status, result = api(
        desk, "POST", "/limits", {"layer": "account:LIM", "field": "max_order_qty", "value": None, "reason": "loosen"}
    )
    assert status == 200 and (result["before"], result["after"]) == ("50", "")
    oms.send_line(order("L-2", qty="60", account="LIM"))
    filled(oms, "L-2", start)

    status, result = api(
        desk, "POST", "/limits", {"layer": "account:LIM", "field": "max_order_qty", "value": -5, "reason": "typo"}
    )
    assert status == 422 and "must be a positive number" in result["error"]


def test_reference_price_set_over_http_lets_symbol_without_one_trade(desk):
    """NOREF has no reference price (refused NO_REFERENCE_PRICE); after POST reference-prices it trades."""
    oms = desk.oms["oms1"]
    start = oms.mark()
    oms.send_line(order("P-1", symbol="NOREF", price="10", account="REF"))
    assert refused(oms, "P-1", start).startswith("NO_REFERENCE_PRICE: ")
    status, result = api(desk, "POST", "/reference-prices", {"symbol": "NOREF", "price": "10.00", "reason": "open"})
    assert status == 200 and (result["scope"], result["before"], result["after"]) == ("symbol:NOREF", "", "10")
    oms.send_line(order("P-2", symbol="NOREF", price="10", account="REF"))
    filled(oms, "P-2", start)


def test_reference_price_far_from_the_current_one_needs_force(desk):
    """1e-30 for a symbol at 410 is refused (422, the reference unchanged: a market order is still
    valued at 410); with force it is set, and the audit shows it was forced and by whom."""
    body = {"symbol": "MSFT", "price": "1e-30", "reason": "fat finger"}
    status, result = api(desk, "POST", "/reference-prices", body)
    assert status == 422 and "force" in result["detail"], result
    status, result = api(desk, "POST", "/reference-prices", {**body, "price": "300", "force": True})
    assert status == 200 and result["detail"].startswith("forced:"), result
    actions = api(desk, "GET", "/admin-actions", role="viewer")[1]
    forced = next(a for a in actions if a["kind"] == "reference" and a["ok"] and a["scope"] == "symbol:MSFT")
    assert forced["after"] == "300" and forced["detail"].startswith("forced:")
    status, result = api(desk, "POST", "/reference-prices", {**body, "price": "1.50", "reason": "back"})
    assert status == 422
    status, result = api(desk, "POST", "/reference-prices", {**body, "price": "410", "force": True, "reason": "back"})
    assert status == 200  # later tests of this module trade MSFT at 410


def test_auth_missing_token_401_viewer_kill_403_risk_kill_200(desk):
    """No token or an unknown one: 401; a viewer halting: 403 and nothing changes; the risk token: 200.
    Refusals are logged with the token's name, never the token."""
    body = {"scope": "account:AUTH", "action": "halt", "reason": "auth test"}
    assert api(desk, "GET", "/summary", role=None)[0] == 401
    status, error = api(desk, "POST", "/kill-switch", body, token="not-a-configured-token-123456")
    assert status == 401 and error == {"error": "unknown bearer token"}
    assert api(desk, "GET", "/summary", role="viewer")[0] == 200
    status, error = api(desk, "POST", "/kill-switch", body, role="viewer")
    assert status == 403 and "needs risk" in error["error"]
    assert not any(s["scope"] == "account:AUTH" for s in api(desk, "GET", "/trading-states")[1])
    status, result = api(desk, "POST", "/kill-switch", body, role="risk")
    assert status == 200 and result["after"] == "HALTED"
    assert api(desk, "POST", "/kill-switch", {**body, "action": "resume"}, role="admin")[0] == 200

    failures = [r for r in list(desk.proxy.lines) if r.get("event") == "admin_auth_failed"]
    assert {(r["status"], r.get("token_name")) for r in failures} >= {(401, None), (403, "desk-viewer")}
    output = "\n".join(desk.proxy.text)
    assert all(token not in output for token in TOKENS.values())
    assert "not-a-configured-token-123456" not in output


def test_bad_requests_get_400_with_the_reason(desk):
    """Bad JSON, a missing field, a blank reason, an unknown session or limit, a bad query: 400 saying why."""
    cases = [
        (b"{not json", "not valid JSON"),
        (json.dumps({"scope": "firm", "action": "halt"}).encode(), "missing required field `reason`"),
        (json.dumps({"scope": "firm", "action": "halt", "reason": "  "}).encode(), "reason must not be empty"),
        (json.dumps({"scope": "firm", "action": "stop", "reason": "x"}).encode(), "action: Invalid enum value 'stop'"),
        (
            json.dumps({"scope": "session:nope", "action": "halt", "reason": "x"}).encode(),
            "no OMS session named 'nope'",
        ),
        (json.dumps({"scope": "account:A\u0000B", "action": "halt", "reason": "x"}).encode(), "control characters"),
        (json.dumps({"scope": "symbol:" + "S" * 65, "action": "halt", "reason": "x"}).encode(), "at most 64"),
    ]
    for data, message in cases:
        status, error = api(desk, "POST", "/kill-switch", data=data)
        assert status == 400 and message in error["error"], (data, error)
    status, error = api(desk, "POST", "/limits", {"layer": "firm", "field": "max_qty", "value": 1, "reason": "x"})
    assert status == 400 and "'max_qty' is not a limit" in error["error"]
    status, error = api(desk, "GET", "/decisions?limit=0", role="viewer")
    assert status == 400 and "between 1 and" in error["error"]
    assert not any(s["scope"] == "firm" for s in api(desk, "GET", "/trading-states")[1])


def test_reads_show_sessions_orders_positions_exposure_and_recent_items(desk):
    """The read endpoints answer from the live proxy: sessions up, an open order, a position, recent decisions."""
    oms = desk.oms["oms1"]
    rest(oms, "V-W", "VIEW", qty="7")
    start = oms.mark()
    oms.send_line(order("V-F", qty="3", account="VIEW"))
    filled(oms, "V-F", start)

    sessions = api(desk, "GET", "/sessions", role="viewer")[1]
    assert {s["name"]: s["up"] for s in sessions["oms"]}["oms1"] is True
    assert sessions["venues"] == [{"name": "sim", "up": True}]
    orders = api(desk, "GET", "/orders", role="viewer")[1]
    assert {(o["cl_ord_id"], o["leaves_qty"], o["status"]) for o in orders if o["account"] == "VIEW"} == {
        ("V-W", "7", "new")
    }
    positions = api(desk, "GET", "/positions", role="viewer")[1]
    assert {(p["symbol"], p["qty"]) for p in positions if p["account"] == "VIEW"} == {("AAPL", "3")}
    exposure = {e["scope"]: e for e in api(desk, "GET", "/exposure", role="viewer")[1]}
    assert exposure["account:VIEW"]["open_orders"] == 1
    decisions = api(desk, "GET", "/decisions?limit=2", role="viewer")[1]
    assert len(decisions) == 2 and decisions[0]["feed"] == "decision"
    assert any(d["cl_ord_id"] == "V-F" and d["accepted"] for d in decisions)
    actions = api(desk, "GET", "/admin-actions", role="viewer")[1]
    assert actions and all(a["feed"] == "admin" and a["operator"] for a in actions)
    assert api(desk, "GET", "/alerts?limit=5", role="viewer")[0] == 200
    summary = api(desk, "GET", "/summary", role="viewer")[1]
    assert set(summary) >= {"sessions", "trading_states", "limits", "positions", "exposure", "orders"}
    assert summary["orders"]["open"] == len(api(desk, "GET", "/orders?limit=1000", role="viewer")[1])
    assert summary["orders"]["decisions"]["by_session"]["oms1"]["accepted"] >= 2
    page = api(desk, "GET", "/orders?limit=1", role="viewer")[1]
    rest_of = api(desk, "GET", f"/orders?limit=1000&after={page[0]['key']}", role="viewer")[1]
    assert [o["key"] for o in page + rest_of] == [
        o["key"] for o in api(desk, "GET", "/orders?limit=1000", role="viewer")[1]
    ]
    health = urllib.request.urlopen(desk.api_url.removesuffix("/api/v1") + "/healthz", timeout=5)
    body = json.loads(health.read())
    assert (body["status"], body["journal"]["state"]) == ("ok", "ok")
    served = json.loads(urllib.request.urlopen(desk.api_url + "/openapi.json", timeout=5).read())
    assert served["openapi"] == "3.1.0"


def test_event_stream_delivers_admin_action_as_it_happens(desk):
    """GET /events streams server-sent events: a kill-switch action arrives as `event: admin` with its data."""
    request = urllib.request.Request(desk.api_url + "/events", headers={"Authorization": f"Bearer {TOKENS['viewer']}"})
    stream = urllib.request.urlopen(request, timeout=10)
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    assert stream.readline() == b": connected\n"
    got: list[dict] = []

    def read() -> None:
        event = ""
        for line in stream:
            line = line.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "admin":
                got.append(json.loads(line[6:]))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    kill(desk, "symbol:SSE", "halt", "stream test")
    reader.join(10)
    stream.close()
    kill(desk, "symbol:SSE", "resume", "stream test over")
    assert got and (got[0]["scope"], got[0]["after"], got[0]["operator"]) == ("symbol:SSE", "HALTED", "desk-risk")


def test_cancel_on_disconnect_cancels_dropped_sessions_working_orders_at_venue(desk):
    """oms2 (cancel_on_disconnect) drops with two working orders: the venue simulator receives both cancels."""
    oms2 = desk.oms["oms2"]
    rest(oms2, "D-A", "COD")
    rest(oms2, "D-B", "COD")
    oms1 = desk.oms["oms1"]
    rest(oms1, "D-KEEP", "COD")  # another session's order in the same account stays

    oms2.stop(signal.SIGKILL)  # a drop, not a logout
    cancels = venue_cancels(desk, ["oms2.D-A", "oms2.D-B"])
    assert {f["55"] for f in cancels.values()} == {"MSFT"}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        actions = api(desk, "GET", "/admin-actions", role="viewer")[1]
        found = [
            a
            for a in actions
            if a["kind"] == "cancel_on_disconnect" and a["scope"] == "session:oms2" and a["operator"] == "fixproxy"
        ]
        if found:
            break
        time.sleep(0.1)
    assert found and found[0]["orders_cancelled"] == 2
    assert not any(r.get("dir") == "in" and r["fields"].get("41") == "oms1.D-KEEP" for r in list(desk.venue.lines))


def test_restart_with_halted_scope_stays_halted(desk):
    """Halt account:RST, stop the proxy process and start it again: the API shows HALTED, orders are refused."""
    kill(desk, "account:RST", "halt", "before restart")
    oms = desk.oms["oms1"]
    assert desk.proxy.stop() == 0
    mark = oms.mark()
    desk.start_proxy()
    oms.wait_for(lambda r: r.get("event") == "logon", start=mark)

    states = {s["scope"]: s for s in api(desk, "GET", "/trading-states", role="viewer")[1]}
    assert (states["account:RST"]["state"], states["account:RST"]["reason"]) == ("HALTED", "before restart")
    status = cli(desk, "status")
    assert any(line.split()[:2] == ["account:RST", "HALTED"] for line in status.stdout.splitlines())
    start = oms.mark()
    oms.send_line(order("RST-1", account="RST"))
    assert refused(oms, "RST-1", start).startswith("HALTED: trading is halted for account:RST")
