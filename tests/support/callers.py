"""The log API's callers, as fixtures (imported by tests/conftest.py): an HTTP client on ``live_server``, the seed's
app and users, the seed's job, bk_tokens, and the common args of the superuser ``admin``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

import httpx
import pytest

from nodeops.service.container import Services
from nodeops.service.security import issue_token
from tests.support.factories import AppCredentials, MadeJob, make_app, make_seed_job, make_user


@pytest.fixture
def client(live_server) -> Iterator[httpx.Client]:
    """An HTTP client on the live server."""
    with httpx.Client(base_url=live_server.url, timeout=10) as http:
        yield http


@pytest.fixture
def esb_app(services: Services) -> AppCredentials:
    """The seed's caller app ``esb_test``, allowed to pass bk_username."""
    return make_app(services)


@pytest.fixture
def admin(services: Services) -> str:
    """The seed's user ``admin``, a superuser."""
    return make_user(services, "admin", superuser=True)


@pytest.fixture
def auth(esb_app: AppCredentials, admin: str) -> dict[str, str]:
    """Common args of the superuser ``admin`` through the test app."""
    return {"bk_app_code": esb_app.code, "bk_app_secret": esb_app.secret, "bk_username": admin}


@pytest.fixture(params=["sealed", "rendered"])
def seed_job(request: pytest.FixtureRequest, services: Services) -> MadeJob:
    """Job 1 with host 1: the record of the seed's response example (business 2), once with its answer sealed
    as the engine leaves a finished record, once without (rendered from its steps on each read)."""
    job = make_seed_job(services, sealed=request.param == "sealed")
    assert job.job_id == 1
    return job


TokenFactory = Callable[..., str]


@pytest.fixture
def token_for(services: Services) -> TokenFactory:
    """``token_for(username, ttl_s=3600, now=None)``: a bk_token signed with the service's key."""
    key = services.settings.resolved_secret_key()

    def issue(username: str, *, ttl_s: int = 3600, now: datetime | None = None) -> str:
        return issue_token(key, username=username, ttl_s=ttl_s, now=now)

    return issue
