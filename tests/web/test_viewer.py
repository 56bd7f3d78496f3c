"""The log viewer in a real headless Chromium against a running service: sign in with a bk_token, the job list,
a job, an instance's steps and log (the seed's example), search highlights, the download, keyboard use, and a
real job's lines appearing while it runs. Screenshots go to test-artifacts/."""

from __future__ import annotations

import io
import re
import tarfile
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect

from nodeops.domain.status import Status
from nodeops.service import admin
from tests.support.factories import SEED_STEPS, SEED_STEPS_EN, StepRun, make_job, make_seed_job, make_user
from tests.support.jobs import local_host
from tests.support.live_jobs import SLOW_LINE, SLOW_LINES, Stack, artifact, publish_doc_image

SEED_INSTANCE = "host|instance|host|1"
FAILED_LOG = "\n".join(
    [
        "[2021-09-16 15:06:39 INFO] 开始 执行升级脚本.",
        "[2021-09-16 15:06:39 INFO] stopping the agent (pid 4242)",
        "[2021-09-16 15:06:40 WARNING] the agent took 1 s to stop",
        "[2021-09-16 15:06:41 ERROR] 执行升级脚本 失败，请先尝试查看日志并处理，若无法解决，请联系管理员处理。",
    ]
)
UI_TIMEOUT_MS = 15_000


def instance_url(stack: Stack, job_id: int, instance_id: str) -> str:
    return f"{stack.url}/#/task-list/{job_id}/log/{quote(instance_id, safe='')}"


def sign_in(page: Page, stack: Stack) -> None:
    page.goto(stack.url + "/")
    expect(page.get_by_role("heading", name="Sign in to nodeops")).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.get_by_label("bk_token").fill(stack.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)


def sign_in_with_link(page: Page, stack: Stack) -> None:
    """The sign-in link (no session yet: it signs in at once), whatever the page's language."""
    page.goto(f"{stack.url}/#/signin?bk_token={stack.token}")
    expect(page).to_have_url(re.compile(r"/#/$"), timeout=UI_TIMEOUT_MS)
    expect(page.locator("#who")).to_be_visible(timeout=UI_TIMEOUT_MS)


def make_failed_job(stack: Stack):
    """Job with host 2 whose 执行升级脚本 failed with an ERROR line; its later steps never ran."""
    runs = [
        StepRun(Status.SUCCESS, "2021-09-16 15:06:04", "2021-09-16 15:06:04", "[2021-09-16 15:06:04 INFO] 开始更新"),
        StepRun(Status.SUCCESS, "2021-09-16 15:06:04", "2021-09-16 15:06:39", "[2021-09-16 15:06:04 INFO] 开始下发"),
        StepRun(Status.FAILED, "2021-09-16 15:06:39", "2021-09-16 15:06:41", FAILED_LOG),
    ]
    return make_job(stack.services, runs=runs, bk_host_id=2, ip="127.0.0.2", record_status=Status.FAILED, sealed=True)


def test_sign_in_refuses_a_bad_token_then_lists_jobs_with_a_status_filter(stack, page):
    seed = make_seed_job(stack.services)
    failed = make_failed_job(stack)
    page.goto(stack.url + "/")
    expect(page.get_by_role("heading", name="Sign in to nodeops")).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.get_by_label("bk_token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Sign-in failed", timeout=UI_TIMEOUT_MS)

    page.get_by_label("bk_token").fill(stack.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_role("link", name=f"Job {seed.job_id}", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name=f"Job {failed.job_id}", exact=True)).to_be_visible()
    assert stack.token not in page.content()
    page.screenshot(path=artifact("viewer-jobs.png"), full_page=True)

    failed_status = stack.api.ok("/api/job/job_list/", {"job_id": [failed.job_id]})["list"][0]["status"]
    page.get_by_label("Status", exact=True).select_option(failed_status)
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(f"status={failed_status}"))
    rows = page.locator("table.grid tbody tr")
    expect(rows.first).to_contain_text(failed_status)
    for text in rows.all_inner_texts():
        assert failed_status in text, text

    # the session outlives a reload; signing out ends it
    page.reload()
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to nodeops")).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.goto(stack.url + "/#/")
    expect(page.get_by_role("heading", name="Sign in to nodeops")).to_be_visible(timeout=UI_TIMEOUT_MS)

    # the sign-in link `make run` prints: the token leaves the address bar at once
    page.goto(f"{stack.url}/#/signin?bk_token={stack.token}")
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    assert stack.token not in page.url


