"""Helpers of the network API tests (cloud areas, access points, install channels): a client that calls them with
any verb as one user, the users they need, and hosts placed in areas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from nodeops.service.container import Services
from nodeops.store import packages as package_rows
from nodeops.store.models import Host
from tests.support.factories import AppCredentials, make_app, make_user

SERVICE_URL = "http://127.0.0.1:9"  # the default access point's URL in these tests (nothing is sent there)
ESB = "/api/c/compapi/v2/nodeman/api"


class NetApi:
    """The network APIs over HTTP as one user: common args in the query string (GET) or the JSON body."""

    def __init__(self, client: httpx.Client, app: AppCredentials, username: str = "admin") -> None:
        self.client = client
        self.app = app
        self.username = username

    def as_user(self, username: str) -> NetApi:
        return NetApi(self.client, self.app, username)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        common = {"bk_app_code": self.app.code, "bk_app_secret": self.app.secret, "bk_username": self.username}
        if method == "GET":
            response = self.client.get(path, params={**common, **(body or {})})
        else:
            response = self.client.request(method, path, json={**common, **(body or {})})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        answer: dict[str, Any] = response.json()
        return answer

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        answer = self.call(method, path, body)
        assert answer["result"] is True and answer["code"] == 0, answer
        return answer["data"]

    def error(self, method: str, path: str, body: dict[str, Any] | None, code: int) -> str:
        """The message of the error ``code`` the call must answer (with Node Manager's code suffix)."""
        answer = self.call(method, path, body)
        assert answer["result"] is False and answer["code"] == code, answer
        assert answer["message"].endswith(f"（{code}）"), answer
        message: str = answer["message"]
        return message


def serve_net_api(services: Services, live_server: Any) -> Iterator[NetApi]:
    """A NetApi of the superuser ``admin`` on ``live_server`` (a test module's ``net`` fixture yields from it);
    ``alice`` (granted business 2) and ``bob`` (no business) exist too, and the default access point (id 1), as
    the service's start makes it."""
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    make_user(services, "alice", biz=[2])
    make_user(services, "bob")
    with services.db.session() as session:
        package_rows.ensure_default_access_point(session, server_url=SERVICE_URL)
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield NetApi(client, app)


def add_host(services: Services, ip: str, *, area: int, node_type: str = "PAGENT", **columns: Any) -> int:
    """A host row in ``area`` (business 2 unless ``bk_biz_id`` says otherwise); its bk_host_id."""
    with services.db.session() as session:
        row = Host(bk_cloud_id=area, inner_ip=ip, node_type=node_type, **{"bk_biz_id": 2, **columns})
        session.add(row)
        session.flush()
        return row.bk_host_id
