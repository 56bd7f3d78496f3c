"""The fast path: the hottest requests answered outside FastAPI, and the HTTP protocol ``nodeops serve`` runs.

- ``log``: ``LogFastPath``, the log API's three addresses as a bare ASGI path (and the request reading and
  envelope it shares with the lane: ``log_address``, ``prepare``, ``envelope``);
- ``heartbeat``: ``HeartbeatPath``, the agents' ``POST /api/agent/heartbeat/`` as a bare ASGI path;
- ``lane``: ``LogLane``, the log API's GETs answered by the HTTP protocol itself, below ASGI, in batches;
- ``connections``: ``ConnectionGuard``, the read timeouts and the connection cap of every connection;
- ``openapi``: the OpenAPI description of the log API's addresses, which no FastAPI route declares;
- ``respond``: the one writer of the answers made outside the framework;
- ``request_ids``: ``RequestIds``, the outermost layer, which gives every request its id (``X-Request-Id``).

Only this package imports uvicorn's and httptools' internals (``tests/test_layers.py``). The rest of ``api``
uses ``wrap_app`` (``create_app``, which returns its ``request_ids.RequestIds``), ``openapi`` (its schema),
``respond.send_answer`` (``BodyLimit``) and ``heartbeat.HEARTBEAT_PATH`` (the heartbeat's FastAPI route);
``nodeops serve`` runs uvicorn with the wrapped application's ``http_protocol``.
"""

from __future__ import annotations

from nodeops.api.fastpath.connections import ConnectionLimits, guard_protocol
from nodeops.api.fastpath.heartbeat import HeartbeatPath
from nodeops.api.fastpath.lane import LogLane
from nodeops.api.fastpath.log import ASGIApp, LogFastPath
from nodeops.api.fastpath.request_ids import RequestIds
from nodeops.service.container import Services
from nodeops.settings import Settings


def wrap_app(app: ASGIApp, services: Services, settings: Settings) -> RequestIds:
    """``app`` behind the log and heartbeat paths, each request with its id, with the uvicorn ``http`` protocol to
    serve it with: the log lane, the read timeouts and the connection cap of ``settings``."""
    served = RequestIds(LogFastPath(HeartbeatPath(app, services), services))
    lane = LogLane(services.logs, enabled=True)
    served.http_protocol = guard_protocol(lane.protocol(), ConnectionLimits.from_settings(settings))
    return served
