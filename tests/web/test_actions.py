"""The viewer's actions in a real headless Chromium against the running service, on real jobs (local transport):
retry the failed hosts, retry one host from its failed step, revoke a job or one host, an operate job on hosts
chosen in the job's list and on #/hosts, and the install form. Each asks first in a dialog (Esc says no); the API
decides who may: a granted user's actions change the jobs, a stranger's are refused with the API's message and
change nothing. Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from playwright.sync_api import Page, Response, expect

from nodeops.service import admin
from tests.support.jobs import local_host
from tests.support.live_jobs import Stack, artifact
from tests.web.test_viewer import UI_TIMEOUT_MS, instance_url

PERMISSION_DENIED = 9900403
BROKEN_SETUP_PATH = "/proc/nodeops-agent"  # no account can write there: the install fails at a step


def token_of(stack: Stack, username: str) -> str:
    return admin.token(stack.services.db, stack.services.settings.resolved_secret_key(), username=username, ttl_s=3600)


def sign_in_as(page: Page, stack: Stack, username: str) -> None:
    page.goto(stack.url + "/#/signin")
    expect(page.get_by_role("heading", name="Sign in to nodeops")).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.get_by_label("bk_token").fill(token_of(stack, username))
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who-name")).to_have_text(f"Signed in as {username}", timeout=UI_TIMEOUT_MS)


def switch_session(page: Page, stack: Stack, username: str) -> None:
    """Another tab signs the browser in as ``username``: the open page's next call is that user's."""
    answer = page.request.post(stack.url + "/web/session/", data={"bk_token": token_of(stack, username)})
    assert answer.ok and answer.json()["result"], answer.text()


def confirm(page: Page, title: str | re.Pattern[str], button: str) -> None:
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(dialog.get_by_role("heading")).to_have_text(title)
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    dialog.get_by_role("button", name=button, exact=True).click()
    expect(dialog).to_have_count(0)


def failed_job(stack: Stack, ok: int, broken: int) -> int:
    """A finished job on local hosts 127.0.20.{ok} (installed) and 127.0.20.{broken} (its install failed)."""
    hosts = [local_host(stack.root, ok), local_host(stack.root, broken, setup_path=BROKEN_SETUP_PATH)]
    job_id: int = stack.api.ok("/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": hosts})["job_id"]
    data = stack.api.wait(job_id, timeout_s=90)
    assert data["status"] == "PART_FAILED", data
    return job_id


def rows_by_ip(stack: Stack, job_id: int) -> dict[str, dict[str, Any]]:
    return {row["ip"]: row for row in stack.api.details(job_id, pagesize=-1)["list"]}


def job_count(stack: Stack) -> int:
    total: int = stack.api.ok("/api/job/job_list/", {"page": 1, "pagesize": 1})["total"]
    return total


def test_a_granted_user_retries_failed_hosts_then_one_host_from_its_step(stack, page):
    job_id = failed_job(stack, 1, 2)
    sign_in_as(page, stack, "viewer")  # granted on business 2, where the hosts are
    page.goto(f"{stack.url}/#/task-list/{job_id}")
    retry = page.get_by_role("button", name="Retry the failed hosts")
    expect(retry).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_role("button", name="Revoke the job")).to_be_hidden()  # nothing runs

    # Esc says no: nothing is asked of the service, and focus is back on the button
    retry.click()
    expect(page.get_by_role("dialog")).to_be_visible()
    page.screenshot(path=artifact("viewer-confirm-retry.png"), full_page=True)
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(retry).to_be_focused()
    assert rows_by_ip(stack, job_id)["127.0.20.2"]["attempt"] == 1

    retry.click()
    confirm(page, f"Retry the failed hosts of job {job_id}?", "Retry")
    expect(page.locator("#flash")).to_contain_text("Retry started", timeout=UI_TIMEOUT_MS)
    data = stack.api.wait(job_id, timeout_s=90)
    rows = rows_by_ip(stack, job_id)
    assert rows["127.0.20.2"]["attempt"] == 2 and rows["127.0.20.1"]["attempt"] == 1, data

    # one host from its failed step, from its row, then from its own page
    page.reload()
    retry_node_of(page, stack, job_id, "127.0.20.2", attempt=3)
    instance_id = rows_by_ip(stack, job_id)["127.0.20.2"]["instance_id"]
    page.goto(instance_url(stack, job_id, instance_id))
    retry_node_of(page, stack, job_id, "127.0.20.2", attempt=4)


def retry_node_of(page: Page, stack: Stack, job_id: int, ip: str, *, attempt: int) -> None:
    """Press the page's retry_node button of ``ip``, confirm, and wait for its attempt ``attempt`` to end."""
    button = page.get_by_role("button", name=f"Retry {ip} from its failed step")
    expect(button).to_be_visible(timeout=UI_TIMEOUT_MS)
    button.click()
    confirm(page, f"Retry {ip} from its failed step?", "Retry")
    expect(page.locator("#flash")).to_contain_text(f"{ip} runs again from", timeout=UI_TIMEOUT_MS)
    stack.api.wait(job_id, lambda d: {r["ip"]: r for r in d["list"]}[ip]["attempt"] == attempt)
    stack.api.wait(job_id)


