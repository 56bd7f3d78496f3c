"""Registered agent packages and access points."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from nodeops.store.models import AccessPoint, AgentPackage


def upsert(session: Session, *, version: str, path: str, sha256: str, size_bytes: int) -> None:
    row = session.get(AgentPackage, version)
    if row is None:
        session.add(AgentPackage(version=version, path=path, sha256=sha256, size_bytes=size_bytes))
    else:
        row.path, row.sha256, row.size_bytes = path, sha256, size_bytes


def all_packages(session: Session) -> list[AgentPackage]:
    return list(session.scalars(select(AgentPackage)))


def ensure_default_access_point(session: Session, *, server_url: str) -> None:
    """Access point 1 exists and reports to ``server_url`` (the service's public URL)."""
    ap = session.get(AccessPoint, 1)
    if ap is None:
        session.add(AccessPoint(id=1, name="default", server_url=server_url))
    else:
        ap.server_url = server_url
