"""A PostgreSQL database that stalls (every table locked by another session) fails requests within the statement
timeout, in the envelope with code 3800500 and a message naming the limit, instead of holding them; once it
answers again the same requests succeed with the same data."""

from __future__ import annotations

import time

import psycopg
import pytest
import sqlalchemy as sa

from nodeops.settings import Settings
from tests.support.api import assert_error, credentials, log_data, request_log
from tests.support.factories import make_seed_job

TIMEOUT_S = 0.3
LIMIT = "NODEOPS_DB_STATEMENT_TIMEOUT_S"


@pytest.fixture
def database_url(pg_database_url: str) -> str:
    return pg_database_url  # PostgreSQL only: SQLite has no statement timeout


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"db_statement_timeout_s": TIMEOUT_S})


def lock_every_table(url: str) -> psycopg.Connection:
    conn = psycopg.connect(sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    tables = [row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    conn.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
    return conn


def test_requests_fail_within_the_statement_timeout_while_the_database_stalls(
    client, services, esb_app, admin, pg_database_url
):
    job = make_seed_job(services)
    auth = credentials(esb_app, bk_username="admin")
    before = log_data(request_log(client, "esb_post", job_id=job.job_id, instance_id=1, auth=auth))
    listed = client.post("/api/job/job_list/", json=auth).json()
    assert listed["result"] is True, listed

    holder = lock_every_table(pg_database_url)
    try:
        for address in ("esb_post", "nodeman"):  # the log lane (the event loop's connections, then a thread's)
            started = time.monotonic()
            response = request_log(client, address, job_id=job.job_id, instance_id=1, auth=auth)
            assert time.monotonic() - started < 5 * TIMEOUT_S + 1
            assert_error(response, 3800500, contains=(LIMIT,))
        started = time.monotonic()
        response = client.post("/api/job/job_list/", json=auth)  # a FastAPI route (the session's pool)
        assert time.monotonic() - started < 5 * TIMEOUT_S + 1
        assert_error(response, 3800500, contains=(LIMIT,))
    finally:
        holder.rollback()
        holder.close()

    after = log_data(request_log(client, "esb_post", job_id=job.job_id, instance_id=1, auth=auth))
    assert after == before
    again = client.post("/api/job/job_list/", json=auth).json()
    assert [(job["id"], job["status"]) for job in again["data"]["list"]] == [
        (job["id"], job["status"]) for job in listed["data"]["list"]
    ]
    assert again["data"]["total"] == listed["data"]["total"] == 1
