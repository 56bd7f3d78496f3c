"""The viewer in Chinese and English: the same job page in both, the language chosen by Node Manager's
blueking_language cookie, else the browser's languages, switched in the header (which sets the cookie, readable by
the page, path=/, SameSite=Lax); every call carries bk_language; every word the pages show has its Chinese form."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.support.factories import make_seed_job
from tests.support.live_jobs import artifact
from tests.web.test_viewer import SEED_INSTANCE, UI_TIMEOUT_MS, instance_url, make_failed_job, sign_in_with_link

STATIC = Path(__file__).resolve().parents[2] / "src" / "nodeops" / "web" / "static"


# the words of a failed job's page: heading, html lang, section, link, button, statistic, caption, header
ZH_WORDS = (
    "任务 {id}",
    "zh-CN",
    "主机实例",
    "下载全部日志 (.tar.gz)",
    "重试失败主机",
    "执行失败",
    "1 个实例",
    "主导航",
    "任务历史",
)
EN_WORDS = (
    "Job {id}",
    "en",
    "Instances",
    "Download every log (.tar.gz)",
    "Retry the failed hosts",
    "Failed",
    "1 instance",
    "Main",
    "Jobs",
)


def expect_job_page(page: Page, job_id: int, words: tuple[str, ...]) -> None:
    title, lang, section, link, button, failed, caption, nav, jobs = words
    expect(page.get_by_role("heading", level=1)).to_contain_text(title.format(id=job_id), timeout=UI_TIMEOUT_MS)
    assert page.evaluate("document.documentElement.lang") == lang
    expect(page.get_by_role("heading", name=section)).to_be_visible()
    expect(page.get_by_role("link", name=link)).to_be_visible()
    expect(page.get_by_role("button", name=button)).to_be_visible()
    expect(page.locator(".stats .fact-FAILED dt")).to_have_text(failed)
    expect(page.locator("#instances caption")).to_have_text(caption)
    expect(page.get_by_role("navigation", name=nav).get_by_role("link", name=jobs, exact=True)).to_be_visible()


def set_language_cookie(page: Page, stack, value: str) -> None:
    page.context.add_cookies([{"name": "blueking_language", "value": value, "url": stack.url}])


def test_the_same_job_page_in_chinese_and_in_english(stack, browser):
    made = make_failed_job(stack)
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/api/" in request.url else None)
    set_language_cookie(page, stack, "zh-cn")
    sign_in_with_link(page, stack)
    page.goto(f"{stack.url}/#/task-list/{made.job_id}")
    expect_job_page(page, made.job_id, ZH_WORDS)
    page.screenshot(path=artifact("viewer-job-zh.png"), full_page=True)
    assert asked and all("bk_language=zh-cn" in url for url in asked), asked

    # the switch: the cookie changes, the page is drawn again in English, the calls follow
    asked.clear()
    page.get_by_label("语言").select_option("en")
    expect_job_page(page, made.job_id, EN_WORDS)
    (cookie,) = [c for c in context.cookies() if c["name"] == "blueking_language"]
    assert cookie["value"] == "en" and cookie["path"] == "/" and cookie["sameSite"] == "Lax", cookie
    assert not cookie["httpOnly"], cookie
    assert asked and all("bk_language=en" in url for url in asked), asked

    # kept across a reload: the cookie decides
    page.reload()
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Job {made.job_id}", timeout=UI_TIMEOUT_MS)
    assert page.locator("#language").input_value() == "en"
    context.close()


def test_without_the_cookie_the_browsers_language_decides(stack, browser):
    for locale, jobs in [("zh-CN", "任务历史"), ("en-GB", "Jobs"), ("fr-FR", "Jobs")]:
        context = browser.new_context(locale=locale)
        page = context.new_page()
        sign_in_with_link(page, stack)
        expect(page.get_by_role("heading", level=1)).to_have_text(jobs, timeout=UI_TIMEOUT_MS)
        assert not [c for c in context.cookies() if c["name"] == "blueking_language"]  # nothing set unasked
        context.close()


def test_every_word_of_every_page_has_its_chinese_form(stack, page):
    seed = make_seed_job(stack.services)
    made = make_failed_job(stack)
    errors: list[str] = []  # a script or style the page's policy refused, an exception of the viewer
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    set_language_cookie(page, stack, "zh-cn")
    sign_in_with_link(page, stack)
    for url, ready in [
        (f"{stack.url}/#/", "table.grid"),
        (f"{stack.url}/#/task-list/{made.job_id}", "#instances"),
        (instance_url(stack, made.job_id, made.instance_id), "details.step"),
        (instance_url(stack, seed.job_id, SEED_INSTANCE), "details.step"),
        (f"{stack.url}/#/hosts", "#hosts"),
        (f"{stack.url}/#/install", "#install-form"),
    ]:
        page.goto(url)
        expect(page.locator(ready).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.goto(f"{stack.url}/#/task-list/{made.job_id}")
    page.get_by_role("button", name="重试失败主机").click()
    expect(page.get_by_role("dialog")).to_contain_text("重试任务")
    page.keyboard.press("Escape")
    assert page.evaluate("window.NodeopsI18n.missing()") == []
    # the record works: an unknown key shows as itself and is kept
    assert page.evaluate("window.NodeopsI18n.t('no such {x}', { x: 1 })") == "no such 1"
    assert page.evaluate("window.NodeopsI18n.missing()") == ["no such {x}"]
    assert errors == [], errors

    # and every literal key of app.js is in the dictionary
    source = (STATIC / "app.js").read_text(encoding="utf-8")
    literal = set(re.findall(r'\bt\(\s*"((?:[^"\\]|\\.)*)"', source))
    literal |= {key for pair in re.findall(r'\bt\([^()]*?\?\s*"([^"]*)"\s*:\s*"([^"]*)"', source) for key in pair}
    known = set(page.evaluate("window.NodeopsI18n.keys()"))
    assert literal and not (literal - known), sorted(literal - known)