def test_a_sign_in_link_asks_before_replacing_an_open_session(stack, page):
    make_user(stack.services, "mallory", superuser=True)
    key = stack.services.settings.resolved_secret_key()
    other = admin.token(stack.services.db, key, username="mallory", ttl_s=3600)
    sign_in(page, stack)
    expect(page.locator("#who-name")).to_have_text("Signed in as admin")

    # someone else's link: nothing is sent until the operator chooses, and keeping the session keeps it
    page.goto(f"{stack.url}/#/signin?bk_token={other}")
    expect(page.get_by_role("heading", name="Switch user?")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.locator("#signin-switch")).to_contain_text("You are already signed in as admin")
    assert other not in page.url
    page.screenshot(path=artifact("viewer-signin-switch.png"), full_page=True)
    page.get_by_role("button", name="Stay signed in as admin").click()
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.reload()
    expect(page.locator("#who-name")).to_have_text("Signed in as admin", timeout=UI_TIMEOUT_MS)
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)

    # the operator asked for it: the link's token signs in
    page.goto(f"{stack.url}/#/signin?bk_token={other}")
    page.get_by_role("button", name="Sign in with the link's token").click()
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.locator("#who-name")).to_have_text("Signed in as mallory")

    # no session (signed out): the link signs in at once, as `make run` prints it
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to nodeops")).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.goto(f"{stack.url}/#/signin?bk_token={stack.token}")
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.locator("#who-name")).to_have_text("Signed in as admin")


def test_api_docs_render_from_the_package_under_the_pages_policy(stack, page):
    refused: list[str] = []
    elsewhere: list[str] = []
    page.on("console", lambda message: refused.append(message.text) if message.type == "error" else None)
    page.on("request", lambda request: None if request.url.startswith(stack.url) else elsewhere.append(request.url))
    page.goto(stack.url + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("nodeops", timeout=UI_TIMEOUT_MS)
    expect(page.locator(".opblock-summary-path", has_text="/api/job/{job_id}/log/download/").first).to_be_visible()
    page.screenshot(path=artifact("docs.png"))
    assert elsewhere == [] and refused == [], (elsewhere, refused)


def test_job_page_follows_a_running_job_then_filters_its_instances(stack, page):
    sign_in(page, stack)
    hosts = [local_host(stack.root, 3), local_host(stack.root, 4)]
    job_id = stack.api.ok("/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": hosts})["job_id"]
    page.goto(f"{stack.url}/#/task-list/{job_id}")
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_contain_text(f"Job {job_id}", timeout=UI_TIMEOUT_MS)
    expect(heading).to_contain_text(re.compile("PENDING|RUNNING"))
    expect(page.locator(".live")).to_contain_text("Live")
    page.screenshot(path=artifact("viewer-job-running.png"), full_page=True)
    expect(heading).to_contain_text("SUCCESS", timeout=60_000)  # the status as text, not only a colour
    expect(page.locator(".stats .fact-SUCCESS dd")).to_have_text("2")
    table = page.locator("#instances")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table).to_contain_text("127.0.20.3")
    expect(table).to_contain_text("127.0.20.4")
    page.screenshot(path=artifact("viewer-job.png"), full_page=True)

    page.get_by_label("IP", exact=True).fill("20.4")
    page.get_by_role("button", name="Filter").click()
    expect(table.locator("tbody tr")).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(table).to_contain_text("127.0.20.4")
    page.get_by_label("IP", exact=True).fill("")
    page.get_by_label("Status", exact=True).select_option("FAILED")
    page.get_by_role("button", name="Filter").click()
    expect(table).to_contain_text("No instance matches", timeout=UI_TIMEOUT_MS)
    page.get_by_label("Status", exact=True).select_option("")
    page.get_by_label("instance_id", exact=True).fill("host|instance|host|127.0.20.3-0-0")
    page.get_by_role("button", name="Filter").click()
    expect(table.locator("tbody tr")).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(table).to_contain_text("127.0.20.3")

    page.get_by_role("button", name="Clear").click()
    expect(table.locator("tbody tr")).to_have_count(2, timeout=UI_TIMEOUT_MS)
    page.get_by_role("link", name="Log of 127.0.20.3").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Log of 127.0.20.3", timeout=UI_TIMEOUT_MS)
    expect(page.locator("details.step")).to_have_count(7)


