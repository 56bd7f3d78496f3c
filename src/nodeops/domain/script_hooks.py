"""install_job's ``script_hooks``, read: ``[{"name", "script", "when"}]`` (ours for Linux, docs/compatibility.md).

Node Manager's hooks are names of Windows built-ins (``firewall_off`` ...; network spec §19) that nodeops has no
equivalent of, so a hook here carries its own ``sh`` script, which the step pushes to the host as a file and runs
with the account's rights. Sizes are bounded: a hook is a step of every host's plan and its script is stored
with the job. Pure: imports only the stdlib and ``nodeops.domain``.
"""

from __future__ import annotations

from collections.abc import Mapping

from nodeops.domain.plans import HookWhen, ScriptHook

MAX_HOOKS = 10
MAX_NAME_CHARS = 64
MAX_SCRIPT_BYTES = 64 * 1024
FIELD = "script_hooks"
_KEYS = frozenset({"name", "script", "when"})


def read_script_hooks(value: object, problems: dict[str, str]) -> tuple[ScriptHook, ...]:
    """The hooks of a request (absent or null: none); each bad one is put into ``problems`` under
    ``script_hooks[i].field``, and only good hooks are returned."""
    if value is None:
        return ()
    if not isinstance(value, list):
        problems[FIELD] = 'must be a list of {"name", "script", "when"} objects'
        return ()
    if len(value) > MAX_HOOKS:
        problems[FIELD] = f"at most {MAX_HOOKS} hooks, got {len(value)}"
        return ()
    hooks: list[ScriptHook] = []
    names: set[str] = set()
    for index, item in enumerate(value):
        where = f"{FIELD}[{index}]"
        if not isinstance(item, Mapping):
            problems[where] = 'must be an object {"name", "script", "when"}'
            continue
        if unknown := sorted(str(key) for key in item if key not in _KEYS):
            problems[where] = f"unknown keys {', '.join(unknown)[:200]}; a hook has name, script and when"
            continue
        hook = _read_hook(item, where, problems, names)
        if hook is not None:
            names.add(hook.name)
            hooks.append(hook)
    return tuple(hooks)


def _read_hook(item: Mapping[str, object], where: str, problems: dict[str, str], names: set[str]) -> ScriptHook | None:
    name, script, when = item.get("name"), item.get("script"), item.get("when", HookWhen.BEFORE_START.value)
    bad = len(problems)
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS or not name.isprintable():
        problems[f"{where}.name"] = f"must be a printable name of 1 to {MAX_NAME_CHARS} characters"
    elif name in names:
        problems[f"{where}.name"] = f"{name} is given twice: each hook needs its own name"
    if script is None:
        problems[f"{where}.script"] = (
            "required: nodeops runs a hook's own sh script; Node Manager's built-in hooks "
            f"({name if isinstance(name, str) else 'firewall_off'} ...) are Windows-only"
        )
    elif not isinstance(script, str) or not script.strip() or "\0" in script or not _is_utf8(script):
        problems[f"{where}.script"] = "must be the text of an sh script (not empty, UTF-8, no NUL character)"
    elif len(script.encode()) > MAX_SCRIPT_BYTES:
        problems[f"{where}.script"] = f"at most {MAX_SCRIPT_BYTES} bytes"
    if not isinstance(when, str) or when not in {w.value for w in HookWhen}:
        problems[f"{where}.when"] = f"must be one of {', '.join(w.value for w in HookWhen)}"
    if len(problems) > bad:
        return None
    assert isinstance(name, str) and isinstance(script, str) and isinstance(when, str)
    return ScriptHook(name=name, script=script, when=HookWhen(when))


def _is_utf8(text: str) -> bool:
    """False for text holding a lone surrogate (JSON allows ``\\ud800``; no database stores it)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