def test_a_granted_user_revokes_a_job_and_one_host(stack, page):
    sign_in_as(page, stack, "viewer")
    job_id = stack.install_slow(3)["job_id"]
    page.goto(f"{stack.url}/#/task-list/{job_id}")
    revoke = page.get_by_role("button", name="Revoke the job")
    expect(revoke).to_be_visible(timeout=UI_TIMEOUT_MS)
    revoke.click()
    confirm(page, f"Revoke job {job_id}?", "Revoke")
    expect(page.locator("#flash")).to_contain_text(f"Job {job_id} revoked", timeout=UI_TIMEOUT_MS)
    assert stack.api.wait(job_id)["status"] == "TERMINATED"
    expect(page.get_by_role("heading", level=1)).to_contain_text("TERMINATED", timeout=UI_TIMEOUT_MS)

    # one host of two: it stops, the other goes on
    hosts = [local_host(stack.root, 4), local_host(stack.root, 5)]
    two = stack.api.ok("/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": hosts})["job_id"]
    stack.api.wait(two, lambda d: all(r["status"] == "RUNNING" for r in d["list"]))
    instance_id = rows_by_ip(stack, two)["127.0.20.4"]["instance_id"]
    page.goto(instance_url(stack, two, instance_id))
    one = page.get_by_role("button", name="Revoke 127.0.20.4")
    expect(one).to_be_visible(timeout=UI_TIMEOUT_MS)
    one.click()
    confirm(page, "Revoke 127.0.20.4?", "Revoke")
    expect(page.locator("#flash")).to_contain_text("127.0.20.4 revoked", timeout=UI_TIMEOUT_MS)
    stack.api.wait(two, lambda d: all(r["status"] not in ("PENDING", "RUNNING") for r in d["list"]), timeout_s=90)
    rows = rows_by_ip(stack, two)
    assert rows["127.0.20.4"]["status"] != "SUCCESS" and rows["127.0.20.5"]["status"] == "SUCCESS", rows


