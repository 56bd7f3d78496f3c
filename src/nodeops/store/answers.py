"""Sealed answers: a finished record's log API answer, rendered once and stored beside it.

A finished record no longer changes, yet it is what the log API reads most, so rendering it on every read
(every step, every chunk, every timestamp) is waste. When a record finishes, the writer that finished it seals
it in the same transaction: the answer is rendered by the same ``AnswerRenderer`` the reader uses and stored
with the record's revision and the zone it was rendered in. A reader uses it only when both still match; a
later write to the record (a retried step, a late line) bumps the revision, so a stale answer is never served.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from nodeops.domain.answer import AnswerRenderer
from nodeops.store.log_reads import LogReads
from nodeops.store.models import RecordAnswer

SEAL_BATCH = 200  # records per statement; keeps the IN list and the rows read at once small


def seal(session: Session, reads: LogReads, renderer: AnswerRenderer, record_ids: Collection[int]) -> int:
    """Render and store the answers of the finished records among ``record_ids`` (others are left alone),
    in the session's transaction; returns how many were sealed."""
    ids = sorted(set(record_ids))
    sealed = 0
    cursor = session.connection().connection.cursor()  # the session's own transaction, on the raw driver
    try:
        for start in range(0, len(ids), SEAL_BATCH):
            finished = reads.fetch_finished(cursor, ids[start : start + SEAL_BATCH], max_bytes=renderer.step_max_bytes)
            if not finished:
                continue
            session.execute(delete(RecordAnswer).where(RecordAnswer.record_id.in_(list(finished))))
            rows = [
                {
                    "record_id": record_id,
                    "revision": record.revision,
                    "zone": renderer.zone,
                    "body": renderer.render(
                        record.steps, job_id=record.job_id, instance_id=record.instance_id, attempt=record.attempt
                    ),
                }
                for record_id, record in finished.items()
            ]
            session.execute(insert(RecordAnswer), rows)
            sealed += len(finished)
    finally:
        cursor.close()
    return sealed
