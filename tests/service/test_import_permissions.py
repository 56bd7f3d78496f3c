"""Imports over real HTTP are checked row by row against the caller's grants: every topology node, host and
service instance, for the business it is in now and the one the import would put it in. A refusal is 9900403
naming the business and the rows, and writes nothing. A brand-new service instance imports (API and CLI path)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import text

from nodeops.service.inventory import InventoryService
from tests.support.factories import make_app, make_user
from tests.support.jobs import JobApi
from tests.support.subscriptions import INVENTORY, topology

IMPORT = f"{INVENTORY}/import/"
TABLES = ("topo_nodes", "hosts", "host_modules", "service_instances")


@pytest.fixture
def api(services, live_server):
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    make_user(services, "viewer", biz=[2])
    make_user(services, "both", biz=[2, 3])
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield JobApi(client, app)


@pytest.fixture
def seeded(api):
    """Business 2 (host 127.10.2.1 in module 100) and business 3 (host 127.10.3.1 in modules 1100 and 1101, with
    service instance 30 in module 1100); returns ``{ip: bk_host_id}``."""
    api.ok(
        IMPORT,
        {
            "inventory": {
                "topology": topology(2) + topology(3),
                "hosts": [
                    {"bk_biz_id": 2, "inner_ip": "127.10.2.1", "modules": [100]},
                    {"bk_biz_id": 3, "inner_ip": "127.10.3.1", "modules": [1100, 1101]},
                ],
                "service_instances": [
                    {"id": 30, "name": "redis", "bk_module_id": 1100, "ip": "127.10.3.1", "processes": [{"p": 1}]}
                ],
            }
        },
    )
    return {h["inner_ip"]: h["bk_host_id"] for h in api.ok(f"{INVENTORY}/hosts/", {})["list"]}


def snapshot(services) -> dict[str, list[tuple]]:
    """Every row of the inventory's tables, read back from the database."""
    with services.db.engine.connect() as conn:
        return {t: sorted(tuple(r) for r in conn.execute(text(f"SELECT * FROM {t}"))) for t in TABLES}


def service_30(h: dict[str, int], **change) -> dict:
    return {"id": 30, "name": "redis", "bk_module_id": 1100, "bk_host_id": h["127.10.3.1"], **change}


CROSS_BUSINESS = {
    "rename a business-3 service instance": lambda h: {"service_instances": [service_30(h, name="pwned")]},
    "rewrite a business-3 service instance's processes": lambda h: {
        "service_instances": [service_30(h, processes=[{"cmd": "rm -rf /"}])]
    },
    "move a business-3 service instance into business 2": lambda h: {
        "service_instances": [service_30(h, bk_module_id=100, bk_host_id=h["127.10.2.1"])]
    },
    "move a business-3 service instance by its host's address": lambda h: {
        "service_instances": [{"id": 30, "name": "redis", "bk_module_id": 100, "ip": "127.10.2.1"}]
    },
    "create a service instance on a business-3 host": lambda h: {
        "service_instances": [{"name": "new", "bk_module_id": 1100, "bk_host_id": h["127.10.3.1"]}]
    },
    "move a business-3 host into business 2 by id": lambda h: {
        "hosts": [{"bk_host_id": h["127.10.3.1"], "bk_biz_id": 2, "inner_ip": "127.10.3.1", "modules": [100]}]
    },
    "place a business-2 host in a business-3 module": lambda h: {
        "hosts": [{"bk_biz_id": 2, "inner_ip": "127.10.2.1", "modules": [1100]}]
    },
    "rename a business-3 set under business 2": lambda h: {
        "topology": [{"bk_biz_id": 2, "bk_biz_name": "biz-2", "sets": [{"bk_set_id": 110, "bk_set_name": "pwned"}]}]
    },
    "rename a business-3 module under a business-2 set": lambda h: {
        "topology": [
            {
                "bk_biz_id": 2,
                "bk_biz_name": "biz-2",
                "sets": [{"bk_set_id": 10, "bk_set_name": "web", "modules": [{"bk_module_id": 1100}]}],
            }
        ]
    },
    "rename business 3": lambda h: {"topology": [{"bk_biz_id": 3, "bk_biz_name": "pwned"}]},
    "good business-2 rows with one business-3 service instance": lambda h: {
        "topology": topology(2),
        "hosts": [{"bk_biz_id": 2, "inner_ip": "127.10.2.7", "modules": [101]}],
        "service_instances": [
            {"name": "api", "bk_module_id": 100, "bk_host_id": h["127.10.2.1"]},
            service_30(h, name="pwned"),
        ],
    },
}


