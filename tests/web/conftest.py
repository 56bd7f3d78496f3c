"""The viewer's tests: a running service (SQLite) with the engine, and Debian's headless Chromium driven by
Playwright (``/usr/bin/chromium``; ``make test`` installs it, nothing is downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.live_jobs import CHROMIUM, database_url, stack  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def browser():
    """Closed with its module: Playwright's sync API holds an event loop on this thread while it is open."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: make test installs Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is missing (make test installs Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    # Chromium's own locale (en-US): the viewer speaks English and asks the API for English (bk_language=en)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    opened = context.new_page()
    yield opened
    context.close()
