"""A server running the engine (lifespan on) and a JobApi of the superuser ``admin`` (``api``, as the job tests');
users ``viewer`` (business 2) and ``outsider`` (business 3) exist too. Agents installed under tmp_path are stopped
at the end."""

from __future__ import annotations

import pytest

from nodeops.settings import Settings
from tests.integration.jobs.conftest import api  # noqa: F401 (fixture)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared settings, with a bound on each step."""
    return settings.model_copy(update={"step_timeout_s": 60})
