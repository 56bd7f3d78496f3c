"""A subscription's scope and steps, validated (spec §3 Subscription, §4 node ids).

A scope is ``{bk_biz_id, object_type, node_type, nodes}``: ``object_type`` HOST (hosts) or SERVICE (service
instances); ``node_type`` INSTANCE (the listed hosts or service instances), TOPO (business, set or module nodes,
resolved to what is under them when the subscription runs), SERVICE_TEMPLATE or SET_TEMPLATE (the modules or sets
made from those templates). Steps are agent actions. Each object is read by its contract (``SCOPE``, a node's
by its node_type, ``STEP``), naming every bad field (``scope.nodes[2].bk_inst_id``); the forms that depend on
another field are checked here. Parsing never looks anything up: whether a node exists is the store's question.
Pure: imports only ``nodeops.errors`` and the domain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from nodeops.domain.contract import Contract, Field, Kind, one_object, shown
from nodeops.domain.instance_id import MAX_HOST_ID, HostKey
from nodeops.domain.params import MAX_INT32, int_value
from nodeops.domain.plans import JobType
from nodeops.errors import InvalidInput

AGENT_STEP_TYPE = "AGENT"
AGENT_ACTIONS = tuple(JobType)  # the agent and proxy actions of Node Manager's AGENT step
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


# --- the contracts: each object of a scope and of a step, read field by field ---------------------------------

_NODES_DESCRIPTION = (
    "INSTANCE HOST: {bk_host_id} or {ip, bk_cloud_id}; INSTANCE SERVICE: {id}; TOPO: {bk_obj_id: biz|set|module, "
    "bk_inst_id}; SERVICE_TEMPLATE / SET_TEMPLATE: {bk_obj_id: service_template|set_template, bk_inst_id}."
)
HOST_NODE = Contract(
    "HostNode",
    "A host of an INSTANCE HOST scope: bk_host_id, or ip and bk_cloud_id.",
    (
        Field(name="bk_host_id", kind=Kind.INT, maximum=MAX_HOST_ID),
        Field(name="ip", kind=Kind.TEXT, description="Inner IP (also as bk_host_innerip or inner_ip)."),
        Field(name="bk_host_innerip", kind=Kind.TEXT),
        Field(name="inner_ip", kind=Kind.TEXT),
        Field(name="bk_cloud_id", kind=Kind.INT, default=0, minimum=0, maximum=MAX_INT32),
    ),
    documented=(),
)
SERVICE_NODE = Contract(
    "ServiceNode",
    "A service instance of an INSTANCE SERVICE scope.",
    (Field(name="id", kind=Kind.INT, required=True, maximum=MAX_HOST_ID),),
    documented=(),
)


def _topology_node(name: str, objects: tuple[str, ...]) -> Contract:
    return Contract(
        name,
        "A topology or template node; a biz's bk_inst_id is at most 2147483647.",
        (
            Field(name="bk_obj_id", kind=Kind.CHOICE, required=True, choices=objects),
            Field(name="bk_inst_id", kind=Kind.INT, required=True, maximum=MAX_HOST_ID),
        ),
        documented=(),
    )


# the contract of a node, by node_type (INSTANCE: by object_type)
TOPOLOGY_NODES: dict[ScopeNodeType, Contract] = {
    node_type: _topology_node(f"{node_type.title().replace('_', '')}Node", objects)
    for node_type, objects in NODE_OBJECTS.items()
}
INSTANCE_NODES = {ScopeObject.HOST: HOST_NODE, ScopeObject.SERVICE: SERVICE_NODE}


def _upper_choice(name: str, values: type[StrEnum], *, required: bool = True) -> Field:
    """A field naming one member of ``values``, in any case."""
    accepted = ", ".join(values)
    return Field(
        name=name, kind=Kind.CHOICE, required=required, choices=tuple(values), fold="upper", description=accepted
    )


_OBJECT_TYPE = _upper_choice("object_type", ScopeObject)
_NODES = Field(name="nodes", kind=Kind.OBJECTS, required=True, min_items=0, max_items=MAX_NODES, noun="nodes")
_SCOPE_FIELDS = (
    Field(name="bk_biz_id", kind=Kind.INT, maximum=MAX_INT32, description="The business the scope is in."),
    _upper_choice("node_type", ScopeNodeType),
    # the contract of a node depends on node_type: each node's schema is an object, its forms described
    replace(_NODES, description=_NODES_DESCRIPTION, schema={"type": "array", "items": {"type": "object"}}),
)
SCOPE = Contract(
    "ScopeModel",
    "What a subscription covers; nodes are hosts, service instances, or topology / template nodes.",
    (_OBJECT_TYPE, *_SCOPE_FIELDS),
    documented=(),
)
# the scope of an update or a run: object_type is the subscription's (it may be repeated, not changed)
SUBSCRIPTION_SCOPE = Contract(
    "SubscriptionScope",
    SCOPE.description,
    (_upper_choice("object_type", ScopeObject, required=False), *_SCOPE_FIELDS),
    documented=(),
)

STEP_CONFIG = Contract(
    "StepConfig",
    "",
    (Field(name="job_type", kind=Kind.CHOICE, required=True, choices=AGENT_ACTIONS, description="The agent action."),),
    documented=(),
)
# a step's params are kept as sent; the agent steps read agent_version
STEP_PARAMS = Contract(
    "StepParams",
    "",
    (Field(name="agent_version", kind=Kind.TEXT, description="The agent version the job pushes."),),
    documented=(),
)
STEP = Contract(
    "StepModel",
    "",
    (
        Field(name="id", kind=Kind.TEXT, required=True, description="Step name of 1-64 characters, e.g. agent."),
        Field(
            name="type",
            kind=Kind.CHOICE,
            required=True,
            choices=(AGENT_STEP_TYPE,),
            description="AGENT (the only type run here).",
        ),
        # absent reads as {}, so a missing job_type is named config.job_type
        Field(name="config", kind=Kind.OBJECT, default={}, item=STEP_CONFIG, description="{job_type}."),
        Field(name="params", kind=Kind.OBJECT, default={}, item=STEP_PARAMS, description="Free-form; kept as sent."),
    ),
    documented=(),
)
STEPS = Field(name="steps", kind=Kind.OBJECTS, required=True, max_items=1, noun="steps", item=STEP)


def parse_scope(
    raw: object, *, where: str = "scope", object_type: ScopeObject | None = None, problems: dict[str, str]
) -> Scope | None:
    """Validate a scope; problems go to ``problems`` under ``where.field``. ``object_type`` is the subscription's
    (an update or a run may not change it, and need not repeat it)."""
    item = one_object(raw, where, problems, required=True)
    if item is None:
        return None
    bad = len(problems)
    values = (SCOPE if object_type is None else SUBSCRIPTION_SCOPE).gather(item, problems, prefix=where)
    sent = values.text("object_type")
    kind = object_type if sent is None else ScopeObject(sent)
    if object_type is not None and sent is not None and kind != object_type:
        problems[f"{where}.object_type"] = f"is {object_type.value} for this subscription and cannot change"
    sent_node_type = values.text("node_type")
    node_type = None if sent_node_type is None else ScopeNodeType(sent_node_type)
    nodes: list[ScopeNode] = []
    if kind is not None and node_type is not None:
        for _index, at, node in values.objects("nodes"):
            found = _node(node, kind, node_type, at, problems)
            if found is not None:
                nodes.append(found)
    if len(problems) > bad or kind is None or node_type is None:
        return None
    return Scope(object_type=kind, node_type=node_type, bk_biz_id=values.integer("bk_biz_id"), nodes=tuple(nodes))


def _node(
    item: Mapping[str, object], kind: ScopeObject, node_type: ScopeNodeType, where: str, problems: dict[str, str]
) -> ScopeNode | None:
    """One node, read by the contract of its node_type; the forms a node may take are checked here."""
    if node_type != ScopeNodeType.INSTANCE:
        values = TOPOLOGY_NODES[node_type].gather(item, problems, prefix=where)
        obj, inst = values.text("bk_obj_id"), values.integer("bk_inst_id")
        if obj == TopoObject.BIZ and inst is not None:  # a business id is a 32-bit column
            inst = int_value(inst, f"{where}.bk_inst_id", problems, maximum=MAX_INT32)
        return None if obj is None or inst is None else ScopeNode(bk_obj_id=obj, bk_inst_id=inst)
    values = INSTANCE_NODES[kind].gather(item, problems, prefix=where)
    if kind == ScopeObject.SERVICE:
        instance = values.integer("id")
        return None if instance is None else ScopeNode(service_instance_id=instance)
    host_id, cloud = values.integer("bk_host_id"), values.integer("bk_cloud_id")
    if host_id is not None or f"{where}.bk_host_id" in problems:
        return None if host_id is None else ScopeNode(bk_host_id=host_id)
    ip = values["ip"] or values["bk_host_innerip"] or values["inner_ip"]
    if not isinstance(ip, str):
        problems[where] = "a host node needs bk_host_id, or ip and bk_cloud_id"
        return None
    try:
        key = HostKey.of(ip, cloud or 0)
    except InvalidInput as exc:
        problems[f"{where}.ip"] = "; ".join(exc.problems.values())
        return None
    return ScopeNode(host_key=key) if cloud is not None else None


def parse_steps(items: Sequence[tuple[int, str, Mapping[str, object]]], problems: dict[str, str]) -> list[AgentStep]:
    """Validate the steps of ``steps`` (``STEPS``, read: a list of one step), each by ``parse_step``."""
    steps = []
    for _index, where, item in items:
        step = parse_step(item, problems, where=where)
        if step is not None:
            steps.append(step)
    return steps


def parse_step(item: Mapping[str, object], problems: dict[str, str], *, where: str) -> AgentStep | None:
    """One step (an object), read by ``STEP``; its problems are named ``where.field``."""
    bad = len(problems)
    values = STEP.gather(item, problems, prefix=where)
    step_id = values["id"]
    if not isinstance(step_id, str) or not step_id.strip() or len(step_id) > 64:
        problems[f"{where}.id"] = "must be a step name of 1-64 characters, e.g. agent"
    config = values.object("config")
    job_type = (
        None if config is None else STEP_CONFIG.gather(config, problems, prefix=f"{where}.config").text("job_type")
    )
    params = values.object("params")
    if len(problems) > bad or not isinstance(step_id, str) or job_type is None or params is None:
        return None
    return AgentStep(id=step_id.strip(), job_type=JobType(job_type), params=dict(params))


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
            problems[f"actions.{key}"] = f"{shown(value)} must be one of {', '.join(AGENT_ACTIONS)}"
        else:
            actions[str(key)] = JobType(str(value))
    return actions
