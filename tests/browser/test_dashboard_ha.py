"""The dashboard's High availability panel and banner, against a real proxy process whose HA node is a
stand-in that reads its view and health from a JSON file the test rewrites (tests/integration/ha_stub.py:
``Proxy.ha`` set after construction, as the real node is; the surfaces read it lazily). The panel shows the role,
the partner, the copy's state and lag as they change; the banner says when no standby has the copy and
when this instance is fenced; a proxy without HA shows neither."""

from __future__ import annotations

import json

from playwright.sync_api import expect

from ..integration.ha_stub import VIEW, proxy_env, write
from ..integration.harness import Stack
from .common import api, open_dashboard

WAIT_MS = 15_000  # a bound on waiting (the panel re-reads the view every second), not a timing under test


def test_ha_panel_follows_role_and_lag_and_banner_says_no_copy_then_fenced(tmp_path, page):
    """Active in sync copy: panel with role, partner b, copy state and lag, no banner; the lag grows: the
    panel follows; the standby gone: the no-copy banner; fenced: the fenced banner with /healthz's reason
    (and /healthz 503); in copy again: no banner."""
    env, state = proxy_env(tmp_path)
    stack = Stack(tmp_path / "a", proxy_env=env, venue=False)
    try:
        open_dashboard(page, stack, "viewer")
        expect(page.locator("#panel-ha")).to_be_visible()
        expect(page.locator("#ha-role")).to_have_text("active")
        expect(page.locator("#ha-me")).to_have_text("(this instance: a, pair gw)")
        row = page.locator('#ha-table tr[data-instance="a"]')
        cells = row.locator("td")
        expect(cells.nth(0)).to_have_attribute("data-partner", "b")
        expect(cells.nth(1)).to_have_text("connected")
        expect(row.locator("[data-copy-state]")).to_have_attribute("data-copy-state", "sync")
        expect(cells.nth(4)).to_have_text("0")
        expect(cells.nth(7)).to_have_text("7")
        banner = page.locator("#ha-banner")
        expect(banner).to_be_hidden()

        write(state, VIEW | {"partner": VIEW["partner"] | {"lag_bytes": 65536, "lag_ms": 12.25}})
        expect(cells.nth(4)).to_have_text("65,536", timeout=WAIT_MS)
        expect(cells.nth(5)).to_have_text("12.3")
        expect(banner).to_be_hidden()

        alone = VIEW | {"copy_state": "alone", "partner": VIEW["partner"] | {"connected": False}}
        write(state, alone, "degraded", "no standby in copy")
        expect(banner).to_have_attribute("data-cause", "no-copy", timeout=WAIT_MS)
        expect(banner).to_contain_text("No standby has the copy: a failover now would start from an older state")
        expect(cells.nth(1)).to_have_text("not connected")
        expect(row.locator("[data-copy-state]")).to_have_attribute("data-copy-state", "alone")

        why = "the leadership could not be renewed before the deadline"
        write(state, alone | {"role": "fenced", "database": "lost"}, "failed", why)
        expect(banner).to_have_attribute("data-cause", "fenced", timeout=WAIT_MS)
        expect(page.locator("#ha-role")).to_have_text("fenced")
        assert api_health(stack)["ha"] == {"state": "failed", "reason": why, "role": "fenced"}
        expect(banner).to_contain_text(f"Fenced: {why}. It writes to no socket", timeout=WAIT_MS)

        write(state, VIEW)
        expect(banner).to_be_hidden(timeout=WAIT_MS)
        expect(page.locator("#ha-role")).to_have_text("active")
        assert api(stack, "/ha") == VIEW
        assert page.errors == []
    finally:
        stack.close()


def test_dashboard_of_a_proxy_without_ha_has_no_panel_and_no_banner(tmp_path, page):
    """No HA node: the panel and the banner stay hidden, and GET /api/v1/ha is 404."""
    stack = Stack(tmp_path / "alone", venue=False)
    try:
        open_dashboard(page, stack, "viewer")
        expect(page.locator("#panel-ha")).to_be_hidden()
        expect(page.locator("#ha-banner")).to_be_hidden()
        assert api_status(stack, "/ha") == 404
        assert page.errors == []
    finally:
        stack.close()


def api_health(stack: Stack) -> dict:
    """/healthz, whatever its status (503 while fenced)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(stack.api_url.removesuffix("/api/v1") + "/healthz", timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        assert exc.code == 503
        return json.loads(exc.read())


def api_status(stack: Stack, path: str) -> int:
    import urllib.error

    try:
        api(stack, path)
    except urllib.error.HTTPError as exc:
        return exc.code
    return 200
