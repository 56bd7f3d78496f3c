"""Helpers of the log API's HTTP tests: its addresses, a request builder and envelope assertions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

ESB_PATH = "/api/c/compapi/v2/nodeman/api/job/log/"
AUTH_HEADER = "X-Bkapi-Authorization"

# the ways a caller reaches the log API: ESB with either verb, nodeman's own path, the API gateway
ADDRESSES = ("esb_get", "esb_post", "nodeman", "apigw")

# ESB adds request_id to every body (spec §1.2)
SUCCESS_KEYS = ["result", "code", "message", "data", "request_id"]
ERROR_KEYS = ["result", "code", "message", "data", "errors", "request_id"]
STEP_KEYS = ["step", "status", "log", "start_time", "finish_time"]


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    """An envelope without its ``request_id`` (a fresh one per answer), after checking that it has one."""
    assert isinstance(body.get("request_id"), str) and body["request_id"], body
    return {key: value for key, value in body.items() if key != "request_id"}


def nodeman_path(job_id: object) -> str:
    return f"/api/job/{job_id}/log/"


def apigw_path(job_id: object) -> str:
    return f"/api/bk-nodeman/prod/api/job/{job_id}/log/"


def credentials(app: Any, **user: str) -> dict[str, str]:
    """The common args of ``app`` (an AppCredentials) plus ``bk_username=`` / ``bk_token=``."""
    return {"bk_app_code": app.code, "bk_app_secret": app.secret, **user}


def request_log(
    client: httpx.Client,
    address: str,
    *,
    job_id: object,
    instance_id: object,
    auth: Mapping[str, str] | None = None,
    via_header: bool = False,
    **extra: object,
) -> httpx.Response:
    """Ask the log API at ``address`` (one of ADDRESSES); common args as parameters or in the JSON header."""
    common = dict(auth or {})
    headers = {AUTH_HEADER: json.dumps(common)} if via_header else {}
    params: dict[str, Any] = {} if via_header else dict(common)
    params.update({"instance_id": instance_id, **extra})
    if address == "esb_get":
        return client.get(ESB_PATH, params={**params, "job_id": job_id}, headers=headers)
    if address == "esb_post":
        return client.post(ESB_PATH, json={**params, "job_id": job_id}, headers=headers)
    path = nodeman_path(job_id) if address == "nodeman" else apigw_path(job_id)
    if address not in ("nodeman", "apigw"):
        raise ValueError(address)
    return client.get(path, params=params, headers=headers)


_UNSET: Any = object()


def nodeman_message(code: int, text: str) -> str:
    """Node Manager's error message: the text with its code in full-width parentheses (spec §1.2)."""
    return f"{text}（{code}）"


def _body(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict), body
    return body


def log_data(response: httpx.Response) -> list[dict[str, Any]]:
    """The ``data`` of a successful log answer, after checking the envelope and the shape of each step."""
    body = _body(response)
    assert list(body) == SUCCESS_KEYS, body
    assert (body["result"], body["code"], body["message"]) == (True, 0, "success"), body
    assert type(body["code"]) is int
    data = body["data"]
    assert isinstance(data, list)
    for step in data:
        assert list(step) == STEP_KEYS, step
    return data


def assert_error(
    response: httpx.Response,
    code: int,
    message: str | None = None,
    *,
    contains: tuple[str, ...] = (),
    data: Any = _UNSET,
) -> dict[str, Any]:
    """Check an error answer: HTTP 200, the five envelope keys, ``code`` (an int), and the message.

    ``message`` is the exact text; pass it bare and the ``（code）`` suffix is added for Node Manager codes.
    ``contains`` are substrings the message must hold (e.g. the name of the bad field). ``data`` is null
    unless given, except for 9900403 whose ``data`` must at least name the permission.
    """
    body = _body(response)
    assert list(body) == ERROR_KEYS, body
    assert body["result"] is False, body
    assert type(body["code"]) is int, body
    assert body["code"] == code, body
    assert body["errors"] is None, body
    if data is not _UNSET:
        assert body["data"] == data, body
    elif code == 9900403:
        assert body["data"]["permission"]["action"] == "task_history_view", body
        assert set(body["data"]) == {"permission", "apply_url"}, body
    else:
        assert body["data"] is None, body
    text = body["message"]
    is_esb = 1306000 <= code < 1307000
    if is_esb:
        assert not text.endswith("）"), f"ESB errors carry no code suffix: {text!r}"
    else:
        assert text.endswith(f"（{code}）"), f"Node Manager errors end with their code: {text!r}"
    if message is not None:
        assert text == (message if is_esb else nodeman_message(code, message)), body
    for part in contains:
        assert part in text, f"{part!r} not in {text!r}"
    return body
