"""Manual installs (network spec §16):

- ``GET /api/job/{job_id}/get_job_commands/?bk_host_id=``: the command installing a manual host (or PENDING).
- ``POST /api/agent/install/script/`` ``{"token"}``: what that command calls: the install script, as text; a
  refused token answers the envelope (3800403), which the command shows instead of running it.
- ``POST /api/agent/install/report/``: the script's lines and end.

The two agent calls need no ESB app (the token is the credential) and are POSTs under ``/api/agent/`` so a
proxy's relay forwards them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from nodeops.api.bodies import parse_json_object
from nodeops.api.envelope import json_response, success_body
from nodeops.api.routing import add_route, use_case_endpoint
from nodeops.api.schemas import Envelope
from nodeops.service import manual_install
from nodeops.service.auth import Caller
from nodeops.service.container import Services
from nodeops.service.manual_install import REPORT_PATH, SCRIPT_PATH, ManualInstall

router = APIRouter(tags=["manual install"])
REQUESTS = (manual_install.GET_JOB_COMMANDS, manual_install.SCRIPT_REQUEST, manual_install.REPORT_REQUEST)
SCRIPT_MEDIA_TYPE = "text/x-shellscript; charset=utf-8"


def _service(request: Request) -> ManualInstall:
    services: Services = request.app.state.services
    return ManualInstall(services.db, services.settings)


async def _commands(services: Services, caller: Caller, params: dict[str, Any]) -> Any:
    return await ManualInstall(services.db, services.settings).commands(caller, params)


async def script(request: Request) -> Response:
    """The install script of the command's one-time token (spent by this call)."""
    text = await _service(request).script(parse_json_object(await request.body()))
    return Response(text.encode("utf-8"), media_type=SCRIPT_MEDIA_TYPE, headers={"Cache-Control": "no-store"})


async def report(request: Request) -> Response:
    """Lines of the install script's output, and its end."""
    body = parse_json_object(await request.body())
    return json_response(success_body(await _service(request).report(body)))


add_route(
    router,
    "/api/job/{job_id}/get_job_commands/",
    use_case_endpoint(_commands, "/api/job/{job_id}/get_job_commands/"),
    operation_id="job_get_job_commands",
    summary="获取安装命令 (get_job_commands): the command installing a manual host, or PENDING",
    methods=("GET",),
    response=Envelope,
    tags=["job"],
)
add_route(
    router,
    SCRIPT_PATH,
    script,
    operation_id="agent_install_script",
    summary="The install script of a manual install command's one-time token",
    request=manual_install.SCRIPT_REQUEST,
)
add_route(
    router,
    REPORT_PATH,
    report,
    operation_id="agent_install_report",
    summary="A manual install script's output lines and end",
    request=manual_install.REPORT_REQUEST,
    response=Envelope,
)
