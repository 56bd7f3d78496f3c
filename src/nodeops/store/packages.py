"""Registered agent packages, their bytes by sha256 (``package_contents``), and access points."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from nodeops.store.db import lock_for_update
from nodeops.store.models import AccessPoint, AgentPackage, PackageContent

DEFAULT_AP_ID = 1  # the access point the service keeps: hosts given no ap_id, or Node Manager's -1, use it


def upsert(session: Session, *, version: str, path: str, sha256: str, size_bytes: int) -> None:
    row = session.get(AgentPackage, version)
    if row is None:
        session.add(AgentPackage(version=version, path=path, sha256=sha256, size_bytes=size_bytes))
    else:
        row.path, row.sha256, row.size_bytes = path, sha256, size_bytes


def keep_content(session: Session, *, sha256: str, version: str, content: bytes) -> None:
    """Store ``content`` as the bytes of the package with ``sha256``, unless they are stored already (the same
    sha256 is the same bytes). Serialized with other writers, so processes registering at once do not collide."""
    lock_for_update(session, "package_contents")
    if session.get(PackageContent, sha256) is None:
        session.add(PackageContent(sha256=sha256, version=version, size_bytes=len(content), content=content))


def content_of(session: Session, sha256: str) -> PackageContent | None:
    """The stored bytes (and version) of the package with ``sha256``, or None if none are stored."""
    return session.get(PackageContent, sha256)


def packages_without_content(session: Session) -> list[AgentPackage]:
    """Registered packages whose bytes are not stored: those registered before the bytes were kept."""
    stored = select(PackageContent.sha256)
    return list(session.scalars(select(AgentPackage).where(AgentPackage.sha256.not_in(stored))))


def all_packages(session: Session) -> list[AgentPackage]:
    return list(session.scalars(select(AgentPackage)))


def ensure_default_access_point(session: Session, *, server_url: str) -> None:
    """The default access point exists and reports to ``server_url`` (the service's public URL). Serialized with
    other writers: API processes starting together (``serve --workers N``) would otherwise both insert it."""
    lock_for_update(session, "access_points")
    ap = session.get(AccessPoint, DEFAULT_AP_ID)
    if ap is None:
        session.add(AccessPoint(id=DEFAULT_AP_ID, name="default", server_url=server_url))
    else:
        ap.server_url = server_url


def existing_access_points(session: Session, ap_ids: Collection[int]) -> set[int]:
    """The ids among ``ap_ids`` of access points that exist."""
    if not ap_ids:
        return set()
    return set(session.scalars(select(AccessPoint.id).where(AccessPoint.id.in_(list(ap_ids)))))