@pytest.mark.parametrize("make", CROSS_BUSINESS.values(), ids=CROSS_BUSINESS.keys())
def test_an_import_touching_a_business_not_granted_is_refused_and_writes_nothing(api, services, seeded, make):
    before = snapshot(services)
    answer = api.as_user("viewer").error(IMPORT, {"inventory": make(seeded)}, 9900403)
    assert answer["data"]["permission"] == {"action": "agent_operate", "bk_biz_ids": [3]}
    assert "on business 3 (" in answer["message"], answer
    assert snapshot(services) == before


def test_the_refusal_names_the_rows_of_the_business_not_granted(api, seeded):
    inventory = CROSS_BUSINESS["good business-2 rows with one business-3 service instance"](seeded)
    answer = api.as_user("viewer").error(IMPORT, {"inventory": inventory}, 9900403)
    assert "on business 3 (rows: service_instances[1]);" in answer["message"], answer


def test_a_refusal_lists_a_few_rows_and_counts_the_rest(api, seeded):
    inventory = {"service_instances": [service_30(seeded, name=f"n{i}") for i in range(12)]}
    answer = api.as_user("viewer").error(IMPORT, {"inventory": inventory}, 9900403)
    assert "service_instances[0], service_instances[1]" in answer["message"]
    assert "service_instances[4] and 7 more)" in answer["message"], answer


@pytest.mark.parametrize(
    "csv_text",
    [
        # business 3's host moved into business 2
        "bk_biz_id,bk_cloud_id,inner_ip,bk_set_id,bk_set_name,bk_module_id,bk_module_name\n"
        "2,0,127.10.3.1,10,web,100,nginx\n",
        # business 3's set renamed under business 2
        "bk_biz_id,bk_biz_name,bk_cloud_id,inner_ip,bk_set_id,bk_set_name\n2,biz-2,0,127.10.2.1,110,pwned\n",
        # a business-2 host placed in business 3's module
        "bk_biz_id,bk_cloud_id,inner_ip,bk_set_id,bk_set_name,bk_module_id,bk_module_name\n"
        "2,0,127.10.2.1,10,web,1100,nginx\n",
    ],
    ids=["host", "set", "module"],
)
def test_a_csv_import_touching_a_business_not_granted_is_refused_and_writes_nothing(api, services, seeded, csv_text):
    before = snapshot(services)
    answer = api.as_user("viewer").error(IMPORT, {"csv": csv_text}, 9900403)
    assert answer["data"]["permission"]["bk_biz_ids"] == [3]
    assert "on business 3 (rows: line 2" in answer["message"], answer
    assert snapshot(services) == before


SAME_BUSINESS_ALLOWED = [
    "rename a business-3 service instance",
    "rewrite a business-3 service instance's processes",
    "move a business-3 service instance into business 2",
    "create a service instance on a business-3 host",
    "rename business 3",
    "good business-2 rows with one business-3 service instance",
]


@pytest.mark.parametrize("name", SAME_BUSINESS_ALLOWED)
def test_the_same_import_by_a_user_granted_both_businesses_is_stored(api, services, seeded, name):
    before = snapshot(services)
    api.as_user("both").ok(IMPORT, {"inventory": CROSS_BUSINESS[name](seeded)})
    assert snapshot(services) != before


def test_a_user_granted_both_businesses_moves_a_service_instance_and_a_host(api, seeded):
    both = api.as_user("both")
    moved = CROSS_BUSINESS["move a business-3 service instance into business 2"](seeded)
    assert both.ok(IMPORT, {"inventory": moved})["service_instance_ids"] == [30]
    (service,) = both.ok(f"{INVENTORY}/service_instances/", {"bk_biz_id": 2})
    assert (service["id"], service["bk_host_id"], service["bk_module_id"]) == (30, seeded["127.10.2.1"], 100)
    both.ok(IMPORT, {"inventory": CROSS_BUSINESS["move a business-3 host into business 2 by id"](seeded)})
    (host,) = both.ok(f"{INVENTORY}/hosts/", {"bk_biz_id": 2, "ip": "127.10.3.1"})["list"]
    assert [t["bk_module_id"] for t in host["topo"]] == [100]


