"""The viewer gets the API's answers in the language its browser asks for (Node Manager's ``blueking_language``
cookie, ``Accept-Language``), in real headless Chromium: the seed's steps in English or in Chinese; the log's
text, stored as written, in both."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.support.factories import SEED_STEPS, SEED_STEPS_EN, make_seed_job
from tests.support.live_jobs import artifact
from tests.web.test_viewer import SEED_INSTANCE, UI_TIMEOUT_MS, instance_url, sign_in_with_link


@pytest.mark.parametrize(
    ("how", "english"),
    [("cookie en over zh-CN", True), ("en-US", True), ("cookie zh-cn over en-US", False), ("zh-CN", False)],
)
def test_the_instance_page_shows_steps_in_the_browsers_language(stack, browser, how, english):
    # the browser's locale: navigator.languages and its Accept-Language
    locale = "zh-CN" if how in ("zh-CN", "cookie en over zh-CN") else "en-US"
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale=locale)
    if how.startswith("cookie"):
        value = "en" if how.startswith("cookie en ") else "zh-cn"
        context.add_cookies([{"name": "blueking_language", "value": value, "url": stack.url}])
    page = context.new_page()
    try:
        seed = make_seed_job(stack.services)
        sign_in_with_link(page, stack)
        page.goto(instance_url(stack, seed.job_id, SEED_INSTANCE))
        summaries = page.locator("details.step summary")
        expect(summaries).to_have_count(len(SEED_STEPS), timeout=UI_TIMEOUT_MS)
        names = SEED_STEPS_EN if english else [step[0] for step in SEED_STEPS]
        expect(summaries).to_contain_text([f"{n}. {name}" for n, name in enumerate(names, start=1)])
        expect(summaries).to_contain_text([step[1] for step in SEED_STEPS])  # statuses never change
        # the log's text is stored as written: the same in both languages
        expect(page.locator("details.step .log")).to_contain_text([step[2].split("\n")[0] for step in SEED_STEPS])
        if english:
            page.screenshot(path=artifact("viewer-english.png"), full_page=True)
    finally:
        context.close()
