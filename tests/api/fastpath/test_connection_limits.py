"""The connection settings (read timeouts, connection cap) and the open-file limit ``nodeops serve`` runs with."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nodeops.api.fastpath.connections import ConnectionLimits
from nodeops.cli.app import open_files_limit
from nodeops.settings import Settings

UNLIMITED = -1


def test_defaults_are_10_s_for_headers_30_s_for_bodies_60_s_for_answers_and_1024_connections():
    limits = ConnectionLimits.from_settings(Settings())
    assert limits == ConnectionLimits(
        header_timeout_s=10.0, body_timeout_s=30.0, send_timeout_s=60.0, max_connections=1024
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("header_timeout_s", 0),
        ("header_timeout_s", -1),
        ("header_timeout_s", 3601),
        ("body_timeout_s", 0),
        ("body_timeout_s", 3601),
        ("send_timeout_s", 0),
        ("send_timeout_s", 3601),
        ("max_connections", 0),
        ("max_connections", 100_001),
    ],
)
def test_out_of_range_connection_settings_are_refused_naming_the_setting(monkeypatch, name, value):
    monkeypatch.setenv(f"NODEOPS_{name.upper()}", str(value))
    with pytest.raises(ValidationError, match=name):
        Settings()


def test_connection_settings_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("NODEOPS_HEADER_TIMEOUT_S", "2.5")
    monkeypatch.setenv("NODEOPS_BODY_TIMEOUT_S", "60")
    monkeypatch.setenv("NODEOPS_SEND_TIMEOUT_S", "5")
    monkeypatch.setenv("NODEOPS_MAX_CONNECTIONS", "10")
    limits = ConnectionLimits.from_settings(Settings())
    assert limits == ConnectionLimits(header_timeout_s=2.5, body_timeout_s=60.0, send_timeout_s=5.0, max_connections=10)


@pytest.mark.parametrize(
    ("soft", "hard", "needed", "expected"),
    [
        (1024, 4096, 1680, 1680),  # raised to what is needed
        (1024, 1200, 1680, 1200),  # up to the hard limit
        (4096, 8192, 1680, 4096),  # enough already: unchanged, never lowered
        (UNLIMITED, UNLIMITED, 1680, UNLIMITED),
        (1024, UNLIMITED, 1680, 1680),
        (1024, 1024, 1680, 1024),  # the hard limit allows no more: unchanged (and serve warns)
    ],
)
def test_open_files_limit(soft, hard, needed, expected):
    assert open_files_limit(soft, hard, needed, unlimited=UNLIMITED) == expected
