"""The dashboard's alerts panel shows an anomaly detector's alert live, as text: a fat finger
triggered with small thresholds in the test config."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from ..integration.harness import Stack
from .common import LIVE_S, open_dashboard, send

ANOMALY = """
[anomaly.fat_finger]
enabled = true
history = 3
factor = 5
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A proxy with the fat-finger detector on (3 orders of history, factor 5), oms1 connected."""
    s = Stack(tmp_path_factory.mktemp("dashboard-anomaly"), behaviours={"MSFT": "ack"}, extra=ANOMALY)
    try:
        s.connect("oms1")
        yield s
    finally:
        s.close()


def test_fat_finger_alert_shows_live_in_alerts_panel_as_text(stack: Stack, page):
    """Three orders of 10 then one of 100 for one account: the alerts panel shows the fat-finger alert
    with its scope, observed size and sentence, without a reload."""
    open_dashboard(page, stack, "viewer")
    page.evaluate("window.__sameDocument = true")
    for i in range(3):
        assert send(stack, f"AF-{i}", symbol="MSFT", price="410", qty="10", account="ANOM1")["39"] == "0"
    expect(page.locator("#alerts tr[data-detector]")).to_have_count(0)
    assert send(stack, "AF-BIG", symbol="MSFT", price="410", qty="100", account="ANOM1")["39"] == "0"

    row = page.locator('#alerts tr[data-detector="fat_finger"]')
    expect(row).to_be_visible(timeout=LIVE_S * 1000)
    cells = row.locator("td")
    expect(cells.nth(1)).to_have_text("account:ANOM1")
    expect(cells.nth(2)).to_have_text("anomaly: fat finger")
    expect(cells.nth(3).locator(".badge.amber")).to_have_text("100")
    expect(cells.nth(4)).to_contain_text("order AF-BIG of 100 MSFT is more than 5 times the median 10")
    expect(cells.nth(4)).not_to_contain_text("{")  # text, not JSON
    assert page.evaluate("window.__sameDocument") is True
    assert page.errors == []
