"""Helpers shared by the dashboard's browser tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import json

from playwright.sync_api import Page, expect

from ..integration.harness import TOKENS, Stack
from ..integration.test_order_path import order

LIVE_S = 4.0  # shorter than the page's 10 s periodic refresh: what shows up within this came live


def base(stack: Stack) -> str:
    return stack.api_url.removesuffix("/api/v1")


def open_dashboard(page: Page, stack: Stack, role: str) -> None:
    """Open the page, log in with the role's token, and wait until data and the event stream are there."""
    page.goto(base(stack) + "/")
    page.fill("#token", TOKENS[role])
    page.click("#login-form button[type=submit]")
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#who")).to_have_text(f"desk-{role} · {role}")
    expect(page.locator("#live")).to_have_text("live")
    expect(page.locator('#sessions tr[data-session="oms1"]')).to_be_visible()


def send(stack: Stack, cl: str, **kw) -> dict:
    """Send an order from the OMS simulator; the first answer to it (execution report or reject)."""
    oms = stack.oms["oms1"]
    start = oms.mark()
    oms.send_line(order(cl, **kw))
    return oms.wait_for(
        lambda r: r.get("dir") == "in" and cl in (r["fields"].get("11"), r["fields"].get("379")), start=start
    )["fields"]


def api(stack: Stack, path: str, role: str = "viewer"):
    import urllib.request

    request = urllib.request.Request(stack.api_url + path, headers={"Authorization": f"Bearer {TOKENS[role]}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())
