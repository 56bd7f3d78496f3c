"""Mounts the log viewer on the FastAPI app: ``GET /`` answers ``static/index.html``, ``/web/static/`` its assets;
and the API's documentation, ``GET /docs``: ``static/docs.html``, Swagger UI from ``static/swagger-ui/``.

The pages route on the URL's hash (``#/``, ``#/task-list/{job_id}``, ``#/task-list/{job_id}/log/{instance_id}``,
Node Manager's deep link), so the server has a single page to serve and every API path stays the API's.
Both pages load only files of this package, under the same headers (``PAGE_HEADERS``). Imports nothing from
nodeops.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSETS_PATH = "/web/static"
# every script and style is a file of ours: nothing inline, nothing from elsewhere
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


async def index() -> Response:
    """The viewer's one page."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


async def docs() -> Response:
    """The API's documentation: Swagger UI on ``/openapi.json``."""
    return FileResponse(STATIC_DIR / "docs.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


def mount_viewer(app: FastAPI) -> None:
    """Serve the viewer at ``/``, the API's documentation at ``/docs`` (build the app with ``docs_url=None``,
    ``redoc_url=None``) and their assets under ``/web/static/``; other paths are left to the API."""
    app.mount(ASSETS_PATH, StaticFiles(directory=STATIC_DIR), name="web-static")
    app.add_api_route("/", index, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route("/docs", docs, methods=["GET", "HEAD"], include_in_schema=False)
