"""The dashboard's Sessions table lists the drop-copy sessions and follows their logon and logout."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from ..integration.harness import Stack
from ..integration.test_drop_copy import DROP_COPIES, DropCopyClient
from .common import LIVE_S, open_dashboard


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A proxy with two drop copies (surv, back) and oms1 connected."""
    s = Stack(tmp_path_factory.mktemp("dropcopy-dashboard"), extra=DROP_COPIES)
    try:
        s.connect("oms1")
        yield s
    finally:
        s.close()


def test_drop_copy_rows_show_their_session_state(stack, page):
    """surv and back are listed as drop copies, down; surv shows up while logged on and down after its logout."""
    open_dashboard(page, stack, "viewer")
    surv = page.locator('#sessions tr[data-session="surv"]')
    back = page.locator('#sessions tr[data-session="back"]')
    for row in (surv, back):
        expect(row).to_contain_text("drop copy")
        expect(row.locator(".badge").first).to_have_text("down")
    client = DropCopyClient(stack)
    client.logon()
    expect(surv.locator(".badge").first).to_have_text("up", timeout=LIVE_S * 1000)
    expect(back.locator(".badge").first).to_have_text("down")
    client.logout()
    expect(surv.locator(".badge").first).to_have_text("down", timeout=LIVE_S * 1000)
    assert page.errors == []
