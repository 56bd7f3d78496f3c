"""``GET /metrics``: this API process's metrics and the store's, in Prometheus' text format (docs/operations.md).

Off unless ``NODEOPS_METRICS_TOKEN`` is set: then it answers exactly as a path with no route (3800404), so a
service without metrics shows no endpoint. With the token, only ``Authorization: Bearer <token>`` reads it
(``nodeops.metrics.is_authorized``, a constant-time comparison); anything else is HTTP 401 with the envelope
3800401 and ``WWW-Authenticate: Bearer``, which says nothing of the token. Each API process answers with its own
counters (``nodeops serve --workers N``: scrape each, or sum them); the store's gauges are the same in all.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from nodeops import metrics
from nodeops.api.deps import ServicesDep
from nodeops.api.envelope import error_body
from nodeops.errors import MetricsUnauthorized, RouteNotFound
from nodeops.service.metrics import MetricsReader

router = APIRouter(tags=["service"])
METRICS_PATH = "/metrics"
_AUTHORIZATION = b"authorization"


@router.get(METRICS_PATH, include_in_schema=False)
async def read_metrics(request: Request, services: ServicesDep) -> Response:
    """The scrape's text, or the refusal (see the module's docstring)."""
    token = services.settings.metrics_token.get_secret_value()
    if not token:
        raise RouteNotFound(path=request.url.path)
    header = next((value for name, value in request.scope["headers"] if name == _AUTHORIZATION), None)
    if not metrics.is_authorized(header, token):
        return Response(
            error_body(MetricsUnauthorized()),
            status_code=401,
            media_type="application/json",
            headers={"WWW-Authenticate": 'Bearer realm="nodeops metrics"'},
        )
    reader: MetricsReader = request.app.state.metrics
    counts = await reader.read()
    return Response(metrics.render(counts), media_type=metrics.CONTENT_TYPE)
