"""The agent's relay (proxy mode) as real processes: a proxy's agent (or the ``relay`` command alone) between real
agents or HTTP clients and a real upstream, the service itself or a recording HTTP endpoint.

Every address is on 127.0.60.0/24: the relay listens on 127.0.60.1 and clients connect from 127.0.60.2, so the
``X-Forwarded-For`` the upstream sees names the client, not the relay.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from nodeops.agent.nodeops_agent import RELAY_MAX_BODY_BYTES, RELAY_PORT, RELAY_UPSTREAM_TIMEOUT_S
from nodeops.agent.package import BUNDLED_VERSION
from nodeops.store.models import Host
from tests.support.factories import make_agents

from .conftest import AGENT_PYTHON, HEARTBEAT_PATH, TOKEN, Agent, HeartbeatServer, is_gone

RELAY_HOST = "127.0.60.1"
CLIENT_HOST = "127.0.60.2"
CLIENT_TOKEN = "tok-of-a-p-agent-7e1f-NEVER-IN-LOGS"
HEARTBEAT = {"bk_host_id": 7, "token": CLIENT_TOKEN, "version": "1.0.0"}
CLIENT_TIMEOUT_S = 1.0  # the relays of these tests drop a stalled client after this


def wait_until(condition: Callable[[], bool], *, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(0.05)


def free_port(host: str = RELAY_HOST) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class RelayProcess:
    """``nodeops_agent.py relay`` in the foreground, its stderr (its log) in a file."""

    def __init__(self, script: Path, upstream: str, log_path: Path, *options: str) -> None:
        self.address = (RELAY_HOST, free_port())
        self.log_path = log_path
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                [
                    AGENT_PYTHON,
                    str(script),
                    "relay",
                    *("--listen", "{}:{}".format(*self.address), "--upstream", upstream),
                    *options,
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        # waits on its log, not by connecting: a probe would take one of the clients a test limits
        wait_until(lambda: "relay listening on" in self.log_text() or self.process.poll() is not None)
        assert self.process.poll() is None, self.log_text()

    def log_text(self) -> str:
        return self.log_path.read_text()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def start_relay(agent: Agent, tmp_path: Path) -> Iterator[Callable[..., RelayProcess]]:
    """Starts relays of the unpacked agent (``upstream`` and options as the command line takes them)."""
    started: list[RelayProcess] = []

    def start(upstream: str, *options: str) -> RelayProcess:
        relay = RelayProcess(agent.script, upstream, tmp_path / f"relay-{len(started)}.log", *options)
        started.append(relay)
        return relay

    yield start
    for relay in started:
        relay.close()


@pytest.fixture
def relay(start_relay, heartbeat_server: HeartbeatServer) -> RelayProcess:
    """A relay forwarding to ``heartbeat_server``, which drops a stalled client after CLIENT_TIMEOUT_S."""
    relay: RelayProcess = start_relay(heartbeat_server.url, "--client-timeout", str(CLIENT_TIMEOUT_S))
    return relay


def connect(address: tuple[str, int], timeout_s: float = 10.0) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(*address, timeout=timeout_s, source_address=(CLIENT_HOST, 0))


def post(
    address: tuple[str, int], path: str = HEARTBEAT_PATH, body: dict[str, Any] | bytes = HEARTBEAT, **headers: str
) -> tuple[int, http.client.HTTPResponse, bytes]:
    connection = connect(address)
    try:
        return _exchange(connection, "POST", path, body, headers)
    finally:
        connection.close()


def _exchange(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    body: dict[str, Any] | bytes,
    headers: dict[str, str],
) -> tuple[int, http.client.HTTPResponse, bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection.request(method, path, body=data, headers={"Content-Type": "application/json", **headers})
    answer = connection.getresponse()
    return answer.status, answer, answer.read()


def raw_exchange(address: tuple[str, int], data: bytes, timeout_s: float = 10.0) -> bytes:
    """Send ``data`` as it is and read the answer until the relay closes the connection."""
    with socket.create_connection(address, timeout=timeout_s, source_address=(CLIENT_HOST, 0)) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def status_and_envelope(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


# --- forwarding ------------------------------------------------------------------------------------------------


def test_a_post_is_forwarded_with_its_body_and_headers_and_answered_with_the_upstreams(relay, heartbeat_server):
    status, answer, body = post(relay.address, **{"User-Agent": "nodeops-agent/1.0.0", "X-Custom": "not forwarded"})

    assert status == 200
    assert answer.getheader("Content-Type") == "application/json"
    assert json.loads(body) == {"result": True, "code": 0, "message": "success", "data": None}
    [heartbeat] = heartbeat_server.heartbeats
    assert heartbeat["_path"] == HEARTBEAT_PATH
    assert {k: v for k, v in heartbeat.items() if not k.startswith("_")} == HEARTBEAT
    [headers] = heartbeat_server.headers
    assert headers["X-Forwarded-For"] == CLIENT_HOST
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "nodeops-agent/1.0.0"
    assert "X-Custom" not in headers


def test_an_upstream_refusal_is_answered_as_it_came(relay, heartbeat_server):
    heartbeat_server.mode = "http_403"

    status, _, body = post(relay.address)

    assert status == 403
    assert json.loads(body)["message"] == f"bad token {CLIENT_TOKEN}"


def test_an_x_forwarded_for_from_an_earlier_hop_is_appended_to(relay, heartbeat_server):
    post(relay.address, **{"X-Forwarded-For": "127.0.61.5"})

    assert heartbeat_server.headers[0]["X-Forwarded-For"] == f"127.0.61.5, {CLIENT_HOST}"


def test_two_posts_on_one_kept_connection_are_both_forwarded(relay, heartbeat_server):
    heartbeat_server.connections = "keep"
    connection = connect(relay.address)
    try:
        first, first_answer, _ = _exchange(connection, "POST", HEARTBEAT_PATH, HEARTBEAT, {})
        sock = connection.sock
        second, _, _ = _exchange(connection, "POST", HEARTBEAT_PATH, {**HEARTBEAT, "version": "1.0.1"}, {})
        assert connection.sock is sock  # not reopened: the relay kept it
    finally:
        connection.close()

    assert (first, second) == (200, 200)
    assert not first_answer.will_close
    assert [hb["version"] for hb in heartbeat_server.heartbeats] == ["1.0.0", "1.0.1"]
    assert len({hb["_peer"] for hb in heartbeat_server.heartbeats}) == 1  # and its own to the upstream too


# --- what it does not forward ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/job/install/",
        "/api/agentx/heartbeat/",
        "/api/agent/../job/install/",
        "/api/agent/./heartbeat/",
        "/api/agent/%2e%2e/job/install/",
        "/api/agent/heartbeat%2f..%2f..%2fjob/",
        "/api/agent//heartbeat/",
        "/api/agent/.hidden",
        "/api/agent/heartbeat/?q=<script>",
        "http://127.0.60.9/api/agent/heartbeat/",
        "*",
    ],
)
def test_a_path_outside_the_agents_api_is_404_and_never_forwarded(relay, heartbeat_server, path):
    raw = raw_exchange(relay.address, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}".encode())

    status, envelope = status_and_envelope(raw)
    assert status == 404
    assert envelope == {
        "result": False,
        "code": 3800404,
        "message": "the relay forwards only agents' requests: POST /api/agent/...",
        "data": None,
    }
    assert heartbeat_server.heartbeats == []


@pytest.mark.parametrize(
    "request_line",
    [
        "POST /api/agent/心跳/ HTTP/1.1".encode(),
        "POST /api/agent/heartbeat/?令牌=1 HTTP/1.1".encode(),
        b"POST /api/agent/\xff\xfe/ HTTP/1.1",
        b"POST /api/agent/heart\x00beat/ HTTP/1.1",
    ],
)
def test_a_non_ascii_or_binary_path_is_refused_in_the_envelope(relay, heartbeat_server, request_line):
    raw = raw_exchange(relay.address, request_line + b"\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")

    status, envelope = status_and_envelope(raw)
    assert status in (400, 404)
    assert envelope["code"] == 3800000 + status and envelope["result"] is False
    assert heartbeat_server.heartbeats == []


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"])
def test_a_method_other_than_post_is_405(relay, heartbeat_server, method):
    connection = connect(relay.address)
    try:
        connection.request(method, HEARTBEAT_PATH)
        answer = connection.getresponse()
        body = answer.read()
    finally:
        connection.close()

    assert answer.status == 405
    assert answer.getheader("Allow") == "POST"
    if method != "HEAD":
        assert json.loads(body)["code"] == 3800405
    assert heartbeat_server.heartbeats == []


def test_an_unknown_method_is_refused_in_the_envelope(relay):
    status, envelope = status_and_envelope(raw_exchange(relay.address, b"BREW /api/agent/heartbeat/ HTTP/1.1\r\n\r\n"))

    assert (status, envelope["code"]) == (501, 3800501)


def test_a_body_over_the_limit_is_413_without_being_read(relay, heartbeat_server):
    status, _, body = post(relay.address, body=b"x" * (4 * RELAY_MAX_BODY_BYTES))

    assert status == 413
    assert json.loads(body)["message"] == (
        f"the body is {4 * RELAY_MAX_BODY_BYTES} bytes: the relay forwards at most {RELAY_MAX_BODY_BYTES}"
    )
    assert heartbeat_server.heartbeats == []


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (b"Transfer-Encoding: chunked\r\n", 411),
        (b"", 411),
        (b"Content-Length: -2\r\n", 400),
        (b"Content-Length: 2\r\nContent-Length: 3\r\n", 400),
        (b"Content-Length: 2\r\nX-Long: " + b"a" * 70000 + b"\r\n", 431),
        (b"Content-Length: 2\r\n" + b"X-Many: 1\r\n" * 150, 431),
    ],
)
def test_a_malformed_request_is_refused_in_the_envelope(relay, heartbeat_server, headers, status):
    raw = raw_exchange(relay.address, b"POST /api/agent/heartbeat/ HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n{}")

    answered, envelope = status_and_envelope(raw)
    assert (answered, envelope["code"]) == (status, 3800000 + status)
    assert heartbeat_server.heartbeats == []


def test_non_ascii_header_values_are_forwarded_as_sent(relay, heartbeat_server):
    raw = raw_exchange(
        relay.address,
        b"POST /api/agent/heartbeat/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
        + "User-Agent: 代理-\u00e9\r\n".encode()
        + f"Content-Length: {len(json.dumps(HEARTBEAT))}\r\n\r\n{json.dumps(HEARTBEAT)}".encode(),
    )

    assert status_and_envelope(raw)[0] == 200
    assert heartbeat_server.headers[0]["User-Agent"].encode("latin-1") == "代理-\u00e9".encode()


# --- clients that stall, go away or are too many ---------------------------------------------------------------


def test_a_stalled_client_is_dropped_and_others_are_served_meanwhile(relay, heartbeat_server):
    with socket.create_connection(relay.address, source_address=(CLIENT_HOST, 0)) as stalled:
        stalled.sendall(b"POST /api/agent/heartbeat/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        began = time.monotonic()

        assert post(relay.address)[0] == 200

        stalled.settimeout(CLIENT_TIMEOUT_S + 3)
        assert stalled.recv(1024) == b""  # closed, without an answer
        assert time.monotonic() - began < CLIENT_TIMEOUT_S + 2
    assert len(heartbeat_server.heartbeats) == 1


def test_a_client_trickling_its_request_is_dropped_at_its_deadline(relay):
    with socket.create_connection(relay.address, source_address=(CLIENT_HOST, 0)) as trickling:
        trickling.settimeout(0.2)
        began = time.monotonic()
        closed = False
        for byte in b"POST /api/agent/heartbeat/ HTTP/1.1\r\nX-Slow: " + b"a" * 1000:
            try:
                trickling.sendall(bytes([byte]))
                closed = trickling.recv(1) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
            if closed:
                break

    assert closed
    assert time.monotonic() - began < CLIENT_TIMEOUT_S + 1.5


def test_a_client_that_goes_away_mid_body_is_not_forwarded(relay, heartbeat_server):
    with socket.create_connection(relay.address, source_address=(CLIENT_HOST, 0)) as leaving:
        leaving.sendall(b'POST /api/agent/heartbeat/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"bk_')

    assert post(relay.address)[0] == 200
    assert len(heartbeat_server.heartbeats) == 1
    relay.process.send_signal(signal.SIGTERM)
    relay.process.wait(timeout=10)
    assert "1 dropped" in relay.log_text()


def forwards(relay: RelayProcess) -> bool:
    """Whether a POST is forwarded now; a connection closed unanswered (past twice max_clients) is a no."""
    try:
        return post(relay.address)[0] == 200
    except OSError:
        return False


def test_past_max_clients_a_client_is_answered_503_at_once(start_relay, heartbeat_server):
    relay = start_relay(heartbeat_server.url, "--max-clients", "1", "--client-timeout", "3")
    with socket.create_connection(relay.address, source_address=(CLIENT_HOST, 0)):  # holds the only slot
        time.sleep(0.2)
        began = time.monotonic()
        status, answer, body = post(relay.address)
        assert time.monotonic() - began < 1

    assert status == 503
    assert answer.will_close
    assert json.loads(body)["code"] == 3800503
    assert "serving 1 clients already" in json.loads(body)["message"]
    wait_until(lambda: forwards(relay))  # once the slot is free again
    assert len(heartbeat_server.heartbeats) == 1


# --- the upstream failing ----------------------------------------------------------------------------------------


def test_an_upstream_that_refuses_connections_is_502_at_once(start_relay):
    upstream = f"http://127.0.60.3:{free_port('127.0.60.3')}"
    relay = start_relay(upstream)

    began = time.monotonic()
    status, _, body = post(relay.address)

    assert time.monotonic() - began < 1
    assert status == 502
    envelope = json.loads(body)
    assert envelope["code"] == 3800502
    assert envelope["message"] == f"the relay on {RELAY_HOST}:{relay.address[1]} got no answer from {upstream}: " + (
        "Connection refused"
    )
    assert post(relay.address)[0] == 502
    relay.process.send_signal(signal.SIGTERM)
    relay.process.wait(timeout=10)
    assert relay.log_text().count("cannot forward to") == 1  # the first failure of a run only
    assert "2 failed" in relay.log_text()


def test_an_upstream_that_never_answers_is_502_after_the_relays_timeout(start_relay):
    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.60.3", 0))
        silent.listen(8)
        relay = start_relay(f"http://127.0.60.3:{silent.getsockname()[1]}")

        began = time.monotonic()
        status, _, body = post(relay.address)
        took = time.monotonic() - began

    assert status == 502
    assert "timed out" in json.loads(body)["message"]
    assert RELAY_UPSTREAM_TIMEOUT_S - 0.5 < took < RELAY_UPSTREAM_TIMEOUT_S + 2


def test_the_relay_recovers_when_the_upstream_comes_back(start_relay, heartbeat_server):
    port = free_port("127.0.60.3")
    relay = start_relay(f"http://127.0.60.3:{port}")
    assert post(relay.address)[0] == 502

    back = HeartbeatServer(("127.0.60.3", port))
    try:
        assert post(relay.address)[0] == 200
    finally:
        back.close()
    wait_until(lambda: "answers again, after 1 requests it did not answer" in relay.log_text())


# --- the standalone command ------------------------------------------------------------------------------------


def test_the_relay_command_stops_on_sigterm_saying_what_it_did(relay, heartbeat_server):
    post(relay.address)
    post(relay.address, path="/api/job/install/")

    relay.process.send_signal(signal.SIGTERM)

    assert relay.process.wait(timeout=5) == 0
    log = relay.log_text()
    assert f"relay listening on {RELAY_HOST}:{relay.address[1]}, forwarding POST /api/agent/... to " in log
    assert "relay stopping on signal 15" in log
    assert "stopped: 1 forwarded, 1 refused" in log


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["--listen", "127.0.60.1", "--upstream", "http://127.0.0.1:1"], "has no port 1-65535"),
        (["--listen", "127.0.60.1:17981", "--upstream", "ftp://127.0.0.1"], "--upstream 'ftp://127.0.0.1' must be"),
        (["--listen", "127.0.60.1:17981", "--upstream", "http://127.0.0.1:1", "--max-clients", "0"], "max_clients"),
        (["--upstream", "http://127.0.0.1:1"], "relay needs --listen IP:PORT and --upstream URL"),
    ],
)
def test_the_relay_command_refuses_bad_arguments(agent, arguments, says):
    done = subprocess.run(
        [AGENT_PYTHON, str(agent.script), "relay", *arguments], capture_output=True, text=True, timeout=20, check=False
    )

    assert done.returncode in (1, 2)
    assert says in done.stderr


def test_the_relay_command_on_a_port_in_use_fails_saying_so(agent, relay):
    done = subprocess.run(
        [
            AGENT_PYTHON,
            str(agent.script),
            "relay",
            "--listen",
            "{}:{}".format(*relay.address),
            "--upstream",
            "http://127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )

    assert done.returncode == 1
    assert f"relay cannot listen on {RELAY_HOST}:{relay.address[1]}: Address already in use" in done.stderr


# --- in the daemon (a proxy's agent) -----------------------------------------------------------------------------


def relay_listen() -> str:
    return f"{RELAY_HOST}:{free_port()}"


def test_a_proxys_agent_relays_beside_its_own_heartbeats_and_logs_no_token(agent, heartbeat_server):
    listen = relay_listen()
    agent.configure(relay={"listen": listen})
    heartbeat_server.mode = "http_403"  # its answers quote the token they got

    started = agent("start")

    assert started.returncode == 0, started.stderr
    host, port = listen.split(":")
    assert post((host, int(port)))[0] == 403
    heartbeat_server.wait_for(lambda hb: hb["token"] == TOKEN and hb.get("pid") == agent.pid())
    assert agent("stop").returncode == 0
    log = agent.log_text()
    assert f"relay listening on {listen}, forwarding POST /api/agent/... to {heartbeat_server.url}" in log
    assert f"relay on {listen} stopped: 1 forwarded" in log
    assert TOKEN not in log
    assert CLIENT_TOKEN not in log
    assert json.dumps(HEARTBEAT) not in log


def test_a_proxys_agent_whose_relay_cannot_listen_does_not_start_and_says_why(agent, relay):
    listen = "{}:{}".format(*relay.address)  # taken by another relay
    agent.configure(relay={"listen": listen})

    started = agent("start")

    assert started.returncode == 1
    assert f"relay cannot listen on {listen}: Address already in use" in started.stderr
    assert f"not starting: relay cannot listen on {listen}: Address already in use" in agent.log_text()
    assert agent("status").returncode == 3
    assert not (agent.home / "agent.pid").exists()


@pytest.mark.parametrize(
    ("relay_config", "says"),
    [
        ({"listen": "127.0.60.1"}, "relay.listen '127.0.60.1' has no port 1-65535"),
        ({"listen": "127.0.60.1:0"}, "has no port 1-65535"),
        ({"listen": "127.0.60.1:65536"}, "has no port 1-65535"),
        ({"listen": "127.0.60.1:+80"}, "has no port 1-65535"),
        ({"listen": "localhost:17981"}, "relay.listen 'localhost:17981' must be IP:PORT"),
        ({"listen": "::1:17981"}, "must be IP:PORT (an IPv4 address, or an IPv6 one in brackets"),
        ({"listen": "[127.0.60.1]:17981"}, "must be IP:PORT"),
        ({"listen": 17981}, "relay.listen must be IP:PORT"),
        ({}, "relay.listen must be IP:PORT"),
        ({"listen": "127.0.60.1:17981", "max_clients": 0}, "relay.max_clients must be an integer in [1, 4096]"),
        ({"listen": "127.0.60.1:17981", "client_timeout_s": "5"}, "relay.client_timeout_s must be a number"),
        ({"listen": "127.0.60.1:17981", "port": 1}, "relay has unknown fields ['port']"),
        ("127.0.60.1:17981", "relay must be an object"),
    ],
)
def test_a_bad_relay_config_fails_start_naming_it(agent, relay_config, says):
    agent.configure(relay=relay_config)

    started = agent("start")

    assert started.returncode == 1
    assert says in started.stderr
    assert TOKEN not in started.stderr
    assert agent("status").returncode == 3


def test_the_relay_port_is_node_managers_proxy_pass_port():
    assert RELAY_PORT == 17981


# --- end to end: a P-Agent's heartbeat through its proxy's relay, taken by the service ----------------------------


def recorded(services) -> dict[int, str | None]:
    with services.db.session() as session:
        return {
            host.bk_host_id: host.agent_version
            for host in session.scalars(sa.select(Host).where(Host.last_heartbeat_at.is_not(None)))
        }


def test_a_p_agents_heartbeat_through_its_proxys_relay_is_taken_by_the_service(services, live_server, tmp_path):
    proxy_row, p_agent_row = make_agents(services, 2)
    listen = relay_listen()
    proxy = Agent(tmp_path / "proxy", tmp_path / "packages", live_server.url)
    p_agent = Agent(tmp_path / "p-agent", tmp_path / "packages", f"http://{listen}")
    try:
        for installed, row in ((proxy, proxy_row), (p_agent, p_agent_row)):
            installed.install()
            installed.configure(bk_host_id=row.bk_host_id, token=row.token)
        proxy.configure(bk_host_id=proxy_row.bk_host_id, token=proxy_row.token, relay={"listen": listen})

        assert proxy("start").returncode == 0
        assert p_agent("start").returncode == 0

        wait_until(lambda: len(recorded(services)) == 2, timeout_s=10)
        assert recorded(services) == {proxy_row.bk_host_id: BUNDLED_VERSION, p_agent_row.bk_host_id: BUNDLED_VERSION}
        assert f"first heartbeat accepted by http://{listen}{HEARTBEAT_PATH}" in p_agent.log_text()
        pids = [proxy.pid(), p_agent.pid()]
        assert p_agent("stop").returncode == 0
        assert proxy("stop").returncode == 0
        assert all(is_gone(pid) for pid in pids)
        assert proxy_row.token not in proxy.log_text()
        assert p_agent_row.token not in proxy.log_text()
    finally:
        p_agent.kill()
        proxy.kill()


def test_a_p_agent_whose_proxy_is_down_logs_the_relays_502(agent, tmp_path):
    listen = relay_listen()
    proxy = Agent(tmp_path / "proxy", tmp_path / "packages", f"http://127.0.60.3:{free_port('127.0.60.3')}")
    proxy.install()
    proxy.configure(relay={"listen": listen})
    agent.configure(server_url=f"http://{listen}")
    try:
        assert proxy("start").returncode == 0
        assert agent("start").returncode == 0

        wait_until(lambda: "rejected with HTTP 502" in agent.log_text())
        assert "got no answer from http://127.0.60.3" in agent.log_text()
    finally:
        proxy.kill()
