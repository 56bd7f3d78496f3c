"""The routes' dependencies: the services, the request's parameters, the language it asked for, and the caller
they authenticate (who carries that language to the use cases: ``Caller.language``).

``CallerDep`` gathers the ESB common args (spec §1.1) from the query string, the JSON body and the
``X-Bkapi-Authorization`` header (else the web session cookie), and authenticates them; what it raises is
answered by the envelope handlers like any other error. Bodies are JSON objects; the seed's trailing comma is
tolerated, as on the log API.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import Depends, Request

from nodeops.api.bodies import parse_json_object
from nodeops.api.language import request_language
from nodeops.domain.i18n import DEFAULT_LANGUAGE, Language
from nodeops.service.auth import AUTH_HEADER, WEB_HEADER, Caller, CommonArgs
from nodeops.service.container import Services
from nodeops.service.inventory import InventoryService
from nodeops.service.job_commands import JobCommands
from nodeops.service.subscriptions import SubscriptionService


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def request_params(request: Request) -> dict[str, Any]:
    """The query parameters, overridden by the fields of the JSON body (read once per request)."""
    params: dict[str, Any] = dict(request.query_params)
    params.update(parse_json_object(await request.body()))
    return params


ParamsDep = Annotated[dict[str, Any], Depends(request_params)]


def language_of(request: Request, params: ParamsDep) -> Language:
    """The language the request asked for (``api.language``); the envelope's handlers answer in it too."""
    return request_language(request, params)


LanguageDep = Annotated[Language, Depends(language_of)]


async def current_caller(request: Request, params: ParamsDep, services: ServicesDep, language: LanguageDep) -> Caller:
    """The authenticated caller, in the language the request asked for; raises the ESB error saying what is
    missing or wrong."""
    args = gather_args(request, params)
    caller = await services.db.read(lambda cur: services.auth.authenticate(cur, args))
    return caller if language is DEFAULT_LANGUAGE else replace(caller, language=language)


def gather_args(request: Request, params: dict[str, Any]) -> CommonArgs:
    """The request's identity: common args, else the web session cookie (see ``CommonArgs.gather``)."""
    headers = request.headers
    return CommonArgs.gather(
        params,
        headers.get(AUTH_HEADER),
        cookie=headers.get("cookie"),
        method=request.method,
        web_header=headers.get(WEB_HEADER),
        client=client_address(request),
    )


def client_address(request: Request) -> str:
    """The address the request came from: the connection's peer (``nodeops serve`` trusts no proxy header)."""
    return request.client.host if request.client else ""


CallerDep = Annotated[Caller, Depends(current_caller)]


def make_job_commands(services: ServicesDep) -> JobCommands:
    return JobCommands(db=services.db, engine=services.engine, launcher=services.jobs, settings=services.settings)


def subscription_service(services: Services) -> SubscriptionService:
    return SubscriptionService(make_job_commands(services), services.task_actions)


def inventory_service(services: Services) -> InventoryService:
    return InventoryService(services.db, services.settings, services.jobs.box)
