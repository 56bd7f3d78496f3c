"""The agent program's pure parts (config checks, heartbeat body, backoff) and its promise to run on Python 3.6.

The agent runs on the host's own python3, not our venv: ruff and mypy see it as 3.11 code, so the 3.6 rules that
matter (no syntax newer than 3.6, no annotation 3.6 would evaluate and fail on, only the standard library) are
checked here.
"""

from __future__ import annotations

import ast
import sys

import pytest

from nodeops.agent import nodeops_agent as agent
from nodeops.agent.package import AGENT_SCRIPT_PATH

TOKEN = "tok-unit-5c1d"
GOOD = {
    "server_url": "http://127.10.0.1:10300/",
    "bk_host_id": 7,
    "instance_id": "host|instance|host|7",
    "token": TOKEN,
}


def config(**changes: object) -> dict[str, object]:
    raw = {**GOOD, **changes}
    return {k: v for k, v in raw.items() if v is not DROP}


DROP = object()


# --- config ---------------------------------------------------------------------------------------------------


def test_config_defaults_the_interval_and_trims_the_url():
    parsed = agent.parse_config(config())

    assert (parsed.server_url, parsed.bk_host_id, parsed.instance_id, parsed.token, parsed.interval_s) == (
        "http://127.10.0.1:10300",
        7,
        "host|instance|host|7",
        TOKEN,
        5.0,
    )
    assert agent.heartbeat_url(parsed) == "http://127.10.0.1:10300/api/agent/heartbeat/"


def test_config_repr_hides_the_token():
    assert TOKEN not in repr(agent.parse_config(config()))


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"server_url": DROP}, "server_url must be an http:// or https:// URL"),
        ({"server_url": "ftp://host"}, "server_url must be an http:// or https:// URL"),
        ({"server_url": "https://"}, "server_url has no host"),
        ({"bk_host_id": DROP}, "bk_host_id must be a non-negative integer"),
        ({"bk_host_id": "7"}, "bk_host_id must be a non-negative integer"),
        ({"bk_host_id": True}, "bk_host_id must be a non-negative integer"),
        ({"bk_host_id": -1}, "bk_host_id must be a non-negative integer"),
        ({"instance_id": ""}, "instance_id must be a non-empty string"),
        ({"token": DROP}, "token must be a non-empty string"),
        ({"token": "   "}, "token must be a non-empty string"),
        ({"token": 12345}, "token must be a non-empty string"),
        ({"interval_s": 0}, "interval_s must be a number of seconds in (0, 3600]"),
        ({"interval_s": "5"}, "interval_s must be a number of seconds in (0, 3600]"),
        ({"interval_s": False}, "interval_s must be a number of seconds in (0, 3600]"),
        ({"interval_s": 86400}, "interval_s must be a number of seconds in (0, 3600]"),
    ],
)
def test_config_names_each_bad_field_without_quoting_the_token(changes, problem):
    with pytest.raises(agent.AgentError) as raised:
        agent.parse_config(config(**changes))

    assert problem in str(raised.value)
    assert TOKEN not in str(raised.value)


def test_config_lists_every_problem_at_once():
    with pytest.raises(agent.AgentError, match=r"server_url .*; bk_host_id .*; token "):
        agent.parse_config(config(server_url=DROP, bk_host_id=DROP, token=DROP))


@pytest.mark.parametrize("raw", [[], "x", None, 3])
def test_config_must_be_an_object(raw):
    with pytest.raises(agent.AgentError, match="must hold a JSON object"):
        agent.parse_config(raw)


@pytest.mark.parametrize(
    ("listen", "address"),
    [
        ("127.0.60.1:17981", ("127.0.60.1", 17981)),
        ("127.0.60.1:1", ("127.0.60.1", 1)),
        ("127.0.60.1:65535", ("127.0.60.1", 65535)),
        ("[::1]:17981", ("::1", 17981)),
        ("[0:0:0:0:0:0:0:1]:80", ("::1", 80)),
        ("0.0.0.0:17981", ("0.0.0.0", 17981)),
    ],
)
def test_relay_listen_is_an_ip_literal_and_a_port(listen, address):
    relay = agent.parse_config(config(relay={"listen": listen})).relay

    assert relay is not None
    assert (relay.host, relay.port) == address
    assert (relay.max_clients, relay.client_timeout_s) == (agent.RELAY_MAX_CLIENTS, agent.RELAY_CLIENT_TIMEOUT_S)


@pytest.mark.parametrize(
    ("listen", "problem"),
    [
        ("127.0.60.1", "has no port"),
        ("[::1]", "has no port"),
        ("::1", "has no port"),
        ("[::1]17981", "has no port"),
        ("127.0.60.1:", "has no port"),
        ("127.0.60.1:0", "has no port"),
        ("127.0.60.1:65536", "has no port"),
        ("127.0.60.1:0x50", "has no port"),
        ("127.0.60.1:١٢", "has no port"),  # digits, but not ASCII ones
        ("127.0.60.1: 80", "has no port"),
        ("::1:17981", "must be IP:PORT"),
        ("[127.0.60.1]:80", "must be IP:PORT"),
        ("[::1:80", "must be IP:PORT"),
        ("host.example:80", "must be IP:PORT"),
        ("127.0.60.256:80", "must be IP:PORT"),
        ("", "must be IP:PORT"),
        ("x" * 1000, "must be IP:PORT"),
        (17981, "must be IP:PORT"),
        (None, "must be IP:PORT"),
    ],
)
def test_relay_listen_names_what_is_wrong(listen, problem):
    with pytest.raises(agent.AgentError) as raised:
        agent.parse_config(config(relay={"listen": listen}))

    assert problem in str(raised.value)
    assert str(raised.value).startswith("agent.json: relay.listen ")
    assert len(str(raised.value)) < 400


