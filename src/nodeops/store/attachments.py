"""Files attached to an instance record after it ran (``record_attachments``): the agent's own log that
collect_log fetched from the host, read back through the log API's download (docs/log-reading.md)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from nodeops.store.db import ReadHandle
from nodeops.store.models import RecordAttachment


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    id: int
    record_id: int
    name: str
    content: bytes


def add_attachment(session: Session, *, record_id: int, name: str, content: bytes, created_by: str) -> int:
    """Attach ``content`` to the record as ``name``; returns the attachment's id."""
    row = RecordAttachment(
        record_id=record_id, name=name, content=content, size_bytes=len(content), created_by=created_by
    )
    session.add(row)
    session.flush()
    return row.id


def find_attachment(cur: ReadHandle, paramstyle: str, *, attachment_id: int) -> Attachment | None:
    cur.execute(
        f"SELECT id, record_id, name, content FROM record_attachments WHERE id = {paramstyle}", (attachment_id,)
    )
    row = cur.fetchone()
    if row is None:
        return None
    return Attachment(id=int(row[0]), record_id=int(row[1]), name=str(row[2]), content=bytes(row[3]))
