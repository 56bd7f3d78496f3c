"""The viewer gets the API's answers in the language its browser asks for (Node Manager's ``blueking_language``
cookie, ``Accept-Language``), in real headless Chromium: the seed's steps in English or in Chinese; the log's
text, stored as written, in both."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.support.factories import SEED_STEPS, make_seed_job
from tests.support.live_jobs import artifact
from tests.web.test_viewer import SEED_INSTANCE, UI_TIMEOUT_MS, instance_url, sign_in

SEED_STEPS_EN = [
    "Update task status",
    "Transfer upgrade package",
    "Run upgrade script",
    "Query Agent Status",
    "Update task status",
]


@pytest.mark.parametrize(
    ("how", "english"),
    [("cookie en", True), ("accept-language en-US", True), ("cookie zh-cn over en-US", False), ("zh-CN", False)],
)
def test_the_instance_page_shows_steps_in_the_browsers_language(stack, browser, how, english):
    headers = {"Accept-Language": "zh-CN"} if how == "zh-CN" else {"Accept-Language": "en-US,en;q=0.9"}
    context = browser.new_context(viewport={"width": 1280, "height": 900}, extra_http_headers=headers)
    if how.startswith("cookie"):
        value = "en" if how == "cookie en" else "zh-cn"
        context.add_cookies([{"name": "blueking_language", "value": value, "url": stack.url}])
    page = context.new_page()
    try:
        seed = make_seed_job(stack.services)
        sign_in(page, stack)
        page.goto(instance_url(stack, seed.job_id, SEED_INSTANCE))
        steps = page.locator("details.step")
        expect(steps).to_have_count(len(SEED_STEPS), timeout=UI_TIMEOUT_MS)
        for index, (chinese, status, log, _start, _finish) in enumerate(SEED_STEPS):
            summary = steps.nth(index).locator("summary")
            name = SEED_STEPS_EN[index] if english else chinese
            expect(summary).to_contain_text(f"{index + 1}. {name}")
            expect(summary).to_contain_text(status)
            expect(steps.nth(index).locator(".log")).to_contain_text(log.split("\n")[0])
        if english:
            page.screenshot(path=artifact("viewer-english.png"), full_page=True)
    finally:
        context.close()
