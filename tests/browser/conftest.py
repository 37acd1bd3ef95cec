"""Fixtures shared by the dashboard's browser tests: one headless Debian chromium per test module,
and a fresh page (its own context and sessionStorage) per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, one per test module (a live sync Playwright keeps an event loop
    running in this thread, which later modules' asyncio.run() would refuse); never a browser
    downloaded by Playwright."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium package"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    """A page in a fresh context on a laptop-sized viewport; script errors are collected in ``page.errors``."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    p = context.new_page()
    p.set_default_timeout(10_000)
    p.errors = []
    p.on("pageerror", lambda exc: p.errors.append(str(exc)))
    p.on("console", lambda msg: p.errors.append(msg.text) if msg.type == "error" else None)
    try:
        yield p
    finally:
        context.close()
