"""With which rights the commands of a host run (network spec §18, docs/compatibility.md "Installs without root").

Node Manager never checks: it prefixes ``sudo`` for a non-root account and lets a password prompt fail the
command. nodeops decides once per host pipeline, with the first command that reaches the host: ``root`` (or the
local transport) runs as itself; an account the request said installs into a folder it owns (``owned_path``) runs
as itself, once it is shown it can write that folder; any other account must be allowed ``sudo -n`` (NOPASSWD),
and its commands then run as ``sudo -n sh -c '...'``. Otherwise ``PrivilegeRefused`` says exactly what is missing,
with sudo's own words.
"""

from __future__ import annotations

import shlex
from enum import StrEnum

from nodeops.engine.transports.base import Transport
from nodeops.errors import PrivilegeRefused
from nodeops.store.pipelines import HostWork

ROOT_ACCOUNT = "root"
# what the probe prints last: the account is root, may ``sudo -n``, or neither (sudo's own words before)
PROBE_ROOT, PROBE_SUDO, PROBE_NEITHER = "nodeops-privilege:root", "nodeops-privilege:sudo", "nodeops-privilege:none"
_PROBE = (
    f'if [ "$(id -u)" = 0 ]; then echo {PROBE_ROOT}; '
    f"elif ! command -v sudo >/dev/null 2>&1; then echo 'sudo: command not found'; echo {PROBE_NEITHER}; "
    f"elif sudo -n true 2>&1; then echo {PROBE_SUDO}; else echo {PROBE_NEITHER}; fi"
)


class Privilege(StrEnum):
    AS_ACCOUNT = "as the account"  # root, the local transport, or an owned path
    SUDO = "sudo -n"
    OWNED_PATH = "owned_path"


async def decide(transport: Transport, work: HostWork, *, timeout_s: float) -> Privilege:
    """How ``work``'s commands run on the host; raises PrivilegeRefused naming what is missing."""
    if work.transport == "local" or work.account == ROOT_ACCOUNT:
        return Privilege.AS_ACCOUNT
    probe = await transport.run(_PROBE, timeout_s=timeout_s)
    verdict = probe.tail[-1] if probe.tail else ""
    if verdict == PROBE_ROOT:
        return Privilege.AS_ACCOUNT
    if verdict == PROBE_SUDO and not work.owned_path:
        return Privilege.SUDO
    if not work.owned_path:
        said = "; ".join(probe.tail[:-1]) or f"the check exited {probe.exit_status}"
        raise PrivilegeRefused(
            f'the account {work.account} may not sudo without a password (NOPASSWD): sudo said "{said}"; '
            "allow it NOPASSWD sudo, log in as root, or ask for owned_path to install into a folder it owns"
        )
    path = shlex.quote(work.setup_path)
    wrote = await transport.run(f"mkdir -p {path} 2>&1 && test -w {path} && test -x {path}", timeout_s=timeout_s)
    if not wrote.ok:
        detail = f": {'; '.join(wrote.tail)}" if wrote.tail else ""
        raise PrivilegeRefused(
            f"the account {work.account} cannot write the install path {work.setup_path} (owned_path: no root, "
            f"no sudo){detail}; choose a folder it owns"
        )
    return Privilege.OWNED_PATH


def wrap(command: str, privilege: Privilege) -> str:
    """``command`` as it runs with ``privilege``."""
    return f"sudo -n sh -c {shlex.quote(command)}" if privilege is Privilege.SUDO else command
