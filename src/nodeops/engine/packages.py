"""Agent packages: build the bundled version at start, build others on demand, pick the one a job pushes.

Packages are files under ``data_dir/packages`` registered in the store (version, path, sha256, size).
"""

from __future__ import annotations

import re
from pathlib import Path

from nodeops.agent.package import BUNDLED_VERSION, build_package
from nodeops.domain.params import is_ascii_digits
from nodeops.engine.steps import AgentPackage
from nodeops.errors import InvalidInput
from nodeops.store import packages as package_rows
from nodeops.store.db import Database


def register(db: Database, packages_dir: Path, version: str = BUNDLED_VERSION) -> AgentPackage:
    """Build (if missing) and register the agent package of ``version``; returns it."""
    try:
        built = build_package(version, packages_dir)
    except ValueError as exc:
        raise InvalidInput.field("version", str(exc)) from None
    with db.session() as session:
        package_rows.upsert(
            session, version=built.version, path=str(built.path), sha256=built.sha256, size_bytes=built.size_bytes
        )
    return AgentPackage(version=built.version, path=built.path, sha256=built.sha256)


def choose(db: Database, version: str | None = None) -> AgentPackage:
    """The registered package of ``version``, or the newest one; raises InvalidInput naming what exists."""
    with db.session() as session:
        rows = package_rows.all_packages(session)
    if not rows:
        raise InvalidInput.field("version", "no agent package is registered; run `nodeops agent build`")
    if version is None:
        row = max(rows, key=lambda r: _order(r.version))
    else:
        found = [r for r in rows if r.version == version]
        if not found:
            known = ", ".join(sorted((r.version for r in rows), key=_order))
            raise InvalidInput.field("version", f"agent version {version!r} is not registered; known: {known}")
        row = found[0]
    return AgentPackage(version=row.version, path=Path(row.path), sha256=row.sha256)


def _order(version: str) -> tuple[int | str, ...]:
    return tuple(int(p) if is_ascii_digits(p) else p for p in re.split(r"[.-]", version))