def test_a_granted_user_starts_an_operate_job_on_hosts_chosen_in_a_job_and_in_the_host_list(stack, page):
    job_id = failed_job(stack, 6, 7)
    before = job_count(stack)
    sign_in_as(page, stack, "viewer")
    page.goto(f"{stack.url}/#/task-list/{job_id}")
    start = page.get_by_role("button", name="Start on the chosen hosts")
    expect(start).to_be_visible(timeout=UI_TIMEOUT_MS)
    start.click()  # nothing chosen: said, nothing asked
    expect(page.locator("#action-message")).to_contain_text("Choose at least one host")
    page.get_by_role("checkbox", name="Choose 127.0.20.6").check()
    expect(page.locator("#job-operate-count")).to_have_text("1 host chosen")
    page.get_by_label("Operation").select_option("RESTART_AGENT")
    start.click()
    confirm(page, "Restart the agent of 1 hosts?", "Start Restart")
    expect(page).to_have_url(re.compile(rf"#/task-list/(?!{job_id}$)\d+$"), timeout=UI_TIMEOUT_MS)
    new_id = int(page.url.rsplit("/", 1)[1])
    assert new_id != job_id and job_count(stack) == before + 1
    expect(page.locator("#flash")).to_contain_text(f"Job {new_id} started")
    started = stack.api.wait(new_id, timeout_s=90)
    assert started["job_type"] == "RESTART_AGENT" and started["created_by"] == "viewer", started
    assert [row["ip"] for row in started["list"]] == ["127.0.20.6"], started

    # the host list: paged, chosen with checkboxes, the same operate form
    page.goto(f"{stack.url}/#/hosts")
    table = page.locator("#hosts")
    expect(table).to_contain_text("127.0.20.6", timeout=UI_TIMEOUT_MS)
    expect(table).to_contain_text("127.0.20.7")
    expect(page.get_by_role("navigation", name="Pages")).to_contain_text("Page 1 of 1")
    page.get_by_label("IP", exact=True).fill("20.6")
    page.get_by_role("button", name="Filter").click()
    expect(table.locator("tbody tr")).to_have_count(1, timeout=UI_TIMEOUT_MS)
    page.get_by_role("checkbox", name="Choose every host of this page").check()
    expect(page.locator("#hosts-operate-count")).to_have_text("1 host chosen")
    page.get_by_label("Operation").select_option("RELOAD_AGENT")
    page.screenshot(path=artifact("viewer-hosts.png"), full_page=True)
    page.get_by_role("button", name="Start on the chosen hosts").click()
    confirm(page, "Reload the agent of 1 hosts?", "Start Reload")
    expect(page).to_have_url(re.compile(r"#/task-list/\d+$"), timeout=UI_TIMEOUT_MS)
    reload_id = int(page.url.rsplit("/", 1)[1])
    reloaded = stack.api.wait(reload_id, timeout_s=90)
    assert reloaded["job_type"] == "RELOAD_AGENT" and reloaded["created_by"] == "viewer", reloaded


def test_a_strangers_actions_are_refused_with_the_apis_message_and_change_nothing(stack, page):
    job_id = failed_job(stack, 8, 9)
    running = stack.install_slow(10)["job_id"]
    sign_in_as(page, stack, "viewer")
    page.goto(f"{stack.url}/#/task-list/{job_id}")
    expect(page.get_by_role("button", name="Retry the failed hosts")).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.get_by_role("checkbox", name="Choose 127.0.20.8").check()
    before_rows = rows_by_ip(stack, job_id)
    before_jobs = job_count(stack)

    # the page stays, and the browser is now someone else's: granted on business 3 only
    switch_session(page, stack, "outsider")
    message = page.locator("#action-message")
    for name, title, button in [
        ("Retry the failed hosts", f"Retry the failed hosts of job {job_id}?", "Retry"),
        ("Retry 127.0.20.9 from its failed step", "Retry 127.0.20.9 from its failed step?", "Retry"),
        ("Start on the chosen hosts", re.compile("the agent of 1 hosts"), re.compile("^Start ")),
    ]:
        page.get_by_role("button", name=name).click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_role("heading")).to_have_text(title)
        dialog.get_by_role("button", name=button).click()
        alert = message.get_by_role("alert")
        expect(alert).to_contain_text(f"Error {PERMISSION_DENIED}", timeout=UI_TIMEOUT_MS)
        expect(alert).to_contain_text("permission")
    page.screenshot(path=artifact("viewer-refused.png"), full_page=True)
    assert rows_by_ip(stack, job_id) == before_rows
    assert job_count(stack) == before_jobs

    # revoke, on a running job's page opened by the granted user
    switch_session(page, stack, "viewer")
    page.goto(f"{stack.url}/#/task-list/{running}")
    revoke = page.get_by_role("button", name="Revoke the job")
    expect(revoke).to_be_visible(timeout=UI_TIMEOUT_MS)
    switch_session(page, stack, "outsider")
    revoke.click()
    confirm(page, f"Revoke job {running}?", "Revoke")
    expect(message.get_by_role("alert")).to_contain_text(f"Error {PERMISSION_DENIED}", timeout=UI_TIMEOUT_MS)
    assert stack.api.wait(running, timeout_s=90)["status"] == "SUCCESS"  # it ran to its end


