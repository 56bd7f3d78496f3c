"""Agent packages: build the bundled version at start, build others on demand, pick the one a job pushes, and give
a process a local file of a package by its sha256.

A registered package is a row (version, sha256, size) and its bytes in the database (``package_contents``), so a
process on any machine can push it: ``local_copy`` is the one way a pipeline gets the file it pushes, in the
embedded engine and in a worker alike. The files under ``data_dir/packages`` are a cache of those bytes, named by
sha256, checked against it before use and rewritten from the database when missing or damaged; the file
``register`` builds there (``nodeops-agent-{version}.tar.gz``) is only where the bytes come from.

A package registered before its bytes were kept in the database has none there; ``store_missing_contents`` (run
at every start) stores them from the file the row names when that file still holds the registered sha256. A
migration never reads such files: they may live anywhere, or on another machine.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from nodeops.agent.package import BUNDLED_VERSION, build_package, write_package_file
from nodeops.domain.params import is_ascii_digits
from nodeops.errors import InvalidInput, PackageUnavailable
from nodeops.store import packages as package_rows
from nodeops.store.db import Database

log = logging.getLogger(__name__)
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChosenPackage:
    """The package a job pushes, as the database knows it; ``local_copy`` gives its file."""

    version: str
    sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentPackage:
    """A package's file on this machine, whose bytes have the sha256 given."""

    version: str
    path: Path
    sha256: str


def register(db: Database, packages_dir: Path, version: str = BUNDLED_VERSION) -> AgentPackage:
    """Build the agent package of ``version`` into ``packages_dir``, register it and store its bytes in the
    database; returns the file built. Raises InvalidInput for a bad version."""
    try:
        built = build_package(version, packages_dir)
    except ValueError as exc:
        raise InvalidInput.field("version", str(exc)) from None
    content = built.path.read_bytes()
    with db.session() as session:
        package_rows.keep_content(session, sha256=built.sha256, version=built.version, content=content)
        package_rows.upsert(
            session, version=built.version, path=str(built.path), sha256=built.sha256, size_bytes=built.size_bytes
        )
    return AgentPackage(version=built.version, path=built.path, sha256=built.sha256)


def store_missing_contents(db: Database) -> list[str]:
    """Store the bytes of registered packages that have none in the database, read from the file each row names
    when it is on this machine and still has the registered sha256; returns the versions still without bytes
    (a job choosing one of them fails its push step, saying to build the version again)."""
    with db.session() as session:
        missing = [(row.version, row.path, row.sha256) for row in package_rows.packages_without_content(session)]
    left: list[str] = []
    for version, path, sha256 in missing:
        try:
            content = Path(path).read_bytes()
        except OSError:
            content = b""
        if hashlib.sha256(content).hexdigest() != sha256:
            left.append(version)
            continue
        with db.session() as session:
            package_rows.keep_content(session, sha256=sha256, version=version, content=content)
    if left:
        log.warning(
            "agent packages without stored bytes: %s; run `nodeops agent build --version V` for each",
            ", ".join(left),
            extra={"action": "package_content_missing"},
        )
    return left


def choose(db: Database, version: str | None = None) -> ChosenPackage:
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
    return ChosenPackage(version=row.version, sha256=row.sha256)


def local_copy(db: Database, sha256: str, cache_dir: Path) -> AgentPackage:
    """A file of the package with ``sha256`` on this machine: ``cache_dir/{sha256}.tar.gz`` when it holds those
    bytes, else written there from the database (checked against ``sha256``) through a temporary file renamed into
    place, so pipelines and processes copying the same package at once each see a whole file.

    Blocking (file and database I/O): call it off the event loop. Raises PackageUnavailable when the database has
    no bytes of that sha256 or they do not match it, and OSError when ``cache_dir`` cannot be written.
    """
    if not SHA256_PATTERN.fullmatch(sha256):
        raise PackageUnavailable(f"{sha256!r} is not the lowercase hex sha256 of an agent package")
    path = Path(cache_dir) / f"{sha256}.tar.gz"
    with db.session() as session:
        row = package_rows.content_of(session, sha256)
        stored = None if row is None else (row.version, row.content)
    if stored is None:
        raise PackageUnavailable(
            f"the agent package {sha256[:12]} has no bytes in the database; build its version again "
            "with `nodeops agent build --version V` on the machine that registered it"
        )
    version, content = stored
    if _file_sha256(path) == sha256:
        return AgentPackage(version=version, path=path, sha256=sha256)
    if hashlib.sha256(content).hexdigest() != sha256:
        raise PackageUnavailable(f"the stored bytes of agent package {version} ({sha256[:12]}) do not match its sha256")
    write_package_file(path, content)
    return AgentPackage(version=version, path=path, sha256=sha256)


class LocalPackages:
    """This process's files of agent packages, by sha256, under ``cache_dir``: ``local_copy`` once per package and
    process (later pipelines reuse the file it checked), one copy at a time per package."""

    def __init__(self, db: Database, cache_dir: Path) -> None:
        self.db = db
        self.cache_dir = cache_dir
        self._copies: dict[str, AgentPackage] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, package: ChosenPackage) -> AgentPackage:
        """The local file of ``package``; raises what ``local_copy`` raises (OSError as PackageUnavailable)."""
        sha256 = package.sha256
        async with self._locks.setdefault(sha256, asyncio.Lock()):
            copy = self._copies.get(sha256)
            if copy is None or not copy.path.is_file():
                try:
                    copy = await self.db.call(lambda: local_copy(self.db, sha256, self.cache_dir))
                except OSError as exc:
                    raise PackageUnavailable(
                        f"cannot write the agent package into {self.cache_dir}: {exc.strerror or exc}"
                    ) from exc
                self._copies[sha256] = copy
            return copy


def _file_sha256(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


def _order(version: str) -> tuple[int | str, ...]:
    return tuple(int(p) if is_ascii_digits(p) else p for p in re.split(r"[.-]", version))
