"""``POST /api/agent/heartbeat/`` answered as a bare ASGI path: what installed agents call (token in the body).

Every agent of the fleet calls it on a rhythm, so ``HeartbeatPath`` answers it outside FastAPI's per-request
machinery (routing, dependency injection, response models), like the log API's ``LogFastPath``. The FastAPI
route of ``api.routes.agents`` is the same endpoint for the OpenAPI schema (and for an app mounted without the
fast path); both hand the body to ``Services.heartbeat_groups`` (``service.heartbeat_groups``), which writes
the heartbeats that arrive together in one transaction.
"""

from __future__ import annotations

import logging
import time

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from nodeops import metrics
from nodeops.api.bodies import log_client_gone, read_json_body
from nodeops.api.envelope import error_body, internal_error_body, success_body
from nodeops.api.fastpath.respond import send_answer
from nodeops.errors import NodeopsError
from nodeops.service.container import Services

log = logging.getLogger(__name__)
HEARTBEAT_PATH = "/api/agent/heartbeat/"
_ACCEPTED = success_body(None)


class HeartbeatPath:
    """ASGI app answering ``POST /api/agent/heartbeat/`` itself, in the envelope; everything else goes to ``app``."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != HEARTBEAT_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            body_fields = await read_json_body(receive, scope["headers"])
            await self.services.heartbeat_groups.receive(body_fields)
            body = _ACCEPTED
        except ClientDisconnect:
            log_client_gone("POST", HEARTBEAT_PATH)
            return
        except NodeopsError as exc:
            body = error_body(exc)
        except Exception:
            log.exception("unhandled error on POST %s", HEARTBEAT_PATH, extra={"action": "unhandled_error"})
            body = internal_error_body()
        await send_answer(send, body)
        metrics.http_answered(HEARTBEAT_PATH, "POST", 200, metrics.envelope_code(body), time.perf_counter() - started)