def watch_bodies(page: Page, stack: Stack) -> list[Response]:
    seen: list[Response] = []
    page.on("response", lambda response: seen.append(response) if response.url.startswith(stack.url) else None)
    return seen


def test_install_form_starts_a_job_and_the_password_is_never_shown_back(stack, page):
    password = f"pw-{secrets.token_hex(8)}-密码"
    responses = watch_bodies(page, stack)
    sent: list[str] = []
    page.on("request", lambda req: sent.append(req.post_data or "") if "/api/job/install/" in req.url else None)
    sign_in_as(page, stack, "admin")
    page.get_by_role("link", name="Install", exact=True).click()
    expect(page.get_by_role("heading", name="Install agents")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_label("Cloud area")).to_contain_text("(0)")
    secret = page.get_by_label("Password", exact=True)
    assert secret.get_attribute("type") == "password" and secret.get_attribute("autocomplete") == "off"
    page.get_by_label("Business (bk_biz_id)").fill("2")
    page.get_by_label("Inner IPs").fill("127.0.20.11")
    page.get_by_label("Login account").fill("root")
    secret.fill(password)
    page.locator("details.advanced summary").click()
    page.get_by_label("Transport").select_option("local")
    page.get_by_label("Install path (setup_path)").fill(str(stack.root / "host11" / "nodeops-agent"))
    page.get_by_role("button", name="Install", exact=True).click()
    confirm(page, "Install on 1 hosts?", "Install")
    expect(page).to_have_url(re.compile(r"#/task-list/\d+$"), timeout=UI_TIMEOUT_MS)
    job_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("#flash")).to_contain_text(f"Job {job_id} started")
    done = stack.api.wait(job_id, timeout_s=90)
    assert done["status"] == "SUCCESS" and done["list"][0]["ip"] == "127.0.20.11", done

    assert len(sent) == 1 and json.loads(sent[0])["hosts"][0]["password"] == password  # it was sent, once
    assert password not in page.content()
    assert password not in page.evaluate("document.documentElement.outerHTML")
    values = page.evaluate("[...document.querySelectorAll('input, textarea')].map((node) => node.value)")
    assert all(password not in value for value in values), values
    for response in responses:
        if response.request.resource_type in ("fetch", "xhr", "document"):
            assert password not in response.text(), response.url


