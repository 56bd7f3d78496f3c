"""A subscription's scope, steps and actions: what parses, and the field each refusal names."""

from __future__ import annotations

import pytest

from nodeops.domain.contract import bool_value, objects
from nodeops.domain.instance_id import HostKey
from nodeops.domain.plans import JobType
from nodeops.domain.scope import (
    ScopeNode,
    ScopeNodeType,
    ScopeObject,
    parse_actions,
    parse_scope,
    parse_steps,
)


@pytest.mark.parametrize(
    "raw, nodes",
    [
        ({"object_type": "HOST", "node_type": "INSTANCE", "nodes": [{"bk_host_id": "7"}]}, [ScopeNode(bk_host_id=7)]),
        (
            {"object_type": "host", "node_type": "instance", "nodes": [{"ip": "0:0::1", "bk_cloud_id": 2}]},
            [ScopeNode(host_key=HostKey(ip="::1", bk_cloud_id=2))],
        ),
        ({"object_type": "SERVICE", "node_type": "INSTANCE", "nodes": [{"id": 5}]}, [ScopeNode(service_instance_id=5)]),
        (
            {"object_type": "HOST", "node_type": "TOPO", "nodes": [{"bk_obj_id": "set", "bk_inst_id": 3}]},
            [ScopeNode(bk_obj_id="set", bk_inst_id=3)],
        ),
        (
            {
                "object_type": "SERVICE",
                "node_type": "SET_TEMPLATE",
                "nodes": [{"bk_obj_id": "set_template", "bk_inst_id": 1}],
            },
            [ScopeNode(bk_obj_id="set_template", bk_inst_id=1)],
        ),
        ({"object_type": "HOST", "node_type": "TOPO", "nodes": []}, []),
    ],
)
def test_a_scope_parses_into_its_nodes(raw, nodes):
    problems: dict[str, str] = {}
    scope = parse_scope(raw, problems=problems)
    assert problems == {} and scope is not None
    assert list(scope.nodes) == nodes
    assert scope.as_json()["object_type"] == raw["object_type"].upper()


@pytest.mark.parametrize(
    "raw, field",
    [
        ([], "scope"),
        ({"object_type": "HOST", "node_type": "CLUSTER", "nodes": []}, "scope.node_type"),
        ({"node_type": "TOPO", "nodes": []}, "scope.object_type"),
        ({"object_type": "HOST", "node_type": "TOPO", "nodes": {}}, "scope.nodes"),
        ({"object_type": "HOST", "node_type": "TOPO", "nodes": [1]}, "scope.nodes[0]"),
        (
            {"object_type": "HOST", "node_type": "TOPO", "nodes": [{"bk_obj_id": "host", "bk_inst_id": 1}]},
            "scope.nodes[0].bk_obj_id",
        ),
        (
            {"object_type": "HOST", "node_type": "TOPO", "nodes": [{"bk_obj_id": "set", "bk_inst_id": 0}]},
            "scope.nodes[0].bk_inst_id",
        ),
        ({"object_type": "HOST", "node_type": "INSTANCE", "nodes": [{"bk_cloud_id": 0}]}, "scope.nodes[0]"),
        ({"object_type": "HOST", "node_type": "INSTANCE", "nodes": [{"ip": "::1%lo"}]}, "scope.nodes[0].ip"),
        ({"object_type": "SERVICE", "node_type": "INSTANCE", "nodes": [{"id": True}]}, "scope.nodes[0].id"),
        ({"object_type": "HOST", "node_type": "TOPO", "nodes": [], "bk_biz_id": -2}, "scope.bk_biz_id"),
        (
            {"object_type": "HOST", "node_type": "TOPO", "nodes": [{"bk_obj_id": "biz", "bk_inst_id": 2**31}]},
            "scope.nodes[0].bk_inst_id",
        ),
        (
            {"object_type": "HOST", "node_type": "INSTANCE", "nodes": [{"ip": "127.10.0.1", "bk_cloud_id": 2**31}]},
            "scope.nodes[0].bk_cloud_id",
        ),
    ],
)
def test_a_bad_scope_names_the_field(raw, field):
    problems: dict[str, str] = {}
    assert parse_scope(raw, problems=problems) is None
    assert field in problems, problems


def test_an_update_may_not_change_the_object_type():
    problems: dict[str, str] = {}
    raw = {"object_type": "SERVICE", "node_type": "TOPO", "nodes": []}
    assert parse_scope(raw, object_type=ScopeObject.HOST, problems=problems) is None
    assert "cannot change" in problems["scope.object_type"]
    kept = parse_scope({"node_type": "TOPO", "nodes": []}, object_type=ScopeObject.HOST, problems=problems)
    assert kept is not None and kept.object_type == ScopeObject.HOST and kept.node_type == ScopeNodeType.TOPO


def test_steps_and_actions():
    problems: dict[str, str] = {}
    sent = [{"id": "agent", "type": "AGENT", "config": {"job_type": "RELOAD_AGENT"}}]
    (step,) = parse_steps(objects(sent, "steps", problems, noun="steps"), problems)
    assert (step.id, step.job_type, step.params) == ("agent", JobType.RELOAD_AGENT, {})
    assert parse_actions({"agent": "UNINSTALL_AGENT"}, ["agent"], problems) == {"agent": JobType.UNINSTALL_AGENT}
    assert problems == {}
    parse_actions({"plugin": "RESTART_AGENT", "agent": "START"}, ["agent"], problems)
    assert set(problems) == {"actions.plugin", "actions.agent"}


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, False),
        ("", False),
        ("  ", False),
        ("true", True),
        ("0", False),
        (1, True),
        (" YES ", True),
        ("No", False),
    ],
)
def test_bool_value_reads_query_strings(value, expected):
    problems: dict[str, str] = {}
    assert bool_value(value, "flag", problems, default=False) is expected and problems == {}
    for bad in ("maybe", 2, [True], "\uff54\uff52\uff55\uff45"):
        bool_value(bad, "flag", problems, default=False)
        assert problems == {"flag": f"{bad!r} must be true or false"}
