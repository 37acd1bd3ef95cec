"""Dashboard papercuts in headless Chromium against a real stack: clearing a limit takes a second
confirmation, position limits show as utilization bars, and a sector bar below its layer's
sector_min_gross is neutral (the rule cannot fire there)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from ..integration.harness import Stack
from .common import LIVE_S, api, open_dashboard, send

#: PCCLR's limit is cleared from the page; PCPOS may be long 100 MSFT; PCSEC's sector check starts at a
#: gross of 5,000 (one 10-lot of MSFT at 410 is 4,100).
EXTRA_LIMITS = """
[limits.accounts.PCCLR]
max_order_qty = 50

[limits.accounts.PCPOS]
max_long_position = 100

[limits.accounts.PCSEC]
max_sector_pct = 50
sector_min_gross = 5000
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A proxy whose venue rests MSFT and XOM orders (ack only), with oms1 connected."""
    s = Stack(tmp_path_factory.mktemp("papercuts"), behaviours={"MSFT": "ack", "XOM": "ack"}, extra=EXTRA_LIMITS)
    try:
        s.connect("oms1")
        yield s
    finally:
        s.close()


def _account_limits(stack: Stack, account: str) -> dict:
    return api(stack, "/limits")["accounts"].get(account, {})


def test_clearing_a_limit_asks_again_naming_layer_and_field_and_dismissing_keeps_it(stack, page):
    """An emptied value opens a second confirmation naming account:PCCLR and max_order_qty; Cancel there
    leaves the limit; confirming clears it."""
    open_dashboard(page, stack, "risk")
    row = page.locator('#limits tr[data-limit="account:PCCLR|max_order_qty"]')
    for confirm in (False, True):
        row.locator("button[data-action=edit-limit]").click()
        expect(page.locator("#dialog-title")).to_have_text("Change max_order_qty of account:PCCLR")
        page.fill("#limit-value", "")
        page.fill("#dialog-reason", "papercut clear test")
        page.click("#dialog-confirm")
        expect(page.locator("#dialog-title")).to_have_text("Clear max_order_qty of account:PCCLR?")
        expect(page.locator("#dialog-text")).to_contain_text("(now 50)")
        expect(page.locator("#dialog-confirm")).to_have_text("Clear max_order_qty of account:PCCLR")
        expect(page.locator("#dialog-reason")).to_have_value("papercut clear test")
        assert _account_limits(stack, "PCCLR") == {"max_order_qty": "50"}  # nothing sent by the first step
        page.click("#dialog-confirm" if confirm else "#dialog-cancel")
        expect(page.locator("#dialog")).to_be_hidden()
        if not confirm:
            assert _account_limits(stack, "PCCLR") == {"max_order_qty": "50"}
            expect(row).to_be_visible()
    expect(row).to_have_count(0, timeout=LIVE_S * 1000)
    assert _account_limits(stack, "PCCLR") == {}
    actions = api(stack, "/admin-actions?limit=20")
    assert [
        (a["scope"], a["detail"], a["before"], a["after"]) for a in actions if a.get("scope") == "account:PCCLR"
    ] == [("account:PCCLR", "max_order_qty", "50", "")]
    assert page.errors == []


def test_position_utilization_bar_moves_with_working_orders(stack, page):
    """PCPOS's long MSFT bar shows 10% after a resting 10-lot and 30% after another 20 (limit 100)."""
    open_dashboard(page, stack, "viewer")
    value = page.locator('[data-util="account:PCPOS|max_long_position|MSFT"]')
    assert send(stack, "PP-1", symbol="MSFT", price="410", qty="10", account="PCPOS")["39"] == "0"
    expect(value).to_contain_text("10.0% (10 / 100)", timeout=LIVE_S * 1000)
    expect(value).to_have_attribute("data-level", "ok")
    assert send(stack, "PP-2", symbol="MSFT", price="410", qty="20", account="PCPOS")["39"] == "0"
    expect(value).to_contain_text("30.0% (30 / 100)", timeout=LIVE_S * 1000)
    row = next(r for r in api(stack, "/position-limits") if (r["account"], r["symbol"]) == ("PCPOS", "MSFT"))
    assert row["long"] == {"observed": "30", "limit": "100", "scope": "account:PCPOS", "utilization_pct": "30.0"}
    assert page.errors == []


def test_sector_bar_is_grey_below_min_gross_and_colours_once_the_rule_can_fire(stack, page):
    """PCSEC all in Technology at a gross of 4,100 (under its 5,000 floor): a grey bar saying why, not red.
    An Energy order takes gross to 5,200: the rule can fire, and the bar is red (Technology 78.8% > 50%)."""
    open_dashboard(page, stack, "viewer")
    value = page.locator('[data-util="account:PCSEC|max_sector_pct"]')
    assert send(stack, "PS-1", symbol="MSFT", price="410", qty="10", account="PCSEC")["39"] == "0"
    expect(value).to_have_attribute("data-level", "idle", timeout=LIVE_S * 1000)
    expect(value).to_contain_text("checked above 5.0k")
    assert "red" not in (page.locator("#utilization .fill.idle").first.get_attribute("class") or "")
    assert send(stack, "PS-2", symbol="XOM", price="110", qty="10", account="PCSEC")["39"] == "0"
    expect(value).to_have_attribute("data-level", "red", timeout=LIVE_S * 1000)
    expect(value).to_contain_text("78.8%")
    expect(value).not_to_contain_text("checked above")
    assert page.errors == []
