"""Builds the agent's versioned package: a reproducible ``nodeops-agent-{version}.tar.gz`` of the agent program.

The service builds its bundled version at start and others on ``nodeops agent build --version V``, then registers
what ``build_package`` returns. Like the rest of ``nodeops.agent`` it imports nothing else from nodeops, so it raises
``ValueError`` (the caller maps it to ``InvalidInput``) and keeps its own copy of the bundled version.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The agent's own version, bumped when nodeops_agent.py changes. It is not nodeops.__version__: agent/ may not
# import nodeops (STYLE.md, Layout), and an agent that has not changed needs no new package.
BUNDLED_VERSION = "0.1.0"

PACKAGE_ROOT = "nodeops-agent"  # the one top-level folder; installers unpack with --strip-components=1
AGENT_SCRIPT = "nodeops_agent.py"
VERSION_FILE = "VERSION"
AGENT_SCRIPT_PATH = Path(__file__).with_name(AGENT_SCRIPT)

VERSION_PATTERN = re.compile(r"[0-9]+(\.[0-9]+){1,3}([.-][0-9A-Za-z]+)?")  # used with fullmatch: no "\n" slips by
MAX_VERSION_CHARS = 64  # agent_packages.version and hosts.agent_version are String(64)

# Fixed metadata, so the same script and version always give the same bytes (and the same sha256).
PACKAGE_MTIME = 315532800  # 1980-01-01T00:00:00Z: old enough to be plainly fixed, new enough for zip and tar tools
SCRIPT_MODE = 0o755
FILE_MODE = 0o644
DIR_MODE = 0o755


@dataclass(frozen=True, slots=True, kw_only=True)
class BuiltPackage:
    """A package on disk and the facts the store registers about it."""

    path: Path
    version: str
    sha256: str  # hex digest of the whole .tar.gz
    size_bytes: int


def validate_version(version: str) -> str:
    """Return ``version`` if it may name an agent package; raise ValueError saying what is accepted otherwise."""
    if not isinstance(version, str) or len(version) > MAX_VERSION_CHARS or not VERSION_PATTERN.fullmatch(version):
        raise ValueError(
            f"agent version {version!r} must be 2 to 4 dot-separated numbers with an optional suffix of letters "
            f"and digits after '.' or '-' (e.g. 0.1.0, 1.2.3.4, 1.2.3-rc1), at most {MAX_VERSION_CHARS} characters"
        )
    return version


def package_filename(version: str) -> str:
    """``nodeops-agent-{version}.tar.gz``; raises ValueError for a bad version."""
    return f"{PACKAGE_ROOT}-{validate_version(version)}.tar.gz"


def package_bytes(version: str) -> bytes:
    """The package of ``version`` as bytes: sorted entries, fixed mtime, owner root, gzip without name or time."""
    validate_version(version)
    members = [
        (f"{PACKAGE_ROOT}/{VERSION_FILE}", f"{version}\n".encode("ascii"), FILE_MODE),
        (f"{PACKAGE_ROOT}/{AGENT_SCRIPT}", AGENT_SCRIPT_PATH.read_bytes(), SCRIPT_MODE),
    ]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(_entry(PACKAGE_ROOT, tarfile.DIRTYPE, DIR_MODE, 0))
        for name, data, mode in sorted(members):
            tar.addfile(_entry(name, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))
    packed = io.BytesIO()
    # tarfile's "w:gz" would stamp the current time and the file's name into the gzip header
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, compresslevel=9, mtime=0) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def _entry(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = PACKAGE_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def write_package_file(path: Path, data: bytes) -> None:
    """Write a package file (creating its folder) as a whole, mode 0644: a temporary file beside it, synced, then
    renamed over it, so nobody (another pipeline, another process) ever reads it half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, FILE_MODE)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def build_package(version: str, dest_dir: Path) -> BuiltPackage:
    """Write ``dest_dir/nodeops-agent-{version}.tar.gz`` (creating ``dest_dir``) and return what was built.

    Building a version again gives the same bytes, and replaces the file atomically, so a package being pushed is
    never seen half-written. Raises ValueError for a bad version and OSError if ``dest_dir`` cannot be written.
    """
    data = package_bytes(version)
    path = Path(dest_dir) / package_filename(version)
    write_package_file(path, data)
    return BuiltPackage(path=path, version=version, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
