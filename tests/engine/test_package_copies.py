"""Agent packages come from the database: a package registered on one machine (its own data dir) is pushed by an
engine whose packages folder never held it, to a real sshd host; a damaged cached file is rewritten; several
copies at once each see a whole file; packages registered before their bytes were stored get them at start."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import text

from nodeops.domain.plans import JobType
from nodeops.engine import packages
from nodeops.errors import PackageUnavailable
from nodeops.service.host_requests import parse_hosts
from tests.support.factories import make_app, make_user


def _drop_content(services, sha256):
    with services.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM package_contents WHERE sha256 = :sha"), {"sha": sha256})


def _steps(server, app, job_id, instance_id):
    body = httpx.get(
        f"{server.url}/api/job/{job_id}/log/",
        params={
            "instance_id": instance_id,
            "bk_app_code": app.code,
            "bk_app_secret": app.secret,
            "bk_username": "admin",
        },
        timeout=10,
    ).json()
    assert body["result"], body
    return body["data"]


async def test_a_package_registered_on_another_machine_is_pushed_from_the_database(
    services, live_server, engine, ssh_hosts, tmp_path
):
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    host = ssh_hosts(1)[0]
    elsewhere = tmp_path / "other-machine" / "packages"
    registered = await services.db.call(lambda: packages.register(services.db, elsewhere, "0.4.0"))
    shutil.rmtree(elsewhere)  # no file of the package is left on this machine
    cached = services.settings.packages_dir / f"{registered.sha256}.tar.gz"
    assert not cached.exists()
    setup_path = host.setup_path / f"agent-{uuid.uuid4().hex[:8]}"
    spec = host.install_spec(setup_path.name)
    started = await services.jobs.install(
        job_type=JobType.INSTALL_AGENT, hosts=parse_hosts([spec]), created_by="admin", from_system="test"
    )
    await engine.wait(started.job_id)
    instance_id = f"host|instance|host|{host.ip}-0-0"
    try:
        steps = _steps(live_server, app, started.job_id, instance_id)
        assert {s["status"] for s in steps} == {"SUCCESS"}, steps
        assert "版本 0.4.0" in next(s for s in steps if s["step"] == "查询Agent状态")["log"]
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == registered.sha256
        assert (setup_path / "VERSION").read_text() == "0.4.0\n"
    finally:
        with services.db.engine.connect() as conn:
            host_id = conn.execute(text("SELECT bk_host_id FROM hosts WHERE inner_ip = :ip"), {"ip": host.ip}).scalar()
        job = await services.jobs.operate(
            job_type=JobType.UNINSTALL_AGENT, bk_host_ids=[host_id], created_by="admin", from_system="test"
        )
        await engine.wait(job.job_id)
    assert {s["status"] for s in _steps(live_server, app, job.job_id, host_id)} == {"SUCCESS"}


def test_a_damaged_cached_file_is_rewritten_from_the_database(services, tmp_path):
    registered = packages.register(services.db, tmp_path / "registered", "0.4.1")
    cache = tmp_path / "cache"
    cache.mkdir()
    damaged = cache / f"{registered.sha256}.tar.gz"
    damaged.write_bytes(b"not the package")
    copy = packages.local_copy(services.db, registered.sha256, cache)
    assert copy.path == damaged and copy.version == "0.4.1"
    assert damaged.read_bytes() == registered.path.read_bytes()
    assert sorted(p.name for p in cache.iterdir()) == [damaged.name], "no temporary file is left behind"
    before = damaged.stat().st_mtime_ns
    assert packages.local_copy(services.db, registered.sha256, cache) == copy
    assert damaged.stat().st_mtime_ns == before, "a file that matches is used as it is"


def test_copies_made_at_once_each_see_the_whole_file(services, tmp_path):
    registered = packages.register(services.db, tmp_path / "registered", "0.4.2")
    cache = tmp_path / "cache"
    expected = registered.path.read_bytes()

    def copy_and_read(_n):
        copy = packages.local_copy(services.db, registered.sha256, cache)
        return copy.path.read_bytes()

    with ThreadPoolExecutor(max_workers=8) as pool:
        seen = list(pool.map(copy_and_read, range(16)))
    assert all(data == expected for data in seen)
    assert [p.name for p in cache.iterdir()] == [f"{registered.sha256}.tar.gz"]


def test_a_sha256_without_stored_bytes_is_refused_saying_what_to_do(services, tmp_path):
    with pytest.raises(PackageUnavailable, match="nodeops agent build"):
        packages.local_copy(services.db, "ab" * 32, tmp_path)
    with pytest.raises(PackageUnavailable, match="sha256"):
        packages.local_copy(services.db, "../../etc/passwd", tmp_path)


def test_packages_registered_before_bytes_were_stored_get_them_from_their_file(services, tmp_path):
    kept = packages.register(services.db, tmp_path / "kept", "0.5.0")
    lost = packages.register(services.db, tmp_path / "lost", "0.5.1")
    for package in (kept, lost):  # as rows registered before migration 0009 are
        _drop_content(services, package.sha256)
    lost.path.unlink()
    assert packages.store_missing_contents(services.db) == ["0.5.1"]
    copy = packages.local_copy(services.db, kept.sha256, tmp_path / "cache")
    assert copy.path.read_bytes() == kept.path.read_bytes()
    with pytest.raises(PackageUnavailable, match="has no bytes"):
        packages.local_copy(services.db, lost.sha256, tmp_path / "cache")
