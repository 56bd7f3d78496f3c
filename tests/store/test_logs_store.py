"""The store's job side and its hot reads, on SQLite and PostgreSQL: log chunks, revisions, record lookup, times,
the access epoch, the query plan of one instance's log, and how database errors surface."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.pool.base import _ConnectionFairy

from nodeops.domain.instance_id import HostKey, host_instance_id, parse_instance_id
from nodeops.domain.plans import JobType, plan_steps
from nodeops.domain.status import Status
from nodeops.errors import StoreError
from nodeops.service import admin
from nodeops.store import jobs
from nodeops.store.access import AccessReads, revoke_biz
from nodeops.store.db import select_one
from nodeops.store.log_reads import LogReads
from nodeops.store.models import LOOKUP_INDEXES, BizGrant, InstanceRecord, RecordStep
from nodeops.store.models import StepLog as StepLogRow
from tests.support.factories import StepRun, make_job

SHANGHAI = ZoneInfo("Asia/Shanghai")
STEPS_INDEX = "ix_step_logs_record_id_step_index_id"


def _running_job(services, **kwargs):
    """A job whose first step succeeded and whose second step is RUNNING with no log yet."""
    return make_job(
        services,
        runs=[
            StepRun(Status.SUCCESS, "2024-05-01 10:00:00", "2024-05-01 10:00:01", "[10:00:00 INFO] step 0 done"),
            StepRun(Status.RUNNING, "2024-05-01 10:00:01"),
        ],
        **kwargs,
    )


def _append(services, *chunks):
    with services.db.session() as session:
        jobs.write_progress(services.db, session, chunks=chunks)


def _steps(services, record_id):
    reads = LogReads(services.db)
    with services.db.cursor() as cur:
        return reads.fetch_steps(cur, record_id)


def _log_of(services, record_id, step_index):
    return _steps(services, record_id)[step_index].log


def _revision(services, record_id):
    with services.db.session() as session:
        return session.scalar(select(InstanceRecord.revision).where(InstanceRecord.id == record_id))


def _chunk_rows(services, record_id):
    with services.db.session() as session:
        rows = session.execute(
            select(StepLogRow.id, StepLogRow.step_index, StepLogRow.text)
            .where(StepLogRow.record_id == record_id)
            .order_by(StepLogRow.id)
        ).all()
    return [tuple(row) for row in rows]


# --- appending and reading logs ---------------------------------------------------------------------------------


def test_chunks_appended_while_step_runs_are_visible_in_order(services):
    job = _running_job(services)
    steps = _steps(services, job.record_id)
    assert (steps[1].status, steps[1].log) == ("RUNNING", "")

    _append(services, (job.record_id, 1, "line 1"))
    steps = _steps(services, job.record_id)
    assert (steps[1].status, steps[1].log, steps[1].finish_at) == ("RUNNING", "line 1", None)

    _append(services, (job.record_id, 1, "line 2\nline 3"))
    _append(services, (job.record_id, 1, "line 4"))
    assert _log_of(services, job.record_id, 1) == "line 1\nline 2\nline 3\nline 4"
    assert _log_of(services, job.record_id, 0) == "[10:00:00 INFO] step 0 done"
    assert [s.log for s in _steps(services, job.record_id)[2:]] == ["", "", ""]


def test_chunks_of_different_steps_and_records_do_not_mix(services):
    first = _running_job(services, bk_host_id=11, ip="127.10.0.11")
    second = _running_job(services, bk_host_id=12, ip="127.10.0.12")
    a, b = first.record_id, second.record_id
    # interleaved, and several in one batch, as a fan-out of hosts writes them
    _append(services, (a, 1, "a1-1"), (b, 1, "b1-1"), (a, 2, "a2-1"))
    _append(services, (b, 2, "b2-1"))
    _append(services, (a, 1, "a1-2"), (b, 1, "b1-2"))
    _append(services, (a, 2, "a2-2"), (a, 1, "a1-3"))

    assert [s.log for s in _steps(services, a)] == [
        "[10:00:00 INFO] step 0 done",
        "a1-1\na1-2\na1-3",
        "a2-1\na2-2",
        "",
        "",
    ]
    assert [s.log for s in _steps(services, b)] == ["[10:00:00 INFO] step 0 done", "b1-1\nb1-2", "b2-1", "", ""]


def test_two_thousand_appends_read_back_as_their_concatenation(services):
    job = _running_job(services)
    chunks = [f"[2024-05-01 10:00:{i % 60:02d} INFO] chunk {i} " + "x" * (i % 37) for i in range(2000)]
    chunks[500] = "two lines\nin one chunk"
    chunks[501] = "  leading and trailing spaces kept  "
    chunks[502] = "多字节 文本 ✓"
    for start in range(0, len(chunks), 250):
        with services.db.session() as session:
            for text in chunks[start : start + 250]:
                jobs.write_progress(services.db, session, chunks=[(job.record_id, 1, text)])

    assert _log_of(services, job.record_id, 1) == "\n".join(chunks)
    assert len(_chunk_rows(services, job.record_id)) == 2000 + 1  # plus step 0's chunk


def test_each_append_inserts_a_row_and_leaves_earlier_chunks_untouched(services, monkeypatch):
    job = _running_job(services)
    cursors: list[_CountingCursor] = []
    pooled_cursor = _ConnectionFairy.cursor

    def counted_cursor(self, *args, **kwargs):  # every cursor of the pool: the ORM's and write_progress's raw one
        cursors.append(_CountingCursor(pooled_cursor(self, *args, **kwargs)))
        return cursors[-1]

    before = _chunk_rows(services, job.record_id)
    for i in range(5):
        with monkeypatch.context() as patched:
            patched.setattr(_ConnectionFairy, "cursor", counted_cursor)
            _append(services, (job.record_id, 1, f"chunk {i}"))
        after = _chunk_rows(services, job.record_id)
        assert len(after) == len(before) + 1
        assert after[: len(before)] == before  # same ids, same text
        assert after[-1][1:] == (1, f"chunk {i}")
        before = after

    statements = [sql for cursor in cursors for sql in cursor.executed]
    touching_logs = [s for s in statements if re.search(r"\bstep_logs\b", s)]
    writes = [s for s in touching_logs if not s.lstrip().upper().startswith("SELECT")]
    assert writes
    assert all(s.lstrip().upper().startswith("INSERT INTO STEP_LOGS") for s in writes), writes


def test_each_progress_write_bumps_the_revision_of_each_record_it_touches_once(services):
    job = _running_job(services)
    other = _running_job(services, bk_host_id=2, ip="127.10.0.2")
    start = _revision(services, job.record_id)
    other_start = _revision(services, other.record_id)

    with services.db.session() as session:
        jobs.write_progress(
            services.db, session, steps=[jobs.StepProgress(job.record_id, 1, Status.RUNNING, None, None)]
        )
    assert _revision(services, job.record_id) == start + 1

    _append(services, (job.record_id, 1, "one"))
    assert _revision(services, job.record_id) == start + 2

    # a batch bumps each record it touches once
    _append(services, (job.record_id, 1, "two"), (job.record_id, 2, "three"))
    assert _revision(services, job.record_id) == start + 3

    with services.db.session() as session:
        jobs.write_progress(
            services.db,
            session,
            chunks=[(job.record_id, 2, "four")],
            steps=[jobs.StepProgress(job.record_id, 2, Status.FAILED, None, None)],
            records=[jobs.RecordProgress(job.record_id, Status.FAILED, None, None)],
        )
    assert _revision(services, job.record_id) == start + 4

    assert _revision(services, other.record_id) == other_start
    ref = _find(services, job.job_id, job.instance_id)
    assert ref is not None
    assert ref.revision == start + 4


def test_appending_nothing_changes_nothing(services):
    job = _running_job(services)
    revision = _revision(services, job.record_id)
    rows = _chunk_rows(services, job.record_id)
    _append(services)
    assert (_revision(services, job.record_id), _chunk_rows(services, job.record_id)) == (revision, rows)


# --- one instance's log is one indexed query --------------------------------------------------------------------


class _CountingCursor:
    def __init__(self, cur):
        self._cur = cur
        self.executed: list[str] = []

    def execute(self, sql, params=()):
        self.executed.append(sql)
        return self._cur.execute(sql, params)

    def executemany(self, sql, rows):
        self.executed.append(sql)
        return self._cur.executemany(sql, rows)

    def __getattr__(self, name):
        return getattr(self._cur, name)


def _many_records(services, *, records=40, chunks_per_step=20):
    """``records`` jobs of 5 steps with ``chunks_per_step`` chunks each; returns their record ids."""
    ids = []
    for n in range(records):
        job = make_job(services, runs=[], bk_host_id=1000 + n, ip=f"127.11.{n // 250}.{n % 250}")
        ids.append(job.record_id)
    with services.db.session() as session:
        jobs.write_progress(
            services.db,
            session,
            chunks=[
                (rid, step, f"r{rid} s{step} c{c}") for rid in ids for step in range(5) for c in range(chunks_per_step)
            ],
        )
    return ids


def test_reading_an_instance_log_is_one_query(services):
    ids = _many_records(services, records=3, chunks_per_step=4)
    reads = LogReads(services.db)
    with services.db.cursor() as cur:
        counting = _CountingCursor(cur)
        steps = reads.fetch_steps(counting, ids[1])
    assert len(counting.executed) == 1
    assert [s.log for s in steps] == ["\n".join(f"r{ids[1]} s{step} c{c}" for c in range(4)) for step in range(5)]


def test_reading_an_instance_log_searches_the_step_logs_index(services):
    ids = _many_records(services)  # 40 records x 5 steps x 20 chunks = 4,000 rows
    db = services.db
    sql = LogReads(db)._steps_sql
    with db.cursor() as cur:
        if db.is_sqlite:
            cur.execute("ANALYZE")
            cur.execute("EXPLAIN QUERY PLAN " + sql, (1 << 20, 1 << 20, ids[7]))
            plan = [str(row[-1]) for row in cur.fetchall()]
        else:
            cur.execute("ANALYZE step_logs")
            cur.execute("ANALYZE record_steps")
            cur.execute("EXPLAIN " + sql.replace("%s", str(int(ids[7]))))
            plan = [str(row[0]) for row in cur.fetchall()]
    text = "\n".join(plan)
    # either index of step_logs reaches the record's chunks by range (PostgreSQL may pick (record_id, id))
    assert STEPS_INDEX in text or "ix_step_logs_record_id_id" in text, text
    if db.is_sqlite:
        assert not any(re.match(r"SCAN (l|step_logs)\b", line) for line in plan), text
        assert any(
            re.match(rf"SEARCH (l|step_logs) USING (COVERING )?INDEX {STEPS_INDEX} \(record_id=", line) for line in plan
        ), text
    else:
        assert "Seq Scan on step_logs" not in text, text


def test_finding_an_instance_reads_only_its_lookup_index(services):
    """The log API's lookup reaches an instance's records through the index of its instance_id form, which holds
    every column the lookup reads: on SQLite a covering index; PostgreSQL uses one of them, never a table scan."""
    _many_records(services, records=5)
    db = services.db
    reads = LogReads(db)
    with db.cursor() as cur:
        if not db.is_sqlite:
            cur.execute("ANALYZE instance_records")
        for column, index in LOOKUP_INDEXES.items():
            sql = reads._lookup_sql[column]
            if db.is_sqlite:
                cur.execute("EXPLAIN QUERY PLAN " + sql, (1, "1", "UTC"))
                plan = "\n".join(str(row[-1]) for row in cur.fetchall())
                assert f"SEARCH r USING COVERING INDEX {index} (job_id=? AND {column}=?)" in plan, plan
            else:
                cur.execute("SET enable_seqscan = off")  # a handful of rows: the planner would rather scan
                cur.execute("EXPLAIN " + sql.replace("%s", "'1'"))
                plan = "\n".join(str(row[0]) for row in cur.fetchall())
                cur.execute("RESET enable_seqscan")
                # PostgreSQL may take another of the three (they all lead with job_id)
                assert "Seq Scan on instance_records" not in plan, plan
                assert any(name in plan for name in LOOKUP_INDEXES.values()), plan


# --- finding the record of an instance --------------------------------------------------------------------------


def _job_with_attempts(services, *, instance_id, bk_host_id, host_key, attempts):
    steps = plan_steps(JobType.UPGRADE_AGENT)
    instance = jobs.NewInstance(instance_id=instance_id, bk_host_id=bk_host_id, host_key=host_key)
    with services.db.session() as session:
        created = jobs.create_job(
            session,
            job_type=JobType.UPGRADE_AGENT,
            created_by="admin",
            from_system="esb_test",
            bk_biz_scope=[2],
            instances=[instance],
            steps=steps,
        )
        ids = [created.record_ids[instance_id]]
        for attempt in range(2, attempts + 1):
            more = jobs.add_records(
                session,
                job_id=created.job_id,
                subscription_id=created.subscription_id,
                task_id=created.task_id,
                instances=[instance],
                steps=steps,
                attempt=attempt,
            )
            ids.append(more[instance_id])
    return created.job_id, ids


def _look_up(services, job_id, raw, attempt=None):
    with services.db.cursor() as cur:
        return LogReads(services.db).look_up(cur, job_id, parse_instance_id(raw), attempt, "UTC")


def _find(services, job_id, raw, attempt=None):
    """The record the log API would read for this instance, or None when the job has no such instance."""
    return _look_up(services, job_id, raw, attempt).record


KEY = HostKey.of("::ffff:127.10.0.7", 3)  # IPv4-mapped: an IPv6 key with letters to fold
CREATED_AS = {
    "bk_host_id": str(host_instance_id(bk_host_id=7)),
    "host_key": str(host_instance_id(host_key=KEY)),
}
ASKED_AS = [
    pytest.param("host|instance|host|7", id="bk_host_id-form"),
    pytest.param(7, id="bare-int"),
    pytest.param("007", id="padded-digits"),
    pytest.param("host|instance|host|::ffff:127.10.0.7-3-0", id="host-key-form"),
    pytest.param("HOST|Instance|host|0:0:0:0:0:FFFF:7F0A:7-3-0", id="host-key-unnormalised"),
]


@pytest.mark.parametrize("created_as", sorted(CREATED_AS))
@pytest.mark.parametrize("asked", ASKED_AS)
def test_record_lookup_finds_a_host_by_either_identity_newest_attempt_first(services, created_as, asked):
    job_id, ids = _job_with_attempts(
        services, instance_id=CREATED_AS[created_as], bk_host_id=7, host_key=str(KEY), attempts=3
    )
    newest = _find(services, job_id, asked)
    assert newest is not None
    assert (newest.record_id, newest.attempts) == (ids[2], 3)
    assert [_find(services, job_id, asked, attempt).record_id for attempt in (1, 2, 3)] == ids
    missing = _find(services, job_id, asked, 4)
    assert (missing.record_id, missing.attempts) == (None, 3)


def test_record_lookup_keeps_jobs_and_hosts_apart(services):
    job_id, ids = _job_with_attempts(
        services, instance_id=CREATED_AS["host_key"], bk_host_id=7, host_key=str(KEY), attempts=1
    )
    other_job, _ = _job_with_attempts(
        services, instance_id=CREATED_AS["bk_host_id"], bk_host_id=7, host_key=str(KEY), attempts=2
    )
    assert _find(services, job_id, 7).record_id == ids[0]
    assert _find(services, job_id, 8) is None
    assert _find(services, job_id, "host|instance|host|::ffff:127.10.0.7-4-0") is None
    unknown_job = _look_up(services, other_job + 1000, 7)
    assert (unknown_job.job, unknown_job.record) == (None, None)
    known_job = _look_up(services, job_id, 8)
    assert (known_job.job.job_id, known_job.job.bk_biz_scope, known_job.record) == (job_id, frozenset({2}), None)


def test_record_lookup_of_a_host_known_only_by_its_key(services):
    key = HostKey.of("127.10.9.9", 0)
    job_id, ids = _job_with_attempts(
        services, instance_id=str(host_instance_id(host_key=key)), bk_host_id=None, host_key=str(key), attempts=1
    )
    assert _find(services, job_id, "host|instance|host|127.10.9.9-0-0").record_id == ids[0]
    assert _find(services, job_id, 9) is None


def test_record_lookup_of_a_service_instance_matches_the_instance_id(services):
    job_id, ids = _job_with_attempts(
        services, instance_id="service|instance|service|42", bk_host_id=None, host_key=None, attempts=2
    )
    assert _find(services, job_id, "service|instance|service|42").record_id == ids[1]
    assert _find(services, job_id, "service|instance|service|43") is None


# --- times -------------------------------------------------------------------------------------------------------


def test_times_round_trip_as_timezone_aware_utc(services):
    job = _running_job(services)
    start = datetime(2024, 5, 1, 18, 30, 15, 250_000, tzinfo=SHANGHAI)  # 10:30:15.25 UTC
    finish = start + timedelta(seconds=42)
    with services.db.session() as session:
        jobs.write_progress(
            services.db,
            session,
            steps=[jobs.StepProgress(job.record_id, 2, Status.SUCCESS, start, finish)],
            records=[jobs.RecordProgress(job.record_id, Status.SUCCESS, start, finish)],
        )

    with services.db.session() as session:
        step = session.get(RecordStep, (job.record_id, 2))
        record = session.get(InstanceRecord, job.record_id)
        chunk_times = session.scalars(select(StepLogRow.created_at).where(StepLogRow.record_id == job.record_id)).all()
    for value, expected in [(step.start_at, start), (step.finish_at, finish), (record.start_at, start)]:
        assert value.utcoffset() == timedelta(0)
        assert value == expected
        assert value.replace(tzinfo=None) == datetime(2024, 5, 1, 10, 30, 15, 250_000) + (expected - start)
    for value in [record.created_at, record.updated_at, *chunk_times]:
        assert value.utcoffset() == timedelta(0)
        assert abs(datetime.now(UTC) - value) < timedelta(minutes=5)

    read = _steps(services, job.record_id)[2]  # the hot read: whole seconds, still aware UTC
    assert read.start_at == datetime(2024, 5, 1, 10, 30, 15, tzinfo=UTC)
    assert read.finish_at == datetime(2024, 5, 1, 10, 30, 57, tzinfo=UTC)
    assert read.start_at.utcoffset() == timedelta(0)
    assert _steps(services, job.record_id)[3].start_at is None


def test_a_naive_datetime_is_refused_not_stored_as_if_utc(services):
    job = _running_job(services)
    with pytest.raises(ValueError, match="naive datetime"):
        with services.db.session() as session:
            jobs.write_progress(
                services.db,
                session,
                steps=[jobs.StepProgress(job.record_id, 2, Status.SUCCESS, datetime(2024, 5, 1), None)],
            )
    assert _steps(services, job.record_id)[2].start_at is None


# --- the access epoch --------------------------------------------------------------------------------------------


def _epoch(services):
    with services.db.cursor() as cur:
        return AccessReads(services.db).fetch_epoch(cur)


def test_access_epoch_grows_on_every_change_to_apps_users_and_grants(services):
    seen = [_epoch(services)]
    admin.add_app(services.db, code="esb_epoch")
    seen.append(_epoch(services))
    admin.add_user(services.db, username="alice")
    seen.append(_epoch(services))
    admin.add_user(services.db, username="alice", is_superuser=True)
    seen.append(_epoch(services))
    admin.grant(services.db, username="alice", bk_biz_ids=[2, 3])
    seen.append(_epoch(services))
    with services.db.session() as session:
        revoke_biz(session, username="alice", bk_biz_ids=[3])
    seen.append(_epoch(services))
    assert seen == sorted(set(seen)), seen  # strictly increasing
    assert len(seen) == 6


def test_a_failed_change_leaves_the_access_epoch_alone(services):
    admin.add_app(services.db, code="esb_epoch")
    before = _epoch(services)
    with pytest.raises(Exception, match="already exists"):
        admin.add_app(services.db, code="esb_epoch")
    with pytest.raises(Exception, match="no user"):
        admin.grant(services.db, username="nobody", bk_biz_ids=[2])
    assert _epoch(services) == before


def test_access_reads_see_users_and_grants(services):
    admin.add_user(services.db, username="bob")
    admin.grant(services.db, username="bob", bk_biz_ids=[3, 2, 3])
    reads = AccessReads(services.db)
    with services.db.cursor() as cur:
        bob = reads.fetch_user(cur, "bob")
        nobody = reads.fetch_user(cur, "nobody")
    assert (bob.is_superuser, bob.biz_ids, nobody) == (False, frozenset({2, 3}), None)


# --- errors ------------------------------------------------------------------------------------------------------


def test_cursor_errors_become_store_error_and_the_connection_recovers(services):
    db = services.db
    with pytest.raises(StoreError) as caught:
        with db.cursor() as cur:
            cur.execute("SELECT * FROM no_such_table")
    assert isinstance(caught.value.__cause__, db.engine.dialect.loaded_dbapi.Error)
    assert "no_such_table" not in caught.value.message  # the message is for callers; the cause is for the log
    assert caught.value.code == StoreError.code
    # the thread's connection is reused, and must not be stuck in a failed transaction
    with db.cursor() as cur:
        select_one(cur)
    assert _epoch(services) == 0


def test_session_errors_become_store_error_and_roll_back(services):
    with pytest.raises(StoreError) as caught:
        with services.db.session() as session:
            session.add(BizGrant(username="ghost", bk_biz_id=2))  # foreign key to a missing user
    assert caught.value.__cause__ is not None
    with services.db.session() as session:
        assert session.scalar(select(func.count()).select_from(BizGrant)) == 0
