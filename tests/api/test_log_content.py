"""What the log API returns for records in every state (spec §7.5, §6.2): steps never reached, a running step,
several attempts, both host identities, IPv6, times in the configured zone, and writes seen by the next read.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from nodeops.domain.plans import JobType, plan_steps
from nodeops.domain.status import Status
from nodeops.store import jobs
from nodeops.store.models import InstanceRecord
from tests.support.api import ADDRESSES, assert_error, credentials, log_data, request_log
from tests.support.factories import SHANGHAI, MadeJob, StepRun, make_job, write_runs

UPGRADE = [step.name for step in plan_steps(JobType.UPGRADE_AGENT)]


@pytest.fixture
def auth(esb_app, admin) -> dict[str, str]:
    return credentials(esb_app, bk_username="admin")


def read(client, auth, job: MadeJob | int, instance_id: object = 1, address: str = "esb_get", **extra: object):
    job_id = job if isinstance(job, int) else job.job_id
    return log_data(request_log(client, address, job_id=job_id, instance_id=instance_id, auth=auth, **extra))


def _utc(local: str) -> datetime:
    return datetime.strptime(local, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)


def add_attempt(services, made: MadeJob, *, attempt: int, runs: list[StepRun]) -> int:
    """A retry of the job's instance: a new record with ``attempt`` on the same job, subscription and task."""
    plan = plan_steps(JobType.UPGRADE_AGENT)
    with services.db.session() as session:
        first = session.get(InstanceRecord, made.record_id)
        assert first is not None
        record_id = jobs.add_records(
            session,
            job_id=made.job_id,
            subscription_id=first.subscription_id,
            task_id=first.task_id,
            instances=[
                jobs.NewInstance(instance_id=made.instance_id, bk_host_id=made.bk_host_id, host_key=made.host_key)
            ],
            steps=plan,
            attempt=attempt,
        )[made.instance_id]
        write_runs(services, session, record_id, plan, runs)
    return record_id


def test_steps_after_a_failed_step_are_pending_with_empty_log_and_null_times(client, services, auth, subtests):
    job = make_job(
        services,
        runs=[
            StepRun(Status.SUCCESS, "2024-05-01 10:00:00", "2024-05-01 10:00:01", "[2024-05-01 10:00:00 INFO] a"),
            StepRun(Status.SUCCESS, "2024-05-01 10:00:01", "2024-05-01 10:00:30", "[2024-05-01 10:00:01 INFO] b"),
            StepRun(
                Status.FAILED,
                "2024-05-01 10:00:30",
                "2024-05-01 10:01:00",
                "[2024-05-01 10:00:30 INFO] c\n[2024-05-01 10:01:00 ERROR] 执行升级脚本 失败",
            ),
        ],
        record_status=Status.FAILED,
    )
    for address in ADDRESSES:
        with subtests.test(address=address):
            data = read(client, auth, job, address=address)
            assert [step["step"] for step in data] == UPGRADE
            assert [step["status"] for step in data] == ["SUCCESS", "SUCCESS", "FAILED", "PENDING", "PENDING"]
            assert data[2] == {
                "step": UPGRADE[2],
                "status": "FAILED",
                "log": "[2024-05-01 10:00:30 INFO] c\n[2024-05-01 10:01:00 ERROR] 执行升级脚本 失败",
                "start_time": "2024-05-01 10:00:30",
                "finish_time": "2024-05-01 10:01:00",
            }
            for step in data[3:]:
                assert (step["log"], step["start_time"], step["finish_time"]) == ("", None, None)


def test_a_job_that_never_started_shows_every_step_pending(client, services, auth):
    job = make_job(services, runs=[])
    data = read(client, auth, job)
    assert [step["step"] for step in data] == UPGRADE
    assert all(
        (step["status"], step["log"], step["start_time"], step["finish_time"]) == ("PENDING", "", None, None)
        for step in data
    )


def test_running_step_shows_its_partial_log_with_a_start_time_and_no_finish_time(client, services, auth):
    job = make_job(
        services,
        runs=[
            StepRun(Status.SUCCESS, "2024-05-01 10:00:00", "2024-05-01 10:00:01", "[2024-05-01 10:00:00 INFO] a"),
            StepRun(Status.RUNNING, "2024-05-01 10:00:01", None, "[2024-05-01 10:00:01 INFO] 开始 下发."),
        ],
        record_status=Status.RUNNING,
    )
    with services.db.session() as session:
        jobs.write_progress(services.db, session, chunks=[(job.record_id, 1, "[2024-05-01 10:00:05 INFO] 25%")])
    data = read(client, auth, job)
    assert [step["status"] for step in data] == ["SUCCESS", "RUNNING", "PENDING", "PENDING", "PENDING"]
    assert data[1]["log"] == "[2024-05-01 10:00:01 INFO] 开始 下发.\n[2024-05-01 10:00:05 INFO] 25%"
    assert data[1]["start_time"] == "2024-05-01 10:00:01"
    assert data[1]["finish_time"] is None


