"""The viewer's tests: a running service (SQLite) with the engine, and Debian's headless Chromium driven by
Playwright (``/usr/bin/chromium``; ``make test`` installs it, nothing is downloaded)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from nodeops.settings import Settings
from tests.conftest import TEST_SECRET_KEY, TEST_TIME_ZONE
from tests.integration.jobs.support import free_socket
from tests.live_jobs import CHROMIUM, running_stack


@pytest.fixture
def database_url(tmp_path: Path, sqlite_template: Path) -> str:
    """The browser tests run on SQLite only: what they check is the page, not the store."""
    path = tmp_path / "nodeops.sqlite3"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def listen_socket():
    sock = free_socket()
    yield sock
    sock.close()


@pytest.fixture
def settings(tmp_path, database_url, listen_socket) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=TEST_SECRET_KEY,  # type: ignore[arg-type]
        time_zone=TEST_TIME_ZONE,
        port=listen_socket.getsockname()[1],
    )


@pytest.fixture
def stack(services, listen_socket, tmp_path):
    with running_stack(services, listen_socket, tmp_path) as made:
        yield made


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
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    opened = context.new_page()
    yield opened
    context.close()
