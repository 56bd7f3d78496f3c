"""Fixtures of the log reading tests; each test runs on SQLite and PostgreSQL through ``live_server``. The
client, the seed's app and user and the token factory are the log API tests' own."""

from __future__ import annotations

import pytest

from tests.integration.api.conftest import admin, client, esb_app, token_for

__all__ = ["admin", "client", "esb_app", "token_for"]


@pytest.fixture
def auth(esb_app, admin) -> dict[str, str]:
    """Common args of the superuser ``admin`` through the test app."""
    return {"bk_app_code": esb_app.code, "bk_app_secret": esb_app.secret, "bk_username": admin}