def test_instance_page_shows_each_step_of_the_seed_example_with_status_times_and_log(stack, page):
    seed = make_seed_job(stack.services)
    sign_in(page, stack)
    page.goto(instance_url(stack, seed.job_id, SEED_INSTANCE))
    steps = page.locator("details.step")
    expect(steps).to_have_count(len(SEED_STEPS), timeout=UI_TIMEOUT_MS)
    # the viewer speaks the browser's English, and asks the API for English step names (bk_language=en)
    for index, ((_, status, log, start, finish), name) in enumerate(zip(SEED_STEPS, SEED_STEPS_EN, strict=True)):
        step = steps.nth(index)
        summary = step.locator("summary")
        expect(summary).to_contain_text(f"{index + 1}. {name}")
        expect(summary).to_contain_text(status)
        expect(summary).to_contain_text(f"{start} → {finish}")
        for line in log.split("\n"):
            expect(step.locator(".log")).to_contain_text(line)
    expect(page.locator("#live-status")).to_contain_text("finished")
    expect(page.locator(".log").first).to_have_attribute("aria-live", "polite")

    # wrapping is a toggle, kept across pages
    expect(page.locator("#steps")).to_have_class(re.compile(r"\bwrap\b"))
    page.get_by_label("Wrap lines").uncheck()
    expect(page.locator("#steps")).not_to_have_class(re.compile(r"\bwrap\b"))
    page.reload()
    expect(page.get_by_label("Wrap lines")).not_to_be_checked(timeout=UI_TIMEOUT_MS)
    page.get_by_label("Wrap lines").check()

    # a step collapses and opens again
    first = steps.nth(0)
    first.locator("summary").click()
    expect(first.locator(".log")).to_be_hidden()
    page.get_by_role("button", name="Expand all").click()
    expect(first.locator(".log")).to_be_visible()


def test_error_lines_are_marked_and_search_highlights_matches(stack, page):
    made = make_failed_job(stack)
    sign_in(page, stack)
    page.goto(instance_url(stack, made.job_id, made.instance_id))
    steps = page.locator("details.step")
    expect(steps).to_have_count(5, timeout=UI_TIMEOUT_MS)
    failed = steps.nth(2)
    expect(failed.locator("summary")).to_contain_text("FAILED")
    expect(steps.nth(3).locator("summary")).to_contain_text("PENDING")
    expect(steps.nth(3).locator("summary")).to_contain_text("not started")
    error_line = failed.locator(".line.lvl-ERROR")
    expect(error_line).to_have_count(1)
    expect(error_line).to_contain_text("执行升级脚本 失败")
    expect(failed.locator(".line.lvl-WARNING")).to_have_count(1)

    page.get_by_label("Search", exact=True).fill("agent")
    page.get_by_label("Search", exact=True).press("Enter")
    marks = page.locator("#steps mark")
    expect(marks).to_have_count(2, timeout=UI_TIMEOUT_MS)  # "stopping the agent", "the agent took"
    expect(marks.first).to_have_text("agent")
    expect(page.locator("#search-summary")).to_contain_text("2 matches")
    path = artifact("viewer-instance.png")
    page.screenshot(path=path, full_page=True)
    publish_doc_image(path)

    page.get_by_label("Match case").check()
    page.get_by_label("Search", exact=True).fill("AGENT")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(marks).to_have_count(0, timeout=UI_TIMEOUT_MS)
    page.get_by_label("Match case").uncheck()
    page.get_by_label("Regular expression").check()
    page.get_by_label("Search", exact=True).fill(r"pid \d+")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(marks).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(marks.first).to_have_text("pid 4242")
    # the service's dialect (RE2), highlighted with its spans: an inline flag the browser's engine refuses works,
    # and lookaround, which RE2 has not, is refused with the service's reason
    page.get_by_label("Match case").check()
    page.get_by_label("Search", exact=True).fill(r"(?i)PID \d+")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(marks).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(marks.first).to_have_text("pid 4242")
    page.get_by_label("Search", exact=True).fill(r"pid(?= \d)")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("lookahead", timeout=UI_TIMEOUT_MS)
    expect(marks).to_have_count(0)
    page.get_by_label("Match case").uncheck()
    page.get_by_role("button", name="Clear", exact=True).click()
    expect(marks).to_have_count(0)


def test_search_lists_the_services_matches_and_jumps_to_a_line(stack, page):
    made = make_failed_job(stack)
    sign_in(page, stack)
    page.goto(instance_url(stack, made.job_id, made.instance_id))
    expect(page.locator("details.step")).to_have_count(5, timeout=UI_TIMEOUT_MS)
    page.get_by_label("Search", exact=True).fill("agent")
    page.get_by_role("button", name="Search", exact=True).click()
    hits = page.get_by_role("list", name="Matching lines").locator("li")
    expect(hits).to_have_count(2, timeout=UI_TIMEOUT_MS)
    expect(hits.first.locator("mark")).to_have_text("agent")
    hits.nth(1).get_by_role("button").click()
    target = page.locator(".line.target")
    expect(target).to_contain_text("the agent took 1 s to stop")
    expect(target).to_be_focused()


