"""The headers of every answer (``X-Content-Type-Options: nosniff``), and ``/docs``: Swagger UI served from the
package under the viewer's headers, nothing loaded from elsewhere. Real uvicorn, on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import httpx

from nodeops.settings import MAX_BODY_BYTES
from nodeops.web.viewer import PAGE_HEADERS
from tests.support.api import ESB_PATH, credentials, nodeman_path
from tests.support.factories import make_seed_job


def test_every_kind_of_answer_says_nosniff(client, esb_app, admin, services):
    make_seed_job(services)
    common = credentials(esb_app, bk_username=admin)
    answers = {
        "log API (lane or fast path)": client.get(ESB_PATH, params={**common, "job_id": 1, "instance_id": 1}),
        "log API POST (fast path)": client.post(ESB_PATH, json={**common, "job_id": 1, "instance_id": 1}),
        "log API error": client.get(nodeman_path("x"), params=common),
        "JSON route": client.post("/api/job/job_list/", json=common),
        "JSON route error": client.post("/api/job/job_list/", json={**common, "pagesize": 0}),
        "tail": client.get("/api/job/1/log/tail/", params={**common, "instance_id": 1}),
        "unknown path": client.get("/api/no/such/thing/"),
        "wrong method": client.delete("/api/job/job_list/"),
        "heartbeat": client.post("/api/agent/heartbeat/", json={}),
        "body over the limit": client.post("/api/job/job_list/", content=b"x" * (MAX_BODY_BYTES + 1)),
        "health": client.get("/healthz"),
        "schema": client.get("/openapi.json"),
        "viewer": client.get("/"),
        "docs": client.get("/docs"),
        "asset": client.get("/web/static/app.js"),
        "download": client.get("/api/job/1/log/download/", params={**common, "instance_id": 1}),
    }
    for name, response in answers.items():
        assert response.headers.get_list("x-content-type-options") == ["nosniff"], (name, response.headers)


def test_docs_page_has_the_viewers_headers_and_loads_swagger_ui_from_the_package(client):
    docs = client.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"] == "text/html; charset=utf-8"
    for name, value in PAGE_HEADERS.items():
        assert docs.headers[name] == value, name
    assert client.get("/").headers["content-security-policy"] == docs.headers["content-security-policy"]
    policy = dict(part.strip().split(" ", 1) for part in docs.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == policy["script-src"] == policy["style-src"] == policy["connect-src"] == "'self'"
    html = docs.text
    assert not re.search(r"https?:|//[a-z0-9]", html, re.IGNORECASE), html  # no other origin, no CDN
    assert "<script>" not in html and "style=" not in html  # nothing inline: the policy would refuse it
    assets = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert sorted(assets) == [
        "/openapi.json",
        "/web/static/docs.js",
        "/web/static/swagger-ui/swagger-ui-bundle.js",
        "/web/static/swagger-ui/swagger-ui.css",
    ]
    types = {".js": "text/javascript", ".css": "text/css", ".json": "application/json"}
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert response.headers["content-type"].startswith(types[asset[asset.rindex(".") :]]), asset
    assert "validatorUrl: null" in client.get("/web/static/docs.js").text
    licence = client.get("/web/static/swagger-ui/LICENSE")
    assert licence.status_code == 200 and "Apache License" in licence.text


def test_framework_docs_pages_that_load_from_a_cdn_are_gone(client):
    for path in ("/redoc", "/docs/oauth2-redirect"):
        body = client.get(path).json()
        assert body["code"] == 3800404, (path, body)


def test_head_of_docs_answers_like_get(client):
    head = httpx.head(str(client.base_url) + "/docs")
    assert head.status_code == 200
    assert head.headers["content-security-policy"] == PAGE_HEADERS["Content-Security-Policy"]
