"""The inventory API over real HTTP: JSON and CSV import and export round trips (no secret ever exported), host
search with filters and pages, topology and service instances, every validation error naming its row and field,
and imports limited to the caller's businesses."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text

from nodeops.store.models import Base
from tests.support.factories import make_app, make_user
from tests.support.jobs import JobApi
from tests.support.subscriptions import INVENTORY, topology

SECRET = "inventory-pw-71"


@pytest.fixture
def api(services, live_server):
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    make_user(services, "viewer", biz=[2])
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield JobApi(client, app)


def hosts(n: int, biz: int = 2, module: int = 100) -> list[dict]:
    return [
        {
            "bk_biz_id": biz,
            "bk_cloud_id": 0,
            "inner_ip": f"127.10.{biz}.{i}",
            "outer_ip": f"127.20.0.{i}" if i % 2 else None,
            "bk_host_name": f"web-{i}",
            "bk_supplier_account": "tencent",
            "os_type": "linux",
            "modules": [module] if i % 3 else [module, module + 1],
            "account": "root",
            "password": SECRET,
            "port": 22,
        }
        for i in range(1, n + 1)
    ]


def test_json_import_exports_back_without_secrets_and_reimports_to_the_same(api, services):
    inventory = {
        "topology": topology(2),
        "hosts": hosts(7),
        "service_instances": [{"id": 9, "name": "nginx", "bk_module_id": 100, "ip": "127.10.2.1", "bk_cloud_id": 0}],
    }
    imported = api.ok(f"{INVENTORY}/import/", {"inventory": inventory})
    assert len(imported["created_host_ids"]) == 7 and imported["service_instance_ids"] == [9]
    exported = api.ok(f"{INVENTORY}/export/", {})
    assert exported["topology"] == [
        {
            **biz,
            "sets": [
                {
                    **s,
                    "set_template_id": s.get("set_template_id"),
                    "modules": [{"service_template_id": None, **m} for m in s["modules"]],
                }
                for s in biz["sets"]
            ],
        }
        for biz in topology(2)
    ]
    first = exported["hosts"][0]
    assert first["os_type"] == "LINUX" and first["bk_supplier_account"] == "tencent" and first["account"] == "root"
    assert "password" not in first and SECRET not in str(exported)
    assert [h["modules"] for h in exported["hosts"][:3]] == [[100], [100], [100, 101]]
    again = api.ok(f"{INVENTORY}/import/", {"inventory": exported})
    assert again["created_host_ids"] == [] and len(again["updated_host_ids"]) == 7
    assert api.ok(f"{INVENTORY}/export/", {}) == exported
    with services.db.engine.connect() as conn:
        dump = [repr(r) for t in Base.metadata.sorted_tables for r in conn.execute(text(f"SELECT * FROM {t.name}"))]
    assert SECRET not in "\n".join(dump)

    tree = api.ok(f"{INVENTORY}/topology/", {"bk_biz_id": 2})
    nginx = tree[0]["child"][0]["child"][0]
    assert (nginx["bk_inst_name"], nginx["host_count"], nginx["service_template_id"]) == ("nginx", 7, 7)
    (service,) = api.ok(f"{INVENTORY}/service_instances/", {"bk_biz_id": 2})
    assert service["bk_host_id"] == first["bk_host_id"] and service["bk_module_id"] == 100


def test_csv_import_places_a_host_of_several_rows_in_each_module_and_exports_back(api):
    csv_text = (
        "bk_biz_id,bk_biz_name,bk_cloud_id,inner_ip,os_type,bk_set_id,bk_set_name,bk_module_id,bk_module_name\n"
        "2,shop,0,127.10.9.1,LINUX,10,web,100,nginx\n"
        "2,shop,0,127.10.9.1,LINUX,10,web,101,db\n"
        "2,shop,0,127.10.9.2,LINUX,11,batch,110,cron\n"
    )
    imported = api.ok(f"{INVENTORY}/import/", {"csv": csv_text})
    assert len(imported["created_host_ids"]) == 2 and imported["topo_nodes"] == 6
    found = api.ok(f"{INVENTORY}/hosts/", {"bk_set_id": 10})
    assert [h["inner_ip"] for h in found["list"]] == ["127.10.9.1"]
    assert [t["bk_module_name"] for t in found["list"][0]["topo"]] == ["nginx", "db"]
    exported = api.ok(f"{INVENTORY}/export/", {"format": "csv"})["csv"]
    lines = exported.splitlines()
    assert len(lines) == 4 and "password" in lines[0]
    assert api.ok(f"{INVENTORY}/import/", {"csv": exported})["created_host_ids"] == []
    assert api.ok(f"{INVENTORY}/export/", {"format": "csv"})["csv"] == exported


def test_host_search_filters_and_pages(api):
    api.ok(f"{INVENTORY}/import/", {"inventory": {"topology": topology(2), "hosts": hosts(25)}})
    page = api.ok(f"{INVENTORY}/hosts/", {"page": 3, "pagesize": 10})
    assert page["total"] == 25 and len(page["list"]) == 5
    assert api.ok(f"{INVENTORY}/hosts/", {"ip": "127.20.0."})["total"] == 13
    assert api.ok(f"{INVENTORY}/hosts/", {"bk_module_id": 101, "pagesize": -1})["total"] == 8
    assert api.ok(f"{INVENTORY}/hosts/", {"ip": "%"})["total"] == 0  # a LIKE wildcard is a literal
    answer = api.error(f"{INVENTORY}/hosts/", {"page": 4, "pagesize": 10}, 3800001)
    assert "page: page 4 is out of range: 25 hosts make 3 page(s) of 10" in answer["message"]
    api.error(f"{INVENTORY}/hosts/", {"pagesize": 0}, 3800001)
    api.error(f"{INVENTORY}/hosts/", {"bk_host_id": ["x"]}, 3800001)


@pytest.mark.parametrize(
    "body, says",
    [
        ({}, 'inventory: give "inventory"'),
        ({"inventory": []}, "inventory: must be an object"),
        (
            {"inventory": {"hosts": [{"bk_biz_id": 2, "inner_ip": "127.10.0.1", "modules": [999]}]}},
            "hosts[0].modules: module 999 is not in the inventory",
        ),
        (
            {"inventory": {"hosts": [{"bk_biz_id": 3, "inner_ip": "127.10.0.1", "modules": [100]}]}},
            "hosts[0].modules: module 100 is in business 2, not 3",
        ),
        (
            {"inventory": {"hosts": [{"bk_biz_id": 2, "inner_ip": "127.10.0.x"}]}},
            "hosts[0].inner_ip: '127.10.0.x' is not an IPv4 address",
        ),
        ({"inventory": {"hosts": [{"inner_ip": "127.10.0.1"}]}}, "hosts[0].bk_biz_id: this field is required"),
        (
            {"inventory": {"topology": [{"bk_biz_id": 2, "sets": [{"bk_set_name": "x"}]}]}},
            "topology[0].sets[0].bk_set_id:",
        ),
        ({"inventory": {"topology": {"bk_biz_id": 2}}}, "topology: must be a list of businesses"),
        ({"inventory": {"topology": [{"bk_biz_id": 2, "sets": ["x"]}]}}, "topology[0].sets[0]: must be an object"),
        (
            {"inventory": {"topology": [{"bk_biz_id": 2, "sets": [{"bk_set_id": 9, "modules": [{}]}]}]}},
            "topology[0].sets[0].modules[0].bk_module_id: this field is required",
        ),
        (
            {"inventory": {"service_instances": [{"bk_module_id": 100, "bk_host_id": 1, "processes": {}}]}},
            "service_instances[0].processes: must be a list of process objects",
        ),
        ({"inventory": {"hosts": ["h"]}}, "hosts[0]: must be an object"),
        (
            {"inventory": {"service_instances": [{"bk_module_id": 100, "bk_host_id": 5555}]}},
            "service_instances[0]: its host is not in the inventory",
        ),
        ({"csv": "bk_biz_id,colour\n2,red\n"}, "csv: unknown column 'colour'"),
        ({"csv": "\r0"}, "csv: "),
        ({"csv": 'bk_biz_id,inner_ip\n2,"127.10.0.1'}, "csv: "),
        (
            {"inventory": {"hosts": [{"bk_biz_id": 2, "inner_ip": "127.10.0.1", "account": "ro\x00ot"}]}},
            "inventory.hosts[0].account: must not contain a NUL byte",
        ),
        (
            {"csv": "bk_biz_id,inner_ip\n2,127.10.0.1\nx,127.10.0.2\n"},
            "line 3.bk_biz_id: 'x' is not a non-negative integer",
        ),
        (
            {"csv": "bk_biz_id,inner_ip,bk_set_id,bk_module_id\n2,127.10.0.1,10,100\n2,127.10.0.2,10,y\n"},
            "line 3.bk_module_id: 'y' is not a positive integer of at most 999999999999999999; line 3.modules[0]: 'y'",
        ),
        ({"csv": "bk_biz_id,inner_ip,bk_set_id\n2,127.10.0.1,x\n"}, "line 2.bk_set_id: 'x'"),
    ],
)
def test_a_bad_import_answers_3800001_naming_the_row_and_field(api, body, says):
    api.ok(f"{INVENTORY}/import/", {"inventory": {"topology": topology(2)}})
    answer = api.error(f"{INVENTORY}/import/", body, 3800001)
    assert says in answer["message"], answer


def test_an_address_taken_by_another_host_is_refused_and_nothing_is_stored(api):
    api.ok(f"{INVENTORY}/import/", {"inventory": {"hosts": [{"bk_biz_id": 2, "inner_ip": "127.10.0.1"}]}})
    (host,) = api.ok(f"{INVENTORY}/hosts/", {})["list"]
    body = {
        "inventory": {
            "hosts": [
                {"bk_biz_id": 2, "inner_ip": "127.10.0.9"},
                {"bk_biz_id": 2, "inner_ip": "127.10.0.1", "bk_host_id": host["bk_host_id"] + 7},
            ]
        }
    }
    answer = api.error(f"{INVENTORY}/import/", body, 3800001)
    assert f"hosts[1]: 127.10.0.1 in cloud area 0 is host {host['bk_host_id']}" in answer["message"]
    assert api.ok(f"{INVENTORY}/hosts/", {})["total"] == 1


def test_an_import_needs_the_right_on_every_business_it_touches(api):
    viewer = api.as_user("viewer")
    api.ok(f"{INVENTORY}/import/", {"inventory": {"hosts": [{"bk_biz_id": 3, "inner_ip": "127.10.3.1"}]}})
    answer = viewer.error(
        f"{INVENTORY}/import/", {"inventory": {"hosts": [{"bk_biz_id": 3, "inner_ip": "127.10.3.2"}]}}, 9900403
    )
    assert answer["data"]["permission"] == {"action": "agent_operate", "bk_biz_ids": [3]}
    # moving business 3's host into business 2 needs business 3 too
    viewer.error(
        f"{INVENTORY}/import/", {"inventory": {"hosts": [{"bk_biz_id": 2, "inner_ip": "127.10.3.1"}]}}, 9900403
    )
    viewer.ok(f"{INVENTORY}/import/", {"inventory": {"hosts": [{"bk_biz_id": 2, "inner_ip": "127.10.2.1"}]}})
    assert [h["inner_ip"] for h in viewer.ok(f"{INVENTORY}/hosts/", {})["list"]] == ["127.10.2.1"]
    assert viewer.ok(f"{INVENTORY}/export/", {"bk_biz_id": 3})["hosts"] == []
    local = {"bk_biz_id": 2, "inner_ip": "127.10.2.2", "transport": "local"}
    viewer.error(f"{INVENTORY}/import/", {"inventory": {"hosts": [local]}}, 3800001)


def test_a_host_moved_to_another_business_leaves_its_modules_and_service_instances(api):
    inventory = {
        "topology": topology(2) + topology(3),
        "hosts": [{"bk_biz_id": 2, "inner_ip": "127.10.0.1", "modules": [100]}],
        "service_instances": [{"id": 4, "name": "nginx", "bk_module_id": 100, "ip": "127.10.0.1"}],
    }
    api.ok(f"{INVENTORY}/import/", {"inventory": inventory})
    api.ok(f"{INVENTORY}/import/", {"inventory": {"hosts": [{"bk_biz_id": 3, "inner_ip": "127.10.0.1"}]}})
    (host,) = api.ok(f"{INVENTORY}/hosts/", {})["list"]
    assert (host["bk_biz_id"], host["topo"]) == (3, [])
    assert api.ok(f"{INVENTORY}/service_instances/", {}) == []
