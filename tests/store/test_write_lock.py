"""A session that reads, decides, then writes (retry's new attempts, a subscription's run, a job on hosts, a
revoke ending records) holds its lock from its first read: a second such session waits, then reads what the
first wrote. On SQLite this is the database's write lock (``store.db.lock_for_update``); on PostgreSQL the rows'
``FOR UPDATE``, or for hosts an advisory lock."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from nodeops.domain.status import Status
from nodeops.store import attempts, hosts, job_reads, subscriptions
from nodeops.store.models import InstanceRecord, Job, StepLog
from tests.support.factories import StepRun, make_job

WAIT_S = 10
B_READ_GRACE_S = 0.5  # how long A, holding its lock, gives B to read (B must not manage it)


def interleave(services, lock: Callable[[Session], None], job_id: int) -> tuple[str, str]:
    """Sessions A then B each lock, read the job's status and write it back with their name appended; A holds
    its lock while giving B time to read. Returns the status each read."""
    a_locked, b_read = threading.Event(), threading.Event()
    seen: dict[str, str] = {}
    failures: list[BaseException] = []

    def session_of(name: str) -> None:
        try:
            with services.db.session() as session:
                lock(session)
                if name == "A":
                    a_locked.set()
                job = session.scalars(select(Job).where(Job.id == job_id)).one()
                seen[name] = job.status
                if name == "A":
                    b_read.wait(B_READ_GRACE_S)  # set only when B read while A held its lock: the bug
                else:
                    b_read.set()
                job.status = job.status + name
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    first = threading.Thread(target=session_of, args=("A",))
    second = threading.Thread(target=session_of, args=("B",))
    first.start()
    assert a_locked.wait(WAIT_S)
    second.start()
    first.join(WAIT_S)
    second.join(WAIT_S)
    assert not failures, failures
    return seen["A"], seen["B"]


def final_status(services, job_id: int) -> str:
    with services.db.session() as session:
        return session.scalars(select(Job.status).where(Job.id == job_id)).one()


def test_find_job_for_update_makes_a_second_session_wait_and_see_the_first_write(services):
    job = make_job(services, runs=[StepRun(Status.FAILED, "2024-05-01 10:00:00")], record_status=Status.FAILED)
    before = final_status(services, job.job_id)

    def lock(session: Session) -> None:
        assert job_reads.find_job(session, job.job_id, for_update=True) is not None

    assert interleave(services, lock, job.job_id) == (before, before + "A")
    assert final_status(services, job.job_id) == before + "AB"  # no update lost


def test_lock_subscription_makes_a_second_session_wait_and_see_the_first_write(services):
    job = make_job(services, runs=[StepRun(Status.SUCCESS, "2024-05-01 10:00:00")], record_status=Status.SUCCESS)
    with services.db.session() as session:
        subscription_id = session.scalars(select(Job.subscription_id).where(Job.id == job.job_id)).one()
    before = final_status(services, job.job_id)

    def lock(session: Session) -> None:
        subscriptions.lock_subscription(session, subscription_id)

    assert interleave(services, lock, job.job_id) == (before, before + "A")
    assert final_status(services, job.job_id) == before + "AB"


def test_lock_hosts_makes_a_second_session_wait_and_see_the_first_write(services):
    job = make_job(services, runs=[StepRun(Status.SUCCESS, "2024-05-01 10:00:00")], record_status=Status.SUCCESS)
    before = final_status(services, job.job_id)

    assert interleave(services, hosts.lock_hosts, job.job_id) == (before, before + "A")
    assert final_status(services, job.job_id) == before + "AB"


def test_fail_unfinished_twice_at_once_ends_a_record_once(services):
    job = make_job(services, runs=[StepRun(Status.RUNNING, "2024-05-01 10:00:00")], record_status=Status.RUNNING)
    line = "[2024-05-01 10:00:05 WARNING] 已终止 (revoked by a user)"

    def revoke(session: Session) -> None:
        attempts.fail_unfinished(services.db, session, [job.record_id], line=line)

    interleave(services, revoke, job.job_id)
    with services.db.session() as session:
        status = session.scalars(select(InstanceRecord.status).where(InstanceRecord.id == job.record_id)).one()
        logs = session.scalars(select(StepLog.text).where(StepLog.record_id == job.record_id)).all()
    assert status == "FAILED" and "\n".join(logs).count("已终止") == 1, logs
