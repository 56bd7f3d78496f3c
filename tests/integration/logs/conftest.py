"""Fixtures of the log reading tests; each test runs on SQLite and PostgreSQL through ``live_server``."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from nodeops.service.container import Services
from nodeops.service.security import issue_token
from tests.factories import AppCredentials, make_app, make_user


@pytest.fixture
def client(live_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        yield http


@pytest.fixture
def esb_app(services: Services) -> AppCredentials:
    return make_app(services)


@pytest.fixture
def admin(services: Services) -> str:
    return make_user(services, "admin", superuser=True)


@pytest.fixture
def token_for(services: Services) -> Callable[..., str]:
    key = services.settings.resolved_secret_key()

    def issue(username: str, *, ttl_s: int = 3600, now=None) -> str:
        return issue_token(key, username=username, ttl_s=ttl_s, now=now)

    return issue


@pytest.fixture
def auth(esb_app, admin) -> dict[str, str]:
    """Common args of the superuser ``admin`` through the test app."""
    return {"bk_app_code": esb_app.code, "bk_app_secret": esb_app.secret, "bk_username": admin}
