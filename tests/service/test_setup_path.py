"""Install paths a job may use: never / or a system folder, since uninstalling removes the agent from it."""

from __future__ import annotations

import pytest

from nodeops.errors import InvalidInput
from nodeops.service.host_requests import parse_hosts


@pytest.mark.parametrize(
    ("setup_path", "problem"),
    [
        ("/", "too shallow"),
        ("/usr", "too shallow"),
        ("relative/path", "absolute path"),
        ("/opt/../etc", "normalised"),
        ("/opt//agent", "normalised"),
        (7, "absolute path"),
    ],
)
def test_an_unsafe_setup_path_is_refused_naming_the_host_and_field(setup_path, problem):
    with pytest.raises(InvalidInput) as caught:
        parse_hosts([{"bk_biz_id": 2, "inner_ip": "127.0.0.1", "transport": "local", "setup_path": setup_path}])
    assert problem in caught.value.problems["hosts[0].setup_path"]


def test_a_folder_of_its_own_is_accepted():
    [host] = parse_hosts([{"bk_biz_id": 2, "inner_ip": "127.0.0.1", "transport": "local", "setup_path": "/opt/agent"}])
    assert host.setup_path == "/opt/agent"
