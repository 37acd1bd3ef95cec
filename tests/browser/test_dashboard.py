"""The risk dashboard in real headless Chromium (Debian's ``chromium`` package, driven by Playwright)
against a proxy, venue simulator and OMS simulator running as separate processes.

One stack and one browser serve the module; each test opens its own page (a fresh browser context, so
its own sessionStorage) and uses accounts of its own. ``make test`` installs chromium when it is missing.
The halt test saves a screenshot of the whole page to artifacts/dashboard.png.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from ..integration.harness import REPO, TOKENS, Stack
from .common import LIVE_S, api, base, open_dashboard, send

ARTIFACTS = REPO / "artifacts"
#: DASHU's gross limit: resting MSFT orders at 410 take it to 73.8% (amber), then 90.2% (red).
EXTRA_LIMITS = """
[limits.accounts.DASHU]
max_gross_exposure = 10000
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A proxy whose venue rests MSFT orders (ack only), with oms1 connected."""
    s = Stack(tmp_path_factory.mktemp("dashboard"), behaviours={"MSFT": "ack"}, extra=EXTRA_LIMITS)
    try:
        s.connect("oms1")
        yield s
    finally:
        s.close()


def test_page_with_risk_token_loads_shows_sessions_and_keeps_token_for_the_tab(stack, page):
    """With the risk token the page shows both sessions up, the live stream and actions; a reload stays logged in."""
    open_dashboard(page, stack, "risk")
    expect(page.locator('#sessions tr[data-session="oms1"] .badge.up')).to_have_text("up")
    expect(page.locator('#sessions tr[data-session="sim"] .badge.up')).to_have_text("up")
    expect(page.locator("#firm-state")).to_have_text("ACTIVE")
    expect(page.locator("#recording-state")).to_have_text("ok")
    expect(page.locator('#firm-actions button[data-action="halt"]')).to_be_visible()
    expect(page.locator("#limit-buttons [data-action=set-reference]")).to_be_visible()
    expect(page.locator("#chart svg")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('fixproxy.token')") == TOKENS["risk"]

    page.reload()
    expect(page.locator("#who")).to_have_text("desk-risk · risk")
    expect(page.locator("#login")).to_be_hidden()
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('fixproxy.token')") is None
    assert page.errors == []


def test_unknown_token_stays_on_login_with_message(stack, page):
    """A token the proxy does not know leaves the login form up with a message, and nothing is stored."""
    page.goto(base(stack) + "/")
    page.fill("#token", "not-a-configured-token-123456")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("That token is not accepted by the proxy.")
    expect(page.locator("#app")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('fixproxy.token')") is None


def test_order_from_oms_simulator_appears_live_without_reload(stack, page):
    """An order sent by the OMS simulator shows up in decisions, open orders and exposure with no reload."""
    open_dashboard(page, stack, "viewer")
    page.evaluate("window.__sameDocument = true")
    assert send(stack, "DL-1", symbol="MSFT", price="410", qty="20", account="DASHL")["39"] == "0"

    decision = page.locator('#decisions tr[data-decision="oms1|DL-1"]')
    expect(decision).to_be_visible(timeout=LIVE_S * 1000)
    expect(decision.locator(".badge")).to_have_text("accepted")
    row = page.locator('#orders tr[data-order="oms1|DL-1"]')
    expect(row).to_be_visible(timeout=LIVE_S * 1000)
    expect(row).to_contain_text("DASHL")
    expect(row).to_contain_text("MSFT")
    expect(page.locator('#exposure tr[data-scope="account:DASHL"]')).to_contain_text("8,200")
    assert page.evaluate("window.__sameDocument") is True
    assert page.errors == []


def test_account_nearing_gross_limit_turns_bar_amber_then_red_and_lists_alerts(stack, page):
    """DASHU's gross utilization bar is amber at 73.8% and red at 90.2%; both alerts appear live."""
    open_dashboard(page, stack, "viewer")
    value = page.locator('[data-util="account:DASHU|max_gross_exposure"]')
    send(stack, "DU-1", symbol="MSFT", price="410", qty="18", account="DASHU")
    expect(value).to_have_attribute("data-level", "amber", timeout=LIVE_S * 1000)
    expect(value).to_contain_text("73.8%")
    send(stack, "DU-2", symbol="MSFT", price="410", qty="4", account="DASHU")
    expect(value).to_have_attribute("data-level", "red", timeout=LIVE_S * 1000)
    expect(value).to_contain_text("90.2%")
    alerts = page.locator("#alerts tbody tr", has_text="account:DASHU")
    expect(alerts).to_have_count(2, timeout=LIVE_S * 1000)
    expect(alerts.first).to_contain_text("90%")


