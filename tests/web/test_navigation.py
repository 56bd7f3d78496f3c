"""Quick navigation in the viewer: a page load that finishes after its route was left is dropped, whatever order
the service answers in. The service's answers are held back with Playwright's routing (the real server answers
them once released), so the late one is always the left route's."""

from __future__ import annotations

import re

from playwright.sync_api import Page, Route, expect

from tests.support.factories import make_seed_job
from tests.support.jobs import local_host
from tests.web.test_viewer import SEED_INSTANCE, UI_TIMEOUT_MS, instance_url, make_failed_job, sign_in

SETTLE_MS = 500  # after a released answer arrived: time for the page's code to (wrongly) draw it


class Held:
    """Every request matching ``pattern`` held until ``release`` (then the real server answers it); later ones
    go through at once."""

    def __init__(self, page: Page, pattern: str) -> None:
        self.page = page
        self.routes: list[Route] = []
        self.holding = True
        page.route(pattern, self._on_route)

    def _on_route(self, route: Route) -> None:
        if self.holding:
            self.routes.append(route)
        else:
            route.continue_()

    def release(self) -> None:
        """Let the held requests go on, newest first, and wait until their answers reached the page."""
        self.holding = False
        for route in reversed(self.routes):
            with self.page.expect_response(lambda response, url=route.request.url: response.url == url):
                route.continue_()
        self.page.wait_for_timeout(SETTLE_MS)


def test_signing_in_then_opening_a_deep_link_at_once_shows_the_instance(stack, page):
    seed = make_seed_job(stack.services)
    page.goto(stack.url + "/")
    expect(page.get_by_role("heading", name="Sign in to nodeops")).to_be_visible(timeout=UI_TIMEOUT_MS)
    held = Held(page, "**/api/job/job_list/**")
    page.get_by_label("bk_token").fill(stack.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/#/$"), timeout=UI_TIMEOUT_MS)
    page.wait_for_timeout(200)
    assert held.routes, "the job list was not asked for"
    page.goto(instance_url(stack, seed.job_id, SEED_INSTANCE))  # the deep link, while the list still loads
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_contain_text("Log of", timeout=UI_TIMEOUT_MS)
    expect(page.locator("details.step")).to_have_count(5, timeout=UI_TIMEOUT_MS)

    held.release()  # the job list answers last
    expect(page.get_by_role("heading", level=1)).to_have_count(1)
    expect(heading).to_contain_text("Log of")
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_have_count(0)
    expect(page.locator("details.step")).to_have_count(5)


def test_back_and_forward_while_a_job_loads_show_the_current_route_and_stop_the_left_ones_stream(stack, page):
    sign_in(page, stack)
    running = stack.install_slow(1)["job_id"]  # a running job: its page would follow it with a stream
    done = make_failed_job(stack)
    page.goto(f"{stack.url}/#/task-list/{running}")
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Job {running}", timeout=UI_TIMEOUT_MS)
    page.goto(instance_url(stack, done.job_id, done.instance_id))
    expect(page.locator("details.step")).to_have_count(5, timeout=UI_TIMEOUT_MS)

    streams: list[str] = []
    stream = f"/api/job/{running}/events/"
    page.on("request", lambda request: streams.append(request.url) if stream in request.url else None)
    held = Held(page, f"**/api/job/{running}/details/**")
    page.go_back()  # the running job's page starts loading ...
    expect(page).to_have_url(re.compile(f"#/task-list/{running}$"), timeout=UI_TIMEOUT_MS)
    page.wait_for_timeout(200)
    assert held.routes, "the job's details were not asked for"
    page.go_forward()  # ... and is left before its answer came
    expect(page.locator("details.step")).to_have_count(5, timeout=UI_TIMEOUT_MS)
    held.release()

    heading = page.get_by_role("heading", level=1)
    expect(heading).to_contain_text("Log of")
    expect(page.locator("#instances")).to_have_count(0)
    assert streams == [], streams  # the left page started nothing that would outlive it

    # back to the running job for real: it is drawn and followed
    page.go_back()
    expect(heading).to_contain_text(f"Job {running}", timeout=UI_TIMEOUT_MS)
    expect(page.locator(".live")).to_contain_text(re.compile("Live|SUCCESS"))


def test_many_fast_route_changes_end_on_the_last_one(stack, page):
    sign_in(page, stack)
    jobs = [make_failed_job(stack).job_id for _ in range(4)]
    held = Held(page, "**/api/job/*/details/**")
    hashes = [f"#/task-list/{job_id}" for job_id in jobs] * 3 + ["#/", f"#/task-list/{jobs[1]}"]
    page.evaluate(
        """async (hashes) => {
            for (const hash of hashes) {
                location.hash = hash;
                await new Promise((resolve) => setTimeout(resolve, 5));
            }
        }""",
        hashes,
    )
    page.wait_for_timeout(300)
    assert len(held.routes) >= 2, [route.request.url for route in held.routes]
    held.release()  # answers in the reverse order of the asks: the last route's comes first
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_have_count(1)
    expect(heading).to_contain_text(f"Job {jobs[1]}", timeout=UI_TIMEOUT_MS)
    expect(page.locator("#instances tbody tr")).to_have_count(1)
    assert page.evaluate("location.hash") == f"#/task-list/{jobs[1]}"


def test_an_action_answered_after_its_page_was_left_does_not_take_the_reader_away(stack, page):
    installed = stack.api.ok("/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": [local_host(stack.root, 2)]})
    stack.api.wait(installed["job_id"], timeout_s=90)
    sign_in(page, stack)
    page.goto(f"{stack.url}/#/task-list/{installed['job_id']}")
    page.get_by_role("checkbox", name="Choose 127.0.20.2").check()
    held = Held(page, "**/api/job/operate/**")
    page.get_by_role("button", name="Start on the chosen hosts").click()
    page.get_by_role("dialog").get_by_role("button", name="Start Restart").click()
    expect(page.get_by_role("button", name="Start on the chosen hosts")).to_be_disabled()  # while it is asked
    assert held.routes
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    held.release()  # the service answers: the job started, the reader stays where they went
    started = stack.api.ok("/api/job/job_list/", {"job_type": ["RESTART_AGENT"]})
    assert started["total"] == 1, started
    expect(page).to_have_url(re.compile(r"/#/$"))
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    expect(page.locator("#announcer")).to_contain_text("Done", timeout=UI_TIMEOUT_MS)
