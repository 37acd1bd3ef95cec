"""The dashboard's monitor-mode toggle in real headless Chromium against a running proxy: a risk user
puts a rule in monitor mode, an order that rule would refuse is forwarded, and the decisions panel
shows the "would have refused" entry live."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from ..integration.harness import Stack
from .common import LIVE_S, api, open_dashboard, send


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A proxy (SMALL's max_order_qty is 50) with oms1 connected."""
    s = Stack(tmp_path_factory.mktemp("dashboard_monitor"))
    try:
        s.connect("oms1")
        yield s
    finally:
        s.close()


def test_rule_toggled_to_monitor_forwards_order_and_shows_would_refuse(stack, page):
    """Toggle max_order_qty to monitor (confirmed, with a reason); 100 shares for SMALL are forwarded and
    the decisions panel shows "would refuse MAX_ORDER_QTY"; a viewer sees the modes but no toggle."""
    assert send(stack, "BM-0", qty="100", account="SMALL")["35"] == "j"  # enforced: refused

    open_dashboard(page, stack, "risk")
    row = page.locator('#modes tr[data-mode="rule:max_order_qty"]')
    expect(row.locator(".badge")).to_have_text("enforce")
    row.locator("button[data-action=set-mode]").click()
    expect(page.locator("#dialog")).to_be_visible()
    expect(page.locator("#dialog-title")).to_have_text("Monitor rule max_order_qty?")
    page.click("#dialog-confirm")  # no reason yet: refused on the page, nothing sent
    expect(page.locator("#dialog-error")).to_have_text("A reason is required.")
    assert api(stack, "/modes")["rules"]["max_order_qty"] == "enforce"
    page.fill("#dialog-reason", "dashboard monitor test")
    page.click("#dialog-confirm")
    expect(page.locator("#dialog")).to_be_hidden()
    expect(row.locator(".badge")).to_have_text("monitor")
    assert api(stack, "/modes")["rules"]["max_order_qty"] == "monitor"

    page.evaluate("window.__sameDocument = true")
    answer = send(stack, "BM-1", qty="100", account="SMALL")
    assert answer["35"] == "8" and answer["39"] in ("0", "2")  # forwarded to the venue
    entry = page.locator('#decisions tr[data-would-refuse="oms1|BM-1|MAX_ORDER_QTY"]')
    expect(entry).to_be_visible(timeout=LIVE_S * 1000)
    expect(entry.locator(".badge.monitor")).to_have_text("would refuse MAX_ORDER_QTY")
    expect(entry).to_contain_text("would have refused (monitor mode, max_order_qty)")
    expect(page.locator('#decisions tr[data-decision="oms1|BM-1"] .badge')).to_have_text("accepted")
    expect(page.locator("#activity")).to_contain_text("rule max_order_qty: enforce → monitor")
    assert page.evaluate("window.__sameDocument") is True  # it came live, without a reload
    assert page.errors == []


def test_viewer_sees_modes_without_toggle(stack, page):
    """A viewer token shows each rule's mode but no button to change it."""
    open_dashboard(page, stack, "viewer")
    expect(page.locator('#modes tr[data-mode="rule:price_collar"] .badge')).to_have_text("enforce")
    expect(page.locator("#modes button")).to_have_count(0)
    expect(page.locator("#mode-buttons button")).to_have_count(0)
    assert page.errors == []
