"""The log viewer: plain HTML, CSS and JavaScript under ``static/`` (no build step, nothing from a CDN), served by
the service itself at ``/`` and ``/web/static/``. The pages call the same job and log APIs as every other client,
with the session cookie of ``POST /web/session/``. Imports fastapi/starlette and nothing from nodeops but leaves."""