def test_no_relay_is_none_and_the_config_repr_shows_the_relay():
    assert agent.parse_config(config()).relay is None
    assert agent.parse_config(config(relay=None)).relay is None
    parsed = agent.parse_config(config(relay={"listen": "[::1]:17981", "max_clients": 3, "client_timeout_s": 2}))
    assert "RelaySettings(listen='[::1]:17981', max_clients=3, client_timeout_s=2.0)" in repr(parsed)
    assert TOKEN not in repr(parsed)


# --- heartbeats ----------------------------------------------------------------------------------------------


def test_heartbeat_body_has_exactly_the_contract_fields():
    body = agent.build_heartbeat(
        agent.parse_config(config(interval_s=2)),
        "0.1.0",
        pid=1234,
        hostname="web-1",
        sent_at="2025-01-01T00:00:00.000+00:00",
    )

    assert body == {
        "bk_host_id": 7,
        "instance_id": "host|instance|host|7",
        "token": TOKEN,
        "version": "0.1.0",
        "pid": 1234,
        "hostname": "web-1",
        "sent_at": "2025-01-01T00:00:00.000+00:00",
    }


def test_sent_at_is_utc_with_an_offset():
    assert agent.utc_now().endswith("+00:00")


@pytest.mark.parametrize(
    ("interval_s", "failures", "delay_s"),
    [
        (5, 0, 5),
        (5, 1, 10),
        (5, 2, 20),
        (5, 3, 40),
        (5, 4, 60),
        (5, 100, 60),
        (5, 10**6, 60),
        (0.2, 1, 0.4),
        (0.2, 3, 1.6),
        (120, 0, 120),
        (120, 5, 120),  # never sooner than the interval
    ],
)
def test_failures_back_off_doubling_up_to_60_s(interval_s, failures, delay_s):
    assert agent.next_delay_s(interval_s, failures) == pytest.approx(delay_s)


@pytest.mark.parametrize(
    ("interval_s", "failures", "delay_s"),
    [
        (30, 0, 30),
        (30, 1, 2),
        (30, 2, 4),
        (30, 4, 16),
        (30, 5, 30),  # never slower than the interval
        (30, 10**6, 30),
        (0.2, 1, 0.2),  # nor sooner than it
    ],
)
def test_before_the_first_heartbeat_is_delivered_failures_are_retried_soon(interval_s, failures, delay_s):
    assert agent.next_delay_s(interval_s, failures, delivered=False) == pytest.approx(delay_s)


@pytest.mark.parametrize(
    ("body", "rejection"),
    [
        (b'{"result": true, "code": 0, "message": "success", "data": null}', None),
        (b'{"result": false, "code": 3801403, "message": "bad token"}', "bad token (code 3801403)"),
        (b"not json", None),
        (b"", None),
        (b"[false]", None),
    ],
)
def test_a_200_answer_with_result_false_is_a_rejection(body, rejection):
    assert agent._rejection(body) == rejection


# --- runs on the host's python3 (3.6+), alone ------------------------------------------------------------------


SOURCE = AGENT_SCRIPT_PATH.read_text(encoding="utf-8")
TREE = ast.parse(SOURCE)


def test_agent_parses_as_python_3_6():
    ast.parse(SOURCE, feature_version=(3, 6))


def test_agent_imports_only_the_standard_library_and_no_future():
    imported = set()
    for node in ast.walk(TREE):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module, "the agent is a single file: no relative imports"
            imported.add(node.module.split(".")[0])

    assert "__future__" not in imported  # `annotations` needs 3.7
    assert imported <= sys.stdlib_module_names, imported - sys.stdlib_module_names
    assert "typing" not in imported  # typing grew through 3.6.x; the agent needs none of it at run time


def _evaluated_annotations() -> list[ast.expr]:
    """Annotations Python 3.6 evaluates when it runs the file: parameters, returns, module and class variables."""
    found: list[ast.expr] = []
    for node in ast.walk(TREE):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
            found.extend(a.annotation for a in every if a is not None and a.annotation is not None)
            if node.returns is not None:
                found.append(node.returns)
    for scope in [TREE, *(n for n in ast.walk(TREE) if isinstance(n, ast.ClassDef))]:
        found.extend(n.annotation for n in scope.body if isinstance(n, ast.AnnAssign))
    return found


def test_annotations_3_6_evaluates_are_plain_names_or_quoted():
    annotations = _evaluated_annotations()
    assert annotations, "the checker sees the agent's annotations"

    bad = [
        f"line {a.lineno}: {ast.unparse(a)}"
        for a in annotations
        if not isinstance(a, ast.Name | ast.Attribute)
        and not (isinstance(a, ast.Constant) and (a.value is None or isinstance(a.value, str)))
    ]
    assert not bad, f"annotations that fail on 3.6 at import (quote them): {bad}"


def test_agent_imports_cleanly_as_a_module_with_no_side_effects():
    assert agent.DEFAULT_HOME == str(AGENT_SCRIPT_PATH.parent)
    assert set(agent.COMMANDS) == {"start", "stop", "restart", "status", "run", "version"}
