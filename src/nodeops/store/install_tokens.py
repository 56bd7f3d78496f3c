"""The one-time, expiring tokens of manual installs (network spec §16): only their SHA-256 is stored.

Two purposes, each for one record's step (安装):

- ``COMMAND``: minted by get_job_commands into the one-line command; ``consume`` spends it at most once, in one
  conditional ``UPDATE`` (``used_at IS NULL AND expires_at > now``), so of two requests using it at once exactly
  one wins, on SQLite and PostgreSQL alike.
- ``REPORT``: minted when the command's token is spent, into the install script it fetched; the script reports
  its lines with it until it ``finish``-es with an outcome (``DONE``/``FAILED``), which the waiting step reads
  (``outcome_of``). A finished or expired report token is refused.

Imports store and the standard library.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from nodeops.store.models import InstallToken, InstanceRecord, RecordStep, utcnow

COMMAND = "command"
REPORT = "report"
DONE = "DONE"
FAILED = "FAILED"
TOKEN_BYTES = 32
MAX_DETAIL_CHARS = 500  # the detail column


class Refusal(enum.Enum):
    """Why a token was not accepted."""

    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class TokenStep:
    """The record's step a token is for."""

    record_id: int
    step_index: int


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def mint(session: Session, *, record_id: int, step_index: int, purpose: str, ttl_s: float) -> str:
    """A new token of ``purpose`` for the record's step, valid ``ttl_s`` seconds; only its hash is stored."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = utcnow()
    session.add(
        InstallToken(
            token_hash=token_hash(token),
            record_id=record_id,
            step_index=step_index,
            purpose=purpose,
            expires_at=now + timedelta(seconds=ttl_s),
            created_at=now,
        )
    )
    session.flush()
    return token


def consume(session: Session, *, token: str, purpose: str) -> TokenStep | Refusal:
    """Spend a token of ``purpose``: its step, or why it was refused. Atomic: one conditional UPDATE."""
    digest, now = token_hash(token), utcnow()
    row = session.execute(
        update(InstallToken)
        .where(
            InstallToken.token_hash == digest,
            InstallToken.purpose == purpose,
            InstallToken.used_at.is_(None),
            InstallToken.expires_at > now,
        )
        .values(used_at=now)
        .returning(InstallToken.record_id, InstallToken.step_index)
    ).one_or_none()
    if row is not None:
        return TokenStep(row.record_id, row.step_index)
    return _why_refused(session, digest, purpose)


def active(session: Session, *, token: str, purpose: str) -> TokenStep | Refusal:
    """The step of a token of ``purpose`` still usable (not finished, not expired), or why it is not."""
    digest = token_hash(token)
    found = session.get(InstallToken, digest)
    if found is None or found.purpose != purpose:
        return Refusal.UNKNOWN
    if found.used_at is not None:
        return Refusal.USED
    if found.expires_at <= utcnow():
        return Refusal.EXPIRED
    return TokenStep(found.record_id, found.step_index)


def finish(session: Session, *, token: str, outcome: str, detail: str | None) -> bool:
    """Record how the install script of a report token ended; False when it had ended already."""
    result = session.execute(
        update(InstallToken)
        .where(InstallToken.token_hash == token_hash(token), InstallToken.used_at.is_(None))
        .values(used_at=utcnow(), outcome=outcome, detail=None if detail is None else detail[:MAX_DETAIL_CHARS])
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def retire_commands(session: Session, step: TokenStep) -> None:
    """Spend every command token left for the step: once its install script runs, no command starts another."""
    session.execute(
        update(InstallToken)
        .where(
            InstallToken.record_id == step.record_id,
            InstallToken.step_index == step.step_index,
            InstallToken.purpose == COMMAND,
            InstallToken.used_at.is_(None),
        )
        .values(used_at=utcnow())
    )


def script_started(session: Session, step: TokenStep) -> bool:
    """Whether an install script was already handed out for the step."""
    query = select(InstallToken.token_hash).where(
        InstallToken.record_id == step.record_id,
        InstallToken.step_index == step.step_index,
        InstallToken.purpose == REPORT,
    )
    return session.scalar(query.limit(1)) is not None


def outcome_of(session: Session, *, record_id: int, step_index: int) -> tuple[str, str | None] | None:
    """How the step's install script ended (``(DONE|FAILED, detail)``), or None while none has ended."""
    row = session.execute(
        select(InstallToken.outcome, InstallToken.detail)
        .where(
            InstallToken.record_id == record_id,
            InstallToken.step_index == step_index,
            InstallToken.purpose == REPORT,
            InstallToken.outcome.is_not(None),
        )
        .limit(1)
    ).one_or_none()
    return None if row is None or row.outcome is None else (row.outcome, row.detail)


def step_status(session: Session, step: TokenStep) -> str | None:
    """The step's status now (None: no such step)."""
    return session.scalar(
        select(RecordStep.status).where(
            RecordStep.record_id == step.record_id, RecordStep.step_index == step.step_index
        )
    )


def host_record(session: Session, *, job_id: int, bk_host_id: int) -> int | None:
    """The id of the host's latest record in the job (the one get_job_commands gives a command for), or None."""
    return session.scalar(
        select(InstanceRecord.id)
        .where(InstanceRecord.job_id == job_id, InstanceRecord.bk_host_id == bk_host_id)
        .order_by(InstanceRecord.id.desc())
        .limit(1)
    )


def _why_refused(session: Session, digest: bytes, purpose: str) -> Refusal:
    found = session.get(InstallToken, digest, populate_existing=True)
    if found is None or found.purpose != purpose:
        return Refusal.UNKNOWN
    return Refusal.USED if found.used_at is not None else Refusal.EXPIRED
