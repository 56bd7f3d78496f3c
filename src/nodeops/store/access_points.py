"""Access points (接入点, network spec §15) beyond the default one (``store.packages`` keeps that one): their rows,
a new one's id, and who uses one (areas in ``store.cloud_areas``, hosts here)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nodeops.store.db import lock_for_update
from nodeops.store.models import AccessPoint, Host

LOCK = "access_points"  # the lock ``packages.ensure_default_access_point`` takes too


def access_points(session: Session) -> list[AccessPoint]:
    return list(session.scalars(select(AccessPoint).order_by(AccessPoint.id)))


def get(session: Session, ap_id: int) -> AccessPoint | None:
    return session.get(AccessPoint, ap_id)


def lock(session: Session) -> None:
    """Serialize with the other writers of access points (a name chosen, an id given, one deleted)."""
    lock_for_update(session, LOCK)


def next_id(session: Session) -> int:
    """The id a new access point gets: above every existing one. The default one is inserted with its explicit id,
    so the table's own sequence (PostgreSQL) would not know it; call it holding ``lock``."""
    return (session.scalar(select(func.max(AccessPoint.id))) or 0) + 1


def lowest_id(session: Session) -> int | None:
    """The default access point, Node Manager's ``AccessPoint.objects.first()``: the lowest id."""
    return session.scalar(select(func.min(AccessPoint.id)))


def name_taken(session: Session, name: str, *, other_than: int | None = None) -> bool:
    query = select(AccessPoint.id).where(AccessPoint.name == name)
    if other_than is not None:
        query = query.where(AccessPoint.id != other_than)
    return session.scalars(query.limit(1)).first() is not None


def host_count(session: Session, ap_id: int) -> int:
    """How many hosts report to the access point ``ap_id``."""
    return session.scalar(select(func.count()).select_from(Host).where(Host.ap_id == ap_id)) or 0
