"""A subscription's scope and steps, validated (spec §3 Subscription, §4 node ids).

A scope is ``{bk_biz_id, object_type, node_type, nodes}``: ``object_type`` HOST (hosts) or SERVICE (service
instances); ``node_type`` INSTANCE (the listed hosts or service instances), TOPO (business, set or module nodes,
resolved to what is under them when the subscription runs), SERVICE_TEMPLATE or SET_TEMPLATE (the modules or sets
made from those templates). Steps are agent actions. Parsing names every bad field (``scope.nodes[2].bk_inst_id``)
and never looks anything up: whether a node exists is the store's question. Pure: imports only ``nodeops.errors``
and the domain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from nodeops.domain.instance_id import MAX_HOST_ID, HostKey
from nodeops.domain.params import MAX_INT32, int_value
from nodeops.domain.plans import JobType
from nodeops.errors import InvalidInput

AGENT_STEP_TYPE = "AGENT"
AGENT_ACTIONS = (
    JobType.INSTALL_AGENT,
    JobType.REINSTALL_AGENT,
    JobType.UPGRADE_AGENT,
    JobType.RESTART_AGENT,
    JobType.RELOAD_AGENT,
    JobType.UNINSTALL_AGENT,
)
MAX_NODES = 10_000


class ScopeObject(StrEnum):
    HOST = "HOST"  # the scope's instances are hosts
    SERVICE = "SERVICE"  # the scope's instances are service instances


class ScopeNodeType(StrEnum):
    INSTANCE = "INSTANCE"  # listed hosts or service instances
    TOPO = "TOPO"  # business / set / module nodes, resolved at run time
    SERVICE_TEMPLATE = "SERVICE_TEMPLATE"  # the modules of these service templates
    SET_TEMPLATE = "SET_TEMPLATE"  # the sets of these set templates


class TopoObject(StrEnum):
    BIZ = "biz"  # a business: every host of it
    SET = "set"  # a set: the hosts of its modules
    MODULE = "module"  # a module: the hosts placed in it


# which bk_obj_id a node of each node_type names
NODE_OBJECTS: dict[ScopeNodeType, tuple[str, ...]] = {
    ScopeNodeType.TOPO: tuple(TopoObject),
    ScopeNodeType.SERVICE_TEMPLATE: ("service_template",),
    ScopeNodeType.SET_TEMPLATE: ("set_template",),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ScopeNode:
    """One node of a scope: a host (by id or by address), a service instance, or a topology / template node."""

    bk_host_id: int | None = None
    host_key: HostKey | None = None
    service_instance_id: int | None = None
    bk_obj_id: str | None = None
    bk_inst_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The node as Node Manager stores it in ``Subscription.nodes``."""
        if self.bk_host_id is not None:
            return {"bk_host_id": self.bk_host_id}
        if self.host_key is not None:
            return {"ip": self.host_key.ip, "bk_cloud_id": self.host_key.bk_cloud_id}
        if self.service_instance_id is not None:
            return {"id": self.service_instance_id}
        return {"bk_obj_id": self.bk_obj_id, "bk_inst_id": self.bk_inst_id}


@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    object_type: ScopeObject
    node_type: ScopeNodeType
    bk_biz_id: int | None
    nodes: tuple[ScopeNode, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "bk_biz_id": self.bk_biz_id,
            "object_type": self.object_type.value,
            "node_type": self.node_type.value,
            "nodes": [node.as_json() for node in self.nodes],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStep:
    """The subscription's step: an agent action (``config.job_type``) and its free-form ``params``."""

    id: str
    job_type: JobType
    params: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": AGENT_STEP_TYPE,
            "config": {"job_type": self.job_type.value},
            "params": self.params,
        }


def parse_scope(
    raw: object, *, where: str = "scope", object_type: ScopeObject | None = None, problems: dict[str, str]
) -> Scope | None:
    """Validate a scope; problems go to ``problems`` under ``where.field``. ``object_type`` is the subscription's
    (an update or a run may not change it, and need not repeat it)."""
    if not isinstance(raw, Mapping):
        problems[where] = "must be an object {object_type, node_type, nodes[, bk_biz_id]}"
        return None
    bad = len(problems)
    kind = object_type
    if object_type is None or raw.get("object_type") not in (None, ""):
        kind = _choice(raw.get("object_type"), ScopeObject, f"{where}.object_type", problems)
        if kind is not None and object_type is not None and kind != object_type:
            problems[f"{where}.object_type"] = f"is {object_type.value} for this subscription and cannot change"
    node_type = _choice(raw.get("node_type"), ScopeNodeType, f"{where}.node_type", problems)
    biz = None
    if raw.get("bk_biz_id") not in (None, ""):
        biz = int_value(raw.get("bk_biz_id"), f"{where}.bk_biz_id", problems, maximum=MAX_INT32)
    nodes_raw = raw.get("nodes")
    nodes: list[ScopeNode] = []
    if not isinstance(nodes_raw, list):
        problems[f"{where}.nodes"] = "must be a list of nodes (it may be empty)"
    elif len(nodes_raw) > MAX_NODES:
        problems[f"{where}.nodes"] = f"at most {MAX_NODES} nodes"
    elif kind is not None and node_type is not None:
        for index, item in enumerate(nodes_raw):
            node = _node(item, kind, node_type, f"{where}.nodes[{index}]", problems)
            if node is not None:
                nodes.append(node)
    if len(problems) > bad or kind is None or node_type is None:
        return None
    return Scope(object_type=kind, node_type=node_type, bk_biz_id=biz, nodes=tuple(nodes))