def test_download_link_serves_the_whole_log_as_a_file(stack, page):
    seed = make_seed_job(stack.services)
    sign_in(page, stack)
    page.goto(instance_url(stack, seed.job_id, SEED_INSTANCE))
    link = page.get_by_role("link", name="Download log")
    expect(link).to_be_visible(timeout=UI_TIMEOUT_MS)
    with page.expect_download() as info:
        link.click()
    download = info.value
    saved = artifact("viewer-download.log")
    download.save_as(saved)
    text = saved.read_text(encoding="utf-8")
    for name, status, log, start, finish in SEED_STEPS:
        assert f"==> {name} [{status}] {start} - {finish}" in text, text
        assert log in text

    # the job page's archive link, with the page's own session
    page.goto(f"{stack.url}/#/task-list/{seed.job_id}")
    archive = page.get_by_role("link", name="Download every log (.tar.gz)")
    expect(archive).to_be_visible(timeout=UI_TIMEOUT_MS)
    answer = page.request.get(stack.url + archive.get_attribute("href"))
    assert answer.ok and answer.body()[:2] == b"\x1f\x8b", answer.headers  # gzip
    with tarfile.open(fileobj=io.BytesIO(answer.body()), mode="r:gz") as archived:
        names = archived.getnames()
        assert len(names) == 1 and names[0].startswith(f"job-{seed.job_id}/"), names
        member = archived.extractfile(names[0])
        assert member is not None and member.read().decode() == text


def test_keyboard_alone_reaches_and_opens_a_job_then_an_instance(stack, page):
    made = make_failed_job(stack)
    sign_in(page, stack)

    def tab_to(name: str, limit: int = 40) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            focused = page.evaluate("document.activeElement && document.activeElement.textContent.trim()")
            if focused == name:
                outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
                assert outline not in ("", "none"), f"{name} has no visible focus ({outline})"
                return
        pytest.fail(f"Tab never reached {name!r}")

    tab_to(f"Job {made.job_id}")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Job {made.job_id}", timeout=UI_TIMEOUT_MS)
    tab_to(made.instance_id)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Log of", timeout=UI_TIMEOUT_MS)
    expect(page.locator("details.step")).to_have_count(5, timeout=UI_TIMEOUT_MS)
    tab_to("Download log")

    # a step's header is a control: Enter folds it
    summary = page.locator("details.step").nth(0).locator("summary")
    summary.focus()
    page.keyboard.press("Enter")
    expect(page.locator("details.step").nth(0).locator(".log")).to_be_hidden()
    page.keyboard.press("Enter")
    expect(page.locator("details.step").nth(0).locator(".log")).to_be_visible()


def test_a_running_jobs_lines_appear_while_it_runs(stack, page):
    sign_in(page, stack)
    started = stack.install_slow(1)
    job_id = started["job_id"]
    instance_id = "host|instance|host|127.0.20.1-0-0"
    page.goto(instance_url(stack, job_id, instance_id))
    expect(page.locator("details.step")).to_have_count(7, timeout=UI_TIMEOUT_MS)
    last = SLOW_LINE.format(n=SLOW_LINES, total=SLOW_LINES)
    # the page was drawn before the lines were written: they arrive while it is open
    assert page.locator(".line", has_text=last).count() == 0
    expect(page.locator("#live-status")).to_contain_text("Following live")

    third = SLOW_LINE.format(n=3, total=SLOW_LINES)
    expect(page.locator(".line", has_text=third)).to_have_count(1, timeout=30_000)
    expect(page.locator("#live-status")).not_to_contain_text("polling")  # pushed by the stream
    steps = stack.api.log(job_id, instance_id)
    assert steps[4]["step"] == "安装" and steps[4]["status"] == "RUNNING", steps
    expect(page.locator("details.step").nth(4).locator("summary")).to_contain_text("RUNNING")
    page.screenshot(path=artifact("viewer-live.png"), full_page=True)

    expect(page.locator("#live-status")).to_contain_text("Finished: SUCCESS", timeout=60_000)
    for n in range(1, SLOW_LINES + 1):  # each line once: no gap, no duplicate
        expect(page.locator(".line", has_text=SLOW_LINE.format(n=n, total=SLOW_LINES))).to_have_count(1)
    for index in range(7):
        expect(page.locator("details.step").nth(index).locator("summary")).to_contain_text("SUCCESS")