def test_running_step_has_no_finish_time_even_when_one_is_stored(client, services, auth):
    job = make_job(
        services,
        runs=[StepRun(Status.RUNNING, "2024-05-01 10:00:00", "2024-05-01 10:00:09", "[2024-05-01 10:00:00 INFO] a")],
    )
    data = read(client, auth, job)
    assert (data[0]["status"], data[0]["start_time"], data[0]["finish_time"]) == (
        "RUNNING",
        "2024-05-01 10:00:00",
        None,
    )


def test_steps_before_the_first_running_one_read_success_even_if_their_rows_say_pending(client, services, auth):
    # spec §6.2 backtrace: rows of earlier steps purged by the cleaner still count as done
    job = make_job(
        services,
        runs=[
            StepRun(Status.PENDING),
            StepRun(Status.PENDING),
            StepRun(Status.RUNNING, "2024-05-01 10:00:00", None, "[2024-05-01 10:00:00 INFO] x"),
        ],
    )
    data = read(client, auth, job)
    assert [step["status"] for step in data] == ["SUCCESS", "SUCCESS", "RUNNING", "PENDING", "PENDING"]
    assert (data[0]["log"], data[0]["start_time"], data[0]["finish_time"]) == ("", None, None)


def test_times_are_shown_in_the_configured_zone_across_midnight(client, services, auth):
    # 00:30 in Shanghai is 16:30 UTC the day before: the API must show the Shanghai date
    job = make_job(
        services,
        runs=[StepRun(Status.SUCCESS, "2024-01-01 00:30:00", "2024-01-01 07:59:59", "[2024-01-01 00:30:00 INFO] x")],
    )
    data = read(client, auth, job)
    assert (data[0]["start_time"], data[0]["finish_time"]) == ("2024-01-01 00:30:00", "2024-01-01 07:59:59")


def test_log_keeps_newlines_unicode_and_html_as_written(client, services, auth):
    text = '[2024-05-01 10:00:00 INFO] 开始 安装.\n  {\n    "a": "b\\"c"\n  }\n<a href="x" target="_blank">job</a>\t✓'
    job = make_job(services, runs=[StepRun(Status.SUCCESS, "2024-05-01 10:00:00", "2024-05-01 10:00:00", text)])
    assert read(client, auth, job)[0]["log"] == text


def test_newest_attempt_is_the_default_and_older_attempts_stay_readable(client, services, auth, subtests):
    job = make_job(
        services,
        runs=[
            StepRun(Status.SUCCESS, "2024-05-01 10:00:00", "2024-05-01 10:00:01", "first try, step 1"),
            StepRun(Status.FAILED, "2024-05-01 10:00:01", "2024-05-01 10:00:02", "first try failed"),
        ],
        record_status=Status.FAILED,
    )
    add_attempt(
        services,
        job,
        attempt=2,
        runs=[StepRun(Status.RUNNING, "2024-05-02 09:00:00", None, "second try, step 1")],
    )
    for address in ADDRESSES:
        with subtests.test(address=address):
            newest = read(client, auth, job, address=address)
            assert [(s["status"], s["log"]) for s in newest[:2]] == [("RUNNING", "second try, step 1"), ("PENDING", "")]
            assert newest[0]["start_time"] == "2024-05-02 09:00:00"
            assert read(client, auth, job, address=address, attempt=2) == newest
            first = read(client, auth, job, address=address, attempt=1)
            assert [(s["status"], s["log"]) for s in first[:2]] == [
                ("SUCCESS", "first try, step 1"),
                ("FAILED", "first try failed"),
            ]
            assert first[1]["finish_time"] == "2024-05-01 10:00:02"
            assert_error(
                request_log(client, address, job_id=job.job_id, instance_id=1, auth=auth, attempt=3),
                3800007,
                f"job {job.job_id} has no instance 'host|instance|host|1': attempt 3 does not exist; "
                "attempts are 1 to 2",
            )


def test_attempts_are_found_by_either_host_identity(client, services, auth):
    job = make_job(services, runs=[StepRun(Status.FAILED, "2024-05-01 10:00:00", "2024-05-01 10:00:01", "one")])
    add_attempt(services, job, attempt=2, runs=[StepRun(Status.SUCCESS, "2024-05-01 11:00:00", None, "two")])
    for instance_id in (1, "host|instance|host|127.0.0.1-0-0"):
        assert read(client, auth, job, instance_id)[0]["log"] == "two"
        assert read(client, auth, job, instance_id, attempt=1)[0]["log"] == "one"


