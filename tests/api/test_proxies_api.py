"""proxies_host and biz_proxies_host over real HTTP, on SQLite and PostgreSQL (network spec §13.6), at their
nodeman and ESB addresses: the rows with exactly Node Manager's fields, P-Agents counted per proxy, the caller's
businesses checked on every row, and the query parameters validated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from nodeops.store.models import AccessPoint, Host
from tests.support.factories import make_app, make_user
from tests.support.jobs import JobApi
from tests.support.subscriptions import INVENTORY, topology

PROXIES = ("/api/host/proxies/", "/api/c/compapi/v2/nodeman/api/host/proxies/")
BIZ_PROXIES = ("/api/host/biz_proxies/", "/api/c/compapi/v2/nodeman/api/host/biz_proxies/")
AREA = 5
PROXY_FIELDS = [
    "bk_cloud_id",
    "bk_host_id",
    "inner_ip",
    "inner_ipv6",
    "outer_ip",
    "outer_ipv6",
    "login_ip",
    "data_ip",
    "bk_biz_id",
    "is_manual",
    "extra_data",
    "bk_biz_name",
    "ap_id",
    "ap_name",
    "status",
    "status_display",
    "version",
    "account",
    "auth_type",
    "port",
    "re_certification",
    "job_result",
    "pagent_count",
    "permissions",
]
BIZ_PROXY_FIELDS = [
    "bk_cloud_id",
    "bk_addressing",
    "inner_ip",
    "inner_ipv6",
    "outer_ip",
    "outer_ipv6",
    "login_ip",
    "data_ip",
    "bk_biz_id",
]


class Caller:
    """GET with the common args in the query string, as ESB callers send them."""

    def __init__(self, api: JobApi, username: str) -> None:
        self.api, self.username = api, username

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        common = {"bk_app_code": self.api.app.code, "bk_app_secret": self.api.app.secret, "bk_username": self.username}
        response = self.api.client.get(path, params={**common, **params})
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def ok(self, path: str, **params: Any) -> Any:
        answer = self.get(path, **params)
        assert answer["result"] is True and answer["code"] == 0, answer
        return answer["data"]

    def error(self, path: str, code: int, **params: Any) -> dict[str, Any]:
        answer = self.get(path, **params)
        assert answer["result"] is False and answer["code"] == code, answer
        return answer


def add_host(session, ip: str, biz: int, *, area: int = AREA, node_type: str = "AGENT", **fields: Any) -> Host:
    host = Host(bk_biz_id=biz, bk_cloud_id=area, inner_ip=ip, node_type=node_type, **fields)
    session.add(host)
    session.flush()
    return host


@pytest.fixture
def proxies(services, live_server) -> dict[str, int]:
    """Business 2's proxy p2 (RUNNING, with a password, access point 7) and business 3's proxy p3 (TERMINATED,
    credentials expired, 自动选择接入点) in area 5; three P-Agents report through p2, one through p3; business 2
    also has a host in area 0, business 3 one in area 6 with its own proxy p6."""
    with services.db.session() as session:
        session.add(AccessPoint(id=7, name="机房七", server_url="http://127.0.0.1:9"))
        made = {
            "p2": add_host(
                session,
                "127.50.0.2",
                2,
                node_type="PROXY",
                outer_ip="127.51.0.2",
                login_ip="127.51.0.2",
                ap_id=7,
                agent_status="RUNNING",
                agent_version="2.1.7",
                account="root",
                auth_type="PASSWORD",
                ssh_port=2222,
                password_enc=b"sealed",
                setup_path="/usr/local/nodeops-agent",
            ),
            "p3": add_host(
                session,
                "127.50.0.3",
                3,
                node_type="PROXY",
                ap_id=-1,
                agent_status="TERMINATED",
                key_enc=b"sealed",
                credentials_expire_at=datetime.now(UTC) - timedelta(hours=1),
            ),
            "p6": add_host(session, "127.50.6.1", 3, area=6, node_type="PROXY", agent_status="RUNNING"),
        }
        for n, upstream in enumerate([["127.50.0.2"], ["127.50.0.3", "127.50.0.2"], ["127.50.0.2"], ["127.50.0.3"]]):
            add_host(session, f"127.50.1.{n}", 2 + n % 2, node_type="PAGENT", upstream_nodes=upstream)
        add_host(session, "127.50.2.1", 2, area=0)
        add_host(session, "127.50.2.2", 3, area=6)
        ids = {name: host.bk_host_id for name, host in made.items()}
    return ids


@pytest.fixture
def api(services, live_server, proxies):
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    make_user(services, "viewer", biz=[2])
    make_user(services, "outsider", biz=[4])
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        api = JobApi(client, app)
        api.ok(f"{INVENTORY}/import/", {"inventory": {"topology": topology(2)}})
        yield api


@pytest.mark.parametrize("path", PROXIES)
def test_the_proxies_of_an_area_with_every_field(api, proxies, path):
    rows = Caller(api, "admin").ok(path, bk_cloud_id=AREA)
    assert [list(row) for row in rows] == [PROXY_FIELDS, PROXY_FIELDS]
    p2, p3 = rows
    assert p2 == {
        "bk_cloud_id": AREA,
        "bk_host_id": proxies["p2"],
        "inner_ip": "127.50.0.2",
        "inner_ipv6": "",
        "outer_ip": "127.51.0.2",
        "outer_ipv6": "",
        "login_ip": "127.51.0.2",
        "data_ip": "",
        "bk_biz_id": 2,
        "is_manual": False,
        "extra_data": {"setup_path": "/usr/local/nodeops-agent"},
        "bk_biz_name": "biz-2",
        "ap_id": 7,
        "ap_name": "机房七",
        "status": "RUNNING",
        "status_display": "正常",
        "version": "2.1.7",
        "account": "root",
        "auth_type": "PASSWORD",
        "port": 2222,
        "re_certification": False,
        "job_result": {},
        "pagent_count": 3,
        "permissions": {"operate": True},
    }
    assert (p3["bk_host_id"], p3["bk_biz_name"], p3["ap_id"], p3["ap_name"]) == (
        proxies["p3"],
        "",
        -1,
        "自动选择接入点",
    )
    assert (p3["status"], p3["status_display"], p3["version"], p3["account"]) == ("TERMINATED", "异常", "", "")
    assert p3["re_certification"] is True and p3["pagent_count"] == 2
    assert Caller(api, "admin").ok(path, bk_cloud_id=6)[0]["bk_host_id"] == proxies["p6"]
    assert Caller(api, "admin").ok(path, bk_cloud_id=0) == []
    assert Caller(api, "admin").ok(path, bk_cloud_id=404) == []


@pytest.mark.parametrize("path", PROXIES)
def test_a_user_sees_the_proxies_of_their_businesses_only(api, proxies, path):
    rows = Caller(api, "viewer").ok(path, bk_cloud_id=AREA)
    assert [(row["bk_host_id"], row["permissions"]) for row in rows] == [(proxies["p2"], {"operate": True})]
    assert Caller(api, "viewer").ok(path, bk_cloud_id=6) == []
    assert Caller(api, "outsider").ok(path, bk_cloud_id=AREA) == []


@pytest.mark.parametrize("path", BIZ_PROXIES)
def test_the_proxies_of_a_business_areas(api, proxies, path):
    admin = Caller(api, "admin")
    rows = admin.ok(path, bk_biz_id=2)  # business 2 has hosts in areas 0 and 5
    assert [list(row) for row in rows] == [BIZ_PROXY_FIELDS, BIZ_PROXY_FIELDS]
    assert rows[0] == {
        "bk_cloud_id": AREA,
        "bk_addressing": "static",
        "inner_ip": "127.50.0.2",
        "inner_ipv6": "",
        "outer_ip": "127.51.0.2",
        "outer_ipv6": "",
        "login_ip": "127.51.0.2",
        "data_ip": "",
        "bk_biz_id": 2,
    }
    assert [(row["bk_cloud_id"], row["inner_ip"]) for row in admin.ok(path, bk_biz_id=3)] == [
        (AREA, "127.50.0.2"),
        (AREA, "127.50.0.3"),
        (6, "127.50.6.1"),
    ]
    assert admin.ok(path, bk_biz_id=404) == []
    # every row is checked: the viewer of business 2 does not see business 3's proxy of the same area
    assert [row["inner_ip"] for row in Caller(api, "viewer").ok(path, bk_biz_id=2)] == ["127.50.0.2"]


@pytest.mark.parametrize("path", BIZ_PROXIES)
def test_biz_proxies_needs_the_business(api, path):
    for user, biz in (("viewer", 3), ("outsider", 2), ("outsider", 404)):
        refused = Caller(api, user).error(path, 9900403, bk_biz_id=biz)
        assert "[proxy_operate]" in refused["message"] and f"business {biz}" in refused["message"]
        assert "127.50" not in refused["message"]


@pytest.mark.parametrize(
    ("paths", "name", "value", "says"),
    [
        (PROXIES, "bk_cloud_id", None, "bk_cloud_id: this field is required"),
        (PROXIES, "bk_cloud_id", "五", "bk_cloud_id"),
        (PROXIES, "bk_cloud_id", "-1", "bk_cloud_id"),
        (PROXIES, "bk_cloud_id", str(2**40), "bk_cloud_id"),
        (PROXIES, "bk_cloud_id", "1.5", "bk_cloud_id"),
        (BIZ_PROXIES, "bk_biz_id", None, "bk_biz_id: this field is required"),
        (BIZ_PROXIES, "bk_biz_id", "0", "bk_biz_id"),
        (BIZ_PROXIES, "bk_biz_id", "x" * 5000, "bk_biz_id"),
    ],
)
def test_bad_query_parameters_are_3800001(api, paths, name, value, says):
    for path in paths:
        answer = Caller(api, "viewer").error(path, 3800001, **({} if value is None else {name: value}))
        assert says in answer["message"], answer
