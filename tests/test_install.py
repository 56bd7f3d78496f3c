"""What is installed is what the locks say, and starting nodeops prints no warning.

`make run` installs requirements/service.lock and `make test` requirements/dev.lock (every package pinned, with
hashes); these tests check that the venv running them matches the lock, that the locks cover pyproject.toml,
and that importing the CLI under ``-W error`` is silent (a dependency's deprecation warning is fixed at its
cause, a version bound, not hidden).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "requirements"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def _pins(lock: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    blocks = lock.read_text().replace("\\\n", " ").splitlines()
    for line in blocks:
        if match := _PIN.match(line.strip()):
            name = canonicalize_name(match[1])
            assert "--hash=sha256:" in line, f"{lock.name}: {name} is pinned without a hash"
            pins[name] = match[2]
    return pins


def _declared(extra: str | None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    if extra:
        names += project["optional-dependencies"][extra]
    return [Requirement(text) for text in names]


@pytest.mark.parametrize(("lock", "extra"), [("service.lock", None), ("dev.lock", "dev")])
def test_every_declared_dependency_is_pinned_within_its_bounds(lock: str, extra: str | None) -> None:
    pins = _pins(LOCKS / lock)
    for requirement in _declared(extra):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock} lacks {name}: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{lock} pins {name}=={pins[name]}, outside pyproject's {requirement.specifier}: run `make lock`"
        )


def test_the_dev_lock_agrees_with_the_service_lock() -> None:
    service, dev = _pins(LOCKS / "service.lock"), _pins(LOCKS / "dev.lock")
    differing = {name: (version, dev.get(name)) for name, version in service.items() if dev.get(name) != version}
    assert not differing, f"service.lock and dev.lock pin these differently: {differing}"


def test_the_running_environment_is_the_dev_lock() -> None:
    pins = _pins(LOCKS / "dev.lock")
    installed = {canonicalize_name(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}
    wrong = {name: (version, installed.get(name)) for name, version in pins.items() if installed.get(name) != version}
    assert not wrong, f"installed versions differ from requirements/dev.lock (locked, installed): {wrong}"


@pytest.mark.parametrize(
    "argv",
    [["-c", "import nodeops.cli.app"], ["-c", "from nodeops.cli.app import main; main()", "--help"]],
    ids=["import", "help"],
)
def test_starting_nodeops_prints_no_warning(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", *argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
