"""SSH host keys kept in the database: a known_hosts file left in the data dir is imported once at start (an
upgrade keeps trusting what it trusted), then renamed so a key forgotten later stays forgotten."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from nodeops.engine import host_keys
from nodeops.errors import InvalidInput

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0HgYfdVxuxGrk3Zzv7mTk3"
RSA = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7"
KNOWN_HOSTS = f"""# kept by an earlier version
[127.0.10.1]:2222 {ED25519}
127.0.55.5,[127.0.55.6]:23 {RSA}
127.0.55.5 {ED25519}
|1|hashedsalt=|hashedname= {ED25519}
@cert-authority * {RSA}
*.example.com {RSA}
web1 {RSA}

"""


@pytest.fixture
def settings(settings):
    """The shared settings, with a known_hosts file in the data dir as an earlier version left it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.known_hosts_path.write_text(KNOWN_HOSTS)
    return settings


def _trusted(services):
    with services.db.engine.connect() as conn:
        rows = conn.execute(text("SELECT host, port, algorithm, key FROM host_keys ORDER BY host, port")).all()
    return {(host, port): f"{algorithm} {key}" for host, port, algorithm, key in rows}


def test_known_hosts_lines_naming_ip_addresses_are_parsed_and_the_rest_skipped():
    entries, skipped = host_keys.parse_known_hosts(KNOWN_HOSTS)
    assert entries == [
        ("127.0.10.1", 2222, ED25519),
        ("127.0.55.5", 22, RSA),
        ("127.0.55.6", 23, RSA),
        ("127.0.55.5", 22, ED25519),
    ]
    assert skipped == 4


async def test_start_imports_the_data_dirs_known_hosts_once(services):
    path = services.settings.known_hosts_path
    await services.start()
    try:
        assert _trusted(services) == {
            ("127.0.55.5", 22): RSA,  # the first key of an address wins, as at a first login
            ("127.0.55.6", 23): RSA,
            ("127.0.10.1", 2222): ED25519,
        }
        assert not path.exists()
        assert path.with_name("known_hosts.imported").read_text() == KNOWN_HOSTS
        assert host_keys.forget(services.db, "127.0.55.5") == 1
        assert host_keys.import_known_hosts(services.db, path) is None, "an imported file is not read again"
        assert ("127.0.55.5", 22) not in _trusted(services), "a forgotten key stays forgotten"
    finally:
        await services.aclose()


def test_importing_keeps_the_key_an_address_already_has(services, tmp_path):
    path = tmp_path / "known_hosts"
    path.write_text(f"10.0.0.7 {ED25519}\n")
    first = host_keys.import_known_hosts(services.db, path)
    assert first is not None and (first.added, first.already, first.skipped) == (1, 0, 0)
    path.write_text(f"10.0.0.7 {RSA}\n10.0.0.8 {RSA}\n")
    again = host_keys.import_known_hosts(services.db, path)
    assert again is not None and (again.added, again.already) == (1, 1)
    assert _trusted(services)[("10.0.0.7", 22)] == ED25519


def test_forget_takes_one_port_or_every_port_and_refuses_a_bad_address(services, tmp_path):
    path = tmp_path / "known_hosts"
    path.write_text(f"10.0.0.9 {ED25519}\n[10.0.0.9]:2222 {ED25519}\n[10.0.0.9]:2223 {ED25519}\n")
    host_keys.import_known_hosts(services.db, path)
    assert host_keys.forget(services.db, "10.0.0.9", 2222) == 1
    assert host_keys.forget(services.db, "10.0.0.9", 2222) == 0
    assert host_keys.forget(services.db, "10.0.0.9") == 2
    with pytest.raises(InvalidInput, match=r"'10\.0\.0' is not an IPv4 or IPv6 address"):
        host_keys.forget(services.db, "10.0.0")
