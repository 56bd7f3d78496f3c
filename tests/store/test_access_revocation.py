"""Failed authentications and revoked tokens in the store, on SQLite and PostgreSQL: the window and the block
of ``record_auth_failure``, what the authentication path reads of them, and the access epoch they bump."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nodeops.store import access
from nodeops.store.models import AuthFailure, RevokedToken

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _fail(services, at: datetime, *, app: str = "esb_test", client: str = "127.0.0.1") -> access.FailureCount:
    with services.db.session() as session:
        return access.record_auth_failure(
            session, app_code=app, client=client, now=at, window_s=60, max_failures=3, block_s=30
        )


def _epoch(services) -> int:
    with services.db.cursor() as cur:
        return access.AccessReads(services.db).fetch_epoch(cur)


def _block(services, at: datetime, *, app: str = "esb_test", client: str = "127.0.0.1") -> datetime | None:
    with services.db.cursor() as cur:
        return access.AccessReads(services.db).fetch_block(cur, app, client, at)


def test_failures_count_in_a_window_and_the_threshold_blocks_the_pair(services):
    assert [_fail(services, T0 + timedelta(seconds=s)).failures for s in (0, 10)] == [1, 2]
    assert _fail(services, T0 + timedelta(seconds=70)).failures == 1  # the window opened at T0 has closed
    epoch = _epoch(services)
    assert _fail(services, T0 + timedelta(seconds=80)).failures == 2
    third = _fail(services, T0 + timedelta(seconds=90))
    assert (third.failures, third.newly_blocked) == (3, True)
    assert third.blocked_until == T0 + timedelta(seconds=120)
    assert _epoch(services) == epoch + 1  # every process drops what it remembered
    assert _block(services, T0 + timedelta(seconds=100)) == T0 + timedelta(seconds=120)
    assert _block(services, T0 + timedelta(seconds=100), client="127.0.0.2") is None
    assert _block(services, T0 + timedelta(seconds=100), app="esb_other") is None
    assert _block(services, T0 + timedelta(seconds=120)) is None  # ends by itself

    during = _fail(services, T0 + timedelta(seconds=95))
    assert (during.newly_blocked, during.blocked_until) == (False, T0 + timedelta(seconds=120))
    assert _epoch(services) == epoch + 1


def test_stale_rows_are_dropped_as_failures_come(services):
    _fail(services, T0, client="127.10.0.1")
    for second in (0, 1, 2):
        _fail(services, T0 + timedelta(seconds=second), client="127.10.0.2")  # blocked until T0+32
    _fail(services, T0 + timedelta(seconds=61), client="127.10.0.3")
    with services.db.session() as session:
        clients = sorted(row.client for row in session.query(AuthFailure))
    assert clients == ["127.10.0.2", "127.10.0.3"]  # 127.10.0.1's window closed; 127.10.0.2's block may still hold


def test_a_revoked_token_is_listed_until_it_expires(services):
    reads = access.AccessReads(services.db)
    epoch = _epoch(services)
    with services.db.session() as session:
        assert access.revoke_token(session, digest="a" * 64, username="u", expires_at=T0, now=T0 - timedelta(hours=1))
        again = T0 - timedelta(minutes=1)
        assert not access.revoke_token(session, digest="a" * 64, username="u", expires_at=T0, now=again)
    assert _epoch(services) == epoch + 1
    with services.db.cursor() as cur:
        assert reads.is_revoked(cur, "a" * 64, None)
        assert reads.is_revoked(cur, "b" * 64, "a" * 64)  # a session opened with the revoked token
        assert not reads.is_revoked(cur, "b" * 64, None)
    with services.db.session() as session:  # a later revocation drops entries that have expired
        access.revoke_token(session, digest="c" * 64, username="u", expires_at=T0 + timedelta(days=1), now=T0)
        assert [row.token_digest for row in session.query(RevokedToken)] == ["c" * 64]
