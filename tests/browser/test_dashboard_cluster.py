"""The dashboard's Cluster panel: two proxies sharing one PostgreSQL; the panel lists both instances
with a bar per shared limit; the database stopped, a red banner gives the cause (the lost database,
then the fence); the database back, the banner goes."""

from __future__ import annotations

import time

from playwright.sync_api import expect

from ..integration.harness import Stack
from .common import api, open_dashboard

GROSS = "max_gross_exposure|firm"
WAIT_MS = 30_000  # a bound on waiting (the page re-reads every 10 s at least), not a timing under test


def cluster_section(url: str, name: str) -> str:
    return f'[cluster]\nurl = "{url}"\ninstance = "{name}"\nlease_ttl_ms = 1500\nrenew_ms = 100\nstep_pct = 5\n'


def test_cluster_panel_lists_instances_and_banner_shows_lost_database_until_it_returns(tmp_path, own_pg, page):
    """Instances a and b in the panel, each with its share of the firm's gross; PostgreSQL stopped: the
    banner says the database is lost with the error /healthz gives, then that a is fenced; PostgreSQL
    started again: the banner goes and a is not fenced."""
    url = own_pg.url()
    stacks: list[Stack] = []
    try:
        for name in "ab":
            stacks.append(
                Stack(
                    tmp_path / name,
                    firm_extra="max_gross_exposure = 2000000",
                    sections=cluster_section(url, name),
                )
            )
            stacks[-1].connect("oms1")
        a = stacks[0]
        open_dashboard(page, a, "viewer")
        panel = page.locator("#panel-cluster")
        expect(panel).to_be_visible()
        expect(page.locator("#cluster-banner")).to_be_hidden()
        for name in "ab":
            row = page.locator(f'#cluster-instances tr[data-instance="{name}"]')
            expect(row).to_be_visible(timeout=WAIT_MS)
            expect(row.locator("td").nth(1)).to_contain_text("alive")
            expect(row.locator("td").nth(3)).to_have_text("2/3")  # oms1 and the venue up, oms2 not
            expect(row.locator(f'[data-share="{GROSS}"]')).to_be_visible(timeout=WAIT_MS)
        expect(page.locator(f'#cluster-limits tr[data-limit="{GROSS}"] td').nth(2)).to_have_text("2,000,000")

        own_pg.stop()
        banner = page.locator("#cluster-banner")
        expect(banner).to_be_visible(timeout=WAIT_MS)
        expect(banner).to_contain_text("Cluster database lost: ")
        # The cause shown is the one /healthz gives (the error may change as reconnects fail: read both).
        deadline = time.monotonic() + WAIT_MS / 1000
        while True:
            reason = api(a, "/summary")["health"]["cluster"]["reason"]
            if reason and reason in (banner.text_content() or ""):
                break
            assert time.monotonic() < deadline, f"banner {banner.text_content()!r} never showed {reason!r}"
            time.sleep(0.2)
        expect(banner).to_have_attribute("data-cause", "fenced", timeout=WAIT_MS)
        expect(banner).to_contain_text("Fenced: the cluster database is unreachable")

        own_pg.start()
        expect(banner).to_be_hidden(timeout=WAIT_MS)
        expect(page.locator('#cluster-instances tr[data-instance="a"] td').nth(1)).not_to_contain_text("fenced")
        assert page.errors == []
    finally:
        for s in stacks:
            s.close()
