"""The CLI's remote commands run against a running service (SQLite, engine on, local hosts): see tests/live_jobs.py."""

from __future__ import annotations

from tests.live_jobs import database_url, stack  # noqa: F401 (fixtures)
