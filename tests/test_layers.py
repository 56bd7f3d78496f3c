"""Imports only point down (STYLE.md, Layout): api/web/cli -> service -> engine -> store -> domain.

Every module under src/nodeops is parsed with ``ast`` (never imported), and each import, including those inside
functions and ``importlib.import_module("...")`` with a literal name, is checked against the layer rules and
the rules on which layer may use which third-party library. A failure lists every offending module and import.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import nodeops

SRC = Path(nodeops.__file__).resolve().parent.parent
PACKAGE = SRC / "nodeops"

# Shared leaves: anyone may import them; they import nothing from nodeops but nodeops.errors and
# nodeops.request_context (the id of the request being served, which the process's log records carry).
LEAVES = frozenset(
    {
        "nodeops",
        "nodeops.errors",
        "nodeops.settings",
        "nodeops.process_logging",
        "nodeops.crypto",
        "nodeops.request_context",
        "nodeops.metrics",
    }
)
LEAF_IMPORTS = frozenset({"nodeops.errors", "nodeops.request_context"})

# The layers, lowest first. A layer may import itself, the leaves and any layer below it.
# (``nodeops.__main__``, ``python -m nodeops``, is the command's entry point: above the CLI it runs)
RANK = {"domain": 0, "store": 1, "engine": 2, "service": 3, "web": 4, "api": 5, "cli": 6, "__main__": 7}

# Exceptions to "anything below": what a layer may import from nodeops, when narrower.
ONLY = {
    "domain": frozenset({"nodeops.errors"}),  # pure: only the exception tree
    "agent": frozenset(),  # installed on hosts on its own: nothing from nodeops
}

# Third-party packages only some places may import: top-level name -> module path prefixes allowed to.
THIRD_PARTY = {
    "sqlalchemy": ("nodeops.store",),
    "alembic": ("nodeops.store",),
    "psycopg": ("nodeops.store",),
    "fastapi": ("nodeops.api", "nodeops.web"),
    "starlette": ("nodeops.api", "nodeops.web"),
    "asyncssh": ("nodeops.engine.transports.ssh",),
    # the distributed mode's broker: one module speaks Celery (and what comes with it); nothing else knows it
    "celery": ("nodeops.engine.dispatch.celery",),
    "kombu": ("nodeops.engine.dispatch.celery",),
    "redis": ("nodeops.engine.dispatch.celery",),
    "re2": ("nodeops.domain.log_search",),  # every user's pattern is compiled and matched in one place
    "prometheus_client": ("nodeops.metrics",),  # every metric is defined, and the scrape made, in one module
    # the HTTP protocol the service runs (the log lane, the connection guard) is built in one package
    "uvicorn": ("nodeops.api.fastpath",),
    "httptools": ("nodeops.api.fastpath",),
}

# Modules that may also import a package of THIRD_PARTY itself (its public API), never its submodules.
TOP_LEVEL_ONLY = {
    "uvicorn": ("nodeops.cli.app",),  # `nodeops serve` starts the server (uvicorn.run)
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    path: str  # its file, relative to src/
    line: int
    target: str  # the imported module, dotted and absolute

    def __str__(self) -> str:
        return f"{self.path}:{self.line} ({self.module}) imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(module: str) -> bool:
    path = SRC.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imports_of(source: str, *, module: str, path: str, is_package: bool) -> list[Import]:
    """Every import in ``source`` as absolute dotted targets; ``from a import b`` targets ``a.b`` if a module."""
    found: list[Import] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source, filename=path)):
        if isinstance(node, ast.Import):
            found.extend(Import(module, path, node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: -(node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                target = candidate if base.startswith("nodeops") and _is_module(candidate) else base
                found.append(Import(module, path, node.lineno, target))
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in {"import_module", "__import__"})
            )
        ):
            found.append(Import(module, path, node.lineno, node.args[0].value))
    return found


def layer_of(module: str) -> str:
    """``nodeops.store.jobs`` -> ``store``; a shared leaf is its own name (``nodeops.errors``)."""
    if module in LEAVES:
        return module
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else module


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violation(imp: Import) -> str | None:
    """Why this import breaks a rule, or None when it is allowed."""
    source_layer = layer_of(imp.module)
    top = imp.target.split(".")[0]
    if top in THIRD_PARTY:
        if any(_within(imp.module, allowed) for allowed in THIRD_PARTY[top]):
            return None
        top_level_only = TOP_LEVEL_ONLY.get(top, ())
        if imp.target == top and any(_within(imp.module, allowed) for allowed in top_level_only):
            return None
        also = f" ({', '.join(top_level_only)}: only {top} itself)" if top_level_only else ""
        return f"only {', '.join(THIRD_PARTY[top])} may import {top}{also}"
    if top != "nodeops":
        return None
    target_layer = layer_of(imp.target)
    if source_layer == target_layer:
        return None
    if source_layer in ONLY:
        allowed = ONLY[source_layer]
        if imp.target in allowed:
            return None
        what = ", ".join(sorted(allowed)) or "nothing from nodeops"
        return f"{source_layer} may import only {what}"
    if source_layer in LEAVES:
        return (
            None if imp.target in LEAF_IMPORTS else "a shared leaf may import only " + ", ".join(sorted(LEAF_IMPORTS))
        )
    if target_layer in LEAVES:
        return None
    if target_layer == "agent":  # the engine packages the agent's files; the agent imports nothing back
        return None
    if source_layer not in RANK:
        return f"{imp.module} is in no known layer ({', '.join(RANK)}, agent, or a shared leaf)"
    if target_layer not in RANK:
        return f"{imp.target} is in no known layer"
    if RANK[target_layer] >= RANK[source_layer]:
        return f"{source_layer} may not import {target_layer} (imports only point down: {' <- '.join(RANK)})"
    return None


def all_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def all_imports() -> list[Import]:
    found: list[Import] = []
    for path in all_modules():
        found.extend(
            imports_of(
                path.read_text(encoding="utf-8"),
                module=module_name(path),
                path=str(path.relative_to(SRC)),
                is_package=path.name == "__init__.py",
            )
        )
    return found


def _report(problems: list[tuple[Import, str]]) -> str:
    return "imports against the layering (STYLE.md, Layout):\n" + "\n".join(f"  {imp}: {why}" for imp, why in problems)


# --- the project's own modules ----------------------------------------------------------------------------------


def test_the_checker_sees_the_package():
    names = {module_name(p) for p in all_modules()}
    assert {"nodeops.errors", "nodeops.store.jobs", "nodeops.service.admin", "nodeops.cli.app"} <= names
    assert any(imp.target.startswith("nodeops.store") for imp in all_imports())


def test_every_module_is_in_a_known_layer():
    known = set(RANK) | set(ONLY)
    strays = sorted(
        name for name in (module_name(p) for p in all_modules()) if name not in LEAVES and layer_of(name) not in known
    )
    assert not strays, f"modules outside every layer ({', '.join(sorted(known))}): {strays}"


def test_nodeops_imports_only_point_down():
    problems = [
        (imp, why)
        for imp in all_imports()
        if imp.target.split(".")[0] == "nodeops" and (why := violation(imp)) is not None
    ]
    assert not problems, _report(problems)


@pytest.mark.parametrize("library", sorted(THIRD_PARTY))
def test_only_its_layer_imports(library):
    problems = [
        (imp, why)
        for imp in all_imports()
        if imp.target.split(".")[0] == library and (why := violation(imp)) is not None
    ]
    assert not problems, _report(problems)


UNIT_OF_WORK_NAMES = frozenset({"cur", "cursor", "handle", "session", "conn", "connection"})


def untyped_units_of_work(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, name) of each function parameter named like a cursor or session and annotated ``Any``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            arguments = node.args
            for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
                annotation = arg.annotation
                if arg.arg in UNIT_OF_WORK_NAMES and isinstance(annotation, ast.Name) and annotation.id == "Any":
                    found.append((arg.lineno, arg.arg))
    return found


def test_service_and_api_name_the_store_handles_they_take():
    """A cursor or session reaches the service and the HTTP edge typed (``store.db.ReadHandle``, ``WriteHandle``,
    ``Session``), never as ``Any``."""
    problems = [
        f"{path.relative_to(SRC)}:{line} {name}: Any"
        for path in all_modules()
        if layer_of(module_name(path)) in {"service", "api"}
        for line, name in untyped_units_of_work(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not problems, "untyped store handles:\n" + "\n".join(problems)


def test_the_handle_check_flags_an_any_cursor():
    source = "def read(self, cur: Any, job_id: int) -> None: ...\nasync def f(*, session: Any) -> None: ...\n"
    assert untyped_units_of_work(ast.parse(source)) == [(1, "cur"), (2, "session")]
    assert untyped_units_of_work(ast.parse("def read(cur: ReadHandle, data: Any) -> None: ...")) == []


def test_agent_imports_nothing_from_nodeops():
    problems = [
        (imp, "the agent runs on hosts alone")
        for imp in all_imports()
        if layer_of(imp.module) == "agent" and imp.target.split(".")[0] == "nodeops"
    ]
    assert not problems, _report(problems)


# --- the checker itself, so a green run means something -----------------------------------------------------


def _check(module: str, source: str, *, is_package: bool = False) -> list[str]:
    path = module.replace(".", "/") + ("/__init__.py" if is_package else ".py")
    return [
        f"{imp.target}: {why}"
        for imp in imports_of(source, module=module, path=path, is_package=is_package)
        if (why := violation(imp)) is not None
    ]


@pytest.mark.parametrize(
    ("module", "source", "bad_target"),
    [
        ("nodeops.store.jobs", "from nodeops.service import admin", "nodeops.service.admin"),
        ("nodeops.store.jobs", "import nodeops.api.app", "nodeops.api.app"),
        ("nodeops.store.jobs", "def f():\n    from nodeops.cli import app", "nodeops.cli.app"),
        ("nodeops.store.jobs", "from ..service.admin import add_app", "nodeops.service.admin"),
        ("nodeops.service.admin", "from nodeops.api.app import create_app", "nodeops.api.app"),
        ("nodeops.service.admin", "from nodeops.cli.context import state", "nodeops.cli.context"),
        ("nodeops.service.admin", "from nodeops.web import views", "nodeops.web"),
        ("nodeops.engine.runner", "from nodeops.service import admin", "nodeops.service.admin"),
        ("nodeops.domain.status", "from nodeops.store import models", "nodeops.store.models"),
        ("nodeops.domain.status", "from nodeops.settings import Settings", "nodeops.settings"),
        ("nodeops.domain.status", "from nodeops import process_logging", "nodeops.process_logging"),
        ("nodeops.agent.main", "from nodeops.errors import NodeopsError", "nodeops.errors"),
        ("nodeops.errors", "from nodeops.domain import status", "nodeops.domain.status"),
        ("nodeops.web.views", "from nodeops.api import envelope", "nodeops.api.envelope"),
        ("nodeops.api.app", "from nodeops.cli import app", "nodeops.cli.app"),
        ("nodeops.service.instance_log", "import sqlalchemy", "sqlalchemy"),
        ("nodeops.service.instance_log", "from sqlalchemy.orm import Session", "sqlalchemy.orm"),
        ("nodeops.cli.db", "from alembic import command", "alembic"),
        ("nodeops.service.instance_log", "from fastapi import Request", "fastapi"),
        ("nodeops.cli.app", "from starlette.responses import Response", "starlette.responses"),
        ("nodeops.engine.transports.local", "import asyncssh", "asyncssh"),
        (
            "nodeops.api.app",
            "from uvicorn.protocols.http.httptools_impl import STATUS_LINE",
            "uvicorn.protocols.http.httptools_impl",
        ),
        ("nodeops.api.routes.log_reading", "import httptools", "httptools"),
        ("nodeops.service.instance_log", "import uvicorn", "uvicorn"),
        ("nodeops.cli.app", "from uvicorn.protocols.http import httptools_impl", "uvicorn.protocols.http"),
        ("nodeops.cli.app", "import uvicorn.server", "uvicorn.server"),
        ("nodeops.cli.app", "import httptools", "httptools"),
        ("nodeops.store.db", "importlib.import_module('nodeops.service.admin')", "nodeops.service.admin"),
    ],
)
def test_checker_flags_a_wrong_way_import(module, source, bad_target):
    problems = _check(module, source)
    assert [p.split(":")[0] for p in problems] == [bad_target], problems


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("nodeops.cli.app", "from nodeops.api.app import create_app\nfrom nodeops.service import admin"),
        ("nodeops.api.app", "from nodeops.web import viewer\nfrom nodeops.domain.status import Status"),
        ("nodeops.service.admin", "from nodeops.store import access\nfrom nodeops.engine import dispatch"),
        ("nodeops.engine.runner", "from nodeops.store.jobs import write_progress\nfrom nodeops.domain import plans"),
        ("nodeops.store.jobs", "from nodeops.domain.plans import PlannedStep\nfrom sqlalchemy import insert"),
        ("nodeops.store.migrations.env", "from alembic import context"),
        ("nodeops.store.jobs", "from .models import StepLog\nfrom . import db"),
        ("nodeops.domain.status", "from nodeops.errors import InvalidInput\nimport re"),
        ("nodeops.settings", "from pydantic import Field"),
        ("nodeops.api.envelope", "from starlette.exceptions import HTTPException\nimport fastapi"),
        ("nodeops.engine.transports.ssh", "import asyncssh"),
        (
            "nodeops.api.fastpath.lane",
            "import httptools\nfrom uvicorn.protocols.http.httptools_impl import STATUS_LINE",
        ),
        ("nodeops.cli.app", "import uvicorn\nfrom uvicorn import Config, Server"),
        ("nodeops.agent.main", "import json\nimport subprocess"),
        ("nodeops.service.demo", "from nodeops.settings import Settings\nfrom nodeops.process_logging import redact"),
    ],
)
def test_checker_allows_a_downward_import(module, source):
    assert _check(module, source) == []


def test_checker_resolves_relative_imports_of_a_package():
    found = imports_of(
        "from . import jobs\nfrom .. import errors\nfrom ..domain.plans import PlannedStep",
        module="nodeops.store",
        path="nodeops/store/__init__.py",
        is_package=True,
    )
    assert [imp.target for imp in found] == ["nodeops.store.jobs", "nodeops.errors", "nodeops.domain.plans"]


def test_failure_message_names_the_module_and_the_import():
    imp = imports_of("from nodeops.service import admin", module="nodeops.store.jobs", path="x.py", is_package=False)
    message = _report([(imp[0], violation(imp[0]) or "")])
    assert "nodeops.store.jobs" in message
    assert "imports nodeops.service.admin" in message
    assert "store may not import service" in message