def test_limit_and_reference_price_set_in_dialogs_apply_to_next_orders(stack, page):
    """Setting max_order_qty 5 on account:DASHM refuses its next 10 lot; a reference price lets NOREF trade."""
    open_dashboard(page, stack, "risk")
    page.click("#limit-buttons [data-action=new-limit]")
    page.fill("#limit-layer", "account:DASHM")
    page.select_option("#limit-field", "max_order_qty")
    page.fill("#limit-value", "5")
    page.fill("#dialog-reason", "dashboard limit test")
    page.click("#dialog-confirm")
    expect(page.locator("#dialog")).to_be_hidden()
    expect(page.locator('#limits tr[data-limit="account:DASHM|max_order_qty"]')).to_contain_text("5")
    reject = send(stack, "DM-1", qty="10", account="DASHM")
    assert reject["58"] == "MAX_ORDER_QTY: order quantity 10 exceeds the limit 5 (account:DASHM)"

    page.click("#limit-buttons [data-action=set-reference]")
    page.fill("#ref-symbol", "NOREF")
    page.fill("#ref-price", "10.00")
    page.fill("#dialog-reason", "dashboard reference test")
    page.click("#dialog-confirm")
    expect(page.locator("#dialog")).to_be_hidden()
    assert send(stack, "DM-2", symbol="NOREF", price="10", qty="5", account="DASHM")["39"] in ("0", "2")
    activity = page.locator("#activity tbody tr", has_text="desk-risk")
    expect(activity.filter(has_text="symbol:NOREF")).to_be_visible(timeout=LIVE_S * 1000)
    expect(activity.filter(has_text="account:DASHM max_order_qty: (unset) → 5")).to_be_visible()


def test_halt_clicked_on_account_rejects_its_next_order_and_shows_halted(stack, page):
    """Halt on account:DASHH's row needs a reason; confirmed, the state shows HALTED, its next order is refused
    HALTED (seen live on the page), and the action is in the audit trail with the token's name."""
    open_dashboard(page, stack, "risk")
    assert send(stack, "DH-1", symbol="MSFT", price="410", qty="10", account="DASHH")["39"] == "0"
    halt = page.locator('#exposure button[data-action="halt"][data-scope="account:DASHH"]')
    expect(halt).to_be_visible(timeout=LIVE_S * 1000)
    halt.click()
    expect(page.locator("#dialog")).to_be_visible()
    expect(page.locator("#dialog-title")).to_have_text("Halt account:DASHH?")

    page.click("#dialog-confirm")  # no reason yet: refused on the page, nothing sent
    expect(page.locator("#dialog-error")).to_have_text("A reason is required.")
    assert not any(s["scope"] == "account:DASHH" for s in api(stack, "/trading-states"))

    page.fill("#dialog-reason", "dashboard halt test")
    page.click("#dialog-confirm")
    expect(page.locator("#dialog")).to_be_hidden()
    expect(page.locator('#states tr[data-scope="account:DASHH"] .badge')).to_have_text("HALTED")
    expect(page.locator('#exposure tr[data-scope="account:DASHH"] .badge')).to_have_text("HALTED")
    expect(page.locator('#exposure button[data-action="resume"][data-scope="account:DASHH"]')).to_be_visible()

    reject = send(stack, "DH-2", account="DASHH")
    assert reject["35"] == "j"
    assert reject["58"].startswith("HALTED: trading is halted for account:DASHH by desk-risk: dashboard halt test")
    refused = page.locator('#decisions tr[data-decision="oms1|DH-2"] .badge')
    expect(refused).to_have_text("HALTED", timeout=LIVE_S * 1000)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000

    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "fixproxy",
            "audit",
            "show",
            "--config",
            str(stack.config),
            "--kind",
            "admin",
            "--format",
            "json",
        ],
        cwd=stack.root,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ},
    )
    assert shown.returncode == 0, shown.stderr
    assert "account:DASHH" in shown.stdout and "desk-risk" in shown.stdout and "dashboard halt test" in shown.stdout
    assert page.errors == []


def test_viewer_token_sees_data_but_no_action_buttons(stack, page):
    """A viewer's page shows sessions, exposure and decisions, but no halt, resume, limit or reference buttons."""
    send(stack, "DV-1", symbol="MSFT", price="410", qty="5", account="DASHV")
    open_dashboard(page, stack, "viewer")
    expect(page.locator('#exposure tr[data-scope="account:DASHV"]')).to_be_visible()
    expect(page.locator('#decisions tr[data-decision="oms1|DV-1"]')).to_be_visible()
    expect(page.locator("#firm-state")).to_have_text("ACTIVE")
    assert page.locator("[data-action]").count() == 0
    assert page.locator("#app button:visible").all_inner_texts() == ["Log out"]
    expect(page.locator("#scope-form")).to_be_hidden()
    assert "Actions" not in page.locator("#exposure thead").inner_text()
    assert page.errors == []


def test_full_journal_disk_shows_recording_failed_on_the_page(tmp_path, page):
    """The journal's disk full (a tmpfs in the proxy's own mount namespace): the page shows the recording
    badge FAILED and a banner with the cause, and the refused order's decision."""
    from ..integration.test_disk_full import PREFIX_SH, ballast

    root = tmp_path / "full"
    (root / "var" / "journal").mkdir(parents=True)
    s = Stack(
        root,
        behaviours={"MSFT": "ack"},
        extra="\n[journal]\npreallocate_kb = 64\nreserve_kb = 32\n",
        proxy_prefix=["unshare", "--mount", "--propagation", "private", "sh", "-c", PREFIX_SH],
    )
    try:
        s.connect("oms1")
        open_dashboard(page, s, "viewer")
        ballast(f"/proc/{s.proxy.pid}/root{root}/var/journal/ballast")
        for i in range(400):
            if send(s, f"FULL{i}", symbol="MSFT", price="410").get("35") == "j":
                break
        expect(page.locator("#recording-state")).to_have_text("FAILED")
        expect(page.locator("#banner")).to_contain_text("No space left on device")
        expect(page.locator("#decisions")).to_contain_text("RECORDING_FAILED")
    finally:
        s.close()
