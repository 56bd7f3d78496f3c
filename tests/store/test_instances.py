"""The instance_id -> record rule (``store.instances``), on SQLite and PostgreSQL: each accepted form of an
instance_id finds the same record through the log API's raw lookup, the SQL condition and the pick among
loaded instances; a host by either identity whatever form its record was created with, a service instance
only by its full id."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from nodeops.domain.instance_id import parse_instance_id
from nodeops.domain.plans import JobType, plan_steps
from nodeops.store import instances, job_reads, jobs
from nodeops.store.log_reads import LogReads
from nodeops.store.models import InstanceRecord

BY_HOST_ID = "host|instance|host|1"  # a host created in the bk_host_id form
BY_IP = "host|instance|host|10.0.0.2-0-0"  # a host created in the ip form (its id known too)
IPV6 = "host|instance|host|::1-0-0"  # a host with no bk_host_id yet
SERVICE = "service|instance|service|7"  # a service instance on host 9, which has no host record in the job
SERVICE_ON_HOST = "service|instance|service|8"  # a service instance on host 1

CREATED = [
    jobs.NewInstance(instance_id=BY_HOST_ID, bk_host_id=1, host_key="10.0.0.1-0-0"),
    jobs.NewInstance(instance_id=BY_IP, bk_host_id=2, host_key="10.0.0.2-0-0"),
    jobs.NewInstance(instance_id=IPV6, bk_host_id=None, host_key="::1-0-0"),
    jobs.NewInstance(instance_id=SERVICE, bk_host_id=9),
    jobs.NewInstance(instance_id=SERVICE_ON_HOST, bk_host_id=1),
]

FORMS = [
    (BY_HOST_ID, BY_HOST_ID),
    (1, BY_HOST_ID),  # a bare integer is a bk_host_id
    ("1", BY_HOST_ID),
    ("host|instance|host|001", BY_HOST_ID),
    ("host|instance|host|10.0.0.1-0-0", BY_HOST_ID),  # the other host form
    (BY_IP, BY_IP),
    ("host|instance|host|2", BY_IP),
    ("HOST|Instance|host|10.0.0.2-0-0", BY_IP),
    (IPV6, IPV6),
    ("host|instance|host|0:0::1-0-0", IPV6),  # IPv6 compared in its compressed form
    (SERVICE, SERVICE),
    (SERVICE_ON_HOST, SERVICE_ON_HOST),
    ("host|instance|host|9", None),  # the host forms never name a service instance's record
    ("host|instance|host|3", None),
    ("host|instance|host|10.0.0.1-1-0", None),  # another cloud area
    ("service|instance|service|1", None),
]


@pytest.fixture
def job(services):
    with services.db.session() as session:
        return jobs.create_job(
            session,
            job_type=JobType.UPGRADE_AGENT,
            created_by="admin",
            from_system="esb_test",
            bk_biz_scope=[2],
            instances=CREATED,
            steps=plan_steps(JobType.UPGRADE_AGENT),
        )


@pytest.mark.parametrize(("given", "found"), FORMS)
def test_each_form_finds_its_record_by_every_path(services, job, given, found):
    wanted = parse_instance_id(given)
    expected = None if found is None else job.record_ids[found]

    with services.db.cursor() as cur:
        lookup = LogReads(services.db).look_up(cur, job.job_id, wanted, None, "Asia/Shanghai")
    assert lookup.record is not None or expected is None
    assert (lookup.record.record_id if lookup.record is not None else None) == expected

    with services.db.session() as session:
        matched = session.scalars(
            select(InstanceRecord.id).where(InstanceRecord.job_id == job.job_id, instances.condition([wanted]))
        ).all()
        loaded = job_reads.latest_instances(session, job.job_id)
    assert matched == ([] if expected is None else [expected])

    (picked,) = instances.pick(loaded, [wanted])
    assert (picked.record_id if picked is not None else None) == expected


def test_a_condition_on_several_instances_matches_any_of_them_and_none_on_none(services, job):
    wanted = [parse_instance_id(given) for given in ("2", SERVICE, "host|instance|host|0:0::1-0-0", "3")]
    with services.db.session() as session:
        matched = set(session.scalars(select(InstanceRecord.id).where(instances.condition(wanted))))
        nothing = session.scalars(select(InstanceRecord.id).where(instances.condition([]))).all()
    assert matched == {job.record_ids[BY_IP], job.record_ids[SERVICE], job.record_ids[IPV6]}
    assert nothing == []


def test_pick_answers_each_wanted_instance_in_order(services, job):
    with services.db.session() as session:
        loaded = job_reads.latest_instances(session, job.job_id)
    wanted = [parse_instance_id(given) for given in (IPV6, "3", "1", BY_HOST_ID)]
    picked = [found.instance_id if found is not None else None for found in instances.pick(loaded, wanted)]
    assert picked == [IPV6, None, BY_HOST_ID, BY_HOST_ID]


def test_the_raw_condition_names_only_the_matched_columns():
    assert instances.sql_condition("host_key", table="r", param="?") == "r.host_key = ?"
    assert instances.sql_condition("bk_host_id", table="r", param="%s") == (
        "r.bk_host_id = %s AND r.host_key IS NOT NULL"
    )
    with pytest.raises(ValueError, match="status"):
        instances.sql_condition("status", table="r", param="?")