def _node(
    item: object, kind: ScopeObject, node_type: ScopeNodeType, where: str, problems: dict[str, str]
) -> ScopeNode | None:
    if not isinstance(item, Mapping):
        problems[where] = "must be an object"
        return None
    if node_type == ScopeNodeType.INSTANCE and kind == ScopeObject.HOST:
        if item.get("bk_host_id") not in (None, ""):
            host_id = int_value(item["bk_host_id"], f"{where}.bk_host_id", problems, maximum=MAX_HOST_ID)
            return None if host_id is None else ScopeNode(bk_host_id=host_id)
        ip = item.get("ip") or item.get("bk_host_innerip") or item.get("inner_ip")
        if not isinstance(ip, str) or not ip:
            problems[where] = "a host node needs bk_host_id, or ip and bk_cloud_id"
            return None
        cloud = int_value(item.get("bk_cloud_id", 0), f"{where}.bk_cloud_id", problems, minimum=0, maximum=MAX_INT32)
        try:
            key = HostKey.of(ip, cloud or 0)
        except InvalidInput as exc:
            problems[f"{where}.ip"] = "; ".join(exc.problems.values())
            return None
        return ScopeNode(host_key=key) if cloud is not None else None
    if node_type == ScopeNodeType.INSTANCE:
        instance = int_value(item.get("id"), f"{where}.id", problems, maximum=MAX_HOST_ID)
        return None if instance is None else ScopeNode(service_instance_id=instance)
    allowed = NODE_OBJECTS[node_type]
    obj = item.get("bk_obj_id")
    if obj not in allowed:
        problems[f"{where}.bk_obj_id"] = f"{_shown(obj)} must be {' or '.join(allowed)} for node_type {node_type}"
        return None
    maximum = MAX_INT32 if obj == TopoObject.BIZ.value else MAX_HOST_ID
    inst = int_value(item.get("bk_inst_id"), f"{where}.bk_inst_id", problems, maximum=maximum)
    return None if inst is None else ScopeNode(bk_obj_id=str(obj), bk_inst_id=inst)


def parse_steps(raw: object, problems: dict[str, str], *, where: str = "steps") -> list[AgentStep]:
    """Validate ``steps``: exactly one AGENT step whose ``config.job_type`` is an agent action."""
    if not isinstance(raw, list) or not raw:
        problems[where] = 'must be a list of one step {"id": "agent", "type": "AGENT", "config": {"job_type": ...}}'
        return []
    if len(raw) > 1:
        problems[where] = f"has {len(raw)} steps; nodeops runs one AGENT step per subscription"
        return []
    steps: list[AgentStep] = []
    for index, item in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(item, Mapping):
            problems[at] = "must be an object {id, type, config, params}"
            continue
        step_id = item.get("id")
        if not isinstance(step_id, str) or not step_id.strip() or len(step_id) > 64:
            problems[f"{at}.id"] = "must be a step name of 1-64 characters, e.g. agent"
        if item.get("type") != AGENT_STEP_TYPE:
            problems[f"{at}.type"] = f"{_shown(item.get('type'))} is not supported: only AGENT steps run here"
        config = item.get("config")
        job_type = config.get("job_type") if isinstance(config, Mapping) else None
        if job_type not in AGENT_ACTIONS:
            problems[f"{at}.config.job_type"] = f"{_shown(job_type)} must be one of {', '.join(AGENT_ACTIONS)}"
        params = item.get("params", {})
        if not isinstance(params, Mapping):
            problems[f"{at}.params"] = "must be an object"
        if isinstance(step_id, str) and job_type in AGENT_ACTIONS and isinstance(params, Mapping):
            steps.append(AgentStep(id=step_id.strip(), job_type=JobType(str(job_type)), params=dict(params)))
    return steps


def parse_actions(raw: object, step_ids: Sequence[str], problems: dict[str, str]) -> dict[str, JobType]:
    """Validate a run's ``actions`` ``{step_id: job_type}``; empty when not given."""
    if raw is None or raw == {}:
        return {}
    if not isinstance(raw, Mapping):
        problems["actions"] = 'must be an object {"<step id>": "<job_type>"}'
        return {}
    actions: dict[str, JobType] = {}
    for key, value in raw.items():
        if key not in step_ids:
            problems[f"actions.{key}"] = f"no step {key!r} in this subscription (steps: {', '.join(step_ids)})"
        elif value not in AGENT_ACTIONS:
            problems[f"actions.{key}"] = f"{_shown(value)} must be one of {', '.join(AGENT_ACTIONS)}"
        else:
            actions[str(key)] = JobType(str(value))
    return actions


def bool_value(value: object, name: str, problems: dict[str, str], *, default: bool) -> bool:
    """A boolean, also from the strings ``true``/``false``/``1``/``0`` of a query string."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    problems[name] = f"{_shown(value)} must be true or false"
    return default


def _choice(value: object, enum: type[StrEnum], name: str, problems: dict[str, str]) -> Any:
    accepted = ", ".join(member.value for member in enum)
    if value is None or value == "":
        problems[name] = f"this field is required: one of {accepted}"
        return None
    if not isinstance(value, str) or value.upper() not in {member.value for member in enum}:
        problems[name] = f"{_shown(value)} must be one of {accepted}"
        return None
    return enum(value.upper())


def _shown(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
