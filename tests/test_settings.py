"""The distributed mode's settings: their defaults and bounds, what celery mode accepts, and that the embedded
mode reads none of them. How the CLI reports a refusal is in tests/cli/test_cli.py."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nodeops.settings import BROKER_SCHEMES, Settings

CLUSTER = {
    "executor": "celery",
    "database_url": "postgresql://nodeops@127.0.0.1:5432/nodeops",
    "broker_url": " redis://127.0.0.1:63799/0 ",
    "secret_key": "a-cluster-wide-secret-key-for-this-test",
    "public_url": "http://127.0.0.1:8000",
}


def test_the_defaults_run_embedded_with_a_15_s_lease_a_2_s_reaper_and_100_hosts_per_worker():
    settings = Settings()
    assert settings.executor == "embedded"
    assert (settings.broker_url, settings.worker_lease_s, settings.reaper_interval_s) == ("", 15.0, 2.0)
    assert settings.worker_concurrency == 100


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("worker_lease_s", 2.9),
        ("worker_lease_s", 601),
        ("reaper_interval_s", 0),
        ("reaper_interval_s", 60.5),
        ("worker_concurrency", 0),
        ("worker_concurrency", 10001),
    ],
)
def test_out_of_range_worker_settings_are_refused_naming_the_setting(monkeypatch, name, value):
    monkeypatch.setenv(f"NODEOPS_{name.upper()}", str(value))
    with pytest.raises(ValidationError, match=name):
        Settings()


def test_the_cluster_settings_are_read_from_the_environment(monkeypatch):
    for name, value in CLUSTER.items():
        monkeypatch.setenv(f"NODEOPS_{name.upper()}", value)
    monkeypatch.setenv("NODEOPS_WORKER_LEASE_S", "30")
    monkeypatch.setenv("NODEOPS_REAPER_INTERVAL_S", "0.5")
    monkeypatch.setenv("NODEOPS_WORKER_CONCURRENCY", "250")
    settings = Settings()
    assert settings.executor == "celery"
    assert settings.database_url == "postgresql+psycopg://nodeops@127.0.0.1:5432/nodeops"
    assert settings.broker_url == "redis://127.0.0.1:63799/0"
    assert (settings.worker_lease_s, settings.reaper_interval_s, settings.worker_concurrency) == (30.0, 0.5, 250)


def test_celery_mode_accepts_postgresql_and_redis_on_their_unix_sockets():
    database_url = "postgresql+psycopg://nodeops@:5432/nodeops?host=%2Frun%2Fpostgresql"
    broker_url = "redis+socket:///run/redis/redis.sock?virtual_host=3"
    settings = Settings(**{**CLUSTER, "database_url": database_url, "broker_url": broker_url})  # type: ignore[arg-type]
    assert (settings.database_url, settings.broker_url) == (database_url, broker_url)


@pytest.mark.parametrize("scheme", BROKER_SCHEMES)
def test_celery_mode_accepts_redis_and_rabbitmq_brokers(scheme):
    url = f"{scheme}://guest:guest@127.0.0.1:5672//"
    assert Settings(**{**CLUSTER, "broker_url": url}).broker_url == url  # type: ignore[arg-type]


def test_embedded_mode_needs_none_of_the_cluster_settings():
    settings = Settings(broker_url="not a broker")
    assert settings.is_sqlite
    assert settings.broker_url == "not a broker"  # never read in embedded mode


def test_a_refusal_never_repeats_the_broker_url():
    with pytest.raises(ValidationError) as refused:
        Settings(**{**CLUSTER, "broker_url": "nats://user:broker-pw-2@127.0.0.1:4222"})  # type: ignore[arg-type]
    # the message the CLI prints; pydantic's own str() of the error also shows (a cut of) the input
    (message,) = [str(error["ctx"]["error"]) for error in refused.value.errors()]
    assert "NODEOPS_BROKER_URL has the scheme 'nats'" in message
    assert "broker-pw-2" not in message
