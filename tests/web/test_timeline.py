"""The job page's timeline and chart in a real headless Chromium against a running service: a real job on several
local hosts, one of which fails, drawn one row per host and one bar per step in the API's statuses, followed live
(a running bar grows, then the job ends), the slowest steps outlined and listed, the same data in text tables,
the rows reached and walked with the keyboard, the labels in Chinese, and nothing polled once the view is left.
The screenshot is kept as test-artifacts/timeline.png.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Page, expect

from nodeops.domain.instance_id import HostKey, host_instance_id
from nodeops.domain.plans import JobType, PlannedStep, StepCode
from nodeops.domain.status import Status
from nodeops.service import admin
from nodeops.service.container import Services
from nodeops.store import jobs
from tests.support.jobs import local_host
from tests.support.live_jobs import Stack, artifact
from tests.web.test_viewer import UI_TIMEOUT_MS, sign_in

JOB_END_TIMEOUT_MS = 60_000
HOSTILE_STEP = "<img src=x onerror=window.pwned=1>"
WIDE_PLAN = (
    PlannedStep(index=0, code=StepCode.UPDATE_JOB_STATUS, name="准备 <b>bold</b>"),
    PlannedStep(index=1, code=StepCode.INSTALL, name=HOSTILE_STEP),
    PlannedStep(index=2, code=StepCode.UPDATE_JOB_STATUS, name="完成 ✓ 🚀"),
)


def make_wide_job(services: Services, hosts: int) -> int:
    """A finished job of ``hosts`` hosts (127.1.x.y) whose steps' names hold markup, CJK and emoji; host n's middle
    step takes n seconds, and the last host failed there."""
    begin = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    made = []
    for n in range(1, hosts + 1):
        ip = f"127.1.{n // 250}.{n % 250 + 1}"
        made.append(
            jobs.NewInstance(
                instance_id=str(host_instance_id(bk_host_id=1000 + n)),
                bk_host_id=1000 + n,
                host_key=str(HostKey.of(ip, 0)),
                instance_info={"host": {"bk_host_innerip": ip, "bk_cloud_id": 0, "bk_biz_id": 2}},
            )
        )
    with services.db.session() as session:
        created = jobs.create_job(
            session,
            job_type=JobType.INSTALL_AGENT,
            created_by="admin",
            from_system="esb_test",
            bk_biz_scope=[2],
            instances=made,
            steps=WIDE_PLAN,
        )
        steps, records = [], []
        for n, instance in enumerate(made, start=1):
            record_id = created.record_ids[instance.instance_id]
            failed = n == hosts
            middle = begin + timedelta(seconds=1)
            end = middle + timedelta(seconds=n)
            steps += [
                jobs.StepProgress(record_id, 0, Status.SUCCESS, begin, middle),
                jobs.StepProgress(record_id, 1, Status.FAILED if failed else Status.SUCCESS, middle, end),
            ]
            if not failed:
                steps.append(jobs.StepProgress(record_id, 2, Status.SUCCESS, end, end))
            status = Status.FAILED if failed else Status.SUCCESS
            records.append(jobs.RecordProgress(record_id, status, begin, end))
        jobs.write_progress(services.db, session, chunks=[], steps=steps, records=records)
    return created.job_id


def timeline_of(stack: Stack, job_id: int) -> dict:
    response = stack.api.client.get(f"/api/job/{job_id}/timeline/", params=stack.auth)
    answer = response.json()
    assert answer["result"] is True, answer
    data: dict = answer["data"]
    return data


def start_job(stack: Stack, *, broken: bool) -> int:
    """INSTALL_AGENT on local hosts 127.0.20.5 and .6 (whose agent start prints a line a second), and with
    ``broken`` 127.0.20.7, which fails at 安装 (nothing can be created under /proc)."""
    hosts = [local_host(stack.root, 5), local_host(stack.root, 6)]
    if broken:
        hosts.append(local_host(stack.root, 7, setup_path="/proc/nodeops-x/agent"))
    job_id: int = stack.api.ok("/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": hosts})["job_id"]
    return job_id


def running_bar_width(page: Page) -> float:
    widths = page.eval_on_selector_all(
        "#timeline .tl-bar-RUNNING:not(.tl-bar-unstarted)", "bars => bars.map(b => b.getBoundingClientRect().width)"
    )
    return max(widths, default=0.0)


def test_timeline_draws_every_hosts_steps_follows_the_job_and_is_usable_by_keyboard(stack, page):
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    sign_in(page, stack)
    job_id = start_job(stack, broken=True)
    page.goto(f"{stack.url}/#/task-list/{job_id}")
    timeline = page.locator("#timeline")
    expect(timeline.get_by_role("heading", name="Timeline")).to_be_visible(timeout=UI_TIMEOUT_MS)

    # live: a step runs, its bar grows from one poll to the next
    expect(timeline).to_have_attribute("data-live", "1", timeout=UI_TIMEOUT_MS)
    expect(timeline.locator(".tl-bar-RUNNING").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(timeline.locator(".tl-live")).to_contain_text("Live")
    first = running_bar_width(page)
    deadline = time.monotonic() + 10
    while running_bar_width(page) <= first and time.monotonic() < deadline:
        time.sleep(0.25)
    assert running_bar_width(page) > first, "a running step's bar never grew"
    page.screenshot(path=artifact("timeline-running.png"), full_page=True)

    # the job ends: the view says so and stops following
    expect(timeline).to_have_attribute("data-live", "0", timeout=JOB_END_TIMEOUT_MS)
    data = timeline_of(stack, job_id)
    assert data["status"] == "PART_FAILED", data
    expect(timeline.locator(".tl-live")).to_have_text(f"Job {data['status']}.", timeout=UI_TIMEOUT_MS)

    # one row per host, one bar per step, each in the API's status
    rows = timeline.locator(".tl-row")
    expect(rows).to_have_count(3)
    expect(timeline.locator(".tl-pager")).to_be_hidden()  # one page holds them all
    hosts = data["list"]
    steps_total = sum(len(host["steps"]) for host in hosts)
    assert steps_total == 21
    expect(timeline.locator(".tl-bar")).to_have_count(steps_total)
    for index, host in enumerate(hosts):
        row = rows.nth(index)
        expect(row.locator(".tl-host")).to_have_text(host["ip"])
        statuses = row.locator(".tl-bar").evaluate_all("bars => bars.map(b => b.dataset.status)")
        assert statuses == [step["status"] for step in host["steps"]], (host, statuses)
        names = row.locator(".tl-bar").evaluate_all("bars => bars.map(b => b.dataset.step)")
        assert names == [step["step"] for step in host["steps"]]
        expect(row).to_have_attribute("aria-label", re.compile(re.escape(host["ip"]) + " " + host["status"]))
    expect(rows.nth(2).locator(".tl-bar-FAILED")).to_have_count(1)
    expect(rows.nth(2).locator(".tl-bar-unstarted")).to_have_count(2)  # the steps after the failure never ran

    # the slowest steps: outlined on the bars and listed, longest first; the agent's slowed start leads
    slow = timeline.locator(".tl-bar.tl-slow")
    assert 1 <= slow.count() <= 5
    listed = timeline.locator(".tl-slowest li")
    expect(listed).to_have_count(slow.count())
    expect(listed.first).to_contain_text("安装")
    expect(timeline.locator('.tl-bar[data-rank="1"]')).to_have_attribute("data-step", "安装")

    timeline.screenshot(path=artifact("timeline.png"))  # the drawing, as a test artifact

    # the text alternatives hold the same data: every step, and every point of the chart
    timeline.locator(".tl-text summary").click()
    text_rows = timeline.locator(".tl-table tbody tr")
    expect(text_rows).to_have_count(steps_total)
    expect(text_rows.nth(14 + 4)).to_contain_text("安装")
    expect(text_rows.nth(14 + 4)).to_contain_text("FAILED")
    assert text_rows.nth(0).locator("td").nth(3).inner_text() == hosts[0]["steps"][0]["start_time"]
    timeline.locator(".tl-chart-text summary").click()
    points = timeline.locator(".tl-chart-table tbody tr")
    expect(points).to_have_count(len(data["series"]["points"]))
    expect(points.last.locator("td")).to_have_text([data["series"]["points"][-1]["time"], "2", "1", "0"])
    chart = timeline.get_by_role("img")
    expect(chart).to_have_attribute("aria-label", re.compile("2 done, 1 failed, 0 running"))
    assert timeline.locator("polyline.tl-line-done").get_attribute("points").count(",") == 60
    page.screenshot(path=artifact("timeline-page.png"), full_page=True)

    # keyboard: the rows are one tab stop, arrows walk them, Enter opens the host's log
    timeline.locator(".tl-chart-text summary").focus()
    page.keyboard.press("Tab")
    expect(rows.nth(0)).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(rows.nth(1)).to_be_focused()
    page.keyboard.press("End")
    expect(rows.nth(2)).to_be_focused()
    page.keyboard.press("Home")
    expect(rows.nth(0)).to_be_focused()
    page.keyboard.press("End")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Log of 127.0.20.7", timeout=UI_TIMEOUT_MS)
    assert errors == [], errors  # nothing refused by the page's policy, no script error


def test_timeline_speaks_chinese_and_stops_polling_once_the_view_is_left(stack, page):
    sign_in(page, stack)
    job_id = start_job(stack, broken=False)
    polls: list[float] = []
    page.on("request", lambda request: polls.append(time.monotonic()) if "/timeline/" in request.url else None)
    page.evaluate("document.documentElement.lang = 'zh-CN'")
    page.goto(f"{stack.url}/#/task-list/{job_id}")
    timeline = page.locator("#timeline")
    expect(timeline.get_by_role("heading", name="时间线")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(timeline).to_have_attribute("data-live", "1", timeout=UI_TIMEOUT_MS)
    expect(timeline.locator(".tl-live")).to_contain_text("实时")
    expect(timeline.locator(".tl-text summary")).to_have_text("时间线（表格）")
    deadline = time.monotonic() + 10
    while len(polls) < 3 and time.monotonic() < deadline:  # following: about one a second
        page.wait_for_timeout(200)
    assert len(polls) >= 3, polls

    page.get_by_role("link", name="Jobs").first.click()
    expect(page.get_by_role("heading", level=1)).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.wait_for_timeout(300)  # a poll already sent may still land
    left_at = len(polls)
    page.wait_for_timeout(2500)
    assert len(polls) == left_at, "the timeline kept polling after its view was left"
    stack.api.wait(job_id, timeout_s=60)


def test_timeline_of_many_hosts_draws_a_page_at_a_time_and_shows_hostile_names_as_text(stack, page):
    job_id = make_wide_job(stack.services, 250)
    sign_in(page, stack)
    page.goto(f"{stack.url}/#/task-list/{job_id}")
    timeline = page.locator("#timeline")
    rows = timeline.locator(".tl-row")
    expect(rows).to_have_count(100, timeout=UI_TIMEOUT_MS)  # at most a page of rows is drawn
    expect(timeline.locator(".tl-bar")).to_have_count(300)
    pager = timeline.locator(".tl-pager")
    expect(pager).to_contain_text("Hosts 1\u2013100 of 250")
    expect(pager.get_by_role("button", name="Previous hosts")).to_be_disabled()
    expect(timeline).to_have_attribute("data-live", "0")

    # names are text: the markup shows as written and runs nothing
    expect(rows.first.locator(".tl-bar").nth(1)).to_have_attribute("data-step", HOSTILE_STEP)
    expect(rows.first).to_have_attribute("aria-label", re.compile(re.escape(HOSTILE_STEP)))
    timeline.locator(".tl-text summary").click()
    expect(timeline.locator(".tl-table tbody tr").nth(1)).to_contain_text(HOSTILE_STEP)
    expect(timeline.locator(".tl-table tbody tr").nth(2)).to_contain_text("完成 ✓ 🚀")
    assert timeline.locator(".tl-table img, .tl-table b, .tl-slowest img").count() == 0
    assert page.evaluate("window.pwned") is None

    # the longest steps of the page are the last hosts' middle steps, longest first
    expect(timeline.locator(".tl-slowest li").first).to_contain_text("127.1.0.101")
    expect(timeline.locator(".tl-slowest li").first).to_contain_text("1 min 40 s")

    pager.get_by_role("button", name="Next hosts").click()
    expect(pager).to_contain_text("Hosts 101\u2013200 of 250", timeout=UI_TIMEOUT_MS)
    expect(rows).to_have_count(100)
    expect(rows.first.locator(".tl-host")).to_have_text("127.1.0.102")
    pager.get_by_role("button", name="Next hosts").click()
    expect(pager).to_contain_text("Hosts 201\u2013250 of 250", timeout=UI_TIMEOUT_MS)
    expect(rows).to_have_count(50)
    expect(pager.get_by_role("button", name="Next hosts")).to_be_disabled()
    expect(rows.last.locator(".tl-bar-FAILED")).to_have_count(1)
    # the chart counts every host, whatever the page
    expect(timeline.get_by_role("img")).to_have_attribute("aria-label", re.compile("249 done, 1 failed, 0 running"))


def test_a_stranger_gets_no_timeline_and_no_polling(stack, page):
    job_id = make_wide_job(stack.services, 3)  # business 2's
    key = stack.services.settings.resolved_secret_key()
    token = admin.token(stack.services.db, key, username="outsider", ttl_s=3600)  # business 3 only
    polls: list[str] = []
    page.on("response", lambda response: polls.append(response.url) if "/timeline/" in response.url else None)
    page.goto(f"{stack.url}/#/signin?bk_token={token}")
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.goto(f"{stack.url}/#/task-list/{job_id}")
    expect(page.get_by_role("alert")).to_contain_text("9900403", timeout=UI_TIMEOUT_MS)
    page.wait_for_timeout(3000)  # its one retry finds the view gone, and stops
    assert page.locator(".tl-row, .tl-bar").count() == 0
    assert 1 <= len(polls) <= 2, polls
    answer = page.evaluate(f"fetch('/api/job/{job_id}/timeline/').then(r => r.json())")
    assert answer["code"] == 9900403 and answer["data"]["permission"]["bk_biz_ids"] == [2], answer