def test_install_form_shows_a_refusal_clears_the_password_and_starts_nothing(stack, page):
    password = f"pw-{secrets.token_hex(8)}"
    responses = watch_bodies(page, stack)
    before = job_count(stack)
    sign_in_as(page, stack, "outsider")  # granted on business 3, not 2
    page.goto(f"{stack.url}/#/install")
    expect(page.get_by_role("heading", name="Install agents")).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.get_by_label("Business (bk_biz_id)").fill("2")
    page.get_by_label("Inner IPs").fill("127.0.20.12, 127.0.20.13")
    page.get_by_label("By key").check()
    key = page.get_by_label("Private key", exact=True)
    key.fill(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{password}\n-----END OPENSSH PRIVATE KEY-----")
    page.get_by_role("button", name="Install", exact=True).click()
    confirm(page, "Install on 2 hosts?", "Install")
    alert = page.locator("#action-message").get_by_role("alert")
    expect(alert).to_contain_text(f"Error {PERMISSION_DENIED}", timeout=UI_TIMEOUT_MS)
    expect(key).to_have_value("")
    assert job_count(stack) == before
    assert password not in page.content()
    for response in responses:
        if response.request.resource_type in ("fetch", "xhr"):
            assert password not in response.text(), response.url

    # hostile input comes back as text, never as markup
    page.get_by_label("Inner IPs").fill("<img/src=x/id=injected/onerror=document.title=1>")
    page.get_by_label("By password").check()
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Install", exact=True).click()
    confirm(page, "Install on 1 hosts?", "Install")
    expect(alert).to_contain_text("Error 3800001", timeout=UI_TIMEOUT_MS)
    expect(alert).to_contain_text("<img/src=x")
    expect(page.locator("#injected")).to_have_count(0)
    assert job_count(stack) == before

    # too many hosts at once: said before anything is asked
    calls = len([r for r in responses if "/api/job/install/" in r.url])
    page.get_by_label("Inner IPs").fill("\n".join(f"127.0.40.{n}" for n in range(1, 102)))
    page.get_by_role("button", name="Install", exact=True).click()
    expect(alert).to_have_text("At most 100 hosts at once.")
    expect(page.get_by_role("dialog")).to_have_count(0)
    assert len([r for r in responses if "/api/job/install/" in r.url]) == calls


def test_the_host_list_pages_keeps_the_choice_across_pages_and_shows_only_the_users_businesses(stack, page):
    rows = [f"2,127.0.30.{n}" for n in range(1, 26)] + [f"3,127.0.31.{n}" for n in range(1, 4)]
    stack.api.ok("/api/inventory/import/", {"csv": "bk_biz_id,inner_ip\n" + "\n".join(rows) + "\n"})
    sign_in_as(page, stack, "viewer")  # business 2 only
    page.goto(f"{stack.url}/#/hosts")
    table = page.locator("#hosts")
    expect(table.locator("caption")).to_have_text("25 hosts", timeout=UI_TIMEOUT_MS)
    expect(table.locator("tbody tr")).to_have_count(20)
    expect(table).not_to_contain_text("127.0.31.")
    page.get_by_role("checkbox", name="Choose 127.0.30.1", exact=True).check()
    page.get_by_role("link", name="Next →").click()
    expect(page.get_by_role("navigation", name="Pages")).to_contain_text("Page 2 of 2", timeout=UI_TIMEOUT_MS)
    expect(table.locator("tbody tr")).to_have_count(5)
    page.get_by_role("checkbox", name="Choose 127.0.30.25").check()
    expect(page.locator("#hosts-operate-count")).to_have_text("2 hosts chosen")
    page.get_by_role("link", name="← Previous").click()
    expect(page.get_by_role("checkbox", name="Choose 127.0.30.1", exact=True)).to_be_checked(timeout=UI_TIMEOUT_MS)

    # odd filters: no match, or the API's reason, never a broken page
    ip = page.get_by_label("IP", exact=True)
    ip.fill("\uff11\uff12\uff17\uff0e\uff10")  # 127.0 in full-width digits
    page.get_by_role("button", name="Filter").click()
    expect(table).to_contain_text("No host matches", timeout=UI_TIMEOUT_MS)
    ip.fill("1" * 65)
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("alert")).to_contain_text("Error 3800001", timeout=UI_TIMEOUT_MS)
    expect(page.get_by_role("alert")).to_contain_text("ip")

    sign_in_as(page, stack, "outsider")  # business 3 only
    page.goto(f"{stack.url}/#/hosts")
    expect(table.locator("caption")).to_have_text("3 hosts", timeout=UI_TIMEOUT_MS)
    expect(table).not_to_contain_text("127.0.30.")
