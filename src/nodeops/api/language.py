"""The language a request is answered in: ``resolve_language``, the one rule, for the routes (``api.deps``), the
envelope's handlers and the log API's fast path and lane (``fastpath.log.prepare``).

Node Manager's ways of asking, strongest first: the ``bk_language`` parameter (query string, or the JSON body
of a POST), the ``blueking_language`` cookie, then ``Accept-Language`` (q-values honoured). A value naming
neither language is as if absent, and the next way decides; with none, the answer is Chinese, exactly as
before (docs/compatibility.md, "Two languages").
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request

from nodeops.domain.i18n import (
    DEFAULT_LANGUAGE,
    LANGUAGE_COOKIE,
    LANGUAGE_PARAM,
    Language,
    parse_accept_language,
    parse_language,
)
from nodeops.service.auth import cookie_value


def resolve_language(bk_language: object, cookie: str | None, accept_language: str | None) -> Language:
    """The language to answer in, from the request's ``bk_language`` parameter, its Cookie header and its
    Accept-Language header (each None when absent); never raises."""
    if bk_language is not None and (language := parse_language(bk_language)) is not None:
        return language
    if cookie and (language := parse_language(cookie_value(cookie, LANGUAGE_COOKIE))) is not None:
        return language
    if accept_language and (language := parse_accept_language(accept_language)) is not None:
        return language
    return DEFAULT_LANGUAGE


def request_language(request: Request, params: Mapping[str, object] | None = None) -> Language:
    """``resolve_language`` of a framework request, remembered on it: with ``params`` (the route's, the JSON
    body's fields included) from them and the headers; without, what its route resolved, else from its query
    string and headers (an error raised before the route read its parameters)."""
    if params is None:
        resolved = getattr(request.state, "language", None)
        if isinstance(resolved, Language):
            return resolved
        bk_language: object = request.query_params.get(LANGUAGE_PARAM)
    else:
        bk_language = params.get(LANGUAGE_PARAM)
    headers = request.headers
    language = resolve_language(bk_language, headers.get("cookie"), headers.get("accept-language"))
    request.state.language = language
    return language
