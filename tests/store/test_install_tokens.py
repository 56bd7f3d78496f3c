"""Manual install tokens: spent at most once, even by requests racing for them, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from nodeops.store import install_tokens
from tests.support.factories import make_seed_job

RACERS = 8


def test_a_command_token_is_spent_by_exactly_one_of_concurrent_uses(services):
    made = make_seed_job(services)
    with services.db.session() as session:
        token = install_tokens.mint(
            session, record_id=made.record_id, step_index=1, purpose=install_tokens.COMMAND, ttl_s=60
        )
    results: list[object] = []
    start = threading.Barrier(RACERS)

    def spend() -> None:
        start.wait()
        with services.db.session() as session:
            results.append(install_tokens.consume(session, token=token, purpose=install_tokens.COMMAND))

    threads = [threading.Thread(target=spend) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    won = [r for r in results if isinstance(r, install_tokens.TokenStep)]
    assert won == [install_tokens.TokenStep(made.record_id, 1)]
    assert results.count(install_tokens.Refusal.USED) == RACERS - 1


def test_tokens_are_refused_when_expired_unknown_or_of_another_purpose(services):
    made = make_seed_job(services)
    with services.db.session() as session:
        expired = install_tokens.mint(
            session, record_id=made.record_id, step_index=1, purpose=install_tokens.COMMAND, ttl_s=-1
        )
        report = install_tokens.mint(
            session, record_id=made.record_id, step_index=1, purpose=install_tokens.REPORT, ttl_s=60
        )
    with services.db.session() as session:
        assert install_tokens.consume(session, token=expired, purpose=install_tokens.COMMAND) is (
            install_tokens.Refusal.EXPIRED
        )
        assert install_tokens.consume(session, token="nope", purpose=install_tokens.COMMAND) is (
            install_tokens.Refusal.UNKNOWN
        )
        assert install_tokens.consume(session, token=report, purpose=install_tokens.COMMAND) is (
            install_tokens.Refusal.UNKNOWN
        )
        assert install_tokens.finish(session, token=report, outcome=install_tokens.DONE, detail=None)
        assert not install_tokens.finish(session, token=report, outcome=install_tokens.FAILED, detail=None)
        assert install_tokens.outcome_of(session, record_id=made.record_id, step_index=1) == (
            install_tokens.DONE,
            None,
        )
