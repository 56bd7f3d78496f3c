"""Install channels (安装通道, network spec §14): their rows, and how many hosts are installed through one."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nodeops.store.models import Host, InstallChannel


def channels(session: Session, *, with_hidden: bool) -> list[InstallChannel]:
    query = select(InstallChannel).order_by(InstallChannel.id)
    if not with_hidden:
        query = query.where(InstallChannel.hidden.is_(False))
    return list(session.scalars(query))


def get(session: Session, channel_id: int) -> InstallChannel | None:
    return session.get(InstallChannel, channel_id)


def host_count(session: Session, channel_id: int) -> int:
    """How many hosts are reached through the channel ``channel_id``."""
    query = select(func.count()).select_from(Host).where(Host.install_channel_id == channel_id)
    return session.scalar(query) or 0