def test_topology_stays_in_its_business_even_with_both_grants(api, services, seeded):
    before = snapshot(services)
    inventory = CROSS_BUSINESS["rename a business-3 set under business 2"](seeded)
    answer = api.as_user("both").error(IMPORT, {"inventory": inventory}, 3800001)
    assert "set 110 belongs to business 3, not 2" in answer["message"]
    assert snapshot(services) == before


def test_a_user_granted_only_business_2_still_imports_business_2(api, services, seeded):
    viewer = api.as_user("viewer")
    inventory = {
        "topology": topology(2),
        "hosts": [{"bk_biz_id": 2, "inner_ip": "127.10.2.1", "modules": [100, 101]}],
        "service_instances": [{"name": "api", "bk_module_id": 101, "ip": "127.10.2.1"}],
    }
    (service_id,) = viewer.ok(IMPORT, {"inventory": inventory})["service_instance_ids"]
    assert [s["id"] for s in viewer.ok(f"{INVENTORY}/service_instances/", {})] == [service_id]
    assert [s["name"] for s in api.ok(f"{INVENTORY}/service_instances/", {"bk_biz_id": 3})] == ["redis"]


@pytest.mark.parametrize("given_id", [None, 77], ids=["new-id", "given-id"])
def test_a_brand_new_service_instance_imports_on_its_own(api, seeded, given_id):
    row = {"name": "api", "bk_module_id": 100, "bk_host_id": seeded["127.10.2.1"], "processes": [{"port": 80}]}
    if given_id is not None:
        row["id"] = given_id
    (service_id,) = api.as_user("viewer").ok(IMPORT, {"inventory": {"service_instances": [row]}})[
        "service_instance_ids"
    ]
    assert given_id is None or service_id == given_id
    (service,) = api.ok(f"{INVENTORY}/service_instances/", {"bk_biz_id": 2})
    assert service == {
        "id": service_id,
        "name": "api",
        "bk_biz_id": 2,
        "bk_host_id": seeded["127.10.2.1"],
        "bk_module_id": 100,
        "processes": [{"port": 80}],
    }


def test_new_service_instances_without_an_id_follow_those_imported_with_one(api, seeded):
    host = seeded["127.10.2.1"]
    rows = [{"name": f"s{i}", "bk_module_id": 100, "bk_host_id": host} for i in range(3)]
    ids = api.ok(IMPORT, {"inventory": {"service_instances": [{**rows[0], "id": 1}, *rows[1:]]}})
    assert len(set(ids["service_instance_ids"])) == 3 and 1 in ids["service_instance_ids"]
    more = api.ok(IMPORT, {"inventory": {"service_instances": rows}})["service_instance_ids"]
    assert len(set(more) | {30, *ids["service_instance_ids"]}) == 7


def test_the_cli_import_creates_a_brand_new_service_instance(services, api, seeded):
    inventory = InventoryService(services.db, services.settings, services.jobs.box)
    row = {"name": "cli", "bk_module_id": 1101, "ip": "127.10.3.1"}
    result = asyncio.run(inventory.import_inventory(None, {"inventory": {"service_instances": [row]}}))
    (service_id,) = result["service_instance_ids"]
    names = {s["id"]: s["name"] for s in api.ok(f"{INVENTORY}/service_instances/", {"bk_biz_id": 3})}
    assert names == {30: "redis", service_id: "cli"}


def test_new_hosts_without_an_id_follow_those_imported_with_one(api, seeded):
    next_id = max(seeded.values()) + 1  # the id the database would generate next
    given = api.ok(
        IMPORT, {"inventory": {"hosts": [{"bk_host_id": next_id, "bk_biz_id": 2, "inner_ip": "127.10.2.8"}]}}
    )
    assert given["created_host_ids"] == [next_id]
    new = api.ok(IMPORT, {"inventory": {"hosts": [{"bk_biz_id": 2, "inner_ip": f"127.10.2.{i}"} for i in (20, 21)]}})
    assert len(new["created_host_ids"]) == 2 and next_id not in new["created_host_ids"]