@pytest.mark.parametrize("keyed_by", ["bk_host_id", "host_key"])
def test_both_host_forms_find_the_same_record_whatever_form_the_job_was_created_with(
    client, services, auth, subtests, keyed_by
):
    job = make_job(
        services,
        runs=[StepRun(Status.SUCCESS, "2024-05-01 10:00:00", "2024-05-01 10:00:01", f"keyed by {keyed_by}")],
        bk_host_id=35,
        ip="127.10.0.5",
        bk_cloud_id=2,
        keyed_by=keyed_by,
    )
    assert job.instance_id == (
        "host|instance|host|35" if keyed_by == "bk_host_id" else "host|instance|host|127.10.0.5-2-0"
    )
    forms = [
        job.instance_id,
        35,
        "35",
        "host|instance|host|35",
        "host|instance|host|127.10.0.5-2-0",
        "host|instance|host|127.10.0.5-002-000",
        "HOST|Instance|host|127.10.0.5-2-0",
    ]
    expected = read(client, auth, job, job.instance_id)
    assert expected[0]["log"] == f"keyed by {keyed_by}"
    for instance_id in forms:
        for address in ADDRESSES:
            with subtests.test(instance_id=instance_id, address=address):
                assert read(client, auth, job, instance_id, address=address) == expected
    for other in (36, "host|instance|host|127.10.0.5-3-0", "host|instance|host|127.10.0.6-2-0"):
        with subtests.test(instance_id=other):
            response = request_log(client, "esb_get", job_id=job.job_id, instance_id=other, auth=auth)
            assert_error(response, 3800007)


def test_ipv6_host_key_finds_the_record_in_any_textual_form(client, services, auth, subtests):
    job = make_job(
        services,
        runs=[StepRun(Status.SUCCESS, "2024-05-01 10:00:00", "2024-05-01 10:00:01", "v6")],
        bk_host_id=77,
        ip="::1",
        keyed_by="host_key",
    )
    assert job.instance_id == "host|instance|host|::1-0-0"
    forms = [
        "host|instance|host|::1-0-0",
        "HOST|Instance|host|0:0::1-0-0",
        "host|instance|host|0000:0000:0000:0000:0000:0000:0000:0001-0-0",
        "host|instance|host|77",
        77,
    ]
    for instance_id in forms:
        for address in ADDRESSES:
            with subtests.test(instance_id=instance_id, address=address):
                assert read(client, auth, job, instance_id, address=address)[0]["log"] == "v6"


def test_two_jobs_on_the_same_host_keep_their_own_logs(client, services, auth):
    one = make_job(services, runs=[StepRun(Status.SUCCESS, "2024-05-01 10:00:00", "2024-05-01 10:00:01", "job one")])
    two = make_job(services, runs=[StepRun(Status.SUCCESS, "2024-05-02 10:00:00", "2024-05-02 10:00:01", "job two")])
    assert read(client, auth, one)[0]["log"] == "job one"
    assert read(client, auth, two)[0]["log"] == "job two"


def test_log_appended_after_a_read_is_seen_by_the_next_read(client, services, auth, subtests):
    job = make_job(
        services,
        runs=[StepRun(Status.RUNNING, "2024-05-01 10:00:00", None, "[2024-05-01 10:00:00 INFO] line 1")],
        record_status=Status.RUNNING,
    )
    for address in ADDRESSES:
        with subtests.test(address=address):
            before = read(client, auth, job, address=address)
            assert before[0]["log"].endswith(" line 1")
    with services.db.session() as session:
        jobs.write_progress(services.db, session, chunks=[(job.record_id, 0, "[2024-05-01 10:00:02 INFO] line 2")])
    for address in ADDRESSES:
        with subtests.test(address=address, after="append"):
            after = read(client, auth, job, address=address)
            assert after[0]["log"] == "[2024-05-01 10:00:00 INFO] line 1\n[2024-05-01 10:00:02 INFO] line 2"
            assert after[1:] == before[1:]


def test_a_step_finishing_after_a_read_is_seen_by_the_next_read(client, services, auth):
    job = make_job(
        services,
        runs=[StepRun(Status.RUNNING, "2024-05-01 10:00:00", None, "[2024-05-01 10:00:00 INFO] line 1")],
    )
    assert read(client, auth, job)[0]["status"] == "RUNNING"
    with services.db.session() as session:
        jobs.write_progress(
            services.db,
            session,
            steps=[
                jobs.StepProgress(job.record_id, 0, Status.SUCCESS, None, _utc("2024-05-01 10:00:09")),
                jobs.StepProgress(job.record_id, 1, Status.RUNNING, _utc("2024-05-01 10:00:09"), None),
            ],
        )
    data = read(client, auth, job)
    assert [(s["status"], s["start_time"], s["finish_time"]) for s in data[:2]] == [
        ("SUCCESS", "2024-05-01 10:00:00", "2024-05-01 10:00:09"),
        ("RUNNING", "2024-05-01 10:00:09", None),
    ]


def test_a_new_attempt_created_after_a_read_becomes_the_default_on_the_next_read(client, services, auth):
    job = make_job(services, runs=[StepRun(Status.FAILED, "2024-05-01 10:00:00", "2024-05-01 10:00:01", "one")])
    assert read(client, auth, job)[0]["log"] == "one"
    add_attempt(services, job, attempt=2, runs=[])
    data = read(client, auth, job)
    assert (data[0]["status"], data[0]["log"]) == ("PENDING", "")
