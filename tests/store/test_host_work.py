"""What a host pipeline reads before it runs (``store.pipelines``): its record, host, steps and the SSH host keys
trusted for the host's address, read together so a login need not ask the database for them."""

from __future__ import annotations

import asyncio

import pytest

from nodeops.store import host_keys, jobs, packages, pipelines
from nodeops.store.host_keys import HostKeyTable, ReadAhead
from tests.support.factories import restart_job, ssh_host

pytestmark = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
OTHER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBm2pB1y7l6CyBq3yBqbxXOaJ3S3yP1uq8Y2Fh6B5lbH"


def _job(services, host_ids):
    with services.db.session() as session:
        packages.ensure_default_access_point(session, server_url="http://127.0.0.1:1")
    return restart_job(
        services, [jobs.NewInstance(instance_id=f"host|instance|host|{h}", bk_host_id=h) for h in host_ids]
    )


def test_the_work_of_a_host_carries_the_keys_trusted_for_its_address_and_port(services):
    with services.db.session() as session:
        trusted, port_2222, unknown = (
            ssh_host(session, "127.0.40.1"),
            ssh_host(session, "127.0.40.2", port=2222),
            ssh_host(session, "127.0.40.3"),
        )
        host_keys.trust_first(session, "127.0.40.1", 22, KEY)
        host_keys.trust_first(session, "127.0.40.2", 22, OTHER)  # another port of that address: not its key
        host_keys.trust_first(session, "127.0.40.2", 2222, KEY)
        host_keys.trust_first(session, "127.0.40.9", 22, OTHER)  # another address
    job = _job(services, [trusted, port_2222, unknown])
    with services.db.session() as session:
        pending = pipelines.pending_work(session, task_id=job.task_id)
        work = {w.bk_host_id: w for w in pending.runnable}
        one = pipelines.record_work(session, record_id=job.record_ids[f"host|instance|host|{trusted}"])
    assert not pending.blocked, pending.blocked
    assert work[trusted].host_keys == (KEY,)
    assert work[port_2222].host_keys == (KEY,)
    assert work[unknown].host_keys == ()
    assert isinstance(one, pipelines.HostWork) and one.host_keys == (KEY,)


def test_a_transport_s_read_ahead_keys_answer_without_the_table_and_learn_what_it_records(services):
    table = HostKeyTable(services.db)
    ahead = ReadAhead(table, "127.0.40.5", 22, [])

    async def scenario() -> tuple[list[str], list[str], list[str], list[str]]:
        before = await ahead.known("127.0.40.5", 22)
        with services.db.session() as session:  # recorded meanwhile by another process: the read-ahead is older
            host_keys.trust_first(session, "127.0.40.5", 22, OTHER)
        stale = await ahead.known("127.0.40.5", 22)
        recorded = await ahead.add("127.0.40.5", 22, KEY)  # the first key recorded wins, as in the table
        return before, stale, recorded, await ahead.known("127.0.40.5", 22)

    before, stale, recorded, after = asyncio.run(scenario())
    assert (before, stale) == ([], [])
    assert recorded == after == [OTHER]
    assert asyncio.run(ahead.known("127.0.40.6", 22)) == []  # another address: the table answers
